import { createHash, timingSafeEqual } from "node:crypto";
import { assert } from "./assert.ts";

/** Bytes of a SHA-256 digest: both sides are compared as digests of this length. */
const digestBytes = 32;

/**
 * Whether `actual` equals `expected` (a secret, a hash, a MAC or a token), in time that does not depend
 * on where they differ nor on whether their lengths match.
 *
 * Both sides are hashed with SHA-256 first and the two 32-byte digests are compared with `node:crypto`'s
 * `timingSafeEqual`, so inputs of different lengths neither throw (as `timingSafeEqual` does on its own)
 * nor return early: a short or empty `actual` still costs hashing all of `expected`. Hashing `actual`
 * costs time in its own length, which its sender already knows. Equal digests stand for equal inputs
 * (a SHA-256 collision is not a concern here). Strings are compared as their UTF-8 bytes.
 */
export function equalConstantTime(
  options: { expected: Uint8Array | string; actual: Uint8Array | string },
): boolean {
  const expectedDigest = sha256(options.expected);
  const actualDigest = sha256(options.actual);
  assert(expectedDigest.byteLength === digestBytes);
  assert(actualDigest.byteLength === digestBytes);
  return timingSafeEqual(expectedDigest, actualDigest);
}

function sha256(input: Uint8Array | string): Uint8Array {
  const hash = createHash("sha256");
  if (typeof input === "string") hash.update(input, "utf8");
  else hash.update(input);
  return hash.digest();
}
