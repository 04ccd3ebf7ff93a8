import type { Limits } from "../config/limits.ts";
import type { Clock } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";
import type { ChangeEvent, Entry, StoreStats, WriteOptions } from "../store/types.ts";

/** What the HTTP layer needs of the store. */
export interface KvStore {
  get(table: string, key: string): Entry | undefined;
  getEntry(table: string, key: string): Entry | undefined;
  put(table: string, key: string, value: unknown, options: WriteOptions): Promise<Entry>;
  patch(table: string, key: string, patch: Record<string, unknown>, options: WriteOptions): Promise<Entry>;
  delete(table: string, key: string, options: WriteOptions): Promise<Entry>;
  hasTable(table: string): boolean;
  entries(table: string, options: { after?: string; limit: number }): Iterable<[string, Entry]>;
  tableCounts(): Map<string, number>;
  stats(): StoreStats;
}

/** An open event stream. */
export interface EventSubscription {
  readonly stream: ReadableStream<Uint8Array>;
  close(): void;
}

/** What the HTTP layer needs of the live-update broker. */
export interface EventBroker {
  subscribeKey(
    table: string,
    key: string,
    options: { lastEventId?: number; current: Entry | undefined },
  ): EventSubscription;
  subscribeTable(table: string, options: { lastEventId?: number; sequence: number }): EventSubscription;
  readonly activeCount: number;
  readonly droppedCount: number;
}

/** What the HTTP layer needs of authentication. */
export interface Authenticator {
  authenticate(user: string, secret: string, client: string): Promise<{ created: boolean; token: string }>;
  verify(token: string): Promise<string>;
}

/** One member as `GET /membership` shows it. */
export interface MemberView {
  id: string;
  address: string;
  status: "alive" | "suspect" | "dead" | "left";
  incarnation: number;
  lastSeenMs: number;
}

/** The life cycle of a node as `/health` reports it. */
export type NodePhase = "starting" | "serving" | "draining";

/** Everything `createApp` needs; built in `main.ts`. */
export interface AppDeps {
  store: KvStore;
  broker: EventBroker;
  auth: Authenticator;
  limits: Limits;
  clock: Clock;
  logger: Logger;
  /** This node's members view. */
  membership(): MemberView[];
  phase(): NodePhase;
  /** Called with a programmer error (AssertionError): the node must stop. */
  onFatal(error: Error): void;
}

export type { ChangeEvent, Entry };
