import type { Encryption } from "./crypto.ts";
import type { Limits } from "../config/limits.ts";
import type { Clock } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";
import type { Failpoints } from "./failpoints.ts";
import type { Fs } from "./fs.ts";

import type { Ballot } from "../util/ballot.ts";
import type { ReplicaEntry } from "../util/replica_entry.ts";
import type { Histogram } from "../util/metrics.ts";
export { type Ballot, compareBallots, zeroBallot } from "../util/ballot.ts";
/** See `util/replica_entry.ts`: the store and the cluster share one definition. */
export type { ReplicaEntry };

/**
 * Longest node id of a ballot, in UTF-8 bytes: member ids are `host:port`, and a DNS name is at most 253
 * characters. Every record's size limit counts it (see `mod.ts`, "Record").
 */
export const ballotNodeBytesMax = 300;

/** The current state of one key in the index: a live value or a tombstone. */
export interface Entry {
  readonly version: number;
  /** Milliseconds since the epoch when the write was accepted. */
  readonly timestamp: number;
  /** The user who created the key (for a tombstone: the owner at deletion). */
  readonly owner: string;
  readonly deleted: boolean;
  /** The ballot this state was accepted at; {@linkcode zeroBallot} for plain local writes and old records. */
  readonly ballot: Ballot;
  /**
   * Live: when the state's lifetime ends (ms since the epoch), 0 for a state without one. Tombstone: the
   * lifetime an expiry tombstone ended, 0 for a delete's. A live state is expired once the clock reaches it
   * (cluster `DESIGN.md`, "Expiry (TTL)"). The store always sets it (0 included), so its entries keep one
   * shape; absent reads as 0 (entries built elsewhere, e.g. by tests of the broker).
   */
  readonly expiresAt?: number;
  /**
   * The bytes a reader gets, decoded from the key's record without parsing the value.
   * Live: the VersionedValue, `{"value":...,"version":n,"timestamp":t,"owner":"o"}`, with
   * `,"expires_at":e` before the closing brace when it has a lifetime.
   * Tombstone: the value of a `Deleted` event, `{"key":"k","version":n,"timestamp":t}`; an expiry's ends
   * with `,"reason":"expired"}`.
   */
  readonly json: string;
}

/** An `Entry` as the store builds it: its lifetime always set (0 without one). */
export interface StoredEntry extends Entry {
  readonly expiresAt: number;
}

/**
 * Where a change came from: a local `put`/`patch`/`delete`, a Paxos `accept`, or a replica's state
 * applied by `applyReplicas` (a delayed accept).
 */
export type ChangeSource = "local" | "accepted" | "replica";

/** One durable change, published in commit order after its WAL record is synced. */
export interface ChangeEvent {
  readonly kind: "Updated" | "Deleted";
  readonly table: string;
  readonly key: string;
  readonly version: number;
  /** Store-wide commit sequence: grows by 1 per change, across restarts. */
  readonly sequence: number;
  /** `Entry.json` of the new state. */
  readonly json: string;
  /** What made the change: which of them to publish is decided outside the store. */
  readonly source: ChangeSource;
}

/** Conditions and identity of a write. */
export interface WriteOptions {
  /** The user writing; must own the key unless it is new or a tombstone. */
  owner: string;
  /** When given, the write happens only if the key's current version equals it (`If-Match`). */
  ifVersion?: number;
  /**
   * A put's or patch's lifetime: the new state expires `ttlSecs` seconds after its timestamp (an integer
   * from 1 to `limits.ttlSecsMax`). Absent: the new state has none, whatever the old one had.
   */
  ttlSecs?: number;
}

/** Options of `Store.open`. */
export interface StoreOptions {
  /** Directory every file lives in; created when missing (unless `readOnly`). */
  dir: string;
  fs: Fs;
  clock: Clock;
  logger: Logger;
  limits: Limits;
  /** Key and key id every file is encrypted with. */
  encryption: Encryption;
  /** Snapshots kept (`SNAP_LIMIT`). */
  snapshotLimit: number;
  /** Seconds between snapshots (`SNAP_INTERVAL_SECS`); 0 turns the timer off. */
  snapshotIntervalSecs: number;
  /**
   * Repair damaged files at open instead of refusing them (`--repair`): keep a `<name>.broken.<ms>`
   * copy, cut the WAL at its last good frame, move a damaged `storage.db` aside and recover from the
   * newest readable snapshot plus the WAL. What is lost is logged. A wrong-key file is never repaired.
   * @default false
   */
  repair?: boolean;
  /** Named failpoints for crash tests. @default inertFailpoints (never armed; one property check each) */
  failpoints?: Failpoints;
  /**
   * Open for reading only (an offline export): no file or directory is created, changed or removed, at
   * open, while open or at close. A torn WAL tail is read up to its last good frame and reported, not
   * cut; `*.tmp` files are left; nothing is checkpointed or snapshotted; every write throws
   * `StoreReadOnlyError`. The data dir's lock is shared, so a running node (which holds it exclusively)
   * makes the open fail with `DataDirLockedError`. Not with `repair`. @default false
   */
  readOnly?: boolean;
}

/** Counters the store exposes to `/stats`. */
export interface StoreStats {
  walBatchCount: number;
  walRecordCount: number;
  walBytes: number;
  checkpointCount: number;
  snapshotCount: number;
  /** Sequence of the last durable change. */
  sequence: number;
  /** Bytes of the pages holding the index's records (live, dead and free). */
  indexPageBytes: number;
  /** Bytes of the records keys point at; the rest of `indexPageBytes` waits for compaction. */
  indexLiveBytes: number;
  /** Records per WAL batch, and seconds per WAL sync, since open. */
  wal: WalMetrics;
}

/** A key's Paxos acceptor state on this node, writes and promises still pending included. */
/** The ballots of a key's acceptor state, without its value (what routing and the accept rule look at). */
export interface AcceptorBallots {
  /** The key's explicit promise; {@linkcode zeroBallot} when none is outstanding. */
  promised: Ballot;
  /** The ballot of the key's current state; {@linkcode zeroBallot} when it has none. */
  accepted: Ballot;
}

export interface AcceptorState {
  /** The key's explicit promise; {@linkcode zeroBallot} when none is outstanding. */
  promised: Ballot;
  /** The ballot of the key's current state; {@linkcode zeroBallot} when it has none. */
  accepted: Ballot;
  /** The key's current state (a tombstone included), or undefined when this node holds none. */
  entry: ReplicaEntry | undefined;
}

/**
 * What applying a replica did: `applied` (it won and is durable), `identical` (this node already holds
 * exactly that state at that ballot) or `stale` (this node holds a state, or a promise, that wins over it).
 */
export type ReplicaResult = "applied" | "identical" | "stale";

/** What a WAL measures of each batch, for `/metrics`. */
export interface WalMetrics {
  /** Records per batch. */
  batchRecords: Histogram;
  /** Seconds each `syncData` took. */
  syncSeconds: Histogram;
}
