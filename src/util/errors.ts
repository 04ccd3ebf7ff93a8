/**
 * Every expected operating error has a stable snake_case code. `http/error_map.ts` maps each code to one
 * HTTP status; a new code without a status fails to compile there.
 */
export type ErrorCode =
  | "invalid_request"
  | "invalid_name"
  | "reserved_table"
  | "token_invalid"
  | "wrong_secret"
  | "unauthorized"
  | "forbidden"
  | "key_not_found"
  | "table_not_found"
  | "not_found"
  | "method_not_allowed"
  | "version_conflict"
  | "payload_too_large"
  | "request_timeout"
  | "unsupported_media_type"
  | "rate_limited"
  | "too_many_subscribers"
  | "subscriber_too_slow"
  | "unavailable"
  | "storage_failed"
  | "storage_full"
  | "config_invalid"
  | "wal_corrupt"
  | "wrong_key"
  | "cluster_unauthorized"
  | "cluster_join_refused"
  | "peer_unavailable";

/** Base of every expected error. `message` is safe to send to a client: no secret, token or value. */
export class KvError extends Error {
  readonly code: ErrorCode;
  /** Extra headers the HTTP layer should send (for example `Retry-After`). */
  readonly headers: Readonly<Record<string, string>>;

  constructor(
    code: ErrorCode,
    message: string,
    options: { cause?: unknown; headers?: Record<string, string> } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.headers = options.headers ?? {};
  }
}

/** Input that fails validation at a trust boundary. */
export class InvalidRequestError extends KvError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super("invalid_request", message, options);
  }
}

/** A request body or value over a configured limit. */
export class PayloadTooLargeError extends KvError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super("payload_too_large", message, options);
  }
}

/** A request body that did not arrive whole within the time allowed for it. */
export class RequestTimeoutError extends KvError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super("request_timeout", message, options);
  }
}

/** The node cannot take the request now (starting, shutting down, storage failed). */
export class UnavailableError extends KvError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super("unavailable", message, options);
  }
}
