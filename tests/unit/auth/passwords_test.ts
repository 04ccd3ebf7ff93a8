// Goal: hashSecret/verifySecret store only salted PBKDF2 hashes and check them with the stored
// iterations (compared with util/constant_time.ts, tested in tests/unit/util/constant_time_test.ts).
// Method: direct calls with 1000 iterations.
import assert from "node:assert/strict";
import { hashSecret, verifySecret } from "../../../src/auth/passwords.ts";

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
