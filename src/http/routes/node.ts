import type { Hono } from "hono";
import type { AppDeps } from "../deps.ts";
import { problemResponse } from "../error_map.ts";
import { jsonText } from "../request.ts";

/** Counters of the HTTP layer shown by `/stats`. */
export interface RequestStats {
  requestCount: number;
  latencyMsTotal: number;
}

/** `/stats`, `/health` and `/membership` (SPEC §3 rows 9–11). */
export function registerNodeRoutes(app: Hono, deps: AppDeps, requestStats: RequestStats): void {
  app.get("/stats", () => {
    const tables: Record<string, number> = {};
    let totalKeys = 0;
    for (const [table, count] of deps.store.tableCounts()) {
      if (table.startsWith("_")) continue; // reserved tables (users) are not part of the KV view
      Object.defineProperty(tables, table, { value: count, enumerable: true });
      totalKeys += count;
    }
    const store = deps.store.stats();
    return jsonText(JSON.stringify({
      tables,
      total_keys: totalKeys,
      total_requests: requestStats.requestCount,
      average_latency_ms: requestStats.requestCount === 0
        ? 0
        : requestStats.latencyMsTotal / requestStats.requestCount,
      active_sse_connections: deps.broker.activeCount,
      dropped_sse_subscribers: deps.broker.droppedCount,
      sequence: store.sequence,
      wal: {
        batches: store.walBatchCount,
        records: store.walRecordCount,
        bytes: store.walBytes,
        checkpoints: store.checkpointCount,
        snapshots: store.snapshotCount,
      },
    }));
  });

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
      address: member.address,
      status: member.status,
      incarnation: member.incarnation,
      last_seen_ms: member.lastSeenMs,
    }));
    return jsonText(JSON.stringify({ nodes }));
  });
}
