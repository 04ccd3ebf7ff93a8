import type { EntryView, InternalDoor } from "../cluster/mod.ts";
import type { Limits } from "../config/limits.ts";
import type { Clock } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";
import type { Histogram } from "../util/metrics.ts";
import type { MultiSources, TableSnapshot } from "../sse/mod.ts";
import type { Filter } from "../filter/mod.ts";

/** A key's state as the HTTP layer serves it: the cluster's view, the bytes prepared at write time. */
export type { EntryView };

/** A client write after authentication. */
export interface KvWrite {
  op: "put" | "patch" | "delete";
  table: string;
  key: string;
  value?: unknown;
  conditions: { owner: string; ifVersion?: number };
  /** The lifetime a put or patch gives the key (`ttl_secs`); absent: none. */
  ttlSecs?: number;
}

/** What the HTTP layer needs of the (possibly distributed) key-value store. */
export interface Kv {
  /**
   * The key's state, tombstones included; a promise when another node must answer. `consistent`: the
   * latest acknowledged state, linearizable, or an `unavailable` KvError.
   */
  read(
    table: string,
    key: string,
    options?: { consistent: boolean },
  ): EntryView | undefined | Promise<EntryView | undefined>;
  write(request: KvWrite): Promise<EntryView>;
  /** True in a cluster, where a replica's state may be accepted and not chosen (a snapshot confirms it). */
  readonly clustered?: boolean;
  /** Live keys in key order. @throws a `table_not_found` KvError from the first `next()`. */
  list(
    table: string,
    options: { after?: string; limit: number },
  ): AsyncIterable<{ key: string; json: string; version: number }>;
}

/** An open event stream. */
export interface EventSubscription {
  readonly stream: ReadableStream<Uint8Array>;
  close(): void;
  /** Calls `listener` once the stream has stopped, for any reason. */
  onEnd(listener: () => void): void;
}

/** What the HTTP layer needs of the live-update broker. */
export interface EventBroker {
  subscribeKey(
    table: string,
    key: string,
    options: { lastEventId?: number; current: EntryView | undefined; snapshot?: boolean },
  ): EventSubscription;
  subscribeTable(
    table: string,
    options: { lastEventId?: number; snapshot?: TableSnapshot },
  ): EventSubscription;
  subscribeMulti(
    sources: MultiSources,
    options: { lastEventId?: number; snapshot?: TableSnapshot; filter?: Filter },
  ): EventSubscription;
}

/** What the HTTP layer needs of authentication. */
export interface Authenticator {
  authenticate(user: string, secret: string, client: string): Promise<{ created: boolean; token: string }>;
  /** The user a token names; synchronous when it was verified before. Rejects a bad token. */
  verify(token: string): string | Promise<string>;
}

/** One member as `GET /membership` shows it. */
export interface MemberView {
  id: string;
  status: "alive" | "suspect" | "dead" | "left";
  incarnation: number;
  lastSeenMs: number;
}

/** The life cycle of a node as `/health` reports it. */
export type NodePhase = "starting" | "serving" | "draining";

/** What `/metrics` reports of the parts below the HTTP layer. */
export interface NodeMetrics {
  /** Name → live keys held here, internal tables included. */
  tables: ReadonlyMap<string, number>;
  walBatchRecords: Histogram;
  walSyncSeconds: Histogram;
  walBytes: number;
  sseConnections: number;
  sseDropped: number;
  /** Seconds from a change's publication to the hand-over of its frame to a stream, per frame. */
  sseDeliverySeconds: Histogram;
  replicationBacklog: number;
  hintBacklog: number;
  hintsDropped: number;
  forwardedWrites: number;
  /** Consensus rounds this node ran as a proposer: one-round writes, prepares, retries after refusals. */
  paxosRounds: { fastPath: number; prepare: number; retry: number };
  /** Keys this node expired (its expiry made the tombstone). */
  expiredKeys: number;
}

/**
 * The files `/metrics` reads the process figures from (`/proc/self/*` on Linux): the store's `DenoFs` in
 * `main.ts`, the one door to the disk. A path that does not exist reads as undefined (or no names).
 */
export interface ProcessFiles {
  readFile(path: string): Promise<Uint8Array | undefined>;
  readDir(path: string): Promise<string[]>;
}

/** Everything `createApp` needs; built in `main.ts`. */
export interface AppDeps {
  kv: Kv;
  broker: EventBroker;
  auth: Authenticator;
  limits: Limits;
  /** The node's version (the one `--version` prints), for `/openapi.json` and `dynarust_build_info`. */
  version: string;
  clock: Clock;
  logger: Logger;
  /** This node's view of the members. */
  membership(): MemberView[];
  /** Counters of this node for `/stats`: `tables` (name → live keys held here) and anything else. */
  nodeStats(): { tables: Map<string, number>; activeSseConnections: number; extra: Record<string, unknown> };
  /** Counters of this node for `/metrics`. */
  nodeMetrics(): NodeMetrics;
  /** Where `/metrics` reads the `process_*` figures from. */
  processFiles: ProcessFiles;
  /**
   * Serves node-to-node requests (`POST /_internal/{kind}`): `admit` checks the headers before any byte of
   * the body is read, `serve` takes the body read within the bounds `admit` gave.
   */
  internal: InternalDoor;
  phase(): NodePhase;
  /**
   * Origins whose browser pages may use the public routes (CORS, SPEC §3): `*`, or a list of
   * `scheme://host[:port]`, lower-cased (`config.corsOrigins`).
   * @default "*"
   */
  corsOrigins?: "*" | readonly string[];
}
