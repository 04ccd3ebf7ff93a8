// Goal: the key import, key id, AES-GCM helpers and the change log's ChaCha20-Poly1305 behave as the format
// spec says.
// Method: import fixed keys, encrypt and decrypt, tamper with ciphertext and additional data; RFC 8439's
// test vector for the AEAD.
import assert from "node:assert/strict";
import { createSecretKey } from "node:crypto";
import { chachaCipher, decrypt, encrypt, importEncryptionKey } from "../../../src/store/crypto.ts";
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

Deno.test(
  "encrypt() (node:crypto) and decrypt() (WebCrypto) round trip; tampering or another key fails " +
    "authentication",
  async () => {
    const plaintext = new TextEncoder().encode("hello frames");
    const additionalData = new TextEncoder().encode("header");
    const { iv, ciphertext } = encrypt(testEncryption.cipherKey, { plaintext, additionalData });
    assert.deepEqual(await decrypt(testEncryption.key, { iv, ciphertext, additionalData }), plaintext);
    const flipped = ciphertext.slice();
    flipped[0]! ^= 1;
    assert.equal(await decrypt(testEncryption.key, { iv, ciphertext: flipped, additionalData }), undefined);
    const otherHeader = new TextEncoder().encode("Header");
    assert.equal(
      await decrypt(testEncryption.key, { iv, ciphertext, additionalData: otherHeader }),
      undefined,
    );
    assert.equal(await decrypt(otherEncryption.key, { iv, ciphertext, additionalData }), undefined);
    assert.equal(
      await decrypt(testEncryption.key, { iv, ciphertext: ciphertext.subarray(0, 5), additionalData }),
      undefined,
    );
  },
);

Deno.test("encrypt() uses a fresh IV every time", () => {
  const plaintext = new Uint8Array(10);
  const additionalData = new Uint8Array(0);
  const first = encrypt(testEncryption.cipherKey, { plaintext, additionalData });
  const second = encrypt(testEncryption.cipherKey, { plaintext, additionalData });
  assert.notDeepEqual(first.iv, second.iv);
  assert.notDeepEqual(first.ciphertext, second.ciphertext);
});

function hexBytes(hex: string): Uint8Array {
  return Uint8Array.from(hex.match(/../g)!, (pair) => parseInt(pair, 16));
}

Deno.test("chachaCipher() opens RFC 8439's AEAD test vector (section 2.8.2) and refuses it changed", () => {
  const key = createSecretKey(Uint8Array.from({ length: 32 }, (_, index) => 0x80 + index));
  const iv = hexBytes("070000004041424344454647");
  const additionalData = hexBytes("50515253c0c1c2c3c4c5c6c7");
  const ciphertext = hexBytes(
    "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b" +
      "1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc" +
      "3ff4def08e4b7a9de576d26586cec64b6116" + "1ae10b594f09e26a7e902ecbd0600691",
  );
  const cipher = chachaCipher(key);
  const plaintext = cipher.open({ iv, ciphertext, additionalData });
  assert.equal(
    new TextDecoder().decode(plaintext),
    "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, " +
      "sunscreen would be it.",
  );
  const flipped = ciphertext.slice();
  flipped[flipped.length - 1]! ^= 1; // the tag
  assert.equal(cipher.open({ iv, ciphertext: flipped, additionalData }), undefined);
  assert.equal(cipher.open({ iv, ciphertext, additionalData: additionalData.subarray(1) }), undefined);
  assert.equal(cipher.open({ iv, ciphertext: ciphertext.subarray(0, 10), additionalData }), undefined);
});

Deno.test("the change log's cipher round trips under a key of its own, with a fresh IV each time", () => {
  const plaintext = new TextEncoder().encode("U01,1,1,1\ntk{}");
  const additionalData = new TextEncoder().encode("header");
  const cipher = testEncryption.changeCipher;
  const first = cipher.seal({ plaintext, additionalData });
  const second = cipher.seal({ plaintext, additionalData });
  assert.notDeepEqual(first.iv, second.iv);
  assert.equal(first.ciphertext.length, plaintext.length + 16);
  assert.deepEqual(cipher.open({ ...first, additionalData }), plaintext);
  assert.equal(otherEncryption.changeCipher.open({ ...first, additionalData }), undefined);
  // Derived (HKDF), not the build key itself: that key does not open it.
  const raw = Uint8Array.from(atob(keyBase64), (character) => character.charCodeAt(0));
  assert.equal(chachaCipher(createSecretKey(raw)).open({ ...first, additionalData }), undefined);
});
