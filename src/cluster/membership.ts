import { assert, AssertionError } from "../util/assert.ts";
import type { Clock, TimerHandle } from "../util/clock.ts";
import { InvalidRequestError, KvError } from "../util/errors.ts";
import type { Logger } from "../util/log.ts";
import { JoinRefusedError, PeerRequestError } from "./errors.ts";
import { assertClusterConfig, suspicionTimeoutMs } from "./presets.ts";
import type { InternalHandler, Transport } from "./transport.ts";
import type { ClusterConfig, Member, MemberStatus } from "./types.ts";
import {
  isMemberId,
  JoinReplyWire,
  JoinRequestWire,
  LeaveRequestWire,
  type MemberWire,
  parseWire,
  peersMax,
  PingReplyWire,
  PingReqReplyWire,
  PingReqRequestWire,
  PingRequestWire,
} from "./wire.ts";
import type { z } from "zod";

/** Options of {@linkcode Membership}. */
export interface MembershipOptions {
  /** This node's id: the `host:port` other nodes reach it at. */
  self: string;
  config: ClusterConfig;
  transport: Transport;
  clock: Clock;
  logger: Logger;
  /** Source of randomness in [0, 1) for probe order, helpers and dead probes. @default Math.random */
  random?: () => number;
  /**
   * Members this node knew before it restarted (its member list on disk): they start `dead` at incarnation 0,
   * so any news of them wins, and they are in the ring from the start. A restarted node therefore never
   * believes itself alone, and never places a key on fewer replicas than before (cluster DESIGN.md).
   */
  known?: readonly string[];
}

/** This node's record of one member; `Member` is its read-only view. */
interface MemberState {
  id: string;
  status: MemberStatus;
  incarnation: number;
  lastSeenMs: number;
  statusChangedMs: number;
  /** When the status last changed, on the monotonic clock: suspicion and reaping are measured on it. */
  statusChangedMonotonicMs: number;
}

/** At equal incarnation the higher rank wins: left > dead > suspect > alive. */
const statusRanks: Record<MemberStatus, number> = { alive: 0, suspect: 1, dead: 2, left: 3 };
/** Chance per round of also pinging one dead member, so a healed partition finds its way back. */
const deadProbeChance = 1 / 3;
/** Most change listeners; a few modules subscribe, never one per request. */
const listenersMax = 64;

function isLive(status: MemberStatus): boolean {
  return status === "alive" || status === "suspect";
}

/**
 * SWIM membership (Das et al. 2002) with full-list piggybacking: each probe round pings one member
 * round-robin, asks helpers to ping it indirectly when it does not answer, suspects it when nobody
 * could reach it, and declares a suspect dead after `suspicionTimeoutMs`. Every message carries the
 * sender's whole member list, merged by incarnation; only a member raises its own incarnation.
 */
export class Membership {
  readonly #self: string;
  readonly #config: ClusterConfig;
  readonly #transport: Transport;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #random: () => number;
  readonly #members = new Map<string, MemberState>();
  readonly #listeners = new Set<(members: readonly Member[]) => void>();
  #probeOrder: string[] = [];
  #probeIndex = 0;
  #timer: TimerHandle | undefined;
  #running = false;
  /** Bumped by every start() and stop(), so a round still in flight from an old chain does not reschedule. */
  #timerChain = 0;
  #ticking = false;
  #left = false;
  #fullWarned = false;

  constructor(options: MembershipOptions) {
    assertClusterConfig(options.config);
    assert(isMemberId(options.self), "self must be host:port");
    this.#self = options.self;
    this.#config = options.config;
    this.#transport = options.transport;
    this.#clock = options.clock;
    this.#logger = options.logger;
    this.#random = options.random ?? Math.random;
    // A restarted node starts above every incarnation of its previous life, so it outranks it.
    const nowMs = Math.floor(options.clock.nowMs());
    assert(Number.isSafeInteger(nowMs));
    assert(nowMs > 0);
    this.#members.set(options.self, {
      id: options.self,
      status: "alive",
      incarnation: nowMs,
      lastSeenMs: nowMs,
      statusChangedMs: nowMs,
      statusChangedMonotonicMs: options.clock.monotonicMs(),
    });
    for (const id of options.known ?? []) {
      if (id === options.self || !isMemberId(id) || this.#members.size >= peersMax) continue;
      const changedMonotonicMs = options.clock.monotonicMs();
      this.#members.set(id, {
        id,
        status: "dead",
        incarnation: 0,
        lastSeenMs: 0,
        statusChangedMs: nowMs,
        statusChangedMonotonicMs: changedMonotonicMs,
      });
    }
    assert(this.#members.size <= peersMax);
  }

  /** This node's id. */
  get self(): string {
    return this.#self;
  }

  /**
   * Asks `seed` to admit this node and merges the member list it answers with.
   *
   * @throws {JoinRefusedError} when the seed answers 401 or 403 (another `CLUSTER_SECRET`).
   * @throws {PeerRequestError} when the seed cannot be reached or answers something else.
   * @throws {InvalidRequestError} when `seed` is this node itself.
   */
  async join(seed: string): Promise<void> {
    if (seed === this.#self) {
      throw new InvalidRequestError(`Cannot join the cluster through ${seed}: it is this node itself`);
    }
    assert(!this.#left, "a node that left cannot join again; restart it");
    let reply: unknown;
    try {
      const body = { member: this.#selfWire() };
      reply = await this.#transport.request(seed, "join", body, { timeoutMs: this.#config.requestTimeoutMs });
    } catch (error) {
      if (error instanceof PeerRequestError && error.failure === "refused") {
        throw new JoinRefusedError(seed, { cause: error });
      }
      throw error;
    }
    const parsed = parseReply({ target: seed, kind: "join", schema: JoinReplyWire, reply });
    this.#mergeList(parsed.members);
    this.#touch(seed);
    this.#logger.info(`joined the cluster through ${seed}`, { memberCount: this.#members.size });
  }

  /** Starts probe rounds every `probeIntervalMs` (one timer chain); {@linkcode stop} ends them. */
  start(): void {
    if (this.#running || this.#left) return;
    this.#running = true;
    this.#timerChain += 1;
    this.#schedule(this.#config.probeIntervalMs);
  }

  /** Stops the probe rounds; a round in flight finishes, bounded by its timeouts. */
  stop(): void {
    this.#running = false;
    this.#timerChain += 1;
    this.#clock.clearTimer(this.#timer);
    this.#timer = undefined;
  }

  /**
   * One probe round: expire old suspects, probe the next member (directly, then through helpers), and
   * with a chance of 1/3 ping one dead member. Failures of peers never reject; rounds do not overlap.
   */
  async tick(): Promise<void> {
    if (this.#left || this.#ticking) return;
    this.#ticking = true;
    try {
      this.#expireSuspects();
      const target = this.#nextProbeTarget();
      const dead = this.#random() < deadProbeChance ? this.#pickDead() : undefined;
      await Promise.all([
        target === undefined ? undefined : this.#probe(target),
        dead === undefined ? undefined : this.#ping(dead, this.#config.probeTimeoutMs),
      ]);
    } finally {
      this.#ticking = false;
    }
  }

  /**
   * Leaves gracefully: stops probing, marks this node `left` at incarnation + 1 and tells every live
   * member, each with a `requestTimeoutMs` timeout. Best effort: unreachable members learn it by gossip.
   */
  async leave(): Promise<void> {
    if (this.#left) return;
    this.stop();
    const self = this.#members.get(this.#self)!;
    self.incarnation += 1;
    assert(Number.isSafeInteger(self.incarnation));
    this.#left = true;
    this.#setStatus(self, "left");
    this.#notify();
    const targets = this.liveIds().filter((id) => id !== this.#self);
    const body = { member: this.#selfWire() };
    const results = await Promise.allSettled(
      targets.map((target) =>
        this.#transport.request(target, "leave", body, { timeoutMs: this.#config.requestTimeoutMs })
      ),
    );
    const toldCount = results.filter((result) => result.status === "fulfilled").length;
    this.#logger.info(`left the cluster; told ${toldCount} of ${targets.length} live members`);
  }

  /** Every known member, this node included, sorted by id. */
  members(): Member[] {
    const nowMs = this.#clock.nowMs();
    return [...this.#members.values()]
      .sort((left, right) => compareIds(left.id, right.id))
      .map((state) => this.#view(state, nowMs));
  }

  /** One member, or undefined when it is not known. */
  member(id: string): Member | undefined {
    const state = this.#members.get(id);
    return state === undefined ? undefined : this.#view(state, this.#clock.nowMs());
  }

  /** Ids of the alive and suspect members (this node included while it runs), sorted. */
  liveIds(): string[] {
    return this.#idsWhere((state) => isLive(state.status));
  }

  /**
   * Ids of the members in the hash ring, sorted: every member that has not left, dead ones included. A
   * key's replica set must not depend on who a node believes alive (cluster DESIGN.md, "Words"): dead
   * members keep their keys until they come back, or leave. Left members handed off their data first.
   */
  ringIds(): string[] {
    return this.#idsWhere((state) => state.status !== "left");
  }

  /** Calls `listener` after any change of a member's status or incarnation; returns the unsubscriber. */
  onChange(listener: (members: readonly Member[]) => void): () => void {
    assert(this.#listeners.size < listenersMax);
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Serves the membership kinds `join`, `ping`, `ping-req` and `leave` on `handler`. */
  registerHandlers(handler: InternalHandler): void {
    handler.register("join", (body, sender) => Promise.resolve(this.#answerJoin(body, sender)));
    handler.register("ping", (body, sender) => Promise.resolve(this.#answerPing(body, sender)));
    handler.register("ping-req", (body, sender) => this.#answerPingReq(body, sender));
    handler.register("leave", (body, sender) => Promise.resolve(this.#answerLeave(body, sender)));
  }

  #answerJoin(body: unknown, sender: string): z.output<typeof JoinReplyWire> {
    const { member } = parseWire(JoinRequestWire, body);
    if (member.id !== sender) {
      throw new InvalidRequestError(`Cannot admit ${member.id}: the join was sent by ${sender}`);
    }
    if (member.id === this.#self) throw new InvalidRequestError(`Cannot admit ${member.id}: it is this node`);
    if (member.status !== "alive") {
      throw new InvalidRequestError(
        `Cannot admit ${member.id}: a joiner must be alive, not ${member.status}`,
      );
    }
    this.#mergeList([member]);
    this.#touch(sender);
    return { members: this.#wireList() };
  }

  #answerPing(body: unknown, sender: string): z.output<typeof PingReplyWire> {
    const request = parseWire(PingRequestWire, body);
    this.#mergeList(request.members);
    this.#touch(sender);
    return { members: this.#wireList() };
  }

  async #answerPingReq(body: unknown, sender: string): Promise<z.output<typeof PingReqReplyWire>> {
    const request = parseWire(PingReqRequestWire, body);
    this.#mergeList(request.members);
    this.#touch(sender);
    // Only known members are pinged, so an authenticated peer cannot aim this node at any address.
    const known = request.target !== this.#self && this.#members.has(request.target);
    const ok = known && await this.#ping(request.target, this.#config.probeTimeoutMs);
    return { ok, members: this.#wireList() };
  }

  #answerLeave(body: unknown, sender: string): Record<string, never> {
    const { member } = parseWire(LeaveRequestWire, body);
    if (member.id !== sender || member.status !== "left") {
      throw new InvalidRequestError(
        `Cannot take a leave of ${member.id} (${member.status}) sent by ${sender}`,
      );
    }
    this.#mergeList([member]);
    this.#touch(sender);
    return {};
  }

  /** Probes `target`: direct ping, then `ping-req` through helpers; suspects it when neither answers. */
  async #probe(target: string): Promise<void> {
    const before = this.#members.get(target);
    assert(before !== undefined);
    const incarnation = before.incarnation;
    if (await this.#ping(target, this.#config.probeTimeoutMs)) return;
    const helpers = this.#pickHelpers(target);
    const answers = await Promise.all(helpers.map((helper) => this.#pingReq({ helper, target })));
    if (answers.some((ok) => ok)) {
      this.#logger.debug(`member ${target} answered only through ${helpers.length} helper(s)`);
      return;
    }
    // A refutation heard meanwhile (a higher incarnation) is newer than this failed probe.
    const state = this.#members.get(target);
    if (state === undefined || state.status !== "alive" || state.incarnation !== incarnation) return;
    this.#setStatus(state, "suspect");
    this.#notify();
  }

  /** One direct ping carrying our list; merges the answer. Returns whether `target` answered. */
  async #ping(target: string, timeoutMs: number): Promise<boolean> {
    try {
      const reply = await this.#transport.request(target, "ping", { members: this.#wireList() }, {
        timeoutMs,
      });
      const parsed = parseReply({ target, kind: "ping", schema: PingReplyWire, reply });
      this.#mergeList(parsed.members);
      this.#touch(target);
      return true;
    } catch (error) {
      this.#logPeerFailure(error);
      return false;
    }
  }

  /** Asks `helper` to ping `target`; returns whether the target answered it. */
  async #pingReq(options: { helper: string; target: string }): Promise<boolean> {
    const { helper, target } = options;
    try {
      const body = { target, members: this.#wireList() };
      // The helper's own ping may take probeTimeoutMs; the second one covers the two hops to the helper.
      const timeoutMs = 2 * this.#config.probeTimeoutMs;
      const reply = await this.#transport.request(helper, "ping-req", body, { timeoutMs });
      const parsed = parseReply({ target: helper, kind: "ping-req", schema: PingReqReplyWire, reply });
      this.#mergeList(parsed.members);
      this.#touch(helper);
      return parsed.ok;
    } catch (error) {
      this.#logPeerFailure(error);
      return false;
    }
  }

  #logPeerFailure(error: unknown): void {
    if (!(error instanceof KvError)) throw error;
    this.#logger.debug(error.message);
  }

  /** Merges a received list; notifies the listeners once when anything changed. */
  #mergeList(list: readonly MemberWire[]): void {
    assert(list.length <= peersMax);
    let changed = false;
    for (const wire of list) {
      if (this.#mergeMember(wire)) changed = true;
    }
    if (changed) this.#notify();
  }

  /** Applies the merge rule to one entry; returns whether the status or incarnation changed. */
  #mergeMember(wire: MemberWire): boolean {
    if (wire.id === this.#self) return this.#mergeSelf(wire);
    const state = this.#members.get(wire.id);
    if (state === undefined) return this.#addMember(wire);
    const newer = wire.incarnation > state.incarnation;
    const stronger = wire.incarnation === state.incarnation &&
      statusRanks[wire.status] > statusRanks[state.status];
    if (!newer && !stronger) return false;
    state.incarnation = wire.incarnation;
    // A suspicion at a higher incarnation is a new one: its timer starts now.
    if (wire.status !== state.status || wire.status === "suspect") this.#setStatus(state, wire.status);
    assert(state.status === wire.status);
    return true;
  }

  /** Refutes a report of this node as suspect, dead or left (or a higher incarnation) while it runs. */
  #mergeSelf(wire: MemberWire): boolean {
    const self = this.#members.get(this.#self)!;
    if (this.#left) return false;
    const refute = wire.incarnation > self.incarnation ||
      (wire.incarnation === self.incarnation && wire.status !== "alive");
    if (!refute) return false;
    if (wire.incarnation >= Number.MAX_SAFE_INTEGER) {
      this.#logger.warn(`ignored a report of this node at incarnation ${wire.incarnation}: too large`);
      return false;
    }
    self.incarnation = wire.incarnation + 1;
    assert(self.status === "alive");
    this.#logger.info(
      `this node was reported ${wire.status} at incarnation ${wire.incarnation}; ` +
        `refuting with incarnation ${self.incarnation}`,
    );
    return true;
  }

  /** Adds a member first heard of through a list; evicts the longest-gone member when the table is full. */
  #addMember(wire: MemberWire): boolean {
    if (this.#members.size >= peersMax && !this.#evictGone()) {
      if (!this.#fullWarned) {
        this.#logger.warn(`member table is full (${peersMax} live members); ignoring ${wire.id}`);
        this.#fullWarned = true;
      }
      return false;
    }
    this.#members.set(wire.id, {
      id: wire.id,
      status: wire.status,
      incarnation: wire.incarnation,
      lastSeenMs: 0,
      statusChangedMs: this.#clock.nowMs(),
      statusChangedMonotonicMs: this.#clock.monotonicMs(),
    });
    this.#logger.info(`member ${wire.id} is now ${wire.status}`, { incarnation: wire.incarnation });
    assert(this.#members.size <= peersMax);
    return true;
  }

  /** Forgets the member dead or left the longest; returns false when every member is live. */
  #evictGone(): boolean {
    let oldest: MemberState | undefined;
    for (const state of this.#members.values()) {
      if (isLive(state.status) || state.id === this.#self) continue;
      if (oldest === undefined || state.statusChangedMonotonicMs < oldest.statusChangedMonotonicMs) {
        oldest = state;
      }
    }
    if (oldest === undefined) return false;
    this.#members.delete(oldest.id);
    return true;
  }

  #setStatus(state: MemberState, status: MemberStatus): void {
    state.status = status;
    state.statusChangedMs = this.#clock.nowMs();
    state.statusChangedMonotonicMs = this.#clock.monotonicMs();
    const who = state.id === this.#self ? `this node (${state.id})` : `member ${state.id}`;
    this.#logger.info(`${who} is now ${status}`, { incarnation: state.incarnation });
  }

  /** Declares dead every suspect older than the suspicion timeout. */
  #expireSuspects(): void {
    const timeoutMs = suspicionTimeoutMs(this.#config, this.liveIds().length);
    const nowMonotonicMs = this.#clock.monotonicMs();
    let changed = false;
    for (const state of this.#members.values()) {
      if (state.status !== "suspect") continue;
      assert(state.id !== this.#self);
      if (nowMonotonicMs - state.statusChangedMonotonicMs < timeoutMs) continue;
      this.#setStatus(state, "dead");
      changed = true;
    }
    if (changed) this.#notify();
  }

  /**
   * The next member to probe, round-robin over a shuffled order of the other live members. Newcomers
   * are inserted at random places, so each member is probed once every (live count - 1) rounds.
   */
  #nextProbeTarget(): string | undefined {
    const live = new Set(this.liveIds().filter((id) => id !== this.#self));
    const order: string[] = [];
    this.#probeOrder.forEach((id, index) => {
      if (live.has(id)) order.push(id);
      else if (index < this.#probeIndex) this.#probeIndex -= 1;
    });
    const present = new Set(order);
    for (const id of live) {
      if (present.has(id)) continue;
      const position = Math.floor(this.#random() * (order.length + 1));
      order.splice(position, 0, id);
      if (position < this.#probeIndex) this.#probeIndex += 1;
    }
    assert(order.length === live.size);
    this.#probeOrder = order;
    if (order.length === 0) return undefined;
    const index = this.#probeIndex % order.length;
    this.#probeIndex = index + 1;
    return order[index];
  }

  /** Up to `indirectProbeCount` other live members, chosen at random, to probe `target` for us. */
  #pickHelpers(target: string): string[] {
    const candidates = this.liveIds().filter((id) => id !== this.#self && id !== target);
    for (let index = candidates.length - 1; index > 0; index -= 1) {
      const other = Math.floor(this.#random() * (index + 1));
      [candidates[index], candidates[other]] = [candidates[other]!, candidates[index]!];
    }
    return candidates.slice(0, this.#config.indirectProbeCount);
  }

  /** One dead member at random, or undefined when none is dead. */
  #pickDead(): string | undefined {
    const dead = this.#idsWhere((state) => state.status === "dead" && state.id !== this.#self);
    if (dead.length === 0) return undefined;
    return dead[Math.floor(this.#random() * dead.length)];
  }

  #touch(id: string): void {
    const state = this.#members.get(id);
    if (state !== undefined && id !== this.#self) state.lastSeenMs = this.#clock.nowMs();
  }

  #notify(): void {
    if (this.#listeners.size === 0) return;
    const members = this.members();
    for (const listener of this.#listeners) {
      try {
        listener(members);
      } catch (error) {
        if (error instanceof AssertionError) throw error;
        this.#logger.warn("a membership listener failed", { error: String(error) });
      }
    }
  }

  #schedule(delayMs: number): void {
    const chain = this.#timerChain;
    this.#timer = this.#clock.setTimer(delayMs, () => void this.#runScheduledTick(chain));
  }

  /** Runs one round from the timer and schedules the next; a programmer error escapes and crashes. */
  async #runScheduledTick(chain: number): Promise<void> {
    this.#timer = undefined;
    const startedMs = this.#clock.monotonicMs();
    try {
      await this.tick();
    } catch (error) {
      if (error instanceof AssertionError) throw error;
      this.#logger.warn("a membership probe round failed", { error: String(error) });
    }
    if (!this.#running || chain !== this.#timerChain) return;
    const elapsedMs = this.#clock.monotonicMs() - startedMs;
    this.#schedule(Math.max(0, this.#config.probeIntervalMs - elapsedMs));
  }

  #selfWire(): MemberWire {
    const self = this.#members.get(this.#self)!;
    return { id: self.id, status: self.status, incarnation: self.incarnation };
  }

  #wireList(): MemberWire[] {
    const list = [...this.#members.values()].map(({ id, status, incarnation }) => ({
      id,
      status,
      incarnation,
    }));
    assert(list.length <= peersMax);
    return list;
  }

  #idsWhere(predicate: (state: MemberState) => boolean): string[] {
    return [...this.#members.values()].filter(predicate).map((state) => state.id).sort(compareIds);
  }

  #view(state: MemberState, nowMs: number): Member {
    return Object.freeze({
      id: state.id,
      status: state.status,
      incarnation: state.incarnation,
      lastSeenMs: state.id === this.#self ? nowMs : state.lastSeenMs,
      statusChangedMs: state.statusChangedMs,
    });
  }
}

/** Code-unit order of ids, the same on every node (no locale). */
function compareIds(left: string, right: string): number {
  return left < right ? -1 : left > right ? 1 : 0;
}

/**
 * Validates a peer's reply.
 *
 * @throws {PeerRequestError} with failure "invalid_reply" when it does not match `schema`.
 */
function parseReply<T>(options: { target: string; kind: string; schema: z.ZodType<T>; reply: unknown }): T {
  try {
    return parseWire(options.schema, options.reply);
  } catch (error) {
    if (!(error instanceof InvalidRequestError)) throw error;
    throw new PeerRequestError({
      target: options.target,
      kind: options.kind,
      failure: "invalid_reply",
      detail: error.message,
      cause: error,
    });
  }
}
