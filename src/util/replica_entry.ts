/**
 * The one shape of a key's state as replicas ship it: the store applies and returns it, the cluster sends
 * it in Paxos messages. Both import it from here (the cluster may not import the store, STYLE B2).
 */
import type { Ballot } from "./ballot.ts";

/**
 * A key's state as shipped between replicas: everything the store's `Entry` holds, with the value's JSON
 * instead of the reader's bytes. `valueJson` is absent for a tombstone.
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
  /** The ballot the state was accepted at; absent means the zero ballot. */
  ballot?: Ballot;
  /**
   * Live: when the state's lifetime ends (ms since the epoch); absent: it has none. On a tombstone: the
   * lifetime an expiry ended (cluster `DESIGN.md`, "Expiry (TTL)"); absent for a delete's.
   */
  expiresAt?: number;
}
