import { InvalidRequestError } from "../util/errors.ts";
import type { Context } from "hono";
import { KvError } from "../util/errors.ts";
import { corsExposeHeaders } from "./cors.ts";
import type { AppDeps } from "./deps.ts";
import { decodeName, decodeTable } from "./schemas.ts";

/** The raw (still percent-encoded) path of a URL, without scheme, host, query or fragment. */
export function pathOf(url: string): string {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  if (start === -1) return "/";
  let end = url.indexOf("?", start);
  if (end === -1) end = url.length;
  const hash = url.indexOf("#", start);
  if (hash !== -1 && hash < end) end = hash;
  return url.slice(start, end);
}

/** The query parameter `name` of `url`, or null; parses the query only when the URL has one. */
export function queryParamOf(url: string, name: string): string | null {
  const start = url.indexOf("?");
  if (start === -1) return null;
  return new URLSearchParams(url.slice(start + 1).split("#")[0]).get(name);
}

/**
 * `?consistent=` of a key read (SPEC §3): true for a linearizable read. Only the query is parsed, and only
 * when there is one, so a plain GET pays one `indexOf`.
 *
 * @throws {InvalidRequestError} for a value other than `true` or `false`.
 */
export function consistentOf(url: string): boolean {
  const value = queryParamOf(url, "consistent");
  if (value === null || value === "false") return false;
  if (value === "true") return true;
  throw new InvalidRequestError(`"consistent" must be true or false, got "${value.slice(0, 20)}"`);
}

/** The raw (still percent-encoded) path segments of a request, without the leading empty one. */
export function rawSegments(url: string): string[] {
  return pathOf(url).slice(1).split("/");
}

/** Table and key of a `/{table}/<verb>/{key}` or `/{table}/<verb>` request, decoded and checked. */
export function tableAndKey(c: Context, deps: AppDeps): { table: string; key: string } {
  return tableAndKeyOf(rawSegments(c.req.url), deps);
}

/** Table and key from the raw segments of a `/{table}/<verb>/{key}` path, decoded and checked. */
export function tableAndKeyOf(segments: readonly string[], deps: AppDeps): { table: string; key: string } {
  const table = decodeTable(segments[0] ?? "", deps.limits.nameBytesMax);
  const key = decodeName(segments[2] ?? "", { what: "key", bytesMax: deps.limits.nameBytesMax });
  return { table, key };
}

/** The decoded, checked table of a `/{table}/...` request. */
export function tableOf(c: Context, deps: AppDeps): string {
  return decodeTable(rawSegments(c.req.url)[0] ?? "", deps.limits.nameBytesMax);
}

/** The client's IP address, for rate limits. */
export function clientAddress(c: Context): string {
  const env = c.env as { remoteAddr?: { hostname?: unknown } } | undefined;
  const hostname = env?.remoteAddr?.hostname;
  return typeof hostname === "string" ? hostname : "unknown";
}

/** Missing or malformed `Authorization` header. */
export class UnauthorizedError extends KvError {
  constructor(message: string) {
    super("unauthorized", message);
  }
}

/**
 * The user a request acts as, from `Authorization: Bearer <jwt>`; synchronous for a token the
 * authenticator verified before.
 *
 * @throws {UnauthorizedError} without a bearer token; the authenticator's error (a rejected promise) for a
 * bad one.
 */
export function requireUser(request: Request, deps: AppDeps): string | Promise<string> {
  const header = request.headers.get("authorization");
  if (header === null) throw new UnauthorizedError("this request needs Authorization: Bearer <token>");
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (match === null) throw new UnauthorizedError("Authorization must be Bearer <token>");
  return deps.auth.verify(match[1]!);
}

/**
 * A JSON response of a key route (the GET of a key, a write's `201`, a delete's `200`) with the CORS headers
 * of any origin (`Cors.anyOrigin`) and the record's `ETag` when given: written as one literal, the cheapest
 * way to add them to the node's most frequent answers (setting them afterwards costs a Headers object, two
 * copies, and Deno's native answer path).
 */
export function jsonTextAnyOrigin(text: string, status: 200 | 201 = 200, etag?: string): Response {
  const headers = etag === undefined
    ? {
      "content-type": "application/json",
      "access-control-allow-origin": "*",
      "access-control-expose-headers": corsExposeHeaders,
    }
    : {
      "content-type": "application/json",
      etag,
      "access-control-allow-origin": "*",
      "access-control-expose-headers": corsExposeHeaders,
    };
  return new Response(text, { status, headers });
}

/** A JSON response of text that is already serialized, with the record's `ETag` when given. */
export function jsonText(text: string, status: 200 | 201 = 200, etag?: string): Response {
  // One literal per shape: spreading an options object into the headers costs a GET a few percent.
  const headers = etag === undefined
    ? { "content-type": "application/json" }
    : { "content-type": "application/json", etag };
  return new Response(text, { status, headers });
}
