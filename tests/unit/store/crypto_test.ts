// Goal: the key import, key id and AES-GCM helpers behave as the format spec says.
// Method: import fixed keys, encrypt and decrypt, tamper with ciphertext and additional data.
import assert from "node:assert/strict";
import { decrypt, encrypt, importEncryptionKey } from "../../../src/store/crypto.ts";
import { otherEncryption, testEncryption } from "./test_store.ts";

const keyBase64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

Deno.test("importEncryptionKey() derives the key id from SHA-256 of the labelled key", async () => {
  const raw = Uint8Array.from(atob(keyBase64), (character) => character.charCodeAt(0));
  const label = new TextEncoder().encode("dynarust-key-id\0");
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array([...label, ...raw])));
  const expected = Array.from(digest.subarray(0, 8), (byte) => byte.toString(16).padStart(2, "0")).join("");
  const { keyId, key } = await importEncryptionKey(keyBase64);
  assert.equal(keyId, expected);
  assert.match(keyId, /^[0-9a-f]{16}$/);
  assert.equal(key.extractable, false);
  assert.notEqual(testEncryption.keyId, otherEncryption.keyId);
});

Deno.test("importEncryptionKey() rejects a key that is not 32 bytes", async () => {
  await assert.rejects(() => importEncryptionKey(btoa("short")), /32 bytes/);
});

Deno.test("encrypt() (node:crypto) and decrypt() (WebCrypto) round trip; tampering or another key fails authentication", async () => {
  const plaintext = new TextEncoder().encode("hello frames");
  const additionalData = new TextEncoder().encode("header");
  const { iv, ciphertext } = encrypt(testEncryption.cipherKey, { plaintext, additionalData });
  assert.deepEqual(await decrypt(testEncryption.key, { iv, ciphertext, additionalData }), plaintext);
  const flipped = ciphertext.slice();
  flipped[0]! ^= 1;
  assert.equal(await decrypt(testEncryption.key, { iv, ciphertext: flipped, additionalData }), undefined);
  const otherHeader = new TextEncoder().encode("Header");
  assert.equal(await decrypt(testEncryption.key, { iv, ciphertext, additionalData: otherHeader }), undefined);
  assert.equal(await decrypt(otherEncryption.key, { iv, ciphertext, additionalData }), undefined);
  assert.equal(
    await decrypt(testEncryption.key, { iv, ciphertext: ciphertext.subarray(0, 5), additionalData }),
    undefined,
  );
});

Deno.test("encrypt() uses a fresh IV every time", () => {
  const plaintext = new Uint8Array(10);
  const additionalData = new Uint8Array(0);
  const first = encrypt(testEncryption.cipherKey, { plaintext, additionalData });
  const second = encrypt(testEncryption.cipherKey, { plaintext, additionalData });
  assert.notDeepEqual(first.iv, second.iv);
  assert.notDeepEqual(first.ciphertext, second.ciphertext);
});
