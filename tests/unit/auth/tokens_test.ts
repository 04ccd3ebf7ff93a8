// Goal: verifyToken accepts only unexpired HS256 tokens of our key with a string `sub` and an `exp`,
// and its errors say why without quoting the token.
// Method: tokens signed by signToken, by jose with other keys and algorithms, and by hand with WebCrypto.
import assert from "node:assert/strict";
import { decodeJwt, decodeProtectedHeader, generateKeyPair, SignJWT } from "jose";
import { TokenInvalidError, type TokenInvalidReason } from "../../../src/auth/errors.ts";
import { signToken, type TokenKey, verifyToken } from "../../../src/auth/tokens.ts";
import { ManualClock } from "../../../src/util/clock.ts";
import { testSecret } from "./memory_users.ts";

const lifetimeSecs = 24 * 60 * 60;

function makeKey(secret = testSecret): TokenKey & { clock: ManualClock } {
  return { key: new TextEncoder().encode(secret), clock: new ManualClock(1_700_000_000_500) };
}

async function assertRefused(tokenKey: TokenKey, token: string, reason: TokenInvalidReason): Promise<void> {
  await assert.rejects(verifyToken(tokenKey, token), (error: unknown) => {
    assert.ok(error instanceof TokenInvalidError);
    assert.equal(error.code, "token_invalid");
    assert.equal(error.reason, reason);
    assert.match(error.message, /^Cannot verify token: /);
    if (token.length > 0) assert.ok(!error.message.includes(token));
    for (const part of token.split(".")) if (part.length > 8) assert.ok(!error.message.includes(part));
    return true;
  });
}

function base64url(bytes: Uint8Array): string {
  return bytes.toBase64({ alphabet: "base64url", omitPadding: true });
}

/** A JWT assembled by hand, HMAC-SHA-256 signed with `key` (or unsigned when `key` is undefined). */
async function handMadeToken(
  options: { header: object; payload: object; key?: Uint8Array },
): Promise<string> {
  const encoder = new TextEncoder();
  const signingInput = `${base64url(encoder.encode(JSON.stringify(options.header)))}.` +
    base64url(encoder.encode(JSON.stringify(options.payload)));
  if (options.key === undefined) return `${signingInput}.`;
  const hmacKey = await crypto.subtle.importKey(
    "raw",
    new Uint8Array(options.key),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const signature = await crypto.subtle.sign("HMAC", hmacKey, encoder.encode(signingInput));
  return `${signingInput}.${base64url(new Uint8Array(signature))}`;
}

Deno.test("signToken() and verifyToken() round-trip sub, iat and exp", async () => {
  const tokenKey = makeKey();
  const token = await signToken(tokenKey, { user: "alice", lifetimeSecs });
  assert.equal(await verifyToken(tokenKey, token), "alice");
  assert.deepEqual(decodeProtectedHeader(token), { alg: "HS256", typ: "JWT" });
  const claims = decodeJwt(token);
  assert.equal(claims.sub, "alice");
  assert.equal(claims.iat, 1_700_000_000);
  assert.equal(claims.exp, 1_700_000_000 + lifetimeSecs);
});

Deno.test("verifyToken() accepts a token one second before exp and refuses it at exp", async () => {
  const tokenKey = makeKey();
  const token = await signToken(tokenKey, { user: "alice", lifetimeSecs });
  tokenKey.clock.advance(lifetimeSecs * 1000 - 1500);
  assert.equal(await verifyToken(tokenKey, token), "alice");
  tokenKey.clock.advance(1000);
  await assertRefused(tokenKey, token, "expired");
});

Deno.test("verifyToken() refuses a token signed with another secret", async () => {
  const other = makeKey("another-secret-another-secret-0123");
  const token = await signToken(other, { user: "alice", lifetimeSecs });
  await assertRefused(makeKey(), token, "bad_signature");
});

Deno.test("verifyToken() refuses a token whose payload was tampered with", async () => {
  const tokenKey = makeKey();
  const token = await signToken(tokenKey, { user: "alice", lifetimeSecs });
  const [header, payload, signature] = token.split(".");
  const claims = JSON.parse(
    new TextDecoder().decode(Uint8Array.fromBase64(payload!, { alphabet: "base64url" })),
  );
  claims.sub = "mallory";
  const forged = `${header}.${base64url(new TextEncoder().encode(JSON.stringify(claims)))}.${signature}`;
  await assertRefused(tokenKey, forged, "bad_signature");
});

Deno.test("verifyToken() refuses alg none, HS384 and RS256 tokens", async () => {
  const tokenKey = makeKey();
  const payload = { sub: "alice", iat: 1_700_000_000, exp: 1_700_000_000 + lifetimeSecs };
  await assertRefused(
    tokenKey,
    await handMadeToken({ header: { alg: "none", typ: "JWT" }, payload }),
    "algorithm_not_allowed",
  );
  const hs384 = await new SignJWT(payload).setProtectedHeader({ alg: "HS384" }).sign(tokenKey.key);
  await assertRefused(tokenKey, hs384, "algorithm_not_allowed");
  const { privateKey } = await generateKeyPair("RS256");
  const rs256 = await new SignJWT(payload).setProtectedHeader({ alg: "RS256" }).sign(privateKey);
  await assertRefused(tokenKey, rs256, "algorithm_not_allowed");
  // An RS256 header over an HMAC made with our secret (algorithm confusion).
  const confused = await handMadeToken({ header: { alg: "RS256" }, payload, key: tokenKey.key });
  await assertRefused(tokenKey, confused, "algorithm_not_allowed");
});

Deno.test("verifyToken() refuses tokens without a string sub or a numeric exp", async () => {
  const tokenKey = makeKey();
  const header = { alg: "HS256", typ: "JWT" };
  const exp = 1_700_000_000 + lifetimeSecs;
  const cases = [
    { iat: 1_700_000_000, exp },
    { sub: "alice", iat: 1_700_000_000 },
    { sub: 42, exp },
    { sub: "", exp },
    { sub: "alice", exp: String(exp) },
  ];
  for (const payload of cases) {
    await assertRefused(
      tokenKey,
      await handMadeToken({ header, payload, key: tokenKey.key }),
      "claims_invalid",
    );
  }
  // The control: the same hand-made path with both claims is accepted.
  const good = await handMadeToken({ header, payload: { sub: "alice", exp }, key: tokenKey.key });
  assert.equal(await verifyToken(tokenKey, good), "alice");
});

Deno.test("verifyToken() refuses malformed tokens", async () => {
  const tokenKey = makeKey();
  for (const token of ["", "not-a-jwt", "a.b.c", "a.b", "....", `${"x".repeat(20)}.${"y".repeat(20)}.z`]) {
    await assertRefused(tokenKey, token, "malformed");
  }
});
