import { KvError } from "../util/errors.ts";

/** Why a token was refused; the message says the same in words, and never contains the token. */
export type TokenInvalidReason =
  | "malformed"
  | "bad_signature"
  | "algorithm_not_allowed"
  | "expired"
  | "claims_invalid"
  | "user_unknown";

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

/**
 * Another request created the user a moment ago, and its record did not become readable here in time
 * (its write is still pending, or has not reached this node). The HTTP layer answers 503 with
 * `Retry-After`; nothing was written for this request.
 */
export class UserNotReadableError extends KvError {
  constructor(user: string, options: { waitMs: number }) {
    super(
      "unavailable",
      `Cannot log in as "${user}": another request is creating this user and its record was not ` +
        `readable within ${options.waitMs} ms; retry`,
      { headers: { "Retry-After": "1" } },
    );
  }
}
