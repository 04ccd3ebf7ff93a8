import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { ErrorCode } from "../util/errors.ts";
import { KvError } from "../util/errors.ts";

/** The one table from error code to HTTP status. A code without a status fails to compile. */
export const statusByCode = {
  invalid_request: 400,
  invalid_name: 400,
  reserved_table: 400,
  token_invalid: 401,
  wrong_secret: 401,
  unauthorized: 401,
  forbidden: 403,
  key_not_found: 404,
  table_not_found: 404,
  not_found: 404,
  method_not_allowed: 405,
  version_conflict: 412,
  request_timeout: 408,
  payload_too_large: 413,
  unsupported_media_type: 415,
  rate_limited: 429,
  too_many_subscribers: 503,
  subscriber_too_slow: 503,
  unavailable: 503,
  storage_failed: 503,
  storage_full: 507,
  config_invalid: 500,
  wal_corrupt: 500,
  wrong_key: 500,
  cluster_unauthorized: 403,
  cluster_join_refused: 403,
  peer_unavailable: 503,
} as const satisfies Record<ErrorCode, ContentfulStatusCode>;

const titleByStatus: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  412: "Precondition Failed",
  413: "Content Too Large",
  415: "Unsupported Media Type",
  429: "Too Many Requests",
  500: "Internal Server Error",
  503: "Service Unavailable",
  507: "Insufficient Storage",
};

/** An RFC 9457 problem document with our stable `code`. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
}

/** Renders a problem+json response. `detail` must hold no secret, token or stored value. */
export function problemResponse(
  problem: { status: number; code: string; detail: string },
  headers: Record<string, string> = {},
): Response {
  const body: Problem = {
    type: `https://dynarust.dev/errors/${problem.code}`,
    title: titleByStatus[problem.status] ?? "Error",
    status: problem.status,
    detail: problem.detail,
    code: problem.code,
  };
  return new Response(JSON.stringify(body), {
    status: problem.status,
    headers: { "content-type": "application/problem+json", ...headers },
  });
}

/** The problem response for an expected error. */
export function kvErrorResponse(error: KvError): Response {
  const headers: Record<string, string> = { ...error.headers };
  if (error.code === "token_invalid" || error.code === "unauthorized") headers["www-authenticate"] = "Bearer";
  // Every 503 is worth retrying soon (no quorum now, a node starting or draining): say when (SPEC §5).
  if (statusByCode[error.code] === 503 && headers["retry-after"] === undefined) headers["retry-after"] = "1";
  return problemResponse(
    { status: statusByCode[error.code], code: error.code, detail: error.message },
    headers,
  );
}
