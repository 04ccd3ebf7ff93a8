// An in-memory cluster for the replication unit tests: real Stores on MemoryFs, a fake Transport that
// routes `request(target, kind, body)` to the handlers registered for the target (JSON round-tripped, as
// on the wire) and can make a target unreachable or time out, and a fake MembershipView whose live and
// ring sets a test changes by hand. No sockets, no child processes, no timers except settle()'s turns.
import { AntiEntropy } from "../../../src/cluster/anti_entropy.ts";
import { listLocal } from "../../../src/cluster/listing.ts";
import type { ChangeSink, MembershipView } from "../../../src/cluster/local_store.ts";
import {
  type ClusterConfig,
  localTestClusterConfig,
  PeerRequestError,
  type Transport,
} from "../../../src/cluster/mod.ts";
import { Placement } from "../../../src/cluster/placement.ts";
import { ListRequest } from "../../../src/cluster/replication_wire.ts";
import { Replicator } from "../../../src/cluster/replicator.ts";
import type { PeerFailure } from "../../../src/cluster/types.ts";
import { defaultLimits } from "../../../src/config/limits.ts";
import { type Fs, importEncryptionKey, MemoryFs, Store } from "../../../src/store/mod.ts";
import { type Clock, ManualClock } from "../../../src/util/clock.ts";
import { InvalidRequestError, KvError } from "../../../src/util/errors.ts";
import { silentLogger } from "../../../src/util/log.ts";

/** The encryption key of every test store. */
const testEncryption = await importEncryptionKey("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=");

/** Node ids of the fake cluster, in `host:port` form like real ones. */
export const nodeA = "127.0.0.1:7001";
export const nodeB = "127.0.0.1:7002";
export const nodeC = "127.0.0.1:7003";
export const nodeD = "127.0.0.1:7004";

/** Cluster settings of the tests: the local-test preset, three replicas, majority quorum. */
export function testClusterConfig(overrides: Partial<ClusterConfig> = {}): ClusterConfig {
  return { ...localTestClusterConfig("fake-cluster-secret-0123456789abcdef"), ...overrides };
}

/** Opens an empty Store on `fs` (a fresh MemoryFs by default), timers off. */
export function openTestStore(clock: Clock = new ManualClock(), fs: Fs = new MemoryFs()): Promise<Store> {
  return Store.open({
    dir: "/data",
    fs,
    clock,
    logger: silentLogger,
    limits: defaultLimits,
    encryption: testEncryption,
    snapshotLimit: 1,
    snapshotIntervalSecs: 0,
  });
}

/** Builds a Placement as a node with `self` would see it. */
export function placementOf(options: {
  self: string;
  ringIds: readonly string[];
  liveIds?: readonly string[];
  config?: ClusterConfig;
}): Placement {
  return new Placement({
    self: options.self,
    ringIds: options.ringIds,
    liveIds: options.liveIds ?? options.ringIds,
    config: options.config ?? testClusterConfig(),
  });
}

/** The first key `k<n>` (n < 10,000) for which `predicate` holds. */
export function findKey(predicate: (key: string) => boolean, prefix = "k"): string {
  for (let index = 0; index < 10_000; index += 1) {
    const key = `${prefix}${index}`;
    if (predicate(key)) return key;
  }
  throw new Error("no key matches the predicate");
}

/** A MembershipView whose sets the test changes; `set()` fires every listener, like a real change. */
export class FakeMembership implements MembershipView {
  #live: string[];
  #ring: string[];
  readonly #listeners = new Set<() => void>();

  constructor(ids: readonly string[]) {
    this.#live = [...ids];
    this.#ring = [...ids];
  }

  liveIds(): string[] {
    return [...this.#live];
  }

  ringIds(): string[] {
    return [...this.#ring];
  }

  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Listeners still subscribed. */
  get listenerCount(): number {
    return this.#listeners.size;
  }

  /** Replaces the live and/or ring sets and notifies every listener. */
  set(change: { live?: readonly string[]; ring?: readonly string[] }): void {
    if (change.live !== undefined) this.#live = [...change.live];
    if (change.ring !== undefined) this.#ring = [...change.ring];
    for (const listener of [...this.#listeners]) listener();
  }
}

/** Handles one request kind on one fake node. */
export type FakeHandler = (body: unknown, sender: string) => Promise<unknown>;

/** One request as the fake network saw it. */
export interface SentRequest {
  source: string;
  target: string;
  kind: string;
  body: unknown;
}

/** Routes requests between fake nodes; see the file comment. */
export class FakeNetwork {
  readonly sent: SentRequest[] = [];
  readonly #handlers = new Map<string, Map<string, FakeHandler>>();
  readonly #failures = new Map<string, PeerFailure>();
  /** `source→target` links that are cut: requests fail as unreachable. */
  readonly #cuts = new Set<string>();
  /** Paused nodes: what they send or receive waits until `resume` (a SIGSTOP'd process). */
  readonly #paused = new Map<string, Array<() => void>>();
  #inFlight = 0;
  #started = 0;

  /** Cuts every link between the `side` nodes and the `others`, both ways, until `heal`. */
  partition(side: readonly string[], others: readonly string[]): void {
    for (const a of side) {
      for (const b of others) {
        this.#cuts.add(`${a}→${b}`);
        this.#cuts.add(`${b}→${a}`);
      }
    }
  }

  /** Undoes every `partition`. */
  heal(): void {
    this.#cuts.clear();
  }

  /**
   * Pauses `id`: requests to it and from it wait (their senders time out after the timeout they asked
   * for, as over a real network), and are delivered in order when `resume(id)` is called.
   */
  pause(id: string): void {
    if (!this.#paused.has(id)) this.#paused.set(id, []);
  }

  /** Resumes a paused node: everything that waited for it is delivered now. */
  resume(id: string): void {
    const waiting = this.#paused.get(id) ?? [];
    this.#paused.delete(id);
    for (const release of waiting) release();
  }

  /** Resolves when neither end of the request is paused. */
  #whenRunning(request: SentRequest): Promise<void> | undefined {
    const paused = this.#paused.get(request.source) ?? this.#paused.get(request.target);
    if (paused === undefined) return undefined;
    return new Promise<void>((resolve) => paused.push(resolve)).then(() => this.#whenRunning(request));
  }

  /** Serves `handlers` for requests to `target`; a kind registered again replaces the earlier one. */
  register(target: string, handlers: Record<string, FakeHandler>): void {
    let kinds = this.#handlers.get(target);
    if (kinds === undefined) this.#handlers.set(target, kinds = new Map());
    for (const [kind, handler] of Object.entries(handlers)) kinds.set(kind, handler);
  }

  /** Every later request to `target` fails with `failure` (before reaching it) until `restore`. */
  fail(target: string, failure: PeerFailure): void {
    this.#failures.set(target, failure);
  }

  /** Undoes {@linkcode fail}. */
  restore(target: string): void {
    this.#failures.delete(target);
  }

  /** The Transport of node `self`: a request to a paused node times out after `timeoutMs` when given. */
  transport(self: string): Transport {
    return {
      request: (target, kind, body, options) => {
        const delivered = this.deliver({ source: self, target, kind, body });
        const timeoutMs = options?.timeoutMs;
        if (timeoutMs === undefined || !this.#paused.has(target) && !this.#paused.has(self)) return delivered;
        delivered.catch(() => {});
        return new Promise((resolve, reject) => {
          const timer = setTimeout(
            () => reject(new PeerRequestError({ target, kind, failure: "timeout" })),
            timeoutMs,
          );
          delivered.then(resolve, reject).finally(() => clearTimeout(timer));
        });
      },
    };
  }

  /** Requests sent so far, filtered by kind and/or target. */
  sentWhere(filter: { kind?: string; target?: string; source?: string }): SentRequest[] {
    return this.sent.filter((request) =>
      (filter.kind === undefined || request.kind === filter.kind) &&
      (filter.target === undefined || request.target === filter.target) &&
      (filter.source === undefined || request.source === filter.source)
    );
  }

  /** Delivers one request: records it, fails it as configured, or runs the target's handler. */
  async deliver(request: SentRequest): Promise<unknown> {
    const { target, kind } = request;
    this.sent.push(request);
    this.#started += 1;
    this.#inFlight += 1;
    try {
      await this.#whenRunning(request);
      const cut = this.#cuts.has(`${request.source}→${target}`);
      const failure = cut ? "unreachable" : this.#failures.get(target);
      if (failure !== undefined) throw new PeerRequestError({ target, kind, failure });
      const handler = this.#handlers.get(target)?.get(kind);
      if (handler === undefined) {
        throw new PeerRequestError({ target, kind, failure: "invalid_reply", status: 404 });
      }
      let reply: unknown;
      try {
        reply = await handler(JSON.parse(JSON.stringify(request.body)), request.source);
      } catch (error) {
        if (!(error instanceof KvError)) throw error;
        throw new PeerRequestError({ target, kind, failure: "invalid_reply", remoteCode: error.code });
      }
      return JSON.parse(JSON.stringify(reply ?? null));
    } finally {
      this.#inFlight -= 1;
    }
  }

  /**
   * Waits until no request is in flight and none started during two turns of the event loop in a row,
   * so background work (pipelines, hints, read repair, the far side of a sync) has finished.
   */
  async settle(): Promise<void> {
    let quietTurns = 0;
    // Bounded: a test that keeps the network busy for 1,000 turns fails instead of hanging.
    for (let turn = 0; turn < 1_000; turn += 1) {
      const started = this.#started;
      await new Promise((resolve) => setTimeout(resolve, 0));
      quietTurns = this.#inFlight === 0 && this.#started === started ? quietTurns + 1 : 0;
      if (quietTurns >= 2) return;
    }
    throw new Error("the fake network did not settle within 1,000 turns");
  }
}

/** A ChangeSink that keeps every published event. */
export class RecordingSink implements ChangeSink {
  readonly events: Parameters<ChangeSink["publish"]>[0][] = [];
  publish(event: Parameters<ChangeSink["publish"]>[0]): void {
    this.events.push(event);
  }
}

/** One node of the fake cluster. */
export interface FakeNode {
  id: string;
  store: Store;
  replicator: Replicator;
  antiEntropy: AntiEntropy;
  sink: RecordingSink;
}

/** Several nodes over one FakeNetwork and one shared FakeMembership. Close it at the end of a test. */
export class FakeCluster implements AsyncDisposable {
  readonly network = new FakeNetwork();
  readonly clock = new ManualClock();
  readonly config: ClusterConfig;
  readonly membership: FakeMembership;
  readonly nodes = new Map<string, FakeNode>();

  private constructor(ids: readonly string[], config: ClusterConfig) {
    this.config = config;
    this.membership = new FakeMembership(ids);
  }

  /**
   * Starts `ids` (default A, B, C), each with its own Store, Replicator and AntiEntropy; `fsOf` gives a
   * node's file system (a fresh MemoryFs by default).
   */
  static async start(
    options: { ids?: readonly string[]; config?: Partial<ClusterConfig>; fsOf?: (id: string) => Fs } = {},
  ): Promise<FakeCluster> {
    const ids = options.ids ?? [nodeA, nodeB, nodeC];
    const cluster = new FakeCluster(ids, testClusterConfig(options.config));
    for (const id of ids) await cluster.#addNode(id, options.fsOf?.(id) ?? new MemoryFs());
    return cluster;
  }

  async #addNode(id: string, fs: Fs, rejoining = false): Promise<void> {
    const store = await openTestStore(this.clock, fs);
    const sink = new RecordingSink();
    const transport = this.network.transport(id);
    const replicator = new Replicator({
      self: id,
      config: this.config,
      transport,
      membership: this.membership,
      store,
      sink,
      clock: this.clock,
      logger: silentLogger,
      rejoining,
    });
    const antiEntropy = new AntiEntropy({
      store,
      transport,
      pusher: replicator,
      placement: () => replicator.placement,
      clock: this.clock,
      logger: silentLogger,
      intervalMs: this.config.antiEntropyIntervalMs,
      timeoutMs: this.config.requestTimeoutMs,
    });
    this.network.register(id, {
      ...replicator.handlers(),
      ...antiEntropy.handlers(),
      list: (body) => {
        const parsed = ListRequest.safeParse(body);
        if (!parsed.success) throw new InvalidRequestError("malformed list request");
        const { table, limit, after } = parsed.data;
        return Promise.resolve(
          listLocal(store, after === undefined ? { table, limit } : { table, limit, after }),
        );
      },
    });
    this.nodes.set(id, { id, store, replicator, antiEntropy, sink });
  }

  /**
   * Starts one more node `id` on the network (a member about to join, or `rejoining` after a leave): it
   * serves requests at once, but the ring and live sets are the test's to change with `membership.set`.
   */
  async addNode(
    id: string,
    fs: Fs = new MemoryFs(),
    options: { rejoining?: boolean } = {},
  ): Promise<FakeNode> {
    if (this.nodes.has(id)) throw new Error(`fake node ${id} is already running`);
    await this.#addNode(id, fs, options.rejoining === true);
    return this.node(id);
  }

  /** The node `id`. */
  /**
   * Waits until every node's queued store writes are durable, lazy ones (a proposer's own accepts, written
   * within a few ms) written at once: what a test that reads a node's store right after a write awaits.
   */
  async drained(): Promise<void> {
    await Promise.all([...this.nodes.values()].map((node) => node.store.drain()));
  }

  node(id: string): FakeNode {
    const node = this.nodes.get(id);
    if (node === undefined) throw new Error(`no fake node ${id}`);
    return node;
  }

  /** The placement every node shares (the membership view is common), seen from `self`. */
  placement(self: string = nodeA): Placement {
    return this.node(self).replicator.placement;
  }

  /** Waits for the network to settle, then stops every replicator and closes every store. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.network.settle();
    for (const node of this.nodes.values()) {
      node.antiEntropy.stop();
      node.replicator.close();
      await node.store.close();
    }
  }
}

/** One request held by {@linkcode ManualTransport} until the test answers it. */
export interface HeldRequest {
  target: string;
  kind: string;
  body: unknown;
  resolve: (reply: unknown) => void;
  reject: (error: unknown) => void;
}

/** A Transport whose every request waits until the test resolves or rejects it. */
export class ManualTransport implements Transport {
  readonly requests: HeldRequest[] = [];

  request(target: string, kind: string, body: unknown): Promise<unknown> {
    return new Promise((resolve, reject) => this.requests.push({ target, kind, body, resolve, reject }));
  }

  /** The `index`-th request (0-based), failing the test when it was not sent. */
  at(index: number): HeldRequest {
    const request = this.requests[index];
    if (request === undefined) {
      throw new Error(`request ${index} was not sent (${this.requests.length} were)`);
    }
    return request;
  }
}
