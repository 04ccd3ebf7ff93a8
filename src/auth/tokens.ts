import { errors as joseErrors, jwtVerify, SignJWT } from "jose";
import { assert } from "../util/assert.ts";
import type { Clock } from "../util/clock.ts";
import { TokenInvalidError, type TokenInvalidReason } from "./errors.ts";

/** What signing and verifying a user token need. */
export interface TokenKey {
  /** HMAC key bytes (the UTF-8 of `JWT_SECRET`). */
  key: Uint8Array;
  clock: Clock;
}

/** Clock difference tolerated between nodes for `iat` (tokens of one node are valid on every node). */
export const clockToleranceMs = 60_000;

/** Signs an HS256 JWT with `sub` = `user`, `iat` = now and `exp` = now + `lifetimeSecs`. */
export async function signToken(
  tokenKey: TokenKey,
  claims: { user: string; lifetimeSecs: number },
): Promise<string> {
  assert(claims.user.length > 0, "user must not be empty");
  assert(Number.isSafeInteger(claims.lifetimeSecs), "lifetimeSecs must be an integer");
  assert(claims.lifetimeSecs > 0, "lifetimeSecs must be positive");
  const issuedAtSecs = Math.floor(tokenKey.clock.nowMs() / 1000);
  return await new SignJWT({})
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setSubject(claims.user)
    .setIssuedAt(issuedAtSecs)
    .setExpirationTime(issuedAtSecs + claims.lifetimeSecs)
    .sign(tokenKey.key);
}

/**
 * Verifies an HS256 JWT against the key and the injected clock and returns its `sub`.
 *
 * @throws {TokenInvalidError} when the token is malformed, signed with another key or algorithm,
 * expired, or lacks a string `sub` or a numeric `exp`.
 */
export async function verifyToken(tokenKey: TokenKey, token: string): Promise<string> {
  return (await verifyTokenClaims(tokenKey, token)).user;
}

/** The claims of a verified token that the node uses. */
export interface VerifiedToken {
  user: string;
  /** `exp` in milliseconds since the epoch. */
  expiresAtMs: number;
}

/**
 * Like {@linkcode verifyToken}, also returning when the token expires.
 *
 * @throws {TokenInvalidError} as `verifyToken`.
 */
export async function verifyTokenClaims(tokenKey: TokenKey, token: string): Promise<VerifiedToken> {
  let payload;
  try {
    ({ payload } = await jwtVerify(token, tokenKey.key, {
      algorithms: ["HS256"],
      currentDate: new Date(tokenKey.clock.nowMs()),
      requiredClaims: ["sub", "exp"],
    }));
  } catch (error) {
    const reason = reasonOf(error);
    throw new TokenInvalidError(reason, `Cannot verify token: ${reasonMessages[reason]}`, { cause: error });
  }
  if (typeof payload.sub !== "string" || payload.sub.length === 0) {
    throw new TokenInvalidError("claims_invalid", `Cannot verify token: ${reasonMessages.claims_invalid}`);
  }
  if (typeof payload.exp !== "number") {
    throw new TokenInvalidError("claims_invalid", `Cannot verify token: ${reasonMessages.claims_invalid}`);
  }
  // jose checks `iat` only with maxTokenAge; a token issued in the future is not valid yet.
  if (typeof payload.iat === "number" && payload.iat * 1000 > tokenKey.clock.nowMs() + clockToleranceMs) {
    throw new TokenInvalidError("claims_invalid", `Cannot verify token: ${reasonMessages.claims_invalid}`);
  }
  return { user: payload.sub, expiresAtMs: payload.exp * 1000 };
}

/** What each reason of a refused token says, after "Cannot verify token: ". */
export const reasonMessages = {
  malformed: "it is not a well-formed JWT",
  bad_signature: "its signature does not match this cluster's key",
  algorithm_not_allowed: "its algorithm is not the only one allowed, HS256",
  expired: "it has expired",
  claims_invalid: "a required claim (sub, exp) is missing or invalid",
  user_unknown: "its user (sub) does not exist",
} as const satisfies Record<TokenInvalidReason, string>;

function reasonOf(error: unknown): TokenInvalidReason {
  if (error instanceof joseErrors.JWTExpired) return "expired";
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) return "bad_signature";
  if (error instanceof joseErrors.JOSEAlgNotAllowed) return "algorithm_not_allowed";
  if (error instanceof joseErrors.JWTClaimValidationFailed) return "claims_invalid";
  return "malformed";
}
