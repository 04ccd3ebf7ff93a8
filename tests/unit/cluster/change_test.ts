// Goal: the change function a proposer applies to the newest accepted state (DESIGN.md step 4) refuses and
// builds exactly what a single node's store does: owner, If-Match, merge patch, versions through tombstones.
// Method: direct calls on hand-made states.
import assert from "node:assert/strict";
import {
  applyChange,
  applyExpiry,
  ExpiryRefusedError,
  isExpired,
  type WriteChange,
} from "../../../src/cluster/change.ts";
import type { ReplicaEntry } from "../../../src/cluster/local_store.ts";
import { KvError } from "../../../src/util/errors.ts";

const base = { table: "t", key: "k", owner: "alice" };
const live: ReplicaEntry = {
  version: 3,
  timestamp: 1_000,
  owner: "alice",
  deleted: false,
  valueJson: '{"a":1}',
};
const tombstone: ReplicaEntry = { version: 4, timestamp: 1_000, owner: "alice", deleted: true };

function codeOf(change: WriteChange, current: ReplicaEntry | undefined): string {
  try {
    applyChange(change, current, 2_000);
  } catch (error) {
    if (error instanceof KvError) return error.code;
    throw error;
  }
  return "ok";
}

Deno.test(
  "applyChange() creates, replaces and deletes with the next version and a timestamp that never goes " +
    "back",
  () => {
    assert.deepEqual(applyChange({ ...base, op: "put", value: [1] }, undefined, 2_000), {
      version: 1,
      timestamp: 2_000,
      owner: "alice",
      deleted: false,
      valueJson: "[1]",
    });
    assert.deepEqual(applyChange({ ...base, op: "put", value: "x" }, live, 500), {
      version: 4,
      timestamp: 1_000,
      owner: "alice",
      deleted: false,
      valueJson: '"x"',
    });
    assert.deepEqual(applyChange({ ...base, op: "delete" }, live, 2_000), {
      version: 4,
      timestamp: 2_000,
      owner: "alice",
      deleted: true,
    });
    // A tombstone keeps its version, and anyone may write the key again.
    const reborn = applyChange({ ...base, owner: "bob", op: "put", value: 1 }, tombstone, 2_000);
    assert.equal(reborn.version, 5);
    assert.equal(reborn.owner, "bob");
  },
);

Deno.test("applyChange() merges a patch into the stored object (RFC 7396)", () => {
  const next = applyChange({ ...base, op: "patch", value: { a: null, b: { c: 2 } } }, live, 2_000);
  assert.equal(next.valueJson, '{"b":{"c":2}}');
  assert.equal(next.version, 4);
});

Deno.test("applyChange() refuses as a single node does: 404, 403, 409, 400", () => {
  assert.equal(codeOf({ ...base, op: "patch", value: {} }, undefined), "key_not_found");
  assert.equal(codeOf({ ...base, op: "delete" }, tombstone), "key_not_found");
  assert.equal(codeOf({ ...base, owner: "mallory", op: "put", value: 1 }, live), "forbidden");
  assert.equal(codeOf({ ...base, op: "put", value: 1, ifVersion: 2 }, live), "version_conflict");
  assert.equal(codeOf({ ...base, op: "put", value: 1, ifVersion: 0 }, live), "version_conflict");
  assert.equal(codeOf({ ...base, op: "put", value: 1, ifVersion: 0 }, tombstone), "ok");
  assert.equal(codeOf({ ...base, op: "put", value: 1, ifVersion: 3 }, live), "ok");
  assert.equal(codeOf({ ...base, op: "patch", value: [1] }, live), "invalid_request");
  const array: ReplicaEntry = { ...live, valueJson: "[1]" };
  assert.equal(codeOf({ ...base, op: "patch", value: { a: 1 } }, array), "invalid_request");
});

Deno.test(
  "applyChange(): ttlSecs gives the new state expiresAt from its own timestamp; without, it has none",
  () => {
    const withTtl = applyChange({ ...base, op: "put", value: 1, ttlSecs: 30 }, live, 2_000);
    assert.equal(withTtl.expiresAt, 32_000);
    const later = applyChange({ ...base, op: "patch", value: { b: 1 }, ttlSecs: 5 }, live, 500);
    assert.equal(later.timestamp, 1_000, "the timestamp never goes back...");
    assert.equal(later.expiresAt, 6_000, "...and the lifetime counts from it");
    const cleared = applyChange(
      { ...base, op: "patch", value: { b: 1 } },
      { ...live, expiresAt: 9_000 },
      2_000,
    );
    assert.equal("expiresAt" in cleared, false, "a write without ttl_secs clears the lifetime");
    const deleted = applyChange({ ...base, op: "delete", ttlSecs: 5 }, live, 2_000);
    assert.equal("expiresAt" in deleted, false, "a delete's tombstone is not an expiry's");
  },
);

Deno.test(
  "applyChange(): a state expired by the proposer's clock is missing, re-created by anyone after its " +
    "version",
  () => {
    const expiring: ReplicaEntry = { ...live, expiresAt: 2_000 };
    const bob = { ...base, owner: "bob" };
    assert.equal(codeOf({ ...bob, op: "put", value: 1 }, { ...expiring, expiresAt: 2_001 }), "forbidden");
    assert.equal(codeOf({ ...base, op: "patch", value: { b: 1 } }, expiring), "key_not_found");
    assert.equal(codeOf({ ...base, op: "delete" }, expiring), "key_not_found");
    assert.equal(codeOf({ ...base, op: "put", value: 1, ifVersion: 3 }, expiring), "version_conflict");
    const recreated = applyChange({ ...bob, op: "put", value: 1, ifVersion: 0 }, expiring, 2_000);
    assert.deepEqual(recreated, {
      version: 4,
      timestamp: 2_000,
      owner: "bob",
      deleted: false,
      valueJson: "1",
    });
  },
);

Deno.test(
  "applyExpiry() makes the tombstone of the next version only from the expected, live, expired state",
  () => {
    const target = { table: "t", key: "k", version: 3 };
    const expiring: ReplicaEntry = { ...live, expiresAt: 1_500 };
    assert.deepEqual(applyExpiry(target, expiring, 2_000), {
      version: 4,
      timestamp: 2_000,
      owner: "alice",
      deleted: true,
      expiresAt: 1_500,
    });
    assert.equal(applyExpiry(target, { ...expiring, timestamp: 3_000 }, 2_000).timestamp, 3_000);
    const refusals: Array<[ReplicaEntry | undefined, number]> = [
      [undefined, 2_000],
      [live, 2_000], // no lifetime
      [expiring, 1_499], // not due by this clock
      [{ ...expiring, version: 4 }, 2_000], // a newer write replaced or extended it
      [{ ...tombstone, version: 3, expiresAt: 1_500 }, 2_000], // expired already
    ];
    for (const [current, nowMs] of refusals) {
      assert.throws(() => applyExpiry(target, current, nowMs), ExpiryRefusedError);
    }
    assert.throws(() => applyExpiry(target, { ...expiring, version: 5 }, 2_000), /newest state is version 5/);
    assert.equal(isExpired(expiring, 1_500), true);
    assert.equal(isExpired(expiring, 1_499), false);
    assert.equal(
      isExpired({ ...expiring, deleted: true }, 9_000),
      false,
      "a tombstone is not expired, it is gone",
    );
  },
);
