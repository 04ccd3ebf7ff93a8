import { assert } from "../util/assert.ts";
import { type Ballot, compareBallots, effectivePromise, zeroBallot } from "../util/ballot.ts";
import type { LocalStore, ReplicaEntry } from "./local_store.ts";
import type { PaxosResult, ProposalItem } from "./paxos_wire.ts";
import { sameList } from "./placement.ts";

/**
 * The acceptor of every key this node replicates (DESIGN.md, "Messages and rules"). Each rule is checked
 * and its state change queued in one synchronous step, so the next message of the key is judged against
 * it; the answer is given once the store made the change durable (the promise, or the state with its
 * ballot). The store holds the state; this class holds none.
 */
export class Acceptor {
  readonly #self: string;
  readonly #store: LocalStore;
  readonly #replicasOf: (table: string, key: string) => readonly string[];
  readonly #earlierSetsOf: (table: string, key: string) => ReadonlyArray<readonly string[]>;

  /**
   * `replicasOf`: the key's replica set in this node's current view; `earlierSetsOf`: the key's replica sets
   * in earlier views whose change this node has not seen settled for the key (DESIGN.md, "Membership
   * changes").
   */
  constructor(options: {
    self: string;
    store: LocalStore;
    replicasOf: (table: string, key: string) => readonly string[];
    earlierSetsOf: (table: string, key: string) => ReadonlyArray<readonly string[]>;
  }) {
    this.#self = options.self;
    this.#store = options.store;
    this.#replicasOf = options.replicasOf;
    this.#earlierSetsOf = options.earlierSetsOf;
  }

  /**
   * The earlier replica sets of the key a round must also reach a quorum of, that the proposer's message
   * does not count: an acceptor whose view changed makes every proposer honour the change, including one
   * that never saw it (a node restarted after leaving, say).
   */
  missingSets(
    table: string,
    key: string,
    counted: ReadonlyArray<readonly string[]>,
  ): Array<readonly string[]> {
    const earlier = this.#earlierSetsOf(table, key);
    if (earlier.length === 0) return [];
    return earlier.filter((set) => !counted.some((other) => sameList(other, set)));
  }

  /** Whether the proposer's replica set for the key is this node's: else its message is `misplaced`. */
  placed(table: string, key: string, replicas: readonly string[]): boolean {
    const own = this.#replicasOf(table, key);
    return own.length === replicas.length && own.every((id, index) => replicas[index] === id);
  }

  /**
   * Phase 1: promises `ballot` when it is above the key's effective promise, and answers with the state
   * accepted so far; else refuses with the promise that stands.
   */
  prepare(table: string, key: string, ballot: Ballot, replicas: readonly string[]): Promise<PaxosResult> {
    assert(ballot.counter >= 1 && ballot.node !== "", "a proposer's ballot names it");
    const state = this.#store.acceptorOf(table, key);
    if (!replicas.includes(this.#self)) return Promise.resolve(witnessed(state));
    const promise = effectivePromise(state);
    if (compareBallots(ballot, promise) <= 0) {
      return Promise.resolve({ result: "refused", promised: promise });
    }
    const entry = state.entry === undefined ? null : withBallot(state.entry, state.accepted);
    const durable = this.#store.promise(table, key, ballot);
    assert(compareBallots(effectivePromise(this.#store.ballotsOf(table, key)), ballot) >= 0);
    return durable.then(() => ({ result: "promised", accepted: state.accepted, entry }));
  }

  /**
   * Phase 2: accepts `entry` at `ballot` when the ballot is at least the key's effective promise (which
   * makes it above the accepted ballot too); else refuses with the promise that stands. `lazy`: the state
   * is written with the store's next batch or within a few ms (this node's proposer, when the other
   * replicas can make its quorum); the answer still comes only once it is durable.
   */
  accept(
    table: string,
    key: string,
    ballot: Ballot,
    accepted: { entry: ReplicaEntry; replicas: readonly string[]; lazy?: boolean },
  ): Promise<PaxosResult> {
    assert(ballot.counter >= 1 && ballot.node !== "", "a proposer's ballot names it");
    const { entry, replicas } = accepted;
    if (!replicas.includes(this.#self)) return Promise.resolve({ result: "accepted" }); // a witness
    const state = this.#store.ballotsOf(table, key);
    const promise = effectivePromise(state);
    if (compareBallots(ballot, promise) < 0) return Promise.resolve({ result: "refused", promised: promise });
    assert(compareBallots(ballot, state.accepted) > 0, "an accept at or above the promise is a new ballot");
    const options = accepted.lazy === true ? lazyAccept : undefined;
    const durable = this.#store.accept(table, key, ballot, withBallot(entry, ballot), options);
    assert(compareBallots(this.#store.ballotsOf(table, key).accepted, ballot) === 0);
    return durable.then(() => ({ result: "accepted" }));
  }

  /** A consistent read's first try: the key's state and ballot as a prepare reports them; records nothing. */
  peek(table: string, key: string): PaxosResult {
    return witnessed(this.#store.acceptorOf(table, key));
  }

  /**
   * A peer's item, decided in this turn (so the items of a batch, answered in order, are decided in order);
   * resolves when the answer is durable.
   */
  answer(item: ProposalItem): Promise<PaxosResult> {
    assert(item.replicas.length > 0, "a proposal names its replica set");
    assert(
      item.ballot.counter >= 1,
      "a proposal names its proposer's ballot (the wire refuses the zero one)",
    );
    if (!this.placed(item.table, item.key, item.replicas)) return Promise.resolve({ result: "misplaced" });
    const missing = this.missingSets(item.table, item.key, [item.replicas, ...item.joint ?? []]);
    if (missing.length > 0) {
      return Promise.resolve({ result: "joint", sets: missing.map((set) => [...set]) });
    }
    if (item.op === "peek") return Promise.resolve(this.peek(item.table, item.key));
    return item.op === "prepare"
      ? this.prepare(item.table, item.key, item.ballot, item.replicas)
      : this.accept(item.table, item.key, item.ballot, {
        entry: replicaEntryOfWire(item.entry),
        replicas: item.replicas,
      });
  }
}

/** The store option of a lazy accept (one object for all of them: accepts are the write path). */
const lazyAccept = { lazy: true } as const;

/**
 * A witness's answer to a prepare: this node is an old replica of the key, asked in a joint round of a
 * membership change, and its own view already places the key elsewhere (the message named that view's
 * set). It reports what it accepted before (writes of the old view) and records nothing: proposers of the
 * old view are refused here as `misplaced`, and proposers of the new view are kept apart by the new
 * replica set's quorums, so its grant only proves that it left the old view. It never takes a key back.
 */
function witnessed(state: { accepted: Ballot; entry: ReplicaEntry | undefined }): PaxosResult {
  const entry = state.entry === undefined ? null : withBallot(state.entry, state.accepted);
  return { result: "promised", accepted: state.accepted, entry };
}

/** `entry` as accepted at `ballot` (the zero ballot is left out, as the store leaves it out). */
export function withBallot(entry: ReplicaEntry, ballot: Ballot): ReplicaEntry {
  const { ballot: _ignored, ...rest } = entry;
  return compareBallots(ballot, zeroBallot) === 0 ? rest : { ...rest, ballot };
}

/** A wire entry as the store takes it (absent optional fields are left out, not undefined). */
export function replicaEntryOfWire(
  wire: {
    version: number;
    timestamp: number;
    owner: string;
    deleted: boolean;
    valueJson?: string | undefined;
    ballot?: Ballot | undefined;
    expiresAt?: number | undefined;
  },
): ReplicaEntry {
  const { valueJson, ballot, expiresAt, ...rest } = wire;
  const entry: ReplicaEntry = valueJson === undefined ? rest : { ...rest, valueJson };
  if (expiresAt !== undefined) entry.expiresAt = expiresAt;
  return ballot === undefined ? entry : withBallot(entry, ballot);
}
