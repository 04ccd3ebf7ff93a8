import { assert, AssertionError } from "../util/assert.ts";
import {
  type Ballot,
  compareBallots,
  maxBallot,
  sameBallot,
  successorOf,
  zeroBallot,
} from "../util/ballot.ts";
import type { Clock } from "../util/clock.ts";
import { Deadlines } from "../util/deadlines.ts";
import { KvError, UnavailableError } from "../util/errors.ts";
import type { Acceptor } from "./acceptor.ts";
import { replicaEntryOfWire } from "./acceptor.ts";
import type { LocalStore, ReplicaEntry, StateHead } from "./local_store.ts";
import type { PaxosItem, PaxosResult } from "./paxos_wire.ts";
import { keyIdOf, sameList } from "./placement.ts";
import type { AnswerSink } from "./pipeline.ts";
import { quorumOf, type ReplicaSets, Round, type RoundOutcome } from "./round.ts";

export { quorumOf, type ReplicaSets };

/** Keys whose last committed ballot a proposer remembers for the one-round-trip path. */
export const committedKeysMax = 100_000;

/** Options of {@linkcode Proposer}. */
export interface ProposerOptions {
  self: string;
  store: LocalStore;
  acceptor: Acceptor;
  clock: Clock;
  /**
   * Queues `item` in the peer's ordered `paxos` pipeline, its answer for `sink` with `tag`; false (and
   * `sink` is never called) when it could not be queued.
   */
  send: (peer: string, item: PaxosItem, sink: AnswerSink<PaxosResult>, tag: number) => boolean;
  /** Whether a member answers now in this node's view: only whom to ask, never how many must answer. */
  isLive: (id: string) => boolean;
  /** A proposal's whole budget, all rounds and retries included. */
  deadlineMs: number;
  /** Two-round attempts before giving up when refusals keep coming. */
  attemptsMax: number;
  /** Called with every state this proposer got chosen (a write, or a read's or settle's identity round). */
  onChosen?: (table: string, key: string, committed: Committed) => void;
}

/**
 * A write that another proposer took the key from before any of its states went out: its prepare was refused
 * for that proposer's ballot, so nothing of it was accepted anywhere, and the write may go to that proposer
 * instead of competing with it (DESIGN.md, "Who proposes"). Thrown only by writes that allow it.
 */
export class Preempted extends Error {
  readonly proposer: string;

  constructor(proposer: string) {
    super(`the key is being written by ${proposer}`);
    this.proposer = proposer;
  }
}

/** What a round sends. */
type Message =
  | { op: "peek"; ballot: Ballot }
  | { op: "prepare"; ballot: Ballot }
  /** `mayWait`: this node's own accept may be written lazily (the one-round path; see `#othersSuffice`). */
  | { op: "accept"; ballot: Ballot; next: ReplicaEntry; mayWait?: boolean };

/** A change function: the next state from the newest accepted one, or a thrown `KvError`. */
export type Change = (current: ReplicaEntry | undefined) => ReplicaEntry;

/** A committed write: the state chosen, its ballot, and the replicas known to hold it. */
export interface Committed {
  entry: ReplicaEntry;
  ballot: Ballot;
  acceptedBy: string[];
  /** Chosen by a joint round (a quorum of each of several replica sets): the key's change is settled. */
  joint: boolean;
  /** Replicas whose accept failed (a hint keeps the key for them). */
  failedBy: string[];
}

/** The first round's state: the chosen-or-newest state and the ballot of the round. */
interface Prepared {
  ballot: Ballot;
  current: ReplicaEntry | undefined;
  /** Every answer reported `current` at one ballot, a quorum of them: chosen already, at `chosenAt`. */
  chosen: boolean;
  chosenAt: Ballot;
}

/**
 * The proposer of per-key Paxos (DESIGN.md, "Proposer"): runs a change of one key as a prepare round and
 * an accept round over the key's whole replica set, or as one accept round when it committed the key's
 * previous state itself. Proposals of one key are serialized here, so this proposer never sends two states
 * at one ballot.
 */
export class Proposer {
  readonly #options: ProposerOptions;
  /** Per key, the ballot this proposer last committed, oldest first (bounded). */
  readonly #committed = new Map<string, Ballot>();
  /** Per key, the tail of the proposals queued here. */
  readonly #queues = new Map<string, Promise<unknown>>();
  /** The deadlines of the rounds waiting for answers: one timer for all of them. */
  readonly #deadlines = new Deadlines();
  readonly stats = { fastPath: 0, twoRound: 0, refusals: 0, retries: 0 };

  constructor(options: ProposerOptions) {
    assert(options.attemptsMax >= 1);
    assert(options.deadlineMs > 0);
    this.#options = options;
  }

  /**
   * Commits `change` of the key on a quorum of each of `sets`: the key's replica set in this node's view
   * first, then the sets of earlier views whose change is not settled for the key (joint quorums, DESIGN.md
   * "Membership changes"). Messages name the first set.
   *
   * @throws the change's `KvError` (judged against the chosen state), or UnavailableError (indeterminate:
   * the write may still take effect) when no quorum answered in time, or (with `mayYield`) {@linkcode
   * Preempted} when another proposer refused its prepare before any state of it went out.
   */
  write(
    table: string,
    key: string,
    sets: ReplicaSets,
    change: Change,
    options: { mayYield?: boolean; readsValue?: boolean } = {},
  ): Promise<Committed> {
    checkSets(sets);
    const mayYield = options.mayYield === true;
    const readsValue = options.readsValue !== false;
    return this.#serialized(
      keyIdOf(table, key),
      () => this.#write({ table, key, sets, change, mayYield, readsValue }),
    );
  }

  /**
   * The key's latest chosen state (a linearizable read), completing an unfinished write first, on a quorum
   * of each of `sets` (which also settles a membership change for the key: the rebalancer's identity round).
   * With `spread`, the state found is accepted again at a new ballot even when a quorum already agreed on
   * it, so that every member of every set is sent it: a new replica that answered after the quorum did
   * (a peek or a prepare ends at a quorum) would otherwise not get it until anti-entropy.
   */
  read(
    table: string,
    key: string,
    sets: ReplicaSets,
    options: { spread?: boolean } = {},
  ): Promise<ReplicaEntry | undefined> {
    checkSets(sets);
    const spread = options.spread === true;
    return this.#serialized(keyIdOf(table, key), async () => {
      // Never from this proposer's memory: another proposer may have written the key since, on a quorum
      // this node's acceptor was not part of. A quorum that agrees on one ballot shows it; else a round.
      const deadline = this.#options.clock.monotonicMs() + this.#options.deadlineMs;
      const peeked = spread ? undefined : await this.#peek({ table, key, sets, deadline });
      if (peeked !== undefined) return peeked.entry;
      const committed = await this.#twoRounds({
        table,
        key,
        sets,
        deadline,
        change: (current) => current,
        spread,
      });
      return committed?.entry;
    });
  }

  async #serialized<T>(id: string, run: () => Promise<T>): Promise<T> {
    const previous = this.#queues.get(id) ?? Promise.resolve();
    const mine = previous.catch(() => {}).then(run);
    this.#queues.set(id, mine);
    try {
      return await mine;
    } finally {
      if (this.#queues.get(id) === mine) this.#queues.delete(id);
    }
  }

  async #write(
    options: {
      table: string;
      key: string;
      sets: ReplicaSets;
      change: Change;
      mayYield: boolean;
      readsValue: boolean;
    },
  ): Promise<Committed> {
    const { table, key, change, mayYield } = options;
    let { sets } = options;
    const deadline = this.#options.clock.monotonicMs() + this.#options.deadlineMs;
    const sent: ReplicaEntry[] = [];
    const fast = this.#fastBallot(table, key);
    if (fast !== undefined) {
      // The state this proposer committed last; without its value when the change does not read it (the
      // value would be decoded from the key's record on every write only to be dropped).
      const current = options.readsValue
        ? this.#options.store.acceptorOf(table, key).entry
        : headState(this.#options.store.headOf(table, key));
      const next = change(current); // a refusal is judged against a chosen state: no round needed
      checkNext(current, next);
      const ballot = successorOf(fast);
      const message = { op: "accept", ballot, next, mayWait: true } as const;
      const outcome = await this.#round({ table, key, sets, deadline }, message);
      if (outcome.quorum) {
        this.stats.fastPath += 1;
        return this.#commit({ table, key, ballot, entry: next, outcome, joint: sets.length > 1 });
      }
      this.#forget(table, key);
      sent.push(next);
      sets = withSets(sets, outcome.needs);
    }
    const committed = await this.#twoRounds({ table, key, sets, deadline, change, sent, mayYield });
    assert(committed !== undefined, "a write's change returns a state");
    return committed;
  }

  /** Prepare, change, accept; retried with a higher ballot after refusals, within the deadline. */
  async #twoRounds(target: {
    table: string;
    key: string;
    sets: ReplicaSets;
    deadline: number;
    change: (current: ReplicaEntry | undefined) => ReplicaEntry | undefined;
    /** States this operation already sent in accepts that reached too few (its one-round try). */
    sent?: ReplicaEntry[];
    /** A refused prepare throws `Preempted` while nothing of this write went out (see `write`). */
    mayYield?: boolean;
    /** Accept the state found even when it is chosen already (see `read`). */
    spread?: boolean;
  }): Promise<Committed | undefined> {
    const { table, key } = target;
    const sent = target.sent ?? [];
    let refused = zeroBallot;
    let backoff = false;
    for (let attempt = 0; attempt < this.#options.attemptsMax; attempt += 1) {
      if (backoff) await this.#backoff(attempt, target.deadline);
      backoff = true;
      const prepared = await this.#prepare(target, refused);
      if ("needs" in prepared) {
        // Acceptors still holding a membership change: count their earlier sets too, at once (no contention).
        target = { ...target, sets: withSets(target.sets, prepared.needs) };
        backoff = false;
        continue;
      }
      if ("refusedBy" in prepared) {
        if (target.mayYield === true && sent.length === 0) this.#yieldTo(prepared.refusedBy);
        refused = maxBallot(refused, prepared.refusedBy);
        continue;
      }
      const { ballot, current } = prepared;
      // The newest state is this operation's own, from an earlier round that reached too few (perhaps
      // accepted again since by another proposer's round): completing it is this write, not a conflict.
      const own = current !== undefined && sent.some((earlier) => sameState(earlier, current));
      const changed = own ? { next: current, refusal: undefined } : tryChange(target.change, current);
      const { next } = changed;
      // A refusal after this operation's state went out may be about a state built on it (another write
      // that read it): whether this write took effect is unknown, so the answer is indeterminate. Unless the
      // newest state is another of no higher version: then none of this write's states was ever chosen
      // (`supersedes`), and once `current` is chosen below (or already is) none ever can be.
      const refusal = changed.refusal !== undefined && sent.length > 0 && !supersedes(current, sent)
        ? unavailable(key, "an earlier attempt of this write may have taken effect")
        : changed.refusal;
      // Nothing to choose: a read of a chosen state, or a refusal about a chosen (or empty) state.
      const nothingToChoose = next === current && prepared.chosen && target.spread !== true;
      if (next === undefined || nothingToChoose) {
        if (refusal !== undefined) throw refusal;
        if (next === undefined) return undefined;
        return { entry: next, ballot: prepared.chosenAt, acceptedBy: [], joint: false, failedBy: [] };
      }
      // A refusal or a read is a statement about `current`: it is chosen first (DESIGN.md, step 4).
      if (next !== current) {
        checkNext(current, next);
        sent.push(next);
      }
      const outcome = await this.#round(target, { op: "accept", ballot, next });
      if (outcome.quorum) {
        const joint = target.sets.length > 1;
        const committed = this.#commit({ table, key, ballot, entry: next, outcome, joint });
        if (refusal !== undefined) throw refusal;
        return committed;
      }
      refused = maxBallot(refused, outcome.refusedBy);
      if (outcome.needs.length > 0) target = { ...target, sets: withSets(target.sets, outcome.needs) };
      else if (compareBallots(outcome.refusedBy, zeroBallot) === 0) break; // failures, not refusals
    }
    throw unavailable(key, "a majority of its replicas did not accept in time");
  }

  /**
   * A prepare refused for another proposer's ballot before any state of this write went out: nothing of it
   * was accepted anywhere, so it may go to that proposer instead of duelling with it (`Preempted`).
   */
  #yieldTo(refusedBy: Ballot): void {
    assert(compareBallots(refusedBy, zeroBallot) > 0, "a refusal names a promise");
    assert(refusedBy.node !== "", "a promise above zero names its proposer");
    if (refusedBy.node !== this.#options.self) throw new Preempted(refusedBy.node);
  }

  /** One prepare round at a ballot above everything seen; the newest accepted state of a quorum. */
  async #prepare(
    target: { table: string; key: string; sets: ReplicaSets; deadline: number },
    refused: Ballot,
  ): Promise<Prepared | { refusedBy: Ballot } | { needs: string[][] }> {
    const ballot = this.#nextBallot(target.table, target.key, refused);
    this.stats.twoRound += 1;
    const outcome = await this.#round(target, { op: "prepare", ballot });
    if (!outcome.quorum && outcome.needs.length > 0) return { needs: outcome.needs };
    if (!outcome.quorum) {
      if (compareBallots(outcome.refusedBy, zeroBallot) > 0) return { refusedBy: outcome.refusedBy };
      throw unavailable(target.key, "a majority of its replicas did not answer in time");
    }
    let newest: { ballot: Ballot; entry: ReplicaEntry | undefined } = {
      ballot: zeroBallot,
      entry: undefined,
    };
    let holding = 0;
    for (const { result } of outcome.granted) {
      assert(result.result === "promised");
      const entry = result.entry === null ? undefined : replicaEntryOfWire(result.entry);
      const order = compareBallots(result.accepted, newest.ballot);
      if (order > 0 || (order === 0 && newerLegacy(entry, newest.entry))) {
        newest = { ballot: result.accepted, entry };
      }
    }
    for (const { result } of outcome.granted) {
      if (result.result === "promised" && sameBallot(result.accepted, newest.ballot)) holding += 1;
    }
    // Chosen, and held by every acceptor that answered: nothing to complete or repair. Otherwise a read or a
    // refusal first accepts it again at this ballot, which also brings the answering laggards (this node's
    // own acceptor holding a lost branch, say) onto it.
    const chosen = holding === outcome.granted.length && compareBallots(newest.ballot, zeroBallot) > 0;
    return { ballot, current: newest.entry, chosen, chosenAt: newest.ballot };
  }

  /**
   * A consistent read without writing: when a quorum of each set reports one ballot as the newest, its
   * state is chosen, and it is the latest acknowledged one (a write acknowledged before this read began was
   * accepted by a quorum, which meets this one in an acceptor that reports its higher ballot). Undefined
   * when the answers disagree or are too few: then a round decides.
   */
  async #peek(
    target: { table: string; key: string; sets: ReplicaSets; deadline: number },
  ): Promise<{ entry: ReplicaEntry | undefined } | undefined> {
    const ballot = { counter: 1, node: this.#options.self }; // acceptors ignore it; it names the asker
    const outcome = await this.#round(target, { op: "peek", ballot });
    if (!outcome.quorum) return undefined;
    const first = outcome.granted[0]!.result;
    assert(first.result === "promised");
    for (const { result } of outcome.granted) {
      if (result.result !== "promised" || !sameBallot(result.accepted, first.accepted)) return undefined;
      // Legacy states all sit at the zero ballot, which does not name one state: they must match.
      if (result.entry?.version !== first.entry?.version) return undefined;
    }
    assert(outcome.granted.length >= 1);
    return { entry: first.entry === null ? undefined : replicaEntryOfWire(first.entry) };
  }

  /** A ballot of this proposer above its acceptor's promise and ballot and above `refused`. */
  #nextBallot(table: string, key: string, refused: Ballot): Ballot {
    const local = this.#options.store.ballotsOf(table, key);
    // Above the local effective promise whatever the node ids: accepting (n, p) promised (n + 1, p).
    const seen = Math.max(local.promised.counter, local.accepted.counter + 1, refused.counter);
    const ballot = { counter: seen + 1, node: this.#options.self };
    assert(compareBallots(ballot, refused) > 0 && compareBallots(ballot, local.promised) > 0);
    return ballot;
  }

  /**
   * Sends one item to every member of the sets and counts grants per set ({@linkcode Round}): resolves once
   * every set has a quorum of grants, or once one set cannot have it any more, or at the deadline. This
   * node's acceptor is asked first, directly.
   */
  #round(
    target: { table: string; key: string; sets: ReplicaSets; deadline: number },
    message: Message,
  ): Promise<RoundOutcome> {
    assert(message.ballot.node === this.#options.self, "a proposer uses its own ballots");
    const delayMs = Math.max(0, target.deadline - this.#options.clock.monotonicMs());
    const round = new Round({
      sets: target.sets,
      self: this.#options.self,
      deadlines: this.#deadlines,
      delayMs,
    });
    assert(round.members.length >= target.sets[0]!.length, "every replica of the set is asked");
    // One item for every peer: built once per round, not per member.
    const item = itemOf(target, message);
    // Every member is asked before any answer is judged (answers that come at once are only recorded).
    for (let tag = 0; tag < round.members.length; tag += 1) this.#ask(round, tag, target, message, item);
    round.check();
    return round.outcome;
  }

  /**
   * Asks member `tag` of `round` (`item`, as peers get it); its answer goes to the round, a failure (not
   * asked, no answer, an unusable one) as none.
   */
  #ask(
    round: Round,
    tag: number,
    target: { table: string; key: string; sets: ReplicaSets },
    message: Message,
    item: PaxosItem,
  ): void {
    const { table, key } = target;
    const replicas = target.sets[0]!;
    const replica = round.members[tag]!;
    const { acceptor, send, isLive, self } = this.#options;
    assert(item.op === message.op && item.key === key, "the item carries the message");
    assert(!round.ended, "a round asks its members before it can end");
    if (replica === self) {
      // The local store refusing (a state too large for it, a failed disk, closed) is one failed acceptor.
      try {
        if (message.op === "peek") return round.record(tag, acceptor.peek(table, key));
        const answer = message.op === "prepare"
          ? acceptor.prepare(table, key, message.ballot, replicas)
          : acceptor.accept(table, key, message.ballot, {
            entry: message.next,
            replicas,
            lazy: message.mayWait === true && this.#othersSuffice(target.sets),
          });
        answer.then((result) => round.answered(tag, result), (error) => round.failed(tag, error));
      } catch (error) {
        if (error instanceof AssertionError) throw error;
        round.record(tag, undefined);
      }
      return;
    }
    if (!isLive(replica) || !send(replica, item, round, tag)) round.record(tag, undefined);
  }

  #commit(options: {
    table: string;
    key: string;
    ballot: Ballot;
    entry: ReplicaEntry;
    outcome: RoundOutcome;
    joint: boolean;
  }): Committed {
    const { table, key, ballot, entry, outcome, joint } = options;
    assert(outcome.quorum, "a write commits on a quorum of its replica set");
    assert(outcome.granted.every(({ result }) => result.result === "accepted"));
    const acceptedBy = outcome.granted.map(({ replica }) => replica);
    const id = keyIdOf(table, key);
    this.#committed.delete(id);
    // This node's acceptor holds the chosen state when it accepted it, or when its accept of it is queued
    // still (a lazy one the quorum did not wait for): the next write of the key may take one round.
    const heldHere = acceptedBy.includes(this.#options.self) ||
      sameBallot(this.#options.store.ballotsOf(table, key).accepted, ballot);
    if (heldHere) {
      this.#committed.set(id, ballot);
      if (this.#committed.size > committedKeysMax) {
        this.#committed.delete(this.#committed.keys().next().value!);
      }
    }
    const committed = { entry, ballot, acceptedBy, joint, failedBy: outcome.failed };
    this.#options.onChosen?.(table, key, committed);
    return committed;
  }

  /**
   * Whether the members of `sets` other than this node, those believed alive, can make every set's quorum
   * without it: then this node's own accept is written lazily (with the store's next batch or within a few
   * ms), not in an fsync of its own (DESIGN.md, "Proposer"). Only the cost moves: the round still counts
   * this node once its accept is durable, and a set that needs it waits for it.
   */
  #othersSuffice(sets: ReplicaSets): boolean {
    const { self, isLive } = this.#options;
    assert(sets.length >= 1, "a round has a replica set");
    for (const set of sets) {
      let others = 0;
      for (const id of set) if (id !== self && isLive(id)) others += 1;
      if (others < quorumOf(set.length)) return false;
    }
    return true;
  }

  /** The ballot to follow with one accept round, when this proposer committed the key's current state. */
  #fastBallot(table: string, key: string): Ballot | undefined {
    const committed = this.#committed.get(keyIdOf(table, key));
    if (committed === undefined) return undefined;
    const local = this.#options.store.ballotsOf(table, key);
    if (!sameBallot(local.accepted, committed)) return this.#forget(table, key);
    if (compareBallots(local.promised, successorOf(committed)) > 0) return this.#forget(table, key);
    return committed;
  }

  #forget(table: string, key: string): undefined {
    this.#committed.delete(keyIdOf(table, key));
    return undefined;
  }

  /**
   * The pause before retry `attempt` (1, 2, ...): random, one to three times 10 ms · 2^(attempt - 1), so
   * that of two proposers refusing each other one finishes its accept round before the other's next prepare
   * preempts it (a busy core stretches a round to tens of ms); within the deadline.
   */
  #backoff(attempt: number, deadline: number): Promise<void> {
    assert(attempt >= 1, "the first attempt does not wait");
    this.stats.retries += 1;
    const left = deadline - this.#options.clock.monotonicMs();
    const base = 10 * 2 ** (attempt - 1);
    const ms = Math.min(Math.max(0, left), Math.floor(base * (1 + 2 * Math.random())));
    assert(ms >= 0);
    return new Promise((resolve) => setTimeout(resolve, ms));
  }
}

/** No member twice in `set` (a few members: compared pairwise, without a Set per write). */
function namesEachOnce(set: readonly string[]): boolean {
  for (let index = 1; index < set.length; index += 1) {
    if (set.lastIndexOf(set[index]!, index - 1) !== -1) return false;
  }
  return true;
}

function checkSets(sets: ReplicaSets): void {
  assert(sets.length >= 1 && sets.every((set) => set.length >= 1), "a round has a replica set");
  assert(sets.every(namesEachOnce), "a replica set names each member once");
}

/**
 * `sets` with the earlier replica sets acceptors asked for added (each once): the operation's later rounds
 * count a quorum of each (DESIGN.md, "Membership changes").
 */
function withSets(sets: ReplicaSets, needs: ReadonlyArray<readonly string[]>): ReplicaSets {
  const merged = [...sets];
  for (const set of needs) {
    if (!merged.some((other) => sameList(other, set))) merged.push(set);
  }
  assert(merged.length >= sets.length && sameList(merged[0]!, sets[0]!), "the view's own set stays first");
  return merged;
}

/** Among states at one ballot (only the zero ballot of legacy states), the higher version wins. */
function newerLegacy(entry: ReplicaEntry | undefined, than: ReplicaEntry | undefined): boolean {
  if (entry === undefined) return false;
  if (than === undefined) return true;
  return entry.version > than.version || (entry.version === than.version && entry.timestamp > than.timestamp);
}

/** Runs a change; a `KvError` it throws is the write's refusal, and the state stays as it was. */
function tryChange(
  change: (current: ReplicaEntry | undefined) => ReplicaEntry | undefined,
  current: ReplicaEntry | undefined,
): { next: ReplicaEntry | undefined; refusal: KvError | undefined } {
  try {
    return { next: change(current), refusal: undefined };
  } catch (error) {
    if (!(error instanceof KvError)) throw error;
    return { next: current, refusal: error };
  }
}

/**
 * Whether `current`, the newest state a prepare quorum reported, proves that no state in `sent` was ever
 * chosen: it is none of them and its version is no higher than any. A chosen state is in every later chain:
 * a quorum's newest state is then that state or one built on it (a higher version), never another state of
 * the same or a lower version (DESIGN.md, "Failures").
 */
function supersedes(current: ReplicaEntry | undefined, sent: readonly ReplicaEntry[]): boolean {
  assert(sent.length > 0, "only a write whose states went out asks");
  if (current === undefined) return true; // a chosen state would have been reported
  assert(sent.every((state) => state.version >= 1));
  return sent.every((state) => !sameState(state, current) && current.version <= state.version);
}

/**
 * The same state: a state carries the time its write was applied and its whole value, so two different
 * writes are told apart (two writes of one value by one owner in one millisecond are one write).
 */
function sameState(a: ReplicaEntry, b: ReplicaEntry): boolean {
  return a.version === b.version && a.timestamp === b.timestamp && a.owner === b.owner &&
    a.deleted === b.deleted && a.valueJson === b.valueJson && a.expiresAt === b.expiresAt;
}

/**
 * A key's state as a change that does not read the value sees it: version, timestamp, owner, kind and
 * lifetime (a live state's `valueJson` left out). Only a `Change` that promised not to read the value is
 * given it.
 */
function headState(head: StateHead | undefined): ReplicaEntry | undefined {
  if (head === undefined) return undefined;
  assert(Number.isSafeInteger(head.version) && head.version >= 1, "a state has a version");
  assert(Number.isSafeInteger(head.timestamp) && head.timestamp >= 0, "a state has a timestamp");
  const state: ReplicaEntry = {
    version: head.version,
    timestamp: head.timestamp,
    owner: head.owner,
    deleted: head.deleted,
  };
  if (head.expiresAt !== 0) state.expiresAt = head.expiresAt;
  return state;
}

function checkNext(current: ReplicaEntry | undefined, next: ReplicaEntry): void {
  assert(next.version === (current?.version ?? 0) + 1, "a change moves the version by one");
  assert(next.deleted === (next.valueJson === undefined), "a value iff not deleted");
}

function unavailable(key: string, why: string): KvError {
  return new UnavailableError(`Cannot write key "${key}": ${why}; retry later`, {});
}

/** The paxos item of `message` for the key of `target`, as every peer of a round gets it. */
function itemOf(target: { table: string; key: string; sets: ReplicaSets }, message: Message): PaxosItem {
  const { table, key } = target;
  const replicas = [...target.sets[0]!];
  const joint = target.sets.slice(1).map((set) => [...set]);
  assert(replicas.length >= 1, "a round names its replica set");
  return message.op === "accept"
    ? { op: "accept", table, key, ballot: message.ballot, replicas, joint, entry: message.next }
    : { op: message.op, table, key, ballot: message.ballot, replicas, joint };
}
