/**
 * The at-rest key of nodes that tests run in their own process (`startNode(config, { encryption })`):
 * fixed and public, so those tests need no key module. Node processes use the checkout's own key module,
 * which the test tasks make when it is missing (`deno task gen-key --if-missing`).
 */
import { importEncryptionKey } from "../../src/store/mod.ts";

/** Base64 of the test key: bytes 0..31. Never a build's key (`tools/gen_key.ts` draws 32 random bytes). */
export const testKeyBase64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/** The test key, imported. */
export const testEncryption = await importEncryptionKey(testKeyBase64);
