import type { Hono } from "hono";
import type { AppDeps } from "../deps.ts";
import { kvErrorResponse, problemResponse } from "../error_map.ts";
import { jsonText } from "../request.ts";
import { PayloadTooLargeError, RequestTimeoutError } from "../../util/errors.ts";
import { metricsContentType, publicTables, renderMetrics, type RequestMetrics } from "../metrics.ts";
import { openApiDocument } from "../openapi.ts";
import { adminPageHtml } from "../admin_page.ts";

/** `/stats`, `/health`, `/membership`, `/metrics` (SPEC §3 rows 9–11) and the node-to-node door. */
export function registerNodeRoutes(app: Hono, deps: AppDeps, requestStats: RequestMetrics): void {
  app.get("/stats", () => {
    const stats = deps.nodeStats();
    const tables: Record<string, number> = {};
    let totalKeys = 0;
    for (const [table, count] of publicTables(stats.tables)) {
      Object.defineProperty(tables, table, { value: count, enumerable: true });
      totalKeys += count;
    }
    const requests = requestStats.totals();
    return jsonText(JSON.stringify({
      tables,
      total_keys: totalKeys,
      total_requests: requests.count,
      average_latency_ms: requests.count === 0 ? 0 : requests.latencyMsTotal / requests.count,
      active_sse_connections: stats.activeSseConnections,
      ...stats.extra,
    }));
  });

  app.get(
    "/metrics",
    () =>
      new Response(renderMetrics(deps, requestStats), { headers: { "content-type": metricsContentType } }),
  );

  let openApiText: string | undefined;
  app.get("/openapi.json", () => jsonText(openApiText ??= JSON.stringify(openApiDocument(deps.version))));

  app.get("/admin", () =>
    new Response(adminPageHtml, {
      headers: { "content-type": "text/html; charset=utf-8", "x-frame-options": "DENY" },
    }));

  app.get("/health", () => {
    const phase = deps.phase();
    if (phase === "serving") return jsonText('{"status":"ok"}');
    return problemResponse({ status: 503, code: "unavailable", detail: `node is ${phase}` }, {
      "retry-after": "1",
    });
  });

  app.get("/membership", () => {
    const nodes = deps.membership().map((member) => ({
      id: member.id,
      address: member.id,
      status: member.status,
      incarnation: member.incarnation,
      last_seen_ms: member.lastSeenMs,
    }));
    return jsonText(JSON.stringify({ nodes }));
  });
}

/**
 * `POST /_internal/{kind}`, a node-to-node request, in the order SPEC §8 asks: its headers are checked
 * first (no cluster secret, a declared size over the limit, a bad MAC, a replay: refused before any byte
 * of the body is read), then its body is read against the limit and a deadline, then the cluster checks
 * it against its digest and serves it. `createApp` calls it before any routing.
 *
 * A body that does not arrive in time is answered 408 with `Connection: close`. Deno's server cannot drop
 * a connection while a read of its body is pending, so the socket goes once the sender finishes or gives
 * up (only a sender holding the cluster secret gets this far; the server's own connection limits apply).
 */
export async function internalAnswer(request: Request, kind: string, deps: AppDeps): Promise<Response> {
  const admission = deps.internal.admit(kind, request.headers);
  let body: Uint8Array;
  try {
    body = await readInternalBody(request, admission);
  } catch (error) {
    if (!(error instanceof RequestTimeoutError)) throw error;
    const late = kvErrorResponse(error);
    late.headers.set("connection", "close");
    return late;
  }
  return jsonText(JSON.stringify(await deps.internal.serve(admission, body)));
}

/**
 * The body of an admitted request, refused the moment it passes `bodyBytesMax` and when it has not
 * arrived within `bodyDeadlineMs`.
 *
 * @throws {PayloadTooLargeError} @throws {RequestTimeoutError}
 */
async function readInternalBody(
  request: Request,
  bounds: { bodyBytesMax: number; bodyDeadlineMs: number },
): Promise<Uint8Array> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(
        new RequestTimeoutError(`Cluster request body did not arrive within ${bounds.bodyDeadlineMs} ms`),
      );
    }, bounds.bodyDeadlineMs);
  });
  try {
    if (request.headers.get("content-length") !== null) {
      // HTTP/1.1 framing holds a body with a Content-Length (checked against the limit from the headers)
      // to exactly that many bytes, so reading it whole is bounded; Deno reads it in one step, 40-70 µs
      // a request cheaper than through a stream.
      const reading = request.bytes();
      reading.catch(() => {}); // settles when the rest comes or the peer closes; nobody waits for it then
      return await Promise.race([reading, late]);
    }
    if (request.body === null) return new Uint8Array(0);
    return await readChunkedBody(request.body.getReader(), { bytesMax: bounds.bodyBytesMax, late });
  } finally {
    clearTimeout(timer);
  }
}

/** A body without Content-Length, chunk by chunk, against the limit and the deadline. */
async function readChunkedBody(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  bounds: { bytesMax: number; late: Promise<never> },
): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let length = 0;
  try {
    for (;;) { // ends at the body's end, the limit or the deadline
      const { done, value } = await Promise.race([reader.read(), bounds.late]);
      if (done) break;
      length += value.byteLength;
      if (length > bounds.bytesMax) {
        throw new PayloadTooLargeError(
          `Cluster request body is over ${bounds.bytesMax} bytes (read ${length} so far)`,
        );
      }
      chunks.push(value);
    }
  } catch (error) {
    reader.cancel().catch(() => {});
    throw error;
  }
  const joined = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    joined.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return joined;
}
