import type { Hono } from "hono";
import type { AppDeps } from "../deps.ts";
import { problemResponse } from "../error_map.ts";
import { jsonText } from "../request.ts";
import { readBodyBytes } from "../body.ts";
import { metricsContentType, publicTables, renderMetrics, type RequestMetrics } from "../metrics.ts";
import { openApiDocument } from "../openapi.ts";
import { registerAdminRoutes } from "../admin_page.ts";
import { ProcessCollector } from "../process_metrics.ts";

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

  const processCollector = new ProcessCollector({ files: deps.processFiles, logger: deps.logger });
  app.get("/metrics", async () => {
    const process = await processCollector.collect();
    const text = renderMetrics(deps, { requests: requestStats, process });
    return new Response(text, { headers: { "content-type": metricsContentType } });
  });

  let openApiText: string | undefined;
  app.get("/openapi.json", () => jsonText(openApiText ??= JSON.stringify(openApiDocument(deps.version))));

  registerAdminRoutes(app);

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
 * A body that does not arrive in time is answered 408; the connection, then idle with its body unread,
 * is closed by the server after the request timeout.
 */
export async function internalAnswer(request: Request, kind: string, deps: AppDeps): Promise<Response> {
  const admission = deps.internal.admit(kind, request.headers);
  const body = await readBodyBytes(request, {
    bytesMax: admission.bodyBytesMax,
    timeoutMs: admission.bodyDeadlineMs,
  });
  return jsonText(JSON.stringify(await deps.internal.serve(admission, body)));
}
