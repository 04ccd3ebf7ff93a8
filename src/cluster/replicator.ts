import { assert } from "../util/assert.ts";
import type { Clock } from "../util/clock.ts";
import {
  type ErrorCode,
  InvalidRequestError,
  KvError,
  PayloadTooLargeError,
  UnavailableError,
} from "../util/errors.ts";
import type { Logger } from "../util/log.ts";
import type {
  ChangeSink,
  EntryView,
  LocalStore,
  MembershipView,
  ReplicaEntry,
  WriteConditions,
} from "./local_store.ts";
import { applyBatches, type BatchKind, PeerPipeline, writeBatches } from "./pipeline.ts";
import { Placement, usersTable } from "./placement.ts";
import {
  type ApplyItem,
  ApplyRequest,
  type ApplyResult,
  ReadReply,
  type ReadReply as ReadReplyWire,
  ReadRequest,
  type ReplicaEntryWire,
  type RestoreReply,
  RestoreRequest,
  WriteReply,
  type WriteReplyWire,
  WriteRequest,
  WritesRequest,
} from "./replication_wire.ts";
import type { Transport } from "./transport.ts";
import type { ClusterConfig } from "./types.ts";

/** Hints kept for replicas that were down, across all peers; beyond it anti-entropy catches up. */
export const hintsMax = 100_000;

/** Error codes a coordinator's answer may carry back to the client unchanged. */
const forwardedCodes: ReadonlySet<string> = new Set<ErrorCode>([
  "invalid_request",
  "invalid_name",
  "forbidden",
  "key_not_found",
  "version_conflict",
  "payload_too_large",
  "unavailable",
  "storage_failed",
  "storage_full",
]);

/** An error raised by the coordinator of a forwarded write, re-raised here with its code. */
export class ForwardedError extends KvError {}

/** A client write as the HTTP layer hands it over, after authentication. */
export type ClientWrite = Omit<WriteRequest, "owner" | "ifVersion" | "forwarderState"> & {
  conditions: WriteConditions;
};

/** A replica's answer about a key already in hand when coordinating: the forwarder's own state. */
interface KnownState {
  replica: string;
  entry: ReplicaEntry | undefined;
}

/** Options of {@linkcode Replicator}. */
export interface ReplicatorOptions {
  self: string;
  config: ClusterConfig;
  transport: Transport;
  membership: MembershipView;
  store: LocalStore;
  sink: ChangeSink;
  clock: Clock;
  logger: Logger;
}

/** Counters of replication for `/stats`. */
export interface ReplicationStats {
  pipelineBacklog: number;
  hintCount: number;
  hintsDropped: number;
  forwardedWrites: number;
  forwardedReads: number;
  /** Stale replicas sent the newest state by a forwarded read. */
  readRepairs: number;
  /** Replications refused because the replica held a newer state (this node was behind). */
  staleRejections: number;
}

/**
 * Partitioned replication: routes each client read and write to the key's replicas, coordinates the
 * writes of keys whose first live replica is this node (one place assigns the versions of a key), ships
 * the result to the other replicas through ordered per-peer pipelines, waits for the write quorum, keeps
 * hints for replicas that are down, and forwards each change to the nodes that do not hold the key so
 * their subscribers see it. See DESIGN.md.
 */
export class Replicator {
  readonly self: string;
  readonly #options: ReplicatorOptions;
  #placement: Placement;
  readonly #pipelines = new Map<string, PeerPipeline<ApplyItem, ApplyResult>>();
  /** Forwarded client writes, batched per coordinator. */
  readonly #writePipelines = new Map<string, PeerPipeline<WriteRequest, WriteReplyWire>>();
  readonly #hints = new Map<string, Set<string>>();
  #hintCount = 0;
  readonly stats: ReplicationStats = {
    pipelineBacklog: 0,
    hintCount: 0,
    hintsDropped: 0,
    forwardedWrites: 0,
    forwardedReads: 0,
    readRepairs: 0,
    staleRejections: 0,
  };
  readonly #placementListeners: Array<(previous: Placement, next: Placement) => void> = [];
  readonly #unsubscribe: () => void;

  constructor(options: ReplicatorOptions) {
    this.self = options.self;
    this.#options = options;
    this.#placement = this.#makePlacement();
    this.#unsubscribe = options.membership.onChange(() => this.#onMembershipChange());
  }

  /** The current placement (ring and live set). */
  get placement(): Placement {
    return this.#placement;
  }

  /** Calls `listener(previous, next)` after each placement change. */
  onPlacementChange(listener: (previous: Placement, next: Placement) => void): void {
    this.#placementListeners.push(listener);
  }

  /** Stops following the membership and fails what is still queued. */
  close(): void {
    this.#unsubscribe();
    for (const pipelines of [this.#pipelines, this.#writePipelines]) {
      for (const pipeline of pipelines.values()) pipeline.close();
      pipelines.clear();
    }
  }

  #makePlacement(): Placement {
    const { membership, config } = this.#options;
    return new Placement({
      self: this.self,
      ringIds: membership.ringIds(),
      liveIds: membership.liveIds(),
      config,
    });
  }

  #onMembershipChange(): void {
    const previous = this.#placement;
    this.#placement = this.#makePlacement();
    for (const pipelines of [this.#pipelines, this.#writePipelines]) {
      for (const [peer, pipeline] of pipelines) {
        if (!this.#placement.ringIds.includes(peer) && !this.#placement.isLive(peer)) {
          pipeline.close();
          pipelines.delete(peer);
        }
      }
    }
    for (const peer of [...this.#hints.keys()]) {
      // A peer reaped or gone from the ring no longer replicates those keys: its hints are void.
      if (this.#placement.isLive(peer)) this.#deliverHints(peer);
      else if (!this.#placement.ringIds.includes(peer)) this.#takeHints(peer);
    }
    for (const listener of this.#placementListeners) listener(previous, this.#placement);
  }

  /**
   * Reads a key's current state (tombstones included) from a replica: this node when it is one, else
   * every live replica at once, answering with the newest of the first majority of replies (so a write
   * acknowledged by a majority is seen). When all have answered, replicas that hold an older version get
   * the newest state (read repair).
   */
  async readEntry(table: string, key: string): Promise<EntryView | undefined> {
    const replicas = this.#placement.replicasOf(table, key);
    if (replicas.includes(this.self)) return this.#options.store.getEntry(table, key);
    this.stats.forwardedReads += 1;
    const live = replicas.filter((id) => this.#placement.isLive(id));
    const replies = live.map((replica) =>
      this.#options.transport.request(replica, "read", { table, key }, {
        timeoutMs: this.#options.config.requestTimeoutMs,
      }).then((reply) => ReadReply.parse(reply))
    );
    void Promise.allSettled(replies).then((settled) => this.#repair({ table, key, live, settled }));
    const answers = await firstAnswers(replies, Math.floor(replicas.length / 2) + 1);
    if (answers.length === 0) throw new UnavailableError(`Cannot read key "${key}": no replica answered`);
    let newest = answers[0]!.entry;
    for (const { entry } of answers) {
      if (entry !== null && (newest === null || entry.version > newest.version)) newest = entry;
    }
    return newest === null ? undefined : { ...newest, timestamp: 0, owner: "" };
  }

  /**
   * The first live state of a key that another live member holds, for a key this node holds but may not
   * have received yet (a user registered through another node a moment ago). Asks every live peer at
   * once; `undefined` when none holds a live state or none answered within the request timeout.
   */
  async findOnPeers(table: string, key: string): Promise<EntryView | undefined> {
    const peers = this.#placement.liveIds().filter((id) => id !== this.self);
    const replies = peers.map(async (peer) => {
      const reply = ReadReply.parse(
        await this.#options.transport.request(peer, "read", { table, key }, {
          timeoutMs: this.#options.config.requestTimeoutMs,
        }),
      );
      if (reply.entry === null || reply.entry.deleted) throw new Error("no live state on this peer");
      return reply.entry;
    });
    const [found] = await firstAnswers(replies, 1);
    return found === undefined ? undefined : { ...found, timestamp: 0, owner: "" };
  }

  /** Sends the newest state seen by a forwarded read to the replicas that answered with an older one. */
  #repair(options: {
    table: string;
    key: string;
    live: readonly string[];
    settled: PromiseSettledResult<ReadReplyWire>[];
  }): void {
    let newest: ReplicaEntry | undefined;
    for (const result of options.settled) {
      const replica = result.status === "fulfilled" ? result.value.replica : undefined;
      if (replica === undefined || replica === null) continue;
      if (newest === undefined || replica.version > newest.version) newest = replicaEntryOf(replica);
    }
    if (newest === undefined) return;
    options.settled.forEach((result, index) => {
      if (result.status !== "fulfilled") return;
      const version = result.value.entry?.version ?? 0;
      if (version >= newest!.version) return;
      this.stats.readRepairs += 1;
      const item = { store: true as const, table: options.table, key: options.key, entry: newest! };
      this.#pipeline(options.live[index]!).send(item);
    });
  }

  /**
   * A client write: coordinated here when this node is the key's first live replica, else forwarded
   * to that replica.
   *
   * @throws the store's errors (forbidden, version_conflict, key_not_found, ...), PayloadTooLargeError
   * when the coordinator refused the forwarded write as over its body limit, or UnavailableError when no
   * replica can take the write or the write quorum was not reached.
   */
  write(request: ClientWrite): Promise<EntryView> {
    // Alone, a write has nobody to catch up from, ship to or notify: the store answers it directly,
    // without the promise turns of coordinating (what `#coordinate` would do, with no peer).
    if (this.#placement.alone) return this.#applyLocally(request);
    return this.#route(request);
  }

  async #route(request: ClientWrite): Promise<EntryView> {
    const replicas = this.#placement.replicasOf(request.table, request.key);
    const coordinators = replicas.filter((id) => this.#placement.isLive(id));
    if (coordinators.length === 0) {
      throw new UnavailableError(
        `Cannot write key "${request.key}": none of its ${replicas.length} replicas is up`,
      );
    }
    if (coordinators[0] === this.self) return await this.#coordinate(request, replicas);
    this.stats.forwardedWrites += 1;
    const forwarderState = replicas.includes(this.self)
      ? this.#options.store.replicaOf(request.table, request.key) ?? null
      : undefined;
    let lastError: unknown;
    for (const coordinator of coordinators) {
      if (coordinator === this.self) return await this.#coordinate(request, replicas);
      try {
        return await this.#forwardWrite(coordinator, request, forwarderState);
      } catch (error) {
        if (error instanceof ForwardedError) throw error;
        // A coordinator with a smaller body limit than this node refuses the request whole, unread: the
        // write is too large for the cluster, which is the client's to fix, not a coordinator that is down.
        if (isTooLarge(error)) {
          throw new PayloadTooLargeError(
            `Cannot write key "${request.key}": its coordinator ${coordinator} refused the forwarded write ` +
              "as too large; DYNA_REQUEST_BYTES_MAX should be the same on every node",
            { cause: error },
          );
        }
        lastError = error;
        // Only a request that never arrived may be retried elsewhere; see DESIGN.md.
        if (!isUnreachable(error)) break;
      }
    }
    throw new UnavailableError(`Cannot write key "${request.key}": its coordinator did not answer`, {
      cause: lastError,
    });
  }

  /**
   * `forwarderState`: this node's state of the key when it is a replica (null: it holds none). Sent in the
   * coordinator's `writes` pipeline, so forwarded writes that wait together share one request; alone (as a
   * `write`) when the pipeline is full, or when the coordinator does not serve `writes` (an older node).
   */
  async #forwardWrite(
    coordinator: string,
    request: ClientWrite,
    forwarderState: ReplicaEntry | null | undefined,
  ): Promise<EntryView> {
    const { conditions, ...rest } = request;
    const body: WriteRequest = { ...rest, owner: conditions.owner };
    if (conditions.ifVersion !== undefined) body.ifVersion = conditions.ifVersion;
    if (forwarderState !== undefined) body.forwarderState = forwarderState;
    const sent = this.#pipelineTo(this.#writePipelines, coordinator, writeBatches, this.#forwardTimeoutMs)
      .send(body);
    let reply: WriteReplyWire | undefined;
    if (sent.accepted) {
      try {
        reply = await sent.acknowledged;
      } catch (error) {
        // Only a batch that was never taken is sent again: an unknown kind runs nothing.
        if (!isUnknownKind(error)) throw error;
      }
    }
    reply ??= WriteReply.parse(
      await this.#options.transport.request(coordinator, "write", body, {
        timeoutMs: this.#forwardTimeoutMs,
      }),
    );
    if ("error" in reply) {
      const code = forwardedCodes.has(reply.error.code) ? reply.error.code as ErrorCode : "unavailable";
      throw new ForwardedError(code, reply.error.message);
    }
    return { json: reply.json, version: reply.version, deleted: reply.deleted, timestamp: 0, owner: "" };
  }

  async #coordinate(
    request: ClientWrite,
    replicas: readonly string[],
    known?: KnownState,
  ): Promise<EntryView> {
    const { table, key } = request;
    const others = replicas.filter((id) => id !== this.self);
    const quorum = writeQuorumOf({ table, replicaCount: replicas.length, config: this.#options.config });
    // With no other replica (a single node) there is nobody to catch up from.
    if (others.length > 0 && !this.#options.store.holds(table, key)) {
      await this.#catchUpKey({
        table,
        key,
        peers: others.filter((id) => this.#placement.isLive(id)),
        answersNeeded: Math.max(1, replicas.length - quorum),
        known: known !== undefined && others.includes(known.replica) ? known : undefined,
      });
    }
    const live = others.filter((id) => this.#placement.isLive(id));
    for (const id of others) if (!live.includes(id)) this.#addHint(id, table, key);
    const needed = Math.min(quorum - 1, live.length);
    // Shipped to the other replicas as soon as the store accepted it, so their fsyncs run alongside ours.
    // With no live peer (a single node) nothing is shipped and the store builds no replica form.
    let acknowledgements: Promise<boolean>[] | undefined = live.length === 0 ? [] : undefined;
    const conditions: WriteConditions = live.length === 0 ? request.conditions : {
      ...request.conditions,
      onAccepted: (accepted) => {
        acknowledgements = this.#replicateTo(live, { table, key, strict: true }, accepted);
      },
    };
    let entry: EntryView;
    try {
      entry = await this.#applyLocally({ ...request, conditions });
    } catch (error) {
      if (acknowledgements === undefined || live.length === 0) throw error; // shipped nowhere: not written
      throw new UnavailableError(
        `Key "${key}" was sent to its replicas but could not be made durable here; it may or may not win.`,
        { cause: error },
      );
    }
    assert(acknowledgements !== undefined, "a durable write was accepted first");
    this.#notifyOthers(request, entry, replicas);
    const acknowledged = await waitForCount(acknowledgements, needed);
    if (acknowledged < needed) {
      throw new UnavailableError(
        `Key "${key}" is durable on ${acknowledged + 1} of ${replicas.length} replicas; ` +
          `the write quorum is ${quorum}. The others will catch up.`,
      );
    }
    return entry;
  }

  /**
   * Before coordinating the first write of a key this node does not hold (it just became a replica, or
   * the key is new), takes the newest state the other live replicas hold, so owner and version checks
   * run against it and the write is ordered after it. With this node's own (empty) answer, the first
   * `answersNeeded` answers make a read quorum that overlaps every write quorum; a forwarder's `known`
   * state is one of them, so a forwarded write of a new key on three replicas reads nothing. Replies
   * beyond the first needed are applied when they come, under the conflict rule.
   */
  async #catchUpKey(options: {
    table: string;
    key: string;
    peers: readonly string[];
    answersNeeded: number;
    known: KnownState | undefined;
  }): Promise<void> {
    const { table, key, known } = options;
    const take = async (entries: ReadonlyArray<ReplicaEntry | undefined>) => {
      const found = entries.flatMap((entry) => entry === undefined ? [] : [{ table, key, entry }]);
      if (found.length > 0) await this.#options.store.applyReplicas(found);
    };
    if (known !== undefined) await take([known.entry]);
    const answersNeeded = options.answersNeeded - (known === undefined ? 0 : 1);
    if (answersNeeded <= 0) return;
    const replies = options.peers.filter((peer) => peer !== known?.replica).map((peer) =>
      this.#readReplica(table, key, peer)
    );
    void Promise.allSettled(replies).then((settled) =>
      take(settled.map((result) => result.status === "fulfilled" ? result.value : undefined))
    ).catch(() => {});
    await take(await firstAnswers(replies, answersNeeded));
  }

  /** One replica's state of a key, undefined when it holds none. */
  async #readReplica(table: string, key: string, peer: string): Promise<ReplicaEntry | undefined> {
    const reply = ReadReply.parse(
      await this.#options.transport.request(peer, "read", { table, key }, {
        timeoutMs: this.#options.config.requestTimeoutMs,
      }),
    );
    return reply.replica ? replicaEntryOf(reply.replica) : undefined;
  }

  /** The store's write, as a promise: it rejects, never throws. */
  #applyLocally(request: ClientWrite): Promise<EntryView> {
    const { store } = this.#options;
    switch (request.op) {
      case "put":
        return store.put(request.table, request.key, request.value, request.conditions);
      case "patch":
        if (typeof request.value !== "object" || request.value === null || Array.isArray(request.value)) {
          return Promise.reject(new InvalidRequestError('PATCH "value" must be a JSON object'));
        }
        return store.patch(request.table, request.key, request.value as Record<string, unknown>, {
          ...request.conditions,
        });
      case "delete":
        return store.delete(request.table, request.key, request.conditions);
    }
  }

  /** Ships `entry` (the key's current state) to `peers`; each promise settles true on acknowledgement. */
  #replicateTo(
    peers: readonly string[],
    target: { table: string; key: string; strict: boolean },
    entry = this.#options.store.replicaOf(target.table, target.key),
  ): Promise<boolean>[] {
    const { table, key, strict } = target;
    if (peers.length === 0 || entry === undefined) return [];
    return peers.map((peer) => {
      const sent = this.#pipeline(peer).send({
        store: true,
        table,
        key,
        entry,
        ...(strict ? { strict } : {}),
      });
      if (!sent.accepted) {
        this.#addHint(peer, table, key);
        return Promise.resolve(false);
      }
      return sent.acknowledged.then((outcome) => {
        if (outcome.result !== "stale") return true;
        // The replica holds a state that wins over this one: this write does not count, and this node
        // takes the newer state so its next write is ordered after it.
        this.stats.staleRejections += 1;
        if (outcome.newer !== undefined) {
          const newer = replicaEntryOf(outcome.newer);
          void this.#options.store.applyReplicas([{ table, key, entry: newer }]).catch(() => {});
        }
        return false;
      }, () => {
        this.#addHint(peer, table, key);
        return false;
      });
    });
  }

  /** Forwards the change to live nodes that do not hold the key, for their subscribers. */
  #notifyOthers(request: ClientWrite, entry: EntryView, replicas: readonly string[]): void {
    const item: ApplyItem = {
      store: false,
      table: request.table,
      key: request.key,
      kind: entry.deleted ? "Deleted" : "Updated",
      version: entry.version,
      json: entry.json,
    };
    for (const peer of this.#placement.liveIds()) {
      if (peer !== this.self && !replicas.includes(peer)) this.#pipeline(peer).send(item);
    }
  }

  #pipeline(peer: string): PeerPipeline<ApplyItem, ApplyResult> {
    return this.#pipelineTo(this.#pipelines, peer, applyBatches, this.#options.config.requestTimeoutMs);
  }

  /** A forwarded write may wait for a catch-up read and two fsyncs: twice a replica request's time. */
  get #forwardTimeoutMs(): number {
    return this.#options.config.requestTimeoutMs * 2;
  }

  /** The pipeline of `batches` to `peer` in `pipelines`, made on first use. */
  #pipelineTo<Item, Result>(
    pipelines: Map<string, PeerPipeline<Item, Result>>,
    peer: string,
    batches: BatchKind<Item, Result>,
    timeoutMs: number,
  ): PeerPipeline<Item, Result> {
    assert(peer !== this.self, "no pipeline to self");
    let pipeline = pipelines.get(peer);
    if (pipeline === undefined) {
      const { transport, logger } = this.#options;
      pipeline = new PeerPipeline({ peer, transport, timeoutMs, logger, batches });
      pipelines.set(peer, pipeline);
    }
    return pipeline;
  }

  /** Ships keys to a peer (rebalancing, anti-entropy); resolves true when all were acknowledged. */
  async pushKeys(peer: string, keys: ReadonlyArray<{ table: string; key: string }>): Promise<boolean> {
    const results = await Promise.all(
      keys.flatMap(({ table, key }) => this.#replicateTo([peer], { table, key, strict: false })),
    );
    return results.every((ok) => ok);
  }

  #addHint(peer: string, table: string, key: string): void {
    let keys = this.#hints.get(peer);
    if (keys === undefined) {
      keys = new Set();
      this.#hints.set(peer, keys);
    }
    const hint = `${table}\u0000${key}`;
    if (keys.has(hint)) return;
    if (this.#hintCount >= hintsMax) {
      this.stats.hintsDropped += 1; // anti-entropy delivers it instead
      return;
    }
    keys.add(hint);
    this.#hintCount += 1;
    this.stats.hintCount = this.#hintCount;
  }

  /** Removes and returns the hints kept for `peer`. */
  #takeHints(peer: string): Set<string> | undefined {
    const keys = this.#hints.get(peer);
    if (keys === undefined) return undefined;
    this.#hints.delete(peer);
    this.#hintCount -= keys.size;
    this.stats.hintCount = this.#hintCount;
    assert(this.#hintCount >= 0);
    return keys;
  }

  #deliverHints(peer: string): void {
    const keys = this.#takeHints(peer);
    if (keys === undefined) return;
    const items = [...keys].map((hint) => {
      const [table, key] = hint.split("\u0000") as [string, string];
      return { table, key };
    });
    this.#options.logger.info("delivering hints", { peer, keys: items.length });
    void this.pushKeys(peer, items);
  }

  /** Total items waiting in pipelines. */
  pipelineBacklog(): number {
    let backlog = 0;
    for (const pipeline of this.#pipelines.values()) backlog += pipeline.backlog;
    this.stats.pipelineBacklog = backlog;
    return backlog;
  }

  /** Handlers of the internal kinds this class serves. */
  handlers(): Record<string, (body: unknown, sender: string) => Promise<unknown>> {
    return {
      apply: (body) => this.#handleApply(body),
      write: (body, sender) => this.#coordinateForwarded(parseBody(WriteRequest, body), sender),
      writes: async (body, sender) => {
        const { items } = parseBody(WritesRequest, body);
        // Coordinated together, so their WAL records share batches, and each answered on its own.
        const results = await Promise.all(
          items.map((item) =>
            this.#coordinateForwarded(item, sender).catch((error: unknown) => {
              this.#options.logger.error("a forwarded write failed", { key: item.key, error: String(error) });
              return { error: { code: "unavailable", message: "the coordinator failed to write it" } };
            })
          ),
        );
        return { results };
      },
      read: (body) => this.#handleRead(body),
      restore: (body) => this.#handleRestore(body),
    };
  }

  /**
   * Stores each state of a backup on the key's replicas: here when this node is one, and through the
   * replicas' pipelines (conflict rule, not strict) otherwise. A state counts as restored once every
   * replica took it; one whose replica is down or failed is counted as missed (the import says so).
   */
  async #handleRestore(body: unknown): Promise<RestoreReply> {
    const { items } = parseBody(RestoreRequest, body);
    const local: Array<{ table: string; key: string; entry: ReplicaEntry }> = [];
    const delivered = items.map(async ({ table, key, entry: wire }) => {
      const entry = replicaEntryOf(wire);
      const replicas = this.#placement.replicasOf(table, key);
      if (replicas.includes(this.self)) local.push({ table, key, entry });
      const others = replicas.filter((id) => id !== this.self);
      if (!others.every((id) => this.#placement.isLive(id))) return false;
      const acknowledged = await Promise.all(this.#replicateTo(others, { table, key, strict: false }, entry));
      return acknowledged.every((ok) => ok);
    });
    if (local.length > 0) await this.#options.store.applyReplicas(local);
    const outcomes = await Promise.all(delivered);
    const restored = outcomes.filter((ok) => ok).length;
    return { restored, missed: items.length - restored };
  }

  async #handleApply(body: unknown): Promise<unknown> {
    const { items } = parseBody(ApplyRequest, body);
    // A coordinator's write (strict) that does not move this replica's version forward is a second writer
    // of that version (a coordinator that is behind): the store refuses it, so versions acknowledged to
    // clients only grow. It decides after the key's pending writes settle: a version still pending here
    // (this node coordinated it, or took it from another coordinator) counts as held.
    const stored = items.flatMap((item) =>
      item.store === true
        ? [{
          table: item.table,
          key: item.key,
          entry: replicaEntryOf(item.entry),
          strict: item.strict === true,
        }]
        : []
    );
    const outcomes = stored.length > 0 ? await this.#options.store.applyReplicas(stored) : [];
    let storedIndex = 0;
    const results = items.map((item): ApplyResult => {
      if (item.store === false) {
        const { table, key, kind, version, json } = item;
        this.#options.sink.publish({ kind, table, key, version, sequence: 0, json });
        return { result: "applied" };
      }
      const result = outcomes[storedIndex++]!;
      if (result !== "stale") return { result };
      const newer = this.#options.store.replicaOf(item.table, item.key);
      return newer === undefined ? { result } : { result, newer };
    });
    assert(storedIndex === outcomes.length, "one outcome per stored item");
    return { results };
  }

  /** A forwarded write: its entry, or the KvError to re-raise at the forwarder. */
  async #coordinateForwarded(request: WriteRequest, sender: string): Promise<WriteReplyWire> {
    const { owner, ifVersion, forwarderState, ...rest } = request;
    const conditions: WriteConditions = ifVersion === undefined ? { owner } : { owner, ifVersion };
    const known = forwarderState === undefined
      ? undefined
      : { replica: sender, entry: forwarderState === null ? undefined : replicaEntryOf(forwarderState) };
    try {
      const replicas = this.#placement.replicasOf(request.table, request.key);
      const entry = await this.#coordinate({ ...rest, conditions }, replicas, known);
      return { json: entry.json, version: entry.version, deleted: entry.deleted };
    } catch (error) {
      if (error instanceof KvError) return { error: { code: error.code, message: error.message } };
      throw error;
    }
  }

  #handleRead(body: unknown): Promise<unknown> {
    const { table, key } = parseBody(ReadRequest, body);
    const entry = this.#options.store.getEntry(table, key);
    const { json, version, deleted } = entry ?? { json: "", version: 0, deleted: false };
    return Promise.resolve({
      entry: entry === undefined ? null : { json, version, deleted },
      replica: this.#options.store.replicaOf(table, key) ?? null,
    });
  }
}

/**
 * Acknowledgements a write of `table` waits for, its coordinator's included: the configured quorum
 * (default a majority of the replicas); every replica for users, so a user registered on one node can
 * log in on any live node at once.
 */
export function writeQuorumOf(options: {
  table: string;
  replicaCount: number;
  config: Pick<ClusterConfig, "writeQuorum">;
}): number {
  if (options.table === usersTable) return options.replicaCount;
  if (options.config.writeQuorum > 0) return Math.min(options.config.writeQuorum, options.replicaCount);
  return Math.floor(options.replicaCount / 2) + 1;
}

/** A wire entry as the store takes it (an absent `valueJson` is left out, not undefined). */
function replicaEntryOf(wire: ReplicaEntryWire): ReplicaEntry {
  const { valueJson, ...rest } = wire;
  return valueJson === undefined ? rest : { ...rest, valueJson };
}

function parseBody<T>(
  schema: { safeParse(value: unknown): { success: true; data: T } | { success: false } },
  body: unknown,
): T {
  const result = schema.safeParse(body);
  if (!result.success) throw new InvalidRequestError("malformed internal request");
  return result.data;
}

/** A peer's answer that it serves no such request kind (it runs an older version): nothing ran. */
function isUnknownKind(error: unknown): boolean {
  if (typeof error !== "object" || error === null) return false;
  const { failure, status, remoteCode } = error as {
    failure?: unknown;
    status?: unknown;
    remoteCode?: unknown;
  };
  return failure === "invalid_reply" && (status === 404 || remoteCode === "not_found");
}

/** A peer's answer that the request was over its body limit (HTTP 413): it was refused unread. */
function isTooLarge(error: unknown): boolean {
  return typeof error === "object" && error !== null && (error as { status?: unknown }).status === 413;
}

function isUnreachable(error: unknown): boolean {
  return typeof error === "object" && error !== null &&
    (error as { failure?: unknown }).failure === "unreachable";
}

/**
 * The first `count` answers of `replies` (a read quorum: with a majority write quorum, one of them holds
 * the newest acknowledged write), or every answer when fewer succeed.
 */
function firstAnswers<T>(replies: readonly Promise<T>[], count: number): Promise<T[]> {
  return new Promise((resolve) => {
    const answers: T[] = [];
    let settled = 0;
    const done = () => {
      if (answers.length >= count || settled === replies.length) resolve(answers);
    };
    for (const reply of replies) {
      reply.then((answer) => answers.push(answer), () => {}).finally(() => {
        settled += 1;
        done();
      });
    }
    if (replies.length === 0) resolve(answers);
  });
}

/** Resolves with how many of `promises` resolved true once `count` did, or once all settled. */
function waitForCount(promises: readonly Promise<boolean>[], count: number): Promise<number> {
  if (count <= 0) return Promise.resolve(0);
  return new Promise((resolve) => {
    let succeeded = 0;
    let settled = 0;
    for (const promise of promises) {
      void promise.then((ok) => {
        settled += 1;
        if (ok) succeeded += 1;
        if (succeeded === count || settled === promises.length) resolve(succeeded);
      });
    }
    if (promises.length === 0) resolve(0);
  });
}
