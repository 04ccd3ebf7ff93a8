// Goal: the change function a proposer applies to the newest accepted state (DESIGN.md step 4) refuses and
// builds exactly what a single node's store does: owner, If-Match, merge patch, versions through tombstones.
// Method: direct calls on hand-made states.
import assert from "node:assert/strict";
import { applyChange, type WriteChange } from "../../../src/cluster/change.ts";
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

Deno.test("applyChange() creates, replaces and deletes with the next version and a timestamp that never goes back", () => {
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
});

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
