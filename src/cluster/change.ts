import { assert } from "../util/assert.ts";
import { InvalidRequestError, KvError } from "../util/errors.ts";
import { isJsonObject, mergePatch } from "../util/json.ts";
import type { ReplicaEntry } from "./local_store.ts";

/** A client write as a change of a key's state: what a proposer applies to the newest accepted state. */
export interface WriteChange {
  op: "put" | "patch" | "delete";
  table: string;
  key: string;
  value?: unknown;
  /** The authenticated user writing. */
  owner: string;
  /** `If-Match`: the version the key must hold (0: must not exist live). */
  ifVersion?: number;
  /** A put's or patch's lifetime (`ttl_secs`): the new state expires this long after its timestamp. */
  ttlSecs?: number;
}

/**
 * An expiry proposed on `version` refused: the newest state is not that version, or not live, or has no
 * lifetime, or it has not ended by the proposer's clock. Nothing was chosen for it (DESIGN.md, "Expiry").
 */
export class ExpiryRefusedError extends KvError {
  constructor(message: string) {
    super("version_conflict", message);
  }
}

/** True when `state` is live with a lifetime that ended by `nowMs` (DESIGN.md, "Expiry (TTL)"). */
export function isExpired(
  state: { deleted: boolean; expiresAt?: number | undefined },
  nowMs: number,
): boolean {
  const { expiresAt } = state;
  return expiresAt !== undefined && expiresAt !== 0 && !state.deleted && expiresAt <= nowMs;
}

function describe(change: WriteChange): string {
  return `key "${change.key}" of table "${change.table}"`;
}

/**
 * The change function of DESIGN.md step 4: the owner check, `If-Match`, the merge patch, the next version,
 * the lifetime. A state expired by `nowMs` (the proposer's clock) counts as a tombstone: anyone may write
 * the key again, after its version. Refusals are thrown as the store's codes (`key_not_found`, `forbidden`,
 * `version_conflict`, `invalid_request`), with the messages a single node gives.
 */
export function applyChange(
  change: WriteChange,
  current: ReplicaEntry | undefined,
  nowMs: number,
): ReplicaEntry {
  assert(Number.isSafeInteger(nowMs));
  const live = current === undefined || current.deleted || isExpired(current, nowMs) ? undefined : current;
  if (live === undefined && change.op !== "put") {
    throw new KvError("key_not_found", `Cannot ${change.op} ${describe(change)}: it does not exist`);
  }
  if (live !== undefined && live.owner !== change.owner) {
    throw new KvError("forbidden", `Cannot ${change.op} ${describe(change)}: it is owned by another user`);
  }
  if (change.ifVersion !== undefined && (live?.version ?? 0) !== change.ifVersion) {
    const expected = change.ifVersion === 0 ? "the key not to exist" : `version ${change.ifVersion}`;
    const found = live === undefined ? "it does not exist" : `its current version is ${live.version}`;
    throw new KvError(
      "version_conflict",
      `Cannot write ${describe(change)}: expected ${expected}, but ${found}`,
    );
  }
  const version = (current?.version ?? 0) + 1;
  const timestamp = Math.max(nowMs, current?.timestamp ?? 0);
  assert(Number.isSafeInteger(version) && version >= 1, "versions stay safe integers");
  const owner = live?.owner ?? change.owner;
  if (change.op === "delete") return { version, timestamp, owner, deleted: true };
  const next: ReplicaEntry = {
    version,
    timestamp,
    owner,
    deleted: false,
    valueJson: valueJsonOf(change, live),
  };
  if (change.ttlSecs !== undefined) next.expiresAt = timestamp + change.ttlSecs * 1000;
  return next;
}

/**
 * The change function of an expiry (DESIGN.md, "Expiry (TTL)"): from `current`, live, of `version`, whose
 * lifetime ended by `nowMs` (the proposer's clock), the tombstone of the next version that keeps that
 * lifetime as the mark of an expiry. No owner check: the node itself expires keys.
 *
 * @throws {ExpiryRefusedError} for any other state: nothing is to be chosen.
 */
export function applyExpiry(
  target: { table: string; key: string; version: number },
  current: ReplicaEntry | undefined,
  nowMs: number,
): ReplicaEntry {
  assert(Number.isSafeInteger(nowMs));
  assert(Number.isSafeInteger(target.version) && target.version >= 1, "an expiry names a version");
  if (current === undefined || current.version !== target.version || !isExpired(current, nowMs)) {
    const found = current === undefined
      ? "it does not exist"
      : `its newest state is version ${current.version}${current.deleted ? ", a tombstone" : ""}`;
    throw new ExpiryRefusedError(
      `Cannot expire version ${target.version} of key "${target.key}" of table "${target.table}": ${found}` +
        (current?.version === target.version && !current.deleted ? ", whose lifetime has not ended" : ""),
    );
  }
  const { version, owner, expiresAt } = current;
  const next = { version: version + 1, timestamp: Math.max(nowMs, current.timestamp), owner, deleted: true };
  assert(Number.isSafeInteger(next.version), "versions stay safe integers");
  return { ...next, expiresAt: expiresAt! };
}

function valueJsonOf(change: WriteChange, live: ReplicaEntry | undefined): string {
  if (change.op === "put") {
    const text = JSON.stringify(change.value);
    if (typeof text !== "string") throw new InvalidRequestError("The value is not JSON");
    return text;
  }
  assert(live?.valueJson !== undefined, "a patch applies to a live value");
  if (!isJsonObject(change.value)) throw new InvalidRequestError('PATCH "value" must be a JSON object');
  const current: unknown = JSON.parse(live.valueJson);
  if (!isJsonObject(current)) {
    throw new InvalidRequestError(`Cannot patch ${describe(change)}: the stored value is not a JSON object`);
  }
  return JSON.stringify(mergePatch(current, change.value));
}
