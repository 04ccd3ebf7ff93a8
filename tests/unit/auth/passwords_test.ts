// Goal: hashSecret/verifySecret store only salted PBKDF2 hashes and check them with the stored
// iterations; equalConstantTime compares whole arrays.
// Method: direct calls with 1000 iterations.
import assert from "node:assert/strict";
import { equalConstantTime, hashSecret, verifySecret } from "../../../src/auth/passwords.ts";

Deno.test("hashSecret() salts every hash and verifySecret() accepts only the same secret", async () => {
  const first = await hashSecret("secret", { iterations: 1000 });
  const second = await hashSecret("secret", { iterations: 1000 });
  assert.notEqual(first.salt, second.salt);
  assert.notEqual(first.hash, second.hash);
  assert.equal(await verifySecret("secret", first), true);
  assert.equal(await verifySecret("secret", second), true);
  assert.equal(await verifySecret("secreT", first), false);
  assert.equal(await verifySecret("", first), false);
});

Deno.test("verifySecret() hashes with the record's own iterations", async () => {
  const record = await hashSecret("secret", { iterations: 1000 });
  assert.equal(await verifySecret("secret", { ...record, iterations: 1001 }), false);
  assert.equal(await verifySecret("secret", { ...record, iterations: 1000 }), true);
});

Deno.test("hashSecret() matches PBKDF2-SHA-256 computed independently", async () => {
  const record = await hashSecret("password", { iterations: 1000 });
  const material = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode("password"),
    "PBKDF2",
    false,
    [
      "deriveBits",
    ],
  );
  const bits = await crypto.subtle.deriveBits(
    { name: "PBKDF2", hash: "SHA-256", salt: Uint8Array.fromBase64(record.salt), iterations: 1000 },
    material,
    256,
  );
  assert.equal(new Uint8Array(bits).toBase64(), record.hash);
});

Deno.test("equalConstantTime() compares every byte and the lengths", () => {
  const bytes = new Uint8Array([1, 2, 3, 4]);
  assert.equal(equalConstantTime(bytes, new Uint8Array([1, 2, 3, 4])), true);
  assert.equal(equalConstantTime(bytes, new Uint8Array([0, 2, 3, 4])), false);
  assert.equal(equalConstantTime(bytes, new Uint8Array([1, 2, 3, 5])), false);
  assert.equal(equalConstantTime(bytes, new Uint8Array([1, 2, 3])), false);
  assert.equal(equalConstantTime(new Uint8Array(), new Uint8Array()), true);
});
