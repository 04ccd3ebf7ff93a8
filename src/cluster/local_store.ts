/**
 * What the cluster needs of this node's store, declared here so the cluster never imports the store
 * (STYLE B2); `main.ts` passes the store itself, which has this shape.
 */

import type { Ballot } from "../util/ballot.ts";

import type { ReplicaEntry } from "../util/replica_entry.ts";
export type { ReplicaEntry };

/** The ballots of a key's Paxos acceptor state on this node, pending (not yet durable) writes included. */
export interface AcceptorBallots {
  /** The explicit promise; the zero ballot when none is outstanding. */
  promised: Ballot;
  /** The ballot of the accepted state; the zero ballot when there is none. */
  accepted: Ballot;
}

/** A key's Paxos acceptor state on this node: its ballots and its state. */
export interface AcceptorState extends AcceptorBallots {
  entry: ReplicaEntry | undefined;
}

/**
 * A key's current state as a reader gets it: what the store's `getEntry` returns, what the cluster's
 * reads and writes answer, and what the HTTP layer serves (`http/deps.ts` re-exports this one).
 */
export interface EntryView {
  readonly version: number;
  readonly timestamp: number;
  readonly owner: string;
  readonly deleted: boolean;
  /** The bytes a reader gets (VersionedValue, or a tombstone's Deleted-event value). */
  readonly json: string;
  /** See `ReplicaEntry.expiresAt`; absent or 0: no lifetime. A reader judges it by its own clock. */
  readonly expiresAt?: number | undefined;
}

/** What a put's or a delete's checks need of a key's state: no value, no JSON. */
export interface StateHead {
  readonly version: number;
  readonly timestamp: number;
  readonly owner: string;
  readonly deleted: boolean;
  readonly ballot: Ballot;
  /** See `ReplicaEntry.expiresAt`; 0: none. */
  readonly expiresAt: number;
}

/** Identity and condition of a client write. */
export interface WriteConditions {
  owner: string;
  ifVersion?: number;
}

/** A client write's conditions and the lifetime it gives the key (`ttl_secs`; absent: none). */
export interface WriteOptions extends WriteConditions {
  ttlSecs?: number;
}

/** A key whose state has a lifetime, as this node's expiry queue hands it out. */
export interface ExpiringKey {
  readonly table: string;
  readonly key: string;
  /** The version of the state whose lifetime ends. */
  readonly version: number;
  readonly expiresAtMs: number;
  /** How often it was put back for later: 0 the first time it is due. */
  readonly deferrals: number;
}

/** The store operations replication uses. */
export interface LocalStore {
  /** True when the key has an entry here, a tombstone included. */
  holds(table: string, key: string): boolean;
  getEntry(table: string, key: string): EntryView | undefined;
  put(table: string, key: string, value: unknown, options: WriteOptions): Promise<EntryView>;
  patch(
    table: string,
    key: string,
    patch: Record<string, unknown>,
    options: WriteOptions,
  ): Promise<EntryView>;
  delete(table: string, key: string, options: WriteConditions): Promise<EntryView>;
  /**
   * A single node's expiry: the tombstone of the next version when the key's newest state is live, of
   * `version`, and expired at the store's clock; else nothing (undefined). Queued in the caller's turn.
   */
  expire(table: string, key: string, options: { version: number }): Promise<EntryView | undefined>;
  /** Due keys of the expiry queue that still hold their lifetime, at most `countMax` (bounded work). */
  takeExpired(nowMs: number, countMax: number): ExpiringKey[];
  /** Puts a taken key back, due at `dueAtMs`, unless it got a newer lifetime; whether it did. */
  deferExpiry(item: ExpiringKey, dueAtMs: number): boolean;
  /** When the earliest queued key is due, or undefined. */
  nextExpiryMs(): number | undefined;
  /** The version of the key's newest state when it is live and expired at `nowMs`, else undefined. */
  expiredVersionOf(table: string, key: string, nowMs: number): number | undefined;
  /**
   * Stores each state by the accept rule (a delayed accept): when its ballot is above the key's accepted
   * ballot and at least its effective promise; "stale" otherwise, "identical" when it holds that state.
   */
  applyReplicas(
    items: ReadonlyArray<{ table: string; key: string; entry: ReplicaEntry }>,
  ): Promise<Array<"applied" | "identical" | "stale">>;
  replicaOf(table: string, key: string): ReplicaEntry | undefined;
  /** The key's state without its value, seeing what is queued in this turn. */
  headOf(table: string, key: string): StateHead | undefined;
  /** The key's acceptor state, seeing what is queued in this turn. */
  acceptorOf(table: string, key: string): AcceptorState;
  /** `acceptorOf` without the state: no value decoded (routing and the accept rule, on every write). */
  ballotsOf(table: string, key: string): AcceptorBallots;
  /** Records a promise (queued in this turn); resolves once durable. The caller checked the rule. */
  promise(table: string, key: string, ballot: Ballot): Promise<void>;
  /**
   * Records an accepted state (queued in this turn); resolves once durable. The caller checked the rule.
   * `lazy`: written with the next batch or within a few ms, not in a batch of its own (see `Store.accept`).
   */
  accept(
    table: string,
    key: string,
    ballot: Ballot,
    entry: ReplicaEntry,
    options?: { lazy?: boolean },
  ): Promise<EntryView>;
  /** The reader's view of a state, as the store would render it (no I/O). */
  viewOf(table: string, key: string, entry: ReplicaEntry): EntryView;
  /**
   * Every key held, tombstones included, with its state: `contentHash` is equal on two nodes exactly when
   * they hold the same state (it leaves out what is local, such as the commit sequence).
   */
  scanStates(): Iterable<{ table: string; key: string; state: KeyState }>;
  /** The keys `scanStates` yields, without their states. */
  scanKeys(): Iterable<{ table: string; key: string }>;
  purge(table: string, key: string): Promise<void>;
  hasTable(table: string): boolean;
  /** Live states in key order; with `liveAtMs`, those expired by then are left out (not counted). */
  entries(
    table: string,
    options: { after?: string; limit: number; liveAtMs?: number },
  ): Iterable<[string, EntryView]>;
}

/** A key's state as anti-entropy compares it. */
export interface KeyState {
  version: number;
  timestamp: number;
  deleted: boolean;
  /** Equal on two nodes exactly when they hold the same state of the key. */
  contentHash: number;
}

/** A change for local subscribers (the SSE broker). */
export interface ChangeSink {
  publish(event: {
    kind: "Updated" | "Deleted";
    table: string;
    key: string;
    version: number;
    sequence: number;
    json: string;
  }): void;
}

/** The membership view replication follows. */
export interface MembershipView {
  liveIds(): string[];
  ringIds(): string[];
  onChange(listener: () => void): () => void;
}
