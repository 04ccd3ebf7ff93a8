/**
 * `GET /metrics`: the node's counters in the Prometheus text format. Requests are counted by method,
 * route template (never the raw path, so table and key names do not multiply the series) and status.
 */
import { Histogram, MetricsText, secondsBounds } from "../util/metrics.ts";
import type { AppDeps, MemberView, NodeMetrics } from "./deps.ts";
import { isInternalTable } from "./schemas.ts";
import { apiRoutes, templateOf } from "./api.ts";
import { type ProcessMetrics, writeProcessMetrics } from "./process_metrics.ts";

/** The content type of the text exposition format. */
export const metricsContentType = "text/plain; version=0.0.4; charset=utf-8";

const methods = new Set(["GET", "HEAD", "PUT", "PATCH", "DELETE", "POST", "OPTIONS"]);
const memberStates: readonly MemberView["status"][] = ["alive", "suspect", "dead", "left"];
/** The public routes' segments (`:name` matches any one segment), in `apiRoutes` order, with their labels. */
const routeShapes = apiRoutes.filter((route) => route.internal === undefined)
  .map((route) => ({ segments: route.path.split("/"), template: templateOf(route.path) }));

/** The route template of a path, `/{table}/key/{key}`, `/stats`, ..., from `apiRoutes`; or `other`. */
export function routeOf(path: string): string {
  const segments = path.split("/");
  const shape = routeShapes.find((candidate) =>
    candidate.segments.length === segments.length &&
    candidate.segments.every((part, index) => part.startsWith(":") || part === segments[index])
  );
  return shape?.template ?? "other";
}

/** Requests of one method and route. */
interface RouteSeries {
  method: string;
  route: string;
  /** A counter per status, so counting an answer is one lookup and an increment. */
  byStatus: Map<number, { count: number }>;
  seconds: Histogram;
}

/** Counts answered requests; `/stats` reads its totals, `/metrics` every series. */
export class RequestMetrics {
  /** Route → method → series; two lookups, so counting a request builds no string. */
  readonly #series = new Map<string, Map<string, RouteSeries>>();
  /**
   * The series counted last, with the method and route it was found for: under load most requests repeat
   * the one before (GETs of keys, say), and counting one was ~5% of a GET with the two lookups every time.
   */
  #last: { method: string; route: string; series: RouteSeries } | undefined;

  /** One answered request; `latencyMs` is 0 for an answer given synchronously. */
  record(method: string, route: string, status: number, latencyMs: number): void {
    const last = this.#last;
    const series = last !== undefined && last.route === route && last.method === method
      ? last.series
      : this.#seriesOf(method, route);
    const counter = series.byStatus.get(status);
    if (counter === undefined) series.byStatus.set(status, { count: 1 });
    else counter.count += 1;
    series.seconds.observe(latencyMs / 1000);
  }

  #seriesOf(method: string, route: string): RouteSeries {
    let byMethod = this.#series.get(route);
    if (byMethod === undefined) this.#series.set(route, byMethod = new Map());
    let series = byMethod.get(method);
    if (series === undefined) {
      // An unknown method is counted as `other`, so no client can add series at will.
      const known = methods.has(method) ? method : "other";
      series = byMethod.get(known);
      if (series === undefined) {
        series = { method: known, route, byStatus: new Map(), seconds: new Histogram(secondsBounds) };
        byMethod.set(known, series);
      }
    }
    this.#last = { method, route, series };
    return series;
  }

  /** Requests answered, and their latencies' sum in ms, over every series. */
  totals(): { count: number; latencyMsTotal: number } {
    let count = 0;
    let seconds = 0;
    for (const byMethod of this.#series.values()) {
      for (const series of byMethod.values()) {
        count += series.seconds.count;
        seconds += series.seconds.sum;
      }
    }
    return { count, latencyMsTotal: seconds * 1000 };
  }

  /** Writes the request families. */
  writeTo(text: MetricsText): void {
    const series = [...this.#series.values()].flatMap((byMethod) => [...byMethod.values()]);
    text.counter(
      "dynarust_http_requests_total",
      "HTTP requests answered, by method, route template and status.",
      series.flatMap(({ method, route, byStatus }) =>
        [...byStatus].map(([status, { count }]) => [{ method, route, status }, count] as const)
      ),
    );
    text.histogram(
      "dynarust_http_request_duration_seconds",
      "Time from a request's arrival to its answer's headers; an answer given synchronously counts as 0.",
      series.map(({ method, route, seconds }) => [{ method, route }, seconds] as const),
    );
  }
}

/**
 * Tables with a series of their own: a table per user or per tenant is common, and thousands of series
 * per node would weigh on every scrape and on Prometheus; `dynarust_keys_all_tables` counts them all.
 */
export const tableSeriesMax = 100;

/** The tables of the KV view: the node's own (users) left out. */
export function publicTables(tables: ReadonlyMap<string, number>): Array<[string, number]> {
  return [...tables].filter(([table]) => !isInternalTable(table));
}

function largestTables(tables: ReadonlyMap<string, number>): Array<[string, number]> {
  const all = publicTables(tables);
  if (all.length <= tableSeriesMax) return all;
  return all.sort(([tableA, countA], [tableB, countB]) => countB - countA || (tableA < tableB ? -1 : 1))
    .slice(0, tableSeriesMax);
}

function keysTotal(tables: ReadonlyMap<string, number>): number {
  return publicTables(tables).reduce((total, [, count]) => total + count, 0);
}

/** The whole exposition of a node; `process` is what `/proc` gave, if anything. */
export function renderMetrics(
  deps: AppDeps,
  sources: { requests: RequestMetrics; process: ProcessMetrics | undefined },
): string {
  const text = new MetricsText();
  text.gauge("dynarust_build_info", "The node's version, as `dynarust --version` prints it; always 1.", [
    [{ version: deps.version }, 1],
  ]);
  writeProcessMetrics(text, sources.process);
  sources.requests.writeTo(text);
  const node = deps.nodeMetrics();
  writeStoreMetrics(text, node);
  writeSseMetrics(text, node);
  writeClusterMetrics(text, { node, members: deps.membership() });
  return text.text();
}

/** The WAL and key families. */
function writeStoreMetrics(text: MetricsText, node: NodeMetrics): void {
  text
    .histogram("dynarust_wal_batch_records", "Records per WAL batch (one write and one fsync each).", [
      [{}, node.walBatchRecords],
    ])
    .histogram("dynarust_wal_fsync_duration_seconds", "Time of each WAL fsync (fdatasync).", [
      [{}, node.walSyncSeconds],
    ])
    .gauge("dynarust_wal_bytes", "Bytes of the WAL file since the last checkpoint.", [[{}, node.walBytes]])
    .gauge(
      "dynarust_keys",
      `Live keys held by this node, by table (the ${tableSeriesMax} largest tables).`,
      largestTables(node.tables).map(([table, count]) => [{ table }, count]),
    )
    // Not `_total`: that suffix is for counters, and this goes down as keys are deleted.
    .gauge("dynarust_keys_all_tables", "Live keys held by this node, in every table.", [[
      {},
      keysTotal(node.tables),
    ]]);
}

/** The event-stream families. */
function writeSseMetrics(text: MetricsText, node: NodeMetrics): void {
  text
    .gauge("dynarust_sse_connections", "Open event streams.", [[{}, node.sseConnections]])
    .histogram(
      "dynarust_sse_event_delivery_seconds",
      "Time from a change's publication (as its write is acknowledged) to the hand-over of its frame to " +
        "a subscriber's stream, per frame; a live frame is timed by its whole fan-out, a frame held behind " +
        "a replay or a snapshot until it is handed over.",
      [[{}, node.sseDeliverySeconds]],
    )
    .counter(
      "dynarust_sse_dropped_subscribers_total",
      "Subscribers disconnected because they fell too far behind.",
      [[{}, node.sseDropped]],
    );
}

/** The membership, replication and consensus families. */
function writeClusterMetrics(text: MetricsText, view: { node: NodeMetrics; members: MemberView[] }): void {
  const { node, members } = view;
  text.gauge(
    "dynarust_cluster_members",
    "Members of the cluster as this node sees them, by gossip state (itself included).",
    memberStates.map((state) => [{ state }, members.filter((member) => member.status === state).length]),
  );
  text
    .gauge("dynarust_replication_backlog", "Changes queued for replicas and not yet acknowledged.", [
      [{}, node.replicationBacklog],
    ])
    .gauge("dynarust_hinted_handoff_backlog", "Hints held for replicas that were down.", [
      [{}, node.hintBacklog],
    ])
    .counter("dynarust_hints_dropped_total", "Hints dropped because the backlog was full.", [
      [{}, node.hintsDropped],
    ])
    .counter("dynarust_forwarded_writes_total", "Client writes forwarded to a key's usual proposer.", [
      [{}, node.forwardedWrites],
    ])
    .counter(
      "dynarust_paxos_rounds_total",
      "Consensus rounds run here as a proposer: one-round writes (fast), prepare rounds, and retries after " +
        "another proposer's refusal (contention).",
      [
        [{ kind: "fast" }, node.paxosRounds.fastPath],
        [{ kind: "prepare" }, node.paxosRounds.prepare],
        [{ kind: "retry" }, node.paxosRounds.retry],
      ],
    )
    .counter(
      "dynarust_expired_keys_total",
      "Keys whose lifetime ended that this node expired (its expiry made the tombstone; summed over the " +
        "nodes, the cluster's expirations).",
      [[{}, node.expiredKeys]],
    );
}
