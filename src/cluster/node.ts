import { AssertionError } from "../util/assert.ts";
import { type Clock, raceDeadline } from "../util/clock.ts";
import { InvalidRequestError, UnavailableError } from "../util/errors.ts";
import type { Logger } from "../util/log.ts";
import { AntiEntropy } from "./anti_entropy.ts";
import { Expirer } from "./expirer.ts";
import { type ListedEntry, listLocal, listTable } from "./listing.ts";
import type { ChangeSink, EntryView, LocalStore, MembershipView } from "./local_store.ts";
import { type InternalDoor, InternalHandler } from "./transport.ts";
import { ClusterAuthError } from "./errors.ts";
import { RequestSigner } from "./mac.ts";
import { Membership } from "./membership.ts";
import { Rebalancer } from "./rebalance.ts";
import { guardStore } from "./store_guard.ts";
import { ListRequest } from "./replication_wire.ts";
import { type ClientWrite, Replicator } from "./replicator.ts";
import type { Transport } from "./transport.ts";
import { HttpTransport } from "./transport_http.ts";
import type { ClusterConfig, Member } from "./types.ts";

/** What {@linkcode ClusterNode.stats} returns: counters since this node started, and backlogs now. */
export interface ClusterStats {
  /** Known members, self included. */
  members: number;
  /** Changes queued for replicas, not yet sent. */
  pipelineBacklog: number;
  hints: number;
  hintsDropped: number;
  forwardedWrites: number;
  forwardedReads: number;
  readRepairs: number;
  fastPathWrites: number;
  prepareRounds: number;
  proposalRetries: number;
  rebalancedKeys: number;
  purgedKeys: number;
  antiEntropyRounds: number;
  antiEntropyPushed: number;
  membershipChangesUnsettled: number;
  expiredKeys: number;
  /** The expiry sweeper's counters (DESIGN.md, "Expiry (TTL)"). */
  expiry: { proposed: number; refused: number; failed: number; deferred: number; inFlight: number };
}

/** Options of {@linkcode ClusterNode.create}. */
export interface ClusterNodeOptions {
  /** This node's id: the `host:port` peers dial. */
  self: string;
  /** Cluster settings; undefined runs a cluster of one that refuses every node-to-node request. */
  config: ClusterConfig | undefined;
  store: LocalStore;
  sink: ChangeSink;
  clock: Clock;
  logger: Logger;
  /** The node-to-node transport; default: HTTP(S) over kept-alive connections (`HttpTransport`). */
  transport?: Transport;
  /** Wraps the transport (tests inject faults: partitions, drops, delays). */
  wrapTransport?: (transport: Transport, self: string) => Transport;
  scheme?: "http" | "https";
  /** CA certificates peers' TLS certificates are checked against (https). */
  caCerts?: string[];
  /** This node starts by joining a cluster (see `ReplicatorOptions.joining`). */
  joining?: boolean;
  /** This node left the cluster in its last life (see `ReplicatorOptions.rejoining`). */
  rejoining?: boolean;
  /** Members known before a restart (the member list on disk); see `MembershipOptions.known`. */
  knownMembers?: readonly string[];
  /** Largest node-to-node message, both ways (`messageBytesMaxFor` the request limit). */
  messageBytesMax?: number;
  /**
   * Called when a store call breaks one of the store's own invariants (an `AssertionError` from inside
   * it): its state is in doubt and the node must stop (`main.ts` exits 70; WAL replay recovers).
   */
  onStoreBroken?: (error: Error) => void;
}

/** A transport for a cluster of one: there is no one to talk to. */
const noTransport: Transport = {
  request: () => Promise.reject(new UnavailableError("this node is not in a cluster")),
};

/**
 * One node's part of the cluster: membership (SWIM over HTTP), placement, replication, anti-entropy and
 * rebalancing, behind the few calls the HTTP layer makes. A node without `CLUSTER_SECRET` is a cluster
 * of one through the same code path.
 */
export class ClusterNode {
  readonly self: string;
  readonly replicator: Replicator;
  readonly membership: Membership | undefined;
  readonly antiEntropy: AntiEntropy | undefined;
  readonly rebalancer: Rebalancer;
  /** The sweeper of keys whose lifetime ended (DESIGN.md, "Expiry (TTL)"). */
  readonly expirer: Expirer;
  /** The node-to-node door the HTTP layer hands `POST /_internal/{kind}` to, headers first. */
  readonly door: InternalDoor;
  readonly #options: ClusterNodeOptions;
  readonly #transport: Transport;

  private constructor(options: ClusterNodeOptions, parts: {
    transport: Transport;
    membership: Membership | undefined;
    handler: InternalHandler | undefined;
  }) {
    this.self = options.self;
    this.#options = options;
    this.#transport = parts.transport;
    this.membership = parts.membership;
    this.door = parts.handler ?? closedDoor;
    const view: MembershipView = parts.membership ?? soloView(options.self);
    this.replicator = new Replicator({
      ...options,
      transport: parts.transport,
      membership: view,
      config: options.config ?? soloConfig,
      solo: options.config === undefined,
      joining: options.joining === true,
      rejoining: options.rejoining === true,
    });
    this.rebalancer = new Rebalancer({
      store: options.store,
      pusher: this.replicator,
      logger: options.logger,
      clock: options.clock,
    });
    this.replicator.onPlacementChange((previous, next) => this.rebalancer.onPlacementChange(previous, next));
    this.antiEntropy = options.config === undefined ? undefined : new AntiEntropy({
      store: options.store,
      pusher: this.replicator,
      transport: parts.transport,
      placement: () => this.replicator.placement,
      clock: options.clock,
      logger: options.logger,
      intervalMs: options.config.antiEntropyIntervalMs,
      timeoutMs: options.config.requestTimeoutMs * 5,
    });
    // Another replica waits this long for the usual proposer to expire a key before it does so itself.
    const graceMs = 2 * (options.config?.requestTimeoutMs ?? 0);
    this.expirer = new Expirer({
      store: options.store,
      clock: options.clock,
      logger: options.logger,
      delayOf: (item) => this.replicator.expiryDelayMs(item.table, item.key, graceMs),
      expire: (item) => this.replicator.expire(item),
    });
    if (parts.handler !== undefined) this.#register(parts.handler);
  }

  /** Builds the node's cluster part; nothing runs until `start()`. */
  static async create(given: ClusterNodeOptions): Promise<ClusterNode> {
    const onStoreBroken = given.onStoreBroken;
    const options = onStoreBroken === undefined
      ? given
      : { ...given, store: guardStore(given.store, onStoreBroken) };
    const { config } = options;
    if (config === undefined) {
      return new ClusterNode(options, { transport: noTransport, membership: undefined, handler: undefined });
    }
    const signer = await RequestSigner.create(config.secret);
    const base = options.transport ?? new HttpTransport({
      self: options.self,
      signer,
      clock: options.clock,
      scheme: options.scheme ?? "http",
      ...(options.caCerts === undefined ? {} : { caCerts: options.caCerts }),
      ...(options.messageBytesMax === undefined ? {} : { replyBytesMax: options.messageBytesMax }),
    });
    const transport = options.wrapTransport?.(base, options.self) ?? base;
    const membership = new Membership({
      self: options.self,
      config,
      transport,
      clock: options.clock,
      logger: options.logger,
      ...(options.knownMembers === undefined ? {} : { known: options.knownMembers }),
    });
    const handler = new InternalHandler({
      signer,
      clock: options.clock,
      self: options.self,
      windowMs: config.requestWindowMs,
      // A body slower than twice a request's own timeout is not a healthy peer's.
      bodyTimeoutMs: Math.max(2_000, 2 * config.requestTimeoutMs),
      ...(options.messageBytesMax === undefined ? {} : { messageBytesMax: options.messageBytesMax }),
    });
    return new ClusterNode(options, { transport, membership, handler });
  }

  #register(handler: InternalHandler): void {
    this.membership?.registerHandlers(handler);
    for (const [kind, run] of Object.entries(this.replicator.handlers())) handler.register(kind, run);
    for (const [kind, run] of Object.entries(this.antiEntropy?.handlers() ?? {})) handler.register(kind, run);
    handler.register("list", (body) => {
      const parsed = ListRequest.safeParse(body);
      if (!parsed.success) throw new InvalidRequestError("malformed list request");
      return Promise.resolve(listLocal(this.#options.store, parsed.data));
    });
  }

  /** Joins the cluster through `seed`. @throws {JoinRefusedError} on a wrong secret. */
  async join(seed: string): Promise<void> {
    if (this.membership === undefined) throw new UnavailableError("CLUSTER_SECRET is not set");
    await this.membership.join(seed);
  }

  /** Pulls what this node missed from every live peer (after joining, before serving) in `deadlineMs`. */
  async catchUp(deadlineMs: number): Promise<void> {
    await this.antiEntropy?.catchUp(deadlineMs);
  }

  /** Starts gossip, anti-entropy and the expiry sweeper, and a rejoining node's first rebalancing pass. */
  start(): void {
    this.membership?.start();
    this.antiEntropy?.start();
    this.expirer.start();
    const change = this.replicator.initialChange;
    if (change !== undefined) this.rebalancer.onPlacementChange(change.previous, change.next);
  }

  /**
   * Leaves gracefully (SIGTERM): tells the cluster, hands every key to its replicas without this node,
   * then stops. Bounded by `deadlineMs`.
   */
  async leave(deadlineMs: number): Promise<void> {
    this.antiEntropy?.stop();
    this.expirer.stop();
    if (this.membership === undefined) return;
    this.rebalancer.purgeEnabled = false;
    const handOff = (async () => {
      await this.membership!.leave();
      await this.rebalancer.idle();
    })();
    await raceDeadline(handOff, { clock: this.#options.clock, deadlineMs });
    this.stop();
  }

  /** Stops every timer and pipeline. */
  stop(): void {
    this.antiEntropy?.stop();
    this.expirer.stop();
    this.membership?.stop();
    this.replicator.close();
  }

  /** Every known member, self included. */
  members(): Member[] {
    if (this.membership !== undefined) return this.membership.members();
    const now = this.#options.clock.nowMs();
    return [{ id: this.self, status: "alive", incarnation: 0, lastSeenMs: now, statusChangedMs: now }];
  }

  /**
   * A key's live state or tombstone, from a replica; `consistent`: the latest acknowledged one, through a
   * Paxos round (DESIGN.md, "Reads"). A live state carries its lifetime: whether it has ended is for the
   * reader to judge by its clock (DESIGN.md, "Expiry (TTL)").
   */
  read(
    table: string,
    key: string,
    options?: { consistent: boolean },
  ): EntryView | undefined | Promise<EntryView | undefined> {
    if (options?.consistent === true) return this.replicator.readEntry(table, key, options);
    const placement = this.replicator.placement;
    if (placement.fullyReplicated) return this.#options.store.getEntry(table, key);
    return this.replicator.readEntry(table, key);
  }

  /** The ids of the ring this node places keys on, in ring order. */
  ringIds(): readonly string[] {
    return this.replicator.placement.ringIds;
  }

  /** Calls `listener` with the new ring's ids whenever the ring changes (not on other placement changes). */
  onRingChange(listener: (ringIds: readonly string[]) => void): void {
    this.replicator.onPlacementChange((previous, next) => {
      if (previous.ringIds.join() !== next.ringIds.join()) listener(next.ringIds);
    });
  }

  /** The counters of this node's part of the cluster, for `/stats` and `/metrics`. */
  stats(): ClusterStats {
    const replication = this.replicator.stats;
    const expiry = this.expirer.stats;
    return {
      members: this.members().length,
      pipelineBacklog: this.replicator.pipelineBacklog(),
      hints: replication.hintCount,
      hintsDropped: replication.hintsDropped,
      forwardedWrites: replication.forwardedWrites,
      forwardedReads: replication.forwardedReads,
      readRepairs: replication.readRepairs,
      fastPathWrites: replication.fastPathWrites,
      prepareRounds: replication.prepareRounds,
      proposalRetries: replication.proposalRetries,
      rebalancedKeys: this.rebalancer.movedCount,
      purgedKeys: this.rebalancer.purgedCount,
      antiEntropyRounds: this.antiEntropy?.roundCount ?? 0,
      antiEntropyPushed: this.antiEntropy?.pushedCount ?? 0,
      membershipChangesUnsettled: this.replicator.transitionCount,
      expiredKeys: replication.expiredKeys,
      expiry: {
        proposed: expiry.proposed,
        refused: expiry.refused,
        failed: expiry.failed,
        deferred: expiry.deferred,
        inFlight: expiry.inFlight,
      },
    };
  }

  /** True with `CLUSTER_SECRET`: a replica's state may then be accepted and never chosen. */
  get clustered(): boolean {
    return this.#options.config !== undefined;
  }

  /** A key's live state as another live member holds it (see `Replicator.findOnPeers`). */
  findOnPeers(table: string, key: string): Promise<EntryView | undefined> {
    return this.replicator.findOnPeers(table, key);
  }

  /** A client write, routed to the key's coordinator. */
  write(request: ClientWrite): Promise<EntryView> {
    return this.replicator.write(request);
  }

  /** A table's live keys in key order, across the cluster. */
  list(table: string, options: { after?: string; limit: number }): AsyncIterable<ListedEntry> {
    return listTable({
      table,
      limit: options.limit,
      ...(options.after === undefined ? {} : { after: options.after }),
      placement: this.replicator.placement,
      store: this.#options.store,
      transport: this.#transport,
      timeoutMs: this.#options.config?.requestTimeoutMs ?? 1_000,
      clock: this.#options.clock,
    });
  }
}

/** The door of a node without `CLUSTER_SECRET`: every request is refused from its headers, unread. */
const closedDoor: InternalDoor = {
  admit: (kind) => {
    const reason = "this node accepts no cluster requests: CLUSTER_SECRET is not set";
    throw new ClusterAuthError({ path: `/_internal/${kind}`.slice(0, 100), reason });
  },
  serve: () => Promise.reject(new AssertionError("a closed door admits nothing")),
};

function soloView(self: string): MembershipView {
  return { liveIds: () => [self], ringIds: () => [self], onChange: () => () => {} };
}

/** Settings of a cluster of one; only placement reads them. */
const soloConfig: ClusterConfig = {
  secret: "",
  probeIntervalMs: 1_000,
  probeTimeoutMs: 500,
  indirectProbeCount: 0,
  suspicionMult: 1,
  replicationFactor: 1,
  virtualNodeCount: 1,
  requestTimeoutMs: 1_000,
  antiEntropyIntervalMs: 1_000,
  requestWindowMs: 1_000,
};
