// Goal: guardStore() reports an AssertionError from inside the store (its state is in doubt: the node must
// stop) and passes every error on unchanged, but does not report one thrown by our own callback
// (`onAccepted`) through the store, nor an operating error.
// Method: a fake LocalStore whose methods throw or reject on demand.
import assert from "node:assert/strict";
import { guardStore, type LocalStore } from "../../../src/cluster/mod.ts";
import { AssertionError } from "../../../src/util/assert.ts";
import { InvalidRequestError } from "../../../src/util/errors.ts";

const entry = { version: 1, timestamp: 1, owner: "a", deleted: false, json: "{}" };

/** A store whose every call throws `failure()` when it is set. */
function fakeStore(failure: { next?: (() => Error) | undefined }): LocalStore {
  const fail = () => {
    const make = failure.next;
    failure.next = undefined;
    if (make !== undefined) throw make();
  };
  return {
    holds: () => (fail(), true),
    getEntry: () => (fail(), entry),
    put: async (_table, _key, _value, options) => {
      fail();
      options.onAccepted?.({ version: 1, timestamp: 1, owner: "a", deleted: false, valueJson: "1" });
      return await Promise.resolve(entry);
    },
    patch: async () => (fail(), await Promise.resolve(entry)),
    delete: async () => (fail(), await Promise.resolve(entry)),
    applyReplicas: async () => (fail(), await Promise.resolve(["applied" as const])),
    replicaOf: () => (fail(), undefined),
    *scanStates() {
      yield { table: "t", key: "a", state: { version: 1, timestamp: 1, deleted: false, contentHash: 1 } };
      fail();
    },
    *scanKeys() {
      fail();
      yield { table: "t", key: "a" };
    },
    purge: async () => (fail(), await Promise.resolve()),
    hasTable: () => (fail(), true),
    *entries() {
      fail();
      yield ["a", entry];
    },
  };
}

Deno.test("guardStore() reports a store's AssertionError from sync calls, promises and iterations", async () => {
  const failure: { next?: (() => Error) | undefined } = {};
  const reported: Error[] = [];
  const store = guardStore(fakeStore(failure), (error) => reported.push(error));
  const broken = () => new AssertionError("the index lost a key");
  failure.next = broken;
  assert.throws(() => store.getEntry("t", "k"), AssertionError);
  failure.next = broken;
  await assert.rejects(store.put("t", "k", 1, { owner: "a" }), AssertionError);
  failure.next = broken;
  await assert.rejects(store.applyReplicas([]), AssertionError);
  failure.next = broken;
  assert.throws(() => [...store.scanStates()], AssertionError);
  failure.next = broken;
  assert.throws(() => [...store.entries("t", { limit: 1 })], AssertionError);
  assert.equal(reported.length, 5);
  assert.ok(reported.every((error) => error.message === "the index lost a key"));
  // Without a failure every call answers as the store does.
  assert.deepEqual(store.getEntry("t", "k"), entry);
  assert.equal([...store.scanKeys()].length, 1);
  assert.equal(reported.length, 5);
});

Deno.test("guardStore() passes operating errors and our own callback's AssertionError on, unreported", async () => {
  const failure: { next?: (() => Error) | undefined } = {};
  const reported: Error[] = [];
  const store = guardStore(fakeStore(failure), (error) => reported.push(error));
  failure.next = () => new InvalidRequestError("bad name");
  await assert.rejects(store.delete("t", "k", { owner: "a" }), InvalidRequestError);
  const ours = new AssertionError("a replication bug, not the store's");
  await assert.rejects(
    store.put("t", "k", 1, {
      owner: "a",
      onAccepted: () => {
        throw ours;
      },
    }),
    (error) => error === ours,
  );
  assert.equal(reported.length, 0);
});
