import { assert } from "../util/assert.ts";
import { InvalidRequestError } from "../util/errors.ts";
import { utf8Length } from "../util/bytes.ts";
import { maxBallot, successorOf } from "../util/ballot.ts";
import {
  type Ballot,
  ballotNodeBytesMax,
  compareBallots,
  type Entry,
  type ReplicaEntry,
  type ReplicaResult,
  type StoredEntry,
  zeroBallot,
} from "./types.ts";
import {
  ballotField,
  type DeleteRecord,
  isZeroBallot,
  liveEntryJson,
  type PutRecord,
  tombstoneEntryJson,
  valueJsonOf,
} from "./wal_record.ts";

/** -1, 0 or 1 by UTF-16 code-unit order (what `<` on strings does). */
function compareCodeUnits(left: string, right: string): number {
  if (left === right) return 0;
  return left > right ? 1 : -1;
}

function assertReplicaShape(entry: ReplicaEntry): void {
  assert(Number.isSafeInteger(entry.version));
  assert(entry.version >= 1);
  assert(Number.isSafeInteger(entry.timestamp));
  if (entry.deleted) assert(entry.valueJson === undefined, "a tombstone carries no value");
  if (!entry.deleted) assert(entry.valueJson !== undefined, "a live value carries its JSON");
  if (entry.expiresAt !== undefined) assert(Number.isSafeInteger(entry.expiresAt) && entry.expiresAt > 0);
}

/** `{ expiresAt }` for a state with a lifetime (or an expiry tombstone), else nothing. */
function expiryField(expiresAt: number | undefined): { expiresAt?: number } {
  return expiresAt === undefined || expiresAt === 0 ? {} : { expiresAt };
}

/**
 * The conflict rule between two states of one key (SPEC §2), the same on every node: the higher version
 * wins; then the later timestamp; then, at equal version and timestamp, a tombstone wins over a live
 * value; then the larger `valueJson` in UTF-16 code-unit order; then the larger owner; then the later
 * expiry (none is earliest). It is a total
 * order: antisymmetric (`sign(compare(a, b)) === -sign(compare(b, a))`) and transitive, so every replica
 * converges on the same state whatever order the states arrive in.
 *
 * @returns a positive number when `a` wins, negative when `b` wins, 0 when they are identical.
 */
export function compareReplicaEntries(a: ReplicaEntry, b: ReplicaEntry): number {
  assertReplicaShape(a);
  assertReplicaShape(b);
  if (a.version !== b.version) return a.version > b.version ? 1 : -1;
  if (a.timestamp !== b.timestamp) return a.timestamp > b.timestamp ? 1 : -1;
  if (a.deleted !== b.deleted) return a.deleted ? 1 : -1;
  const valueOrder = compareCodeUnits(a.valueJson ?? "", b.valueJson ?? "");
  if (valueOrder !== 0) return valueOrder;
  const ownerOrder = compareCodeUnits(a.owner, b.owner);
  if (ownerOrder !== 0) return ownerOrder;
  const expiryA = a.expiresAt ?? 0;
  const expiryB = b.expiresAt ?? 0;
  return expiryA === expiryB ? 0 : expiryA > expiryB ? 1 : -1;
}

/**
 * The replica form of an index entry; the value's JSON is sliced out of `Entry.json`, never parsed. The
 * ballot is included when it is not the zero ballot.
 */
export function replicaOfEntry(entry: Entry): ReplicaEntry {
  const { version, timestamp, owner } = entry;
  const extra = { ...ballotField(entry.ballot), ...expiryField(entry.expiresAt) };
  if (entry.deleted) return { version, timestamp, owner, deleted: true, ...extra };
  return { version, timestamp, owner, deleted: false, valueJson: valueJsonOf(entry), ...extra };
}

/**
 * The index entry (reader's view) of a replica's state, built as decoding its record would build it
 * (`entryOfEncoded(encodeRecord(recordOfReplica(...)))`), without that round trip: every accept and every
 * chosen state's view did it, on every replica. The state's strings must be well-formed (as
 * `checkReplicaEntry` requires), so encoding and decoding them is the identity.
 */
export function entryOfReplica(key: string, entry: ReplicaEntry): StoredEntry {
  assertReplicaShape(entry);
  const { version, timestamp, owner } = entry;
  const given = entry.ballot;
  const ballot = given === undefined || isZeroBallot(given)
    ? zeroBallot
    : Object.freeze({ counter: given.counter, node: given.node });
  const expiresAt = entry.expiresAt ?? 0;
  if (entry.deleted) {
    return {
      version,
      timestamp,
      owner,
      deleted: true,
      ballot,
      expiresAt,
      json: tombstoneEntryJson({ key, version, timestamp, expiresAt }),
    };
  }
  const json = liveEntryJson({ valueJson: entry.valueJson!, version, timestamp, owner, expiresAt });
  assert(json.length > entry.valueJson!.length, "the view wraps the value");
  return { version, timestamp, owner, deleted: false, ballot, expiresAt, json };
}

/** The record that writes a replica's state; its sequence (0 here) is set when it is queued. */
export function recordOfReplica(
  target: { table: string; key: string; entry: ReplicaEntry },
): PutRecord | DeleteRecord {
  const { table, key, entry } = target;
  assertReplicaShape(entry);
  const common = {
    sequence: 0,
    version: entry.version,
    timestamp: entry.timestamp,
    table,
    key,
    ...(entry.ballot === undefined ? {} : ballotField(entry.ballot)),
    ...expiryField(entry.expiresAt),
  };
  if (entry.deleted) return { op: "delete", ...common, owner: entry.owner };
  assert(entry.valueJson !== undefined);
  return { op: "put", ...common, owner: entry.owner, valueJson: entry.valueJson };
}

/**
 * Checks a replica's state received from a peer, whose shape only was validated: numbers in range, a
 * value iff live, well-formed strings. The value is not parsed (the peer is authenticated and produced
 * it with `JSON.stringify`); its length is checked against `valueCodeUnitsMax` before anything else
 * reads it.
 *
 * @throws {InvalidRequestError} naming the violated rule; never the value.
 */
export function checkReplicaEntry(entry: ReplicaEntry, options: { valueCodeUnitsMax: number }): void {
  const { version, timestamp, owner, deleted, valueJson } = entry;
  if (!Number.isSafeInteger(version) || version < 1) {
    throw new InvalidRequestError(`A replica's version must be a positive safe integer, got ${version}`);
  }
  if (!Number.isSafeInteger(timestamp) || timestamp < 0) {
    throw new InvalidRequestError(
      `A replica's timestamp must be a non-negative safe integer, got ${timestamp}`,
    );
  }
  if (typeof owner !== "string" || owner.length === 0 || !owner.isWellFormed()) {
    throw new InvalidRequestError("A replica's owner is empty or not valid Unicode");
  }
  if (typeof deleted !== "boolean") {
    throw new InvalidRequestError("A replica's deleted flag is not a boolean");
  }
  if (entry.ballot !== undefined) checkBallot(entry.ballot, "A replica's ballot");
  const { expiresAt } = entry;
  if (expiresAt !== undefined && (!Number.isSafeInteger(expiresAt) || expiresAt < 1)) {
    throw new InvalidRequestError(`A replica's expiry must be a positive safe integer, got ${expiresAt}`);
  }
  if (deleted) {
    if (valueJson !== undefined) throw new InvalidRequestError("A tombstone replica carries a value");
    return;
  }
  if (typeof valueJson !== "string" || valueJson.length === 0) {
    throw new InvalidRequestError("A live replica carries no value");
  }
  if (valueJson.length > options.valueCodeUnitsMax) {
    throw new InvalidRequestError(
      `A replica's value is ${valueJson.length} UTF-16 code units, limit is ${options.valueCodeUnitsMax}`,
    );
  }
  if (!valueJson.isWellFormed()) throw new InvalidRequestError("A replica's value is not valid Unicode");
}

/**
 * Checks a ballot received from a peer: a non-negative safe integer counter and a well-formed node id of
 * at most {@linkcode ballotNodeBytesMax} UTF-8 bytes.
 *
 * @param subject names the ballot in the message, e.g. "A replica's ballot".
 * @throws {InvalidRequestError} naming the violated rule.
 */
export function checkBallot(ballot: Ballot, subject: string): void {
  if (typeof ballot !== "object" || ballot === null) {
    throw new InvalidRequestError(`${subject} is not an object`);
  }
  const { counter, node } = ballot;
  if (!Number.isSafeInteger(counter) || counter < 0) {
    throw new InvalidRequestError(`${subject}'s counter must be a non-negative safe integer, got ${counter}`);
  }
  if (typeof node !== "string" || !node.isWellFormed()) {
    throw new InvalidRequestError(`${subject}'s node is not valid Unicode`);
  }
  const nodeBytes = utf8Length(node);
  if (nodeBytes > ballotNodeBytesMax) {
    throw new InvalidRequestError(`${subject}'s node is ${nodeBytes} bytes, limit is ${ballotNodeBytesMax}`);
  }
}

/**
 * Decides a replica's state (a Paxos accept arriving late) against the key's state and explicit promise:
 * - at a ballot above the accepted one, it is applied when it is at least the key's effective promise,
 *   `max(promise, successor of the accepted ballot)` (the accept rule of `src/cluster/DESIGN.md`: accepting
 *   `b` also promised `(b.counter + 1, b.node)`), else it is stale;
 * - at a ballot below the accepted one, it is stale;
 * - at the same ballot, the same state is "identical"; a different one (possible only between legacy
 *   states at the zero ballot) is applied when it wins by {@linkcode compareReplicaEntries} and is not
 *   below the promise, and, when `strict` (legacy), only if it also moves the version forward.
 */
export function decideReplica(
  options: { entry: Entry; current: Entry | undefined; promised: Ballot; strict: boolean },
): ReplicaResult {
  const { entry, current, promised } = options;
  const accepted = current?.ballot ?? zeroBallot;
  assert(Number.isSafeInteger(entry.ballot.counter));
  if (!isZeroBallot(promised)) assert(compareBallots(promised, accepted) > 0, "a promise is above the state");
  const order = compareBallots(entry.ballot, accepted);
  if (order < 0) return "stale";
  if (order > 0) {
    // A peer may have had a state accepted at the largest counter: no ballot reaches its successor.
    if (accepted.counter === Number.MAX_SAFE_INTEGER) return "stale";
    const effectivePromise = maxBallot(promised, successorOf(accepted));
    return compareBallots(entry.ballot, effectivePromise) >= 0 ? "applied" : "stale";
  }
  const belowPromise = compareBallots(entry.ballot, promised) < 0;
  if (current === undefined) return belowPromise ? "stale" : "applied"; // a missing key at the zero ballot
  const rule = compareReplicaEntries(replicaOfEntry(entry), replicaOfEntry(current));
  if (rule === 0) return "identical";
  if (rule < 0 || belowPromise) return "stale";
  if (options.strict && isZeroBallot(entry.ballot) && entry.version <= current.version) return "stale";
  return "applied";
}
