/**
 * CORS (SPEC §3): browser pages on other origins may use every public route. Preflights (`OPTIONS`) are
 * answered with the route's methods and the request headers clients send; every public answer carries
 * `Access-Control-Allow-Origin` for an allowed origin and exposes `ETag` (and `Retry-After`) to scripts.
 * Node-to-node routes (`/_internal/*`) get none of it.
 *
 * With the default, any origin (`*`), the headers are the same for every request, so no request header
 * is read: reading one makes Deno copy them all, 4–10% of a GET of a key. Only with a list of origins is
 * `Origin` read, to echo it when listed (with `Vary: Origin`, for caches) and to omit the header otherwise.
 */

/** The request headers a page may send: a bearer token, a JSON body, a condition, an SSE resume. */
export const corsAllowHeaders = "Authorization, Content-Type, If-Match, Last-Event-ID";

/** The response headers a page's script may read besides the safelisted ones. */
export const corsExposeHeaders = "ETag, Retry-After";

/**
 * Seconds a browser may reuse a preflight's answer: Chromium's upper bound (Firefox allows a day). The
 * answer only changes with the node's configuration.
 */
export const corsMaxAgeSecs = 7200;

/** The CORS policy of one node: which origins may read its answers. */
export class Cors {
  /** Any origin may: every answer carries the same headers, and no request header is read. */
  readonly anyOrigin: boolean;
  /** The allowed origins, lower-cased, when not `anyOrigin`; empty allows no other origin. */
  readonly #origins: ReadonlySet<string>;

  /** @param origins `*`, or the allowed origins, lower-cased, as `config.corsOrigins` holds them. */
  constructor(origins: "*" | readonly string[]) {
    this.anyOrigin = origins === "*";
    this.#origins = new Set(origins === "*" ? [] : origins);
  }

  /**
   * Adds the CORS headers of `request`'s origin to `response` (a public route's answer) and returns it:
   * with any origin, `*` and the exposed headers; with a list, the request's `Origin` when listed, and
   * `Vary: Origin` in every case.
   */
  apply(request: Request, response: Response): Response {
    const headers = response.headers;
    if (this.anyOrigin) {
      headers.set("access-control-allow-origin", "*");
      headers.set("access-control-expose-headers", corsExposeHeaders);
      return response;
    }
    if (this.#origins.size === 0) return response; // no origin allowed: the answer never varies
    headers.append("vary", "Origin");
    const origin = request.headers.get("origin");
    if (origin !== null && this.#origins.has(origin.toLowerCase())) {
      headers.set("access-control-allow-origin", origin);
      headers.set("access-control-expose-headers", corsExposeHeaders);
    }
    return response;
  }

  /**
   * {@linkcode Cors.apply} for the answer of a key route, whose successes (`200`, `201`) already carry the
   * headers of any origin in their literal headers (`jsonTextAnyOrigin`): only other answers get them added.
   */
  applyToKey(request: Request, response: Response): Response {
    const status = response.status;
    return this.anyOrigin && (status === 200 || status === 201) ? response : this.apply(request, response);
  }
}

/**
 * The CORS headers every answer carries whatever its request, for answers given without one (the server's
 * own 503 over its connection cap, its 408): those of any origin, or none with a list of origins (the
 * allowed `Origin` is echoed per request, which such answers do not read).
 */
export function fixedCorsHeaders(origins: "*" | readonly string[]): Record<string, string> {
  return origins === "*"
    ? { "access-control-allow-origin": "*", "access-control-expose-headers": corsExposeHeaders }
    : {};
}

/**
 * The answer to `OPTIONS` on a route that allows `allow` (e.g. `GET, HEAD, OPTIONS`): `204` with `Allow`
 * and the preflight headers; `Cors.apply` adds the origin.
 */
export function preflightResponse(allow: string): Response {
  return new Response(null, {
    status: 204,
    headers: {
      allow,
      "access-control-allow-methods": allow,
      "access-control-allow-headers": corsAllowHeaders,
      "access-control-max-age": String(corsMaxAgeSecs),
    },
  });
}
