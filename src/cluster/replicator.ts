import { assert } from "../util/assert.ts";
import { compareBallots, effectivePromise, zeroBallot } from "../util/ballot.ts";
import type { Clock, TimerHandle } from "../util/clock.ts";
import { InvalidRequestError, KvError, PayloadTooLargeError, UnavailableError } from "../util/errors.ts";
import type { Logger } from "../util/log.ts";
import { Acceptor, replicaEntryOfWire } from "./acceptor.ts";
import { applyChange, applyExpiry, ExpiryRefusedError, type WriteChange } from "./change.ts";
import { ForwardedError, forwardWrite, isTooLarge, isUnreachable, writeReplyOf } from "./forwarding.ts";
import { Hints } from "./hints.ts";
import type {
  ChangeSink,
  EntryView,
  LocalStore,
  MembershipView,
  ReplicaEntry,
  WriteConditions,
} from "./local_store.ts";
import { answers as answers_ } from "./paxos_wire.ts";
import { PaxosRequestChecked } from "./paxos_fast.ts";
import { applyBatches, type BatchKind, paxosBatches, PeerPipeline, writeBatches } from "./pipeline.ts";
import { keyIdOf, Placement, sameList } from "./placement.ts";
import { type Committed, Preempted, Proposer, quorumOf, type ReplicaSets } from "./proposer.ts";
import {
  type ApplyItem,
  ApplyRequest,
  type ApplyResult,
  ReadReply,
  type ReadReply as ReadReplyWire,
  ReadRequest,
  type RestoreReply,
  RestoreRequest,
  type WriteReplyWire,
  WriteRequest,
  WritesRequest,
} from "./replication_wire.ts";
import type { Transport } from "./transport.ts";
import type { ClusterConfig } from "./types.ts";
import type { PaxosItem, PaxosResult } from "./paxos_wire.ts";

export { ForwardedError } from "./forwarding.ts";
export { hintsMax } from "./hints.ts";

/** A client write as the HTTP layer hands it over, after authentication. */
export type ClientWrite = Omit<WriteRequest, "owner" | "ifVersion"> & { conditions: WriteConditions };

/** Repair rounds in flight at once; beyond it, anti-entropy's next round tries again. */
export const settlingMax = 1_000;

/** Two-round attempts of one proposal before its client is told 503. */
export const proposalAttemptsMax = 4;

/**
 * A membership change this node saw whose keys are not all settled (DESIGN.md, "Membership changes"):
 * until a key is, its rounds need a quorum of its replica set in `previous` too.
 */
interface Transition {
  previous: Placement;
  /** Keys whose change this node settled with a joint round. */
  settled: Set<string>;
  /** This node's rebalance pass over the change is done. */
  passDone: boolean;
  sinceMs: number;
  /**
   * How long it is kept once the pass is done: long enough for every member to hear of the change; none
   * when the earlier view was this node alone (no other node ever proposed in it, and the pass settled
   * every key it held).
   */
  keepMs: number;
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
  /** A node without `CLUSTER_SECRET`: no peer can ever write, so writes go straight to the store. */
  solo?: boolean;
  /**
   * This node starts by joining an existing cluster: its view before the join (itself alone) never placed
   * a key, so the change the join makes is from the cluster without it, not from that view.
   */
  joining?: boolean;
  /**
   * This node left the cluster in its last life and comes back with its old data: its first view is a
   * change from the ring without it (DESIGN.md, "Membership changes", item 6); see `initialChange`.
   */
  rejoining?: boolean;
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
  /** Writes committed with one accept round (this node proposed the key's previous state too). */
  fastPathWrites: number;
  /** Prepare rounds run (a key this node had not just written, a refusal, a consistent read). */
  prepareRounds: number;
  /** Proposals retried after a refusal (another proposer took the key). */
  proposalRetries: number;
  /** Keys this node expired: its expiry (a sweep's, or one before a write) made the tombstone. */
  expiredKeys: number;
}

/**
 * Per-key Paxos replication (DESIGN.md, "Replication"): routes each client write to the key's usual
 * proposer (the last to take it, else the receiving replica), which proposes it to the key's whole replica
 * set (`Proposer`); serves this node's acceptor (`Acceptor`); publishes committed changes here and on every
 * other member; keeps hints for replicas that missed a commit; serves reads, consistent ones through a Paxos
 * round.
 */
export class Replicator {
  readonly self: string;
  readonly #options: ReplicatorOptions;
  #placement: Placement;
  readonly #acceptor: Acceptor;
  readonly #proposer: Proposer;
  readonly #pipelines = new Map<string, PeerPipeline<ApplyItem, ApplyResult>>();
  readonly #paxosPipelines = new Map<string, PeerPipeline<PaxosItem, PaxosResult>>();
  /** Forwarded client writes, batched per proposer. */
  readonly #writePipelines = new Map<string, PeerPipeline<WriteRequest, WriteReplyWire>>();
  readonly #hints = new Hints();
  #transitions: Transition[] = [];
  #joining: boolean;
  /** The change a rejoining node starts with, for the rebalancer's first pass. */
  #initialChange: { previous: Placement; next: Placement } | undefined;
  /** Keys with a repair round waiting or in flight (`#settleIfBlocked`), with the waiting ones' timers. */
  readonly #settling = new Map<string, TimerHandle | undefined>();
  readonly #counters = { forwardedWrites: 0, forwardedReads: 0, readRepairs: 0, expiredKeys: 0 };
  /**
   * The reader's view of each state this node got chosen and published, until the write that proposed it
   * answers with it: a write needs the view twice, for its event and for its answer, and `Store.viewOf`
   * checks the state (its whole value included) each time. Weak: a chosen state no write waits for (a
   * read's round, a settle) leaves nothing behind.
   */
  readonly #publishedViews = new WeakMap<ReplicaEntry, EntryView>();
  /**
   * States chosen here before this node's own accept of them was durable (it is written lazily when the
   * other replicas make the quorum; DESIGN.md, "Proposer"), by key: a read on this node answers them, so a
   * client reads its write back from the node that acknowledged it. Two generations of ~100 ms each: an entry
   * outlives the lazy write (a few ms and an fsync), and the maps hold only the last moments' keys.
   */
  #chosenNow = new Map<string, EntryView>();
  #chosenBefore = new Map<string, EntryView>();
  #chosenSinceMs = 0;
  readonly #placementListeners: Array<(previous: Placement, next: Placement) => void> = [];
  readonly #unsubscribe: () => void;

  constructor(options: ReplicatorOptions) {
    this.self = options.self;
    this.#options = options;
    this.#joining = options.joining === true;
    this.#placement = this.#makePlacement();
    if (options.rejoining === true) this.#rejoin();
    this.#acceptor = new Acceptor({
      self: options.self,
      store: options.store,
      replicasOf: (table, key) => this.#placement.replicasOf(table, key),
      earlierSetsOf: (table, key) => this.#setsOf(table, key).slice(1),
    });
    this.#proposer = new Proposer({
      self: options.self,
      store: options.store,
      acceptor: this.#acceptor,
      clock: options.clock,
      send: (peer, item, sink, tag) => this.#paxosPipeline(peer).deliver(item, sink, tag),
      isLive: (id) => this.#placement.isLive(id),
      onChosen: (table, key, committed) => this.#chosen(table, key, committed),
      // Below the forwarder's wait (twice the request timeout), so the answer reaches the client.
      deadlineMs: Math.floor(options.config.requestTimeoutMs * 1.5),
      attemptsMax: proposalAttemptsMax,
    });
    this.#unsubscribe = options.membership.onChange(() => this.#onMembershipChange());
  }

  /** Counters for `/stats`. */
  get stats(): ReplicationStats {
    const proposer = this.#proposer.stats;
    return {
      pipelineBacklog: this.pipelineBacklog(),
      hintCount: this.#hints.count,
      hintsDropped: this.#hints.dropped,
      ...this.#counters,
      fastPathWrites: proposer.fastPath,
      prepareRounds: proposer.twoRound,
      proposalRetries: proposer.retries,
    };
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
    for (const timer of this.#settling.values()) this.#options.clock.clearTimer(timer);
    this.#settling.clear();
    for (const pipelines of this.#allPipelines()) {
      for (const pipeline of pipelines.values()) pipeline.close();
      pipelines.clear();
    }
  }

  #allPipelines(): Array<Map<string, { close(): void; readonly backlog: number }>> {
    return [this.#pipelines, this.#paxosPipelines, this.#writePipelines];
  }

  /**
   * The view a change started from: `previous`, except for a joining node's first change, whose own
   * earlier view (itself alone) never placed a key: there the cluster as it was without this node.
   */
  #viewBefore(previous: Placement): Placement {
    const alone = previous.ringIds.length === 1 && previous.ringIds[0] === this.self;
    if (!this.#joining || !alone) return previous;
    this.#joining = false;
    const others = this.#othersView();
    assert(others !== undefined, "a join brings other members");
    return others;
  }

  /** The current ring without this node (as the others saw it before this node joined); none when alone. */
  #othersView(): Placement | undefined {
    const others = this.#placement.ringIds.filter((id) => id !== this.self);
    if (others.length === 0) return undefined;
    assert(others.length < this.#placement.ringIds.length, "this node is in its own view");
    return new Placement({ self: this.self, ringIds: others, liveIds: [], config: this.#options.config });
  }

  /**
   * Holds a change from `before` until its keys are settled: none kept after the pass when `before` was this
   * node alone (no other node ever proposed in it, and the pass settled every key it held).
   */
  #beginTransition(before: Placement): void {
    const count = this.#transitions.length;
    const alone = before.ringIds.length === 1 && before.ringIds[0] === this.self;
    const keepMs = alone ? 0 : this.#transitionKeepMs;
    const sinceMs = this.#options.clock.monotonicMs();
    this.#transitions.push({ previous: before, settled: new Set(), passDone: false, sinceMs, keepMs });
    assert(this.#transitions.length === count + 1);
  }

  /**
   * A node that left in its last life comes back with its old data. While it was away the others moved its
   * keys to replica sets without it and may have settled them there: its acceptor must not serve its saved
   * view alone (two views, two disjoint quorums: the chaos suite lost a write this way, with a proposer
   * that was paused through the leave and the return). So its first view is a change from the ring without
   * it, settled key by key like a join's; the rebalancer's first pass (`initialChange`) settles its keys.
   */
  #rejoin(): void {
    const previous = this.#othersView();
    if (previous === undefined) return;
    this.#beginTransition(previous);
    this.#initialChange = { previous, next: this.#placement };
    assert(this.#transitions.length === 1, "a rejoining node starts with this change alone");
  }

  /** The change this node starts with (a rejoining node's), for the rebalancer's first pass, if any. */
  get initialChange(): { previous: Placement; next: Placement } | undefined {
    return this.#initialChange;
  }

  /** Membership changes whose keys are not all settled here (joint quorums still apply to some keys). */
  get transitionCount(): number {
    this.#pruneTransitions();
    return this.#transitions.length;
  }

  #pruneTransitions(): void {
    const nowMs = this.#options.clock.monotonicMs();
    this.#transitions = this.#transitions.filter((transition) =>
      !transition.passDone || nowMs - transition.sinceMs < transition.keepMs
    );
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
    if (!sameList(previous.ringIds, this.#placement.ringIds)) {
      this.#beginTransition(this.#viewBefore(previous));
    }
    for (const pipelines of this.#allPipelines()) {
      for (const [peer, pipeline] of pipelines) {
        if (!this.#placement.ringIds.includes(peer) && !this.#placement.isLive(peer)) {
          pipeline.close();
          pipelines.delete(peer);
        }
      }
    }
    for (const peer of this.#hints.peers()) {
      // A peer gone from the ring no longer replicates those keys: its hints are void.
      if (this.#placement.isLive(peer)) this.#deliverHints(peer);
      else if (!this.#placement.ringIds.includes(peer)) this.#hints.take(peer);
    }
    for (const listener of this.#placementListeners) listener(previous, this.#placement);
  }

  /**
   * Reads a key's state (tombstones included). Consistent: a Paxos round on the key's replicas that
   * completes an unfinished write first (linearizable, or UnavailableError). Otherwise from one replica:
   * this node when it is one, else the newest ballot among the first majority of live replicas' answers,
   * repairing the stale ones once all answered. See DESIGN.md, "Reads".
   */
  async readEntry(
    table: string,
    key: string,
    options: { consistent?: boolean } = {},
  ): Promise<EntryView | undefined> {
    const replicas = this.#placement.replicasOf(table, key);
    if (options.consistent === true && !this.#options.solo) return await this.#readConsistent(table, key);
    if (replicas.includes(this.self)) return this.#localEntry(table, key);
    this.#counters.forwardedReads += 1;
    const live = replicas.filter((id) => this.#placement.isLive(id));
    const replies = live.map((replica) =>
      this.#options.transport.request(replica, "read", { table, key }, {
        timeoutMs: this.#options.config.requestTimeoutMs,
      }).then((reply) => ReadReply.parse(reply))
    );
    void Promise.allSettled(replies).then((settled) => this.#repair({ table, key, live, settled }));
    const answers = await firstAnswers(replies, quorumOf(replicas.length));
    if (answers.length === 0) throw new UnavailableError(`Cannot read key "${key}": no replica answered`);
    let newest: ReadReplyWire | undefined;
    for (const answer of answers) if (newerReply(answer, newest)) newest = answer;
    const entry = newest?.entry ?? null;
    return entry === null ? undefined : { ...entry, timestamp: 0, owner: "" };
  }

  /**
   * A consistent read, run by the key's usual proposer (`#proposersOf`) so that it queues behind
   * that proposer's writes of the key instead of competing with them; here when this node is that
   * proposer, or when it cannot be reached (the request never left: running it here is as safe, only
   * costlier).
   */
  async #readConsistent(table: string, key: string): Promise<EntryView | undefined> {
    const [proposer] = this.#proposersOf(table, key, this.#placement.replicasOf(table, key));
    if (proposer !== undefined && proposer !== this.self) {
      try {
        const reply = ReadReply.parse(
          await this.#options.transport.request(proposer, "read", { table, key, consistent: true }, {
            timeoutMs: this.#options.config.requestTimeoutMs * 2,
          }),
        );
        return reply.entry === null ? undefined : { ...reply.entry, timestamp: 0, owner: "" };
      } catch (error) {
        if (!isUnreachable(error)) {
          throw unavailableNow(key, "its proposer did not answer the consistent read", error);
        }
      }
    }
    return await this.#readHere(table, key);
  }

  /** A consistent read through this node's proposer: a peek of a quorum, or a round. */
  async #readHere(table: string, key: string): Promise<EntryView | undefined> {
    const sets = this.#setsOf(table, key);
    if (sets[0]!.length === 0) {
      throw new UnavailableError(`Cannot read key "${key}": every member, this one included, has left`);
    }
    const entry = await this.#proposer.read(table, key, sets);
    this.#settled(table, key, sets);
    return entry === undefined ? undefined : this.#options.store.viewOf(table, key, entry);
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
    let newest: ReadReplyWire | undefined;
    for (const result of options.settled) {
      if (result.status === "fulfilled" && newerReply(result.value, newest)) newest = result.value;
    }
    const state = newest?.replica;
    if (state === undefined || state === null) return;
    const entry = replicaEntryOfWire(state);
    options.settled.forEach((result, index) => {
      if (result.status !== "fulfilled" || !newerReply(newest!, result.value)) return;
      this.#counters.readRepairs += 1;
      this.#pipeline(options.live[index]!).send({
        store: true,
        table: options.table,
        key: options.key,
        entry,
      });
    });
  }

  /**
   * A client write: proposed here when this node is the key's usual proposer (`#proposersOf`), else
   * forwarded to it (to the next live replica when it cannot be reached: the request never arrived, so
   * nothing ran).
   *
   * @throws the change's refusal (forbidden, version_conflict, key_not_found, ...), PayloadTooLargeError
   * when the proposer refused the forwarded write as over its body limit, or UnavailableError
   * (indeterminate) when no quorum of the key's replicas took it in time.
   */
  write(request: ClientWrite): Promise<EntryView> {
    // Without a cluster no peer can write: the store answers directly, as a single node always did.
    if (this.#options.solo === true) {
      const expiring = this.#expireBefore(request.table, request.key);
      return expiring === undefined
        ? this.#applyLocally(request)
        : expiring.then(() => this.#applyLocally(request));
    }
    return this.#route(request);
  }

  /**
   * When this node's copy of the key shows it expired, its expiry first (a refusal or failure of it is
   * ignored: the write judges the state itself), so that subscribers see the key's `Deleted` with reason
   * `expired` before what the write makes of it (DESIGN.md, "Expiry (TTL)", invariant 2). Undefined, at
   * once, when there is nothing to expire: the usual case costs one look at the key's op byte.
   */
  #expireBefore(table: string, key: string): Promise<void> | undefined {
    const version = this.#options.store.expiredVersionOf(table, key, this.#options.clock.nowMs());
    if (version === undefined) return undefined;
    assert(version >= 1, "an expired state has a version");
    return this.expire({ table, key, version }).then(() => {}, (error: unknown) => {
      if (!(error instanceof KvError)) throw error;
    });
  }

  /**
   * Expires version `version` of the key (DESIGN.md, "Expiry (TTL)"): a single node's conditional store
   * write, or the expiry change proposed here over the key's replica sets. Resolves true when it made the
   * tombstone, false when there was nothing to expire (refused: already expired, written since, not due
   * by this node's clock) or this node no longer replicates the key (its replicas expire it).
   *
   * @throws UnavailableError (or another operating `KvError`) when no quorum decided it: try again later.
   */
  async expire(target: { table: string; key: string; version: number }): Promise<boolean> {
    const { table, key, version } = target;
    assert(Number.isSafeInteger(version) && version >= 1, "an expiry names a version");
    const { store, clock } = this.#options;
    if (this.#options.solo === true) {
      const expired = await store.expire(table, key, { version });
      if (expired !== undefined) this.#counters.expiredKeys += 1;
      return expired !== undefined;
    }
    if (!this.#placement.replicasOf(table, key).includes(this.self)) return false;
    const sets = this.#setsOf(table, key);
    try {
      const change = (current: ReplicaEntry | undefined) => applyExpiry(target, current, clock.nowMs());
      const committed = await this.#proposer.write(table, key, sets, change, { readsValue: false });
      assert(committed.entry.deleted && committed.entry.version === version + 1, "an expiry's tombstone");
      this.#counters.expiredKeys += 1;
      return true;
    } catch (error) {
      if (error instanceof ExpiryRefusedError) return false;
      throw error;
    }
  }

  /**
   * How long this node waits before proposing the expiry of a due key (DESIGN.md, "Expiry (TTL)", who
   * expires a key): 0 when it is the key's usual proposer (the node its acceptor's effective promise names
   * when a live replica, else the first live replica in ring order) or alone; `graceMs` for another
   * replica; undefined when it no longer replicates the key.
   */
  expiryDelayMs(table: string, key: string, graceMs: number): number | undefined {
    if (this.#options.solo === true) return 0;
    const replicas = this.#placement.replicasOf(table, key);
    if (!replicas.includes(this.self)) return undefined;
    const live = replicas.filter((id) => this.#placement.isLive(id));
    const holder = effectivePromise(this.#options.store.ballotsOf(table, key)).node;
    const usual = live.includes(holder) ? holder : live[0];
    return usual === this.self ? 0 : graceMs;
  }

  async #route(request: ClientWrite): Promise<EntryView> {
    const replicas = this.#placement.replicasOf(request.table, request.key);
    if (replicas.length === 0) throw unavailableNow(request.key, "every member, this one included, has left");
    const proposers = this.#proposersOf(request.table, request.key, replicas);
    if (proposers.length < quorumOf(replicas.length)) {
      throw unavailableNow(request.key, `${proposers.length} of its ${replicas.length} replicas are up`);
    }
    if (proposers[0] === this.self) return await this.#proposeHere(request, replicas);
    this.#counters.forwardedWrites += 1;
    let lastError: unknown;
    for (const proposer of proposers) {
      if (proposer === this.self) return await this.#proposeHere(request, replicas);
      try {
        return await this.#forward(proposer, request);
      } catch (error) {
        throwIfAnswered(proposer, request, error);
        lastError = error;
        // Only a request that never arrived may go to another proposer; see DESIGN.md.
        if (!isUnreachable(error)) break;
      }
    }
    throw unavailableNow(request.key, "its proposer did not answer", lastError);
  }

  /**
   * A client write proposed here. When another proposer took the key before any state of this write went out
   * (its prepare was refused for that proposer's ballot: two nodes took a new key at once), the write goes
   * to that proposer instead, once, rather than duelling with it (DESIGN.md, "Who proposes").
   */
  async #proposeHere(request: ClientWrite, replicas: readonly string[]): Promise<EntryView> {
    try {
      return await this.#propose(request, replicas, { mayYield: true });
    } catch (error) {
      if (!(error instanceof Preempted)) throw error;
      const winner = error.proposer;
      assert(winner !== this.self, "a proposer never yields to itself");
      if (!replicas.includes(winner) || !this.#placement.isLive(winner)) {
        throw unavailableNow(request.key, `${winner} is writing it`, error);
      }
      this.#counters.forwardedWrites += 1;
      try {
        return await this.#forward(winner, request);
      } catch (forwardError) {
        throwIfAnswered(winner, request, forwardError);
        throw unavailableNow(request.key, "its proposer did not answer", forwardError);
      }
    }
  }

  /**
   * The live replicas of the key in the order a write tries them as its proposer (DESIGN.md, "Who
   * proposes"): first the proposer this node's acceptor last saw take the key (the node its effective
   * promise names), when that one is a live replica, so that one node keeps a key and writes it in one
   * round trip; else this node, when it is a replica; then the others in ring order.
   */
  #proposersOf(table: string, key: string, replicas: readonly string[]): string[] {
    const live = replicas.filter((id) => this.#placement.isLive(id));
    if (!replicas.includes(this.self)) return live;
    const holder = effectivePromise(this.#options.store.ballotsOf(table, key)).node;
    const first = holder !== this.self && live.includes(holder) ? holder : this.self;
    const order = [first, ...live.filter((id) => id !== first)];
    assert(order.length === new Set(order).size, "each proposer once");
    assert(order.every((id) => replicas.includes(id)), "only replicas propose");
    return order;
  }

  #forward(proposer: string, request: ClientWrite): Promise<EntryView> {
    const { conditions, ...rest } = request;
    const body: WriteRequest = { ...rest, owner: conditions.owner };
    if (conditions.ifVersion !== undefined) body.ifVersion = conditions.ifVersion;
    const timeoutMs = this.#options.config.requestTimeoutMs * 2;
    const pipeline = this.#pipelineTo(this.#writePipelines, proposer, writeBatches, timeoutMs);
    return forwardWrite({ proposer, body, pipeline, transport: this.#options.transport, timeoutMs });
  }

  /** Runs the write as a Paxos proposal over the key's whole replica set, then publishes it. */
  async #propose(
    request: ClientWrite,
    replicas: readonly string[],
    options: { mayYield?: boolean } = {},
  ): Promise<EntryView> {
    assert(replicas.includes(this.self), "a write is proposed by one of its replicas");
    const { table, key } = request;
    const expiring = this.#expireBefore(table, key);
    if (expiring !== undefined) await expiring;
    const change: WriteChange = { op: request.op, table, key, owner: request.conditions.owner };
    if (request.value !== undefined) change.value = request.value;
    if (request.conditions.ifVersion !== undefined) change.ifVersion = request.conditions.ifVersion;
    if (request.ttlSecs !== undefined && request.op !== "delete") change.ttlSecs = request.ttlSecs;
    const sets = this.#setsOf(table, key);
    assert(sameList(sets[0]!, replicas), "a write names the replica set of this node's view");
    const committed = await this.#proposer.write(
      table,
      key,
      sets,
      (current) => applyChange(change, current, this.#options.clock.nowMs()),
      // A put or a delete is judged on the version, owner and timestamp: only a patch merges into the value.
      { ...options, readsValue: change.op === "patch" },
    );
    assert(committed.entry.version >= 1);
    // Published by `#chosen`, as every state this node gets chosen is: with its view, made once.
    const published = this.#publishedViews.get(committed.entry);
    this.#publishedViews.delete(committed.entry);
    return published ?? this.#options.store.viewOf(table, key, committed.entry);
  }

  /**
   * The replica sets a round of the key must reach a quorum of: this view's, then each unsettled earlier
   * view's that differs (DESIGN.md, "Membership changes"). Drops transitions that are over.
   */
  #setsOf(table: string, key: string): ReplicaSets {
    this.#pruneTransitions();
    const sets = [this.#placement.replicasOf(table, key)];
    if (this.#transitions.length === 0) return sets;
    const id = keyIdOf(table, key);
    for (const transition of this.#transitions) {
      if (transition.settled.has(id)) continue;
      const before = transition.previous.replicasOf(table, key);
      if (!sets.some((set) => sameList(set, before))) sets.push(before);
    }
    assert(sets.length >= 1);
    return sets;
  }

  /** A round on `sets` succeeded: the key's change is settled here for every transition it spanned. */
  #settled(table: string, key: string, sets: ReplicaSets): void {
    if (sets.length > 1) this.#markSettled(table, key);
  }

  /**
   * A joint round chose the key's latest state: a quorum of every earlier replica set is on the new view
   * and a quorum of the new set holds it, whoever ran the round (DESIGN.md, "Membership changes").
   */
  #markSettled(table: string, key: string): void {
    if (this.#transitions.length === 0) return;
    const id = keyIdOf(table, key);
    for (const transition of this.#transitions) transition.settled.add(id);
  }

  /**
   * Every state this node's proposer got chosen (a write, or a read's or a settle's round that completed
   * an unfinished one): published here and to every other live member, hinted to the replicas that did not
   * accept it, and, when a joint round chose it, announced as settling the key's membership change.
   */
  #chosen(table: string, key: string, committed: Committed): void {
    if (committed.joint) this.#markSettled(table, key);
    this.#publish(table, key, committed);
  }

  /**
   * How long a change is kept after this node's pass, for keys it did not settle itself: every member has
   * heard of it by then (gossip takes seconds), and acceptors still holding it ask for joint rounds anyway.
   */
  get #transitionKeepMs(): number {
    return this.#options.config.antiEntropyIntervalMs * 3;
  }

  /**
   * The rebalancer's round for one key after a membership change: the identity change on a quorum of every
   * replica set the key had across the unsettled changes, which gives the new replicas the key's latest
   * state. True when it succeeded (the key may then be purged here if this node no longer replicates it).
   */
  async settle(table: string, key: string): Promise<boolean> {
    const sets = this.#setsOf(table, key);
    if (sets[0]!.length === 0) return false; // every member left: no replica to settle on
    try {
      // Spread: every replica of every set is sent the state, a new one that answered late included.
      await this.#proposer.read(table, key, sets, { spread: true });
    } catch (error) {
      if (error instanceof KvError) return false;
      throw error;
    }
    this.#settled(table, key, sets);
    return true;
  }

  /**
   * A state from a peer above this acceptor's accepted ballot was refused for an outstanding promise (a
   * prepare whose accept never came, or a lost proposer's successor state): no delayed accept can ever be
   * taken here, so replicas would stay apart until the key's next write. A round on the key (the identity
   * change, at a ballot above that promise) brings every replica onto its latest chosen state.
   */
  #settleIfBlocked(table: string, key: string, entry: ReplicaEntry): void {
    const blocked = () =>
      compareBallots(entry.ballot ?? zeroBallot, this.#options.store.ballotsOf(table, key).accepted) > 0;
    if (!blocked()) return;
    const id = keyIdOf(table, key);
    if (this.#settling.has(id) || this.#settling.size >= settlingMax) return;
    // Not at once: a key being written has promises in flight that its proposer's next accept clears; a
    // round now would only compete with it. Still behind after a while, the key is stuck: settle it.
    const timer = this.#options.clock.setTimer(this.#options.config.requestTimeoutMs * 2, () => {
      this.#settling.set(id, undefined);
      const round = blocked() ? this.settle(table, key) : Promise.resolve(true);
      void round.finally(() => this.#settling.delete(id));
    });
    this.#settling.set(id, timer);
  }

  /** The rebalancer finished a pass up to `next`: the changes up to it are settled for every key here. */
  passDone(next: Placement): void {
    if (!sameList(next.ringIds, this.#placement.ringIds)) return; // a newer change: its pass comes
    for (const transition of this.#transitions) transition.passDone = true;
  }

  /** The key's state here: the stored one, or a newer one chosen here whose own accept is not durable yet. */
  #localEntry(table: string, key: string): EntryView | undefined {
    const stored = this.#options.store.getEntry(table, key);
    if (this.#chosenNow.size === 0 && this.#chosenBefore.size === 0) return stored;
    const id = keyIdOf(table, key);
    const chosen = this.#chosenNow.get(id) ?? this.#chosenBefore.get(id);
    return chosen !== undefined && chosen.version > (stored?.version ?? 0) ? chosen : stored;
  }

  /** Remembers `view`, chosen here, for `#localEntry` until this node's own copy is durable. */
  #rememberChosen(table: string, key: string, view: EntryView): void {
    assert(table.length > 0 && key.length > 0, "a chosen state names its key");
    const nowMs = this.#options.clock.monotonicMs();
    if (nowMs - this.#chosenSinceMs >= chosenGenerationMs) {
      this.#chosenBefore = this.#chosenNow;
      this.#chosenNow = new Map();
      this.#chosenSinceMs = nowMs;
    }
    this.#chosenNow.set(keyIdOf(table, key), view);
    assert(view.version >= 1, "a chosen state has a version");
  }

  /**
   * A committed change: shown to this node's subscribers and, as a `chosen` notice in this proposer's ordered
   * `paxos` pipeline to each member, to every other live member's; replicas that did not accept it get a
   * hint.
   */
  #publish(table: string, key: string, committed: Committed): void {
    const view = this.#options.store.viewOf(table, key, committed.entry);
    assert(view.version === committed.entry.version);
    this.#publishedViews.set(committed.entry, view);
    const kind = view.deleted ? "Deleted" : "Updated";
    if (!committed.acceptedBy.includes(this.self)) this.#rememberChosen(table, key, view);
    this.#options.sink.publish({ kind, table, key, version: view.version, sequence: 0, json: view.json });
    const notice: PaxosItem = { op: "chosen", table, key, kind, version: view.version, json: view.json };
    if (committed.joint) notice.settled = true;
    const replicas = this.#placement.replicasOf(table, key);
    // In the proposer's paxos batches: behind a busy key's next accepts, in the same request.
    for (const peer of this.#placement.liveIds()) {
      if (peer !== this.self) this.#paxosPipeline(peer).post(notice);
    }
    // A replica believed down, or whose accept failed, missed it: a hint. One that had not answered when the
    // quorum did still gets the accept (sent to all); should it fail later, anti-entropy repairs it.
    for (const replica of replicas) {
      if (replica === this.self) continue;
      if (!this.#placement.isLive(replica) || committed.failedBy.includes(replica)) {
        this.#hints.add(replica, table, key);
      }
    }
  }

  /** The store's write, as a promise: it rejects, never throws. */
  #applyLocally(request: ClientWrite): Promise<EntryView> {
    const { store } = this.#options;
    // The conditions object itself when there is no lifetime: the usual write allocates nothing more.
    const options = request.ttlSecs === undefined
      ? request.conditions
      : { ...request.conditions, ttlSecs: request.ttlSecs };
    switch (request.op) {
      case "put":
        return store.put(request.table, request.key, request.value, options);
      case "patch":
        if (typeof request.value !== "object" || request.value === null || Array.isArray(request.value)) {
          return Promise.reject(new InvalidRequestError('PATCH "value" must be a JSON object'));
        }
        return store.patch(request.table, request.key, request.value as Record<string, unknown>, {
          ...options,
        });
      case "delete":
        return store.delete(request.table, request.key, request.conditions);
    }
  }

  #pipeline(peer: string): PeerPipeline<ApplyItem, ApplyResult> {
    return this.#pipelineTo(this.#pipelines, peer, applyBatches, this.#options.config.requestTimeoutMs);
  }

  #paxosPipeline(peer: string): PeerPipeline<PaxosItem, PaxosResult> {
    return this.#pipelineTo(this.#paxosPipelines, peer, paxosBatches, this.#options.config.requestTimeoutMs);
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

  /**
   * Ships keys' current states, with their ballots, to a peer (rebalancing, anti-entropy, hints), which
   * applies each by the accept rule; resolves true when every one was answered (a peer that holds a newer
   * state answers "stale", which is as good).
   */
  async pushKeys(peer: string, keys: ReadonlyArray<{ table: string; key: string }>): Promise<boolean> {
    const results = await Promise.all(keys.map(({ table, key }) => {
      const entry = this.#options.store.replicaOf(table, key);
      if (entry === undefined) return true;
      const sent = this.#pipeline(peer).send({ store: true, table, key, entry });
      if (!sent.accepted) {
        this.#hints.add(peer, table, key);
        return false;
      }
      return sent.acknowledged.then(() => true, () => {
        this.#hints.add(peer, table, key);
        return false;
      });
    }));
    return results.every((ok) => ok);
  }

  #deliverHints(peer: string): void {
    const items = this.#hints.take(peer);
    if (items.length === 0) return;
    this.#options.logger.info("delivering hints", { peer, keys: items.length });
    void this.pushKeys(peer, items);
  }

  /** Total items waiting in pipelines. */
  pipelineBacklog(): number {
    let backlog = 0;
    for (const pipelines of this.#allPipelines()) {
      for (const pipeline of pipelines.values()) backlog += pipeline.backlog;
    }
    return backlog;
  }

  /** Handlers of the internal kinds this class serves. */
  handlers(): Record<string, (body: unknown, sender: string) => Promise<unknown>> {
    return {
      paxos: (body) => this.#handlePaxos(body),
      apply: (body) => this.#handleApply(body),
      write: (body) => this.#proposeForwarded(parseBody(WriteRequest, body)),
      writes: async (body) => {
        const { items } = parseBody(WritesRequest, body);
        // Proposed together, so their records share WAL batches, and each answered on its own.
        const results = await Promise.all(
          items.map((item) =>
            this.#proposeForwarded(item).catch((error: unknown) => {
              this.#options.logger.error("a forwarded write failed", { key: item.key, error: String(error) });
              return { error: { code: "unavailable", message: "the proposer failed to write it" } };
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
   * replicas' pipelines (the accept rule) otherwise. A state counts as restored once every replica took
   * it; one whose replica is down or failed is counted as missed (the import says so).
   */
  async #handleRestore(body: unknown): Promise<RestoreReply> {
    const { items } = parseBody(RestoreRequest, body);
    const local: Array<{ table: string; key: string; entry: ReplicaEntry }> = [];
    const delivered = items.map(async ({ table, key, entry: wire }) => {
      const entry = replicaEntryOfWire(wire);
      const replicas = this.#placement.replicasOf(table, key);
      if (replicas.includes(this.self)) local.push({ table, key, entry });
      const others = replicas.filter((id) => id !== this.self);
      if (!others.every((id) => this.#placement.isLive(id))) return false;
      const answered = await Promise.all(others.map((peer) => {
        const sent = this.#pipeline(peer).send({ store: true, table, key, entry });
        return sent.accepted ? sent.acknowledged.then(() => true, () => false) : false;
      }));
      return answered.every((ok) => ok);
    });
    if (local.length > 0) await this.#options.store.applyReplicas(local);
    const outcomes = await Promise.all(delivered);
    const restored = outcomes.filter((ok) => ok).length;
    return { restored, missed: items.length - restored };
  }

  /**
   * A proposer's batch: each proposal decided by this node's acceptor and each notice of a chosen state
   * published, in the sender's order, in this turn; answered once every answer is durable.
   */
  async #handlePaxos(body: unknown): Promise<{ results: PaxosResult[] }> {
    const { items } = parseBody(PaxosRequestChecked, body);
    const answers = items.map((item): PaxosResult | Promise<PaxosResult> => {
      if (item.op !== "chosen") return this.#acceptor.answer(item);
      const { table, key, kind, version, json } = item;
      if (item.settled === true) this.#markSettled(table, key);
      this.#options.sink.publish({ kind, table, key, version, sequence: 0, json });
      return { result: "noted" };
    });
    const results = await Promise.all(answers);
    assert(results.length === items.length, "one answer per item");
    assert(results.every((result, index) => answers_(items[index]!, result)), "each answer answers its item");
    return { results };
  }

  /** Delayed accepts (stored by the accept rule), in the sender's order. */
  async #handleApply(body: unknown): Promise<{ results: ApplyResult[] }> {
    const { items } = parseBody(ApplyRequest, body);
    const stored = items.map((item) => ({
      table: item.table,
      key: item.key,
      entry: replicaEntryOfWire(item.entry),
    }));
    assert(stored.length === items.length, "every apply item is a state to store");
    const outcomes = stored.length > 0 ? await this.#options.store.applyReplicas(stored) : [];
    assert(outcomes.length === stored.length, "one outcome per stored item");
    stored.forEach((item, index) => {
      if (outcomes[index] === "stale") this.#settleIfBlocked(item.table, item.key, item.entry);
    });
    return { results: outcomes.map((result) => ({ result })) };
  }

  /** A forwarded write: its entry, or the KvError to re-raise at the forwarder. */
  async #proposeForwarded(request: WriteRequest): Promise<WriteReplyWire> {
    const { owner, ifVersion, ...rest } = request;
    const conditions: WriteConditions = ifVersion === undefined ? { owner } : { owner, ifVersion };
    const replicas = this.#placement.replicasOf(request.table, request.key);
    if (!replicas.includes(this.self)) {
      // This node's view moved the key away (a membership change the forwarder has not seen yet).
      return writeReplyOf({ error: unavailableNow(request.key, "this node no longer replicates it") });
    }
    try {
      return writeReplyOf({ entry: await this.#propose({ ...rest, conditions }, replicas) });
    } catch (error) {
      return writeReplyOf({ error });
    }
  }

  async #handleRead(body: unknown): Promise<unknown> {
    const { table, key, consistent } = parseBody(ReadRequest, body);
    const entry = consistent === true
      ? await this.#readHere(table, key)
      : this.#options.store.getEntry(table, key);
    return {
      entry: entry === undefined ? null : readReplyEntry(entry),
      replica: consistent === true ? null : this.#options.store.replicaOf(table, key) ?? null,
    };
  }
}

/** A state as a `read` answers it: what a reader serves, and its lifetime for the reader's clock. */
function readReplyEntry(
  entry: EntryView,
): { json: string; version: number; deleted: boolean; expiresAt?: number } {
  const { json, version, deleted, expiresAt } = entry;
  return expiresAt === undefined || expiresAt === 0
    ? { json, version, deleted }
    : { json, version, deleted, expiresAt };
}

/** How long one generation of states chosen here before they were durable here is kept (two are). */
const chosenGenerationMs = 100;

/**
 * Rethrows what a forward's failure means for the client when the proposer answered: its own answer
 * (`ForwardedError`: the write ran there), or 413 when it refused the write as too large for its limit.
 */
function throwIfAnswered(proposer: string, request: ClientWrite, error: unknown): void {
  if (error instanceof ForwardedError) throw error;
  if (isTooLarge(error)) {
    throw new PayloadTooLargeError(
      `Cannot write key "${request.key}": its proposer ${proposer} refused the forwarded write ` +
        "as too large; DYNA_REQUEST_BYTES_MAX should be the same on every node",
      { cause: error },
    );
  }
}

/** A 503 a client should retry in a moment: no quorum of the key's replicas can be reached now. */
function unavailableNow(key: string, why: string, cause?: unknown): UnavailableError {
  return new UnavailableError(`Cannot write key "${key}": ${why}; a majority of its replicas is needed`, {
    cause,
  });
}

/** True when `reply` holds a newer state than `than`: a higher ballot, then (legacy) a higher version. */
function newerReply(reply: ReadReplyWire, than: ReadReplyWire | undefined): boolean {
  if (than === undefined) return true;
  const order = compareBallots(reply.replica?.ballot ?? zeroBallot, than.replica?.ballot ?? zeroBallot);
  if (order !== 0) return order > 0;
  return (reply.entry?.version ?? 0) > (than.entry?.version ?? 0);
}

function parseBody<T>(
  schema: { safeParse(value: unknown): { success: true; data: T } | { success: false } },
  body: unknown,
): T {
  const result = schema.safeParse(body);
  if (!result.success) throw new InvalidRequestError("malformed internal request");
  return result.data;
}

/**
 * The first `count` answers of `replies` (a read quorum: one of them holds the newest chosen state), or
 * every answer when fewer succeed.
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
