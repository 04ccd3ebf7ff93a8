import { assert } from "../util/assert.ts";
import type { Encryption } from "./crypto.ts";
import { WalCorruptError } from "./errors.ts";
import {
  checkFileHeader,
  encodeFileHeader,
  encodeFrame,
  fileHeaderBytes,
  readFully,
  recordsOf,
  scanFrames,
} from "./frame.ts";
import { type Fs, parentDir, privateDirPermissions, privateFilePermissions } from "./fs.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** Options of {@linkcode loadOrCreateSecretFile}. */
export interface SecretFileOptions {
  fs: Fs;
  path: string;
  encryption: Encryption;
  /** Makes a new secret when the file does not exist yet. */
  create: () => string;
}

async function readSecretFile(options: SecretFileOptions): Promise<string | undefined> {
  const { path, encryption } = options;
  const file = await options.fs.openRead(path);
  if (file === undefined) return undefined;
  try {
    const sizeBytes = await file.sizeBytes();
    const header = new Uint8Array(fileHeaderBytes);
    if (await readFully(file, header) < fileHeaderBytes) {
      throw new WalCorruptError({ path, offset: 0, reason: "shorter than its header" });
    }
    checkFileHeader({ path, bytes: header, kind: "secret", keyId: encryption.keyId });
    const found: Uint8Array[] = [];
    const result = await scanFrames(
      { file, path, sizeBytes, encryption, header },
      (frame) => found.push(...recordsOf(frame)),
    );
    if (result.torn !== undefined) throw new WalCorruptError({ path, ...result.torn });
    if (found.length !== 1) {
      throw new WalCorruptError({ path, offset: fileHeaderBytes, reason: "not one secret" });
    }
    try {
      return decoder.decode(found[0]);
    } catch (cause) {
      throw new WalCorruptError({ path, offset: fileHeaderBytes, reason: `secret is not UTF-8 (${cause})` });
    }
  } finally {
    file.close();
  }
}

async function writeSecretFile(options: SecretFileOptions, secret: string): Promise<void> {
  const { fs, path, encryption } = options;
  const header = encodeFileHeader("secret", encryption.keyId);
  const frame = encodeFrame({ encryption, header, records: [encoder.encode(secret)] });
  const tmpPath = `${path}.tmp`;
  await fs.mkdir(parentDir(path), { permissions: privateDirPermissions });
  const file = await fs.createFile(tmpPath, { permissions: privateFilePermissions });
  try {
    await file.write(header);
    await file.write(frame);
    await file.syncData();
  } catch (error) {
    file.close();
    await fs.remove(tmpPath);
    throw error;
  }
  file.close();
  await fs.rename(tmpPath, path);
  await fs.syncDir(parentDir(path));
}

/**
 * Reads a secret kept encrypted with the build key in a `0600` file, or makes one with `create` and
 * stores it (atomically and durably) when the file does not exist.
 *
 * @throws {WrongKeyError} when the file was written under another key.
 * @throws {WalCorruptError} when the file is damaged.
 */
export async function loadOrCreateSecretFile(
  options: SecretFileOptions,
): Promise<{ secret: string; created: boolean }> {
  const existing = await readSecretFile(options);
  if (existing !== undefined) return { secret: existing, created: false };
  const secret = options.create();
  assert(secret.length > 0, "create() must return a non-empty secret");
  await writeSecretFile(options, secret);
  return { secret, created: true };
}
