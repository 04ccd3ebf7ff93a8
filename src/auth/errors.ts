import { KvError } from "../util/errors.ts";

/** Why a token was refused; the message says the same in words, and never contains the token. */
export type TokenInvalidReason =
  | "malformed"
  | "bad_signature"
  | "algorithm_not_allowed"
  | "expired"
  | "claims_invalid";

/** A bearer token that is malformed, forged, expired or lacks a claim; the HTTP layer answers 401. */
export class TokenInvalidError extends KvError {
  readonly reason: TokenInvalidReason;

  constructor(reason: TokenInvalidReason, message: string, options: { cause?: unknown } = {}) {
    super("token_invalid", message, options);
    this.reason = reason;
  }
}

/** The secret given for an existing user does not match; the HTTP layer answers 401. */
export class WrongSecretError extends KvError {
  constructor() {
    super("wrong_secret", "Cannot log in: the secret does not match this user");
  }
}

/** Too many failed logins for a user or a client address; carries `Retry-After` in whole seconds. */
export class RateLimitedError extends KvError {
  /** Seconds until the window frees, as sent in `Retry-After`. */
  readonly retryAfterSecs: number;

  constructor(message: string, options: { retryAfterSecs: number }) {
    super("rate_limited", message, { headers: { "Retry-After": String(options.retryAfterSecs) } });
    this.retryAfterSecs = options.retryAfterSecs;
  }
}
