import { type Encryption, importEncryptionKey } from "./crypto.ts";
import { BuildKeyError } from "./errors.ts";

/** Where `deno task gen-key` writes the build's key module, from the repository root. Git ignores it. */
export const buildKeyModulePath = "src/store/encryption_key.ts";

/** Base64 of 32 bytes: 43 characters and one `=`. */
const keyBase64Pattern = /^[A-Za-z0-9+/]{43}=$/;

/** What the key module exports; `unknown` since a hand-edited module may hold anything. */
export interface BuildKeyModule {
  encryptionKeyBase64?: unknown;
}

/**
 * The key module itself. A dynamic import with a literal specifier: `deno compile` embeds the module in
 * the binary as it would a static import, while a checkout that has no module yet (a fresh clone) still
 * type-checks and lints, and fails only when a node starts, with a line that says what to run.
 */
function importKeyModule(): Promise<BuildKeyModule> {
  return import("./encryption_key.ts");
}

/**
 * Imports the build's at-rest encryption key from its git-ignored module (SPEC §6, §8): no key is ever
 * in the repository, so no build encrypts with a key that anyone else has.
 *
 * @param load how the module is imported; tests replace it.
 * @throws {BuildKeyError} when the module is missing, or does not export a 32-byte base64 key.
 */
export async function loadBuildEncryption(
  load: () => Promise<BuildKeyModule> = importKeyModule,
): Promise<Encryption> {
  let module: BuildKeyModule;
  try {
    module = await load();
  } catch (cause) {
    const message = cause instanceof Error ? cause.message : String(cause);
    const missing = `no encryption key: ${buildKeyModulePath} does not exist. Run \`deno task gen-key\` ` +
      "once (`deno task start` and `deno task compile` do it for you) and keep that file: every build " +
      "that must read this data needs the same one";
    throw new BuildKeyError(
      /module not found|cannot find module/i.test(message)
        ? missing
        : `cannot load the encryption key module ${buildKeyModulePath}: ${message}`,
      { cause },
    );
  }
  const keyBase64 = module.encryptionKeyBase64;
  if (typeof keyBase64 !== "string" || !keyBase64Pattern.test(keyBase64)) {
    throw new BuildKeyError(
      `${buildKeyModulePath} does not export encryptionKeyBase64 as the base64 of 32 bytes; it is written ` +
        "by `deno task gen-key`, never by hand",
    );
  }
  return await importEncryptionKey(keyBase64);
}
