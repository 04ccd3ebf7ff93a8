import type { WalMetrics } from "./wal.ts";
import type { Encryption } from "./crypto.ts";
import type { Limits } from "../config/limits.ts";
import type { Clock } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";
import type { Failpoints } from "./failpoints.ts";
import type { Fs } from "./fs.ts";

/** The current state of one key in the index: a live value or a tombstone. */
export interface Entry {
  readonly version: number;
  /** Milliseconds since the epoch when the write was accepted. */
  readonly timestamp: number;
  /** The user who created the key (for a tombstone: the owner at deletion). */
  readonly owner: string;
  readonly deleted: boolean;
  /**
   * The bytes a reader gets, decoded from the key's record without parsing the value.
   * Live: the VersionedValue, `{"value":...,"version":n,"timestamp":t,"owner":"o"}`.
   * Tombstone: the value of a `Deleted` event, `{"key":"k","version":n,"timestamp":t}`.
   */
  readonly json: string;
}

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
}

/** Conditions and identity of a write. */
export interface WriteOptions {
  /** The user writing; must own the key unless it is new or a tombstone. */
  owner: string;
  /** When given, the write happens only if the key's current version equals it (`If-Match`). */
  ifVersion?: number;
  /**
   * Called synchronously once the write passed its checks and is queued, before it is durable, with the
   * key's new state in replica form: replication ships it to the other replicas while this node's fsync
   * runs, instead of after it.
   */
  onAccepted?: (accepted: ReplicaEntry) => void;
}

/** Options of `Store.open`. */
export interface StoreOptions {
  /** Directory every file lives in; created when missing. */
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

/**
 * A key's state as shipped between replicas: everything `Entry` holds, with the value's JSON instead of
 * the reader's bytes. `valueJson` is absent for a tombstone.
 */
export interface ReplicaEntry {
  /** Version of the key, >= 1. */
  version: number;
  /** Milliseconds since the epoch when the coordinator accepted the write. */
  timestamp: number;
  owner: string;
  deleted: boolean;
  /** The value's JSON, exactly as the coordinator serialized it; only for a live value. */
  valueJson?: string;
}

/**
 * What applying a replica did: `applied` (it won and is durable), `identical` (this node already holds
 * exactly that state) or `stale` (this node holds a state that wins over it).
 */
export type ReplicaResult = "applied" | "identical" | "stale";
