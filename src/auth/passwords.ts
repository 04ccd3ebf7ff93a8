import { assert } from "../util/assert.ts";
import { equalConstantTime } from "../util/constant_time.ts";

/** Stored per user; all strings base64. The auth module never touches the disk: main.ts adapts the store. */
export interface UserRecord {
  /** 16 random bytes, base64. */
  salt: string;
  /** PBKDF2-SHA-256 of the secret, 32 bytes, base64. */
  hash: string;
  /** PBKDF2 iterations this record was hashed with; stored so the default can be raised later. */
  iterations: number;
}

/** The iteration count SPEC §3 requires at least (OWASP 2023 for PBKDF2-HMAC-SHA-256). */
export const pbkdf2IterationsMin = 600_000;

const saltBytes = 16;
const hashBytes = 32;

/** Hashes `secret` with a fresh random salt. */
export async function hashSecret(secret: string, options: { iterations: number }): Promise<UserRecord> {
  assert(Number.isSafeInteger(options.iterations), "iterations must be an integer");
  assert(options.iterations >= 1, "iterations must be positive");
  const salt = crypto.getRandomValues(new Uint8Array(saltBytes));
  const hash = await deriveHash(secret, { salt, iterations: options.iterations });
  assert(hash.length === hashBytes);
  return { salt: salt.toBase64(), hash: hash.toBase64(), iterations: options.iterations };
}

/** Whether `secret` hashes to `record.hash` with the record's salt and iterations (constant-time compare). */
export async function verifySecret(secret: string, record: UserRecord): Promise<boolean> {
  assert(Number.isSafeInteger(record.iterations), "stored iterations must be an integer");
  assert(record.iterations >= 1, "stored iterations must be positive");
  const salt = Uint8Array.fromBase64(record.salt);
  const expected = Uint8Array.fromBase64(record.hash);
  assert(expected.length === hashBytes, "stored hash must be 32 bytes");
  const actual = await deriveHash(secret, { salt, iterations: record.iterations });
  return equalConstantTime({ expected, actual });
}

async function deriveHash(
  secret: string,
  options: { salt: Uint8Array; iterations: number },
): Promise<Uint8Array> {
  const material = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(secret),
    "PBKDF2",
    false,
    ["deriveBits"],
  );
  const bits = await crypto.subtle.deriveBits(
    { name: "PBKDF2", hash: "SHA-256", salt: new Uint8Array(options.salt), iterations: options.iterations },
    material,
    hashBytes * 8,
  );
  return new Uint8Array(bits);
}
