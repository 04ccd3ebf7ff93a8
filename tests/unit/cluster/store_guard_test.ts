// Goal: guardStore() reports an AssertionError from inside the store (its state is in doubt: the node must
// stop) from every call it wraps, the acceptor's calls (acceptorOf, promise, accept, viewOf) included, and
// passes every error on unchanged; it does not report an operating error; a promise or accept it passes
// on is queued in the caller's turn, as the acceptor's rule needs.
// Method: a real Store on MemoryFs. Real assertions come from breaking the store's Paxos rules (a promise
// or an accept below the key's promise); the rest through a thin layer over that store that makes its
// next call throw or reject a given error, then delegates to it.
import assert from "node:assert/strict";
import { guardStore, type LocalStore } from "../../../src/cluster/mod.ts";
import type { Store } from "../../../src/store/mod.ts";
import { AssertionError } from "../../../src/util/assert.ts";
import { type Ballot, compareBallots } from "../../../src/util/ballot.ts";
import { InvalidRequestError, KvError } from "../../../src/util/errors.ts";
import { openTestStore } from "./fake_cluster.ts";

const table = "t";
const alice = { owner: "alice" };
const state = { version: 1, timestamp: 1, owner: "alice", deleted: false, valueJson: '"v"' };

function ballot(counter: number, node = "127.0.0.1:7002"): Ballot {
  return { counter, node };
}

/** The store's calls, each of which first throws `failure.next()` (once) when it is set. */
function failingOnce(store: Store, failure: { next?: (() => Error) | undefined }): LocalStore {
  const fail = () => {
    const make = failure.next;
    failure.next = undefined;
    if (make !== undefined) throw make();
  };
  return {
    holds: (t, key) => (fail(), store.holds(t, key)),
    getEntry: (t, key) => (fail(), store.getEntry(t, key)),
    put: async (t, key, value, options) => (fail(), await store.put(t, key, value, options)),
    patch: async (t, key, patch, options) => (fail(), await store.patch(t, key, patch, options)),
    delete: async (t, key, options) => (fail(), await store.delete(t, key, options)),
    expire: async (t, key, options) => (fail(), await store.expire(t, key, options)),
    takeExpired: (nowMs, countMax) => (fail(), store.takeExpired(nowMs, countMax)),
    deferExpiry: (item, dueAtMs) => (fail(), store.deferExpiry(item, dueAtMs)),
    nextExpiryMs: () => (fail(), store.nextExpiryMs()),
    expiredVersionOf: (t, key, nowMs) => (fail(), store.expiredVersionOf(t, key, nowMs)),
    applyReplicas: async (items) => (fail(), await store.applyReplicas(items)),
    replicaOf: (t, key) => (fail(), store.replicaOf(t, key)),
    headOf: (t, key) => (fail(), store.headOf(t, key)),
    acceptorOf: (t, key) => (fail(), store.acceptorOf(t, key)),
    ballotsOf: (t, key) => (fail(), store.ballotsOf(t, key)),
    promise: async (t, key, b) => (fail(), await store.promise(t, key, b)),
    accept: async (t, key, b, entry) => (fail(), await store.accept(t, key, b, entry)),
    viewOf: (t, key, entry) => (fail(), store.viewOf(t, key, entry)),
    *scanStates() {
      for (const item of store.scanStates()) {
        yield item;
        fail();
      }
    },
    *scanKeys() {
      fail();
      yield* store.scanKeys();
    },
    purge: async (t, key) => (fail(), await store.purge(t, key)),
    hasTable: (t) => (fail(), store.hasTable(t)),
    *entries(t, options) {
      fail();
      yield* store.entries(t, options);
    },
  };
}

Deno.test("guardStore() reports a store's AssertionError from calls, promises, iterations", async () => {
  const store = await openTestStore();
  try {
    await store.put(table, "k", { n: 1 }, alice);
    const failure: { next?: (() => Error) | undefined } = {};
    const reported: Error[] = [];
    const guarded = guardStore(failingOnce(store, failure), (error) => reported.push(error));
    const broken = () => new AssertionError("the index lost a key");
    const calls: Array<() => unknown> = [
      () => guarded.getEntry(table, "k"),
      () => guarded.headOf(table, "k"),
      () => guarded.acceptorOf(table, "k"),
      () => guarded.ballotsOf(table, "k"),
      () => guarded.viewOf(table, "k", state),
      () => guarded.takeExpired(0, 1),
      () => guarded.nextExpiryMs(),
      () => guarded.expiredVersionOf(table, "k", 0),
      () => [...guarded.scanStates()],
      () => [...guarded.entries(table, { limit: 1 })],
    ];
    for (const call of calls) {
      failure.next = broken;
      assert.throws(call, AssertionError);
    }
    const asyncCalls: Array<() => Promise<unknown>> = [
      () => guarded.put(table, "k", 1, alice),
      () => guarded.applyReplicas([]),
      () => guarded.promise(table, "p", ballot(1)),
      () => guarded.accept(table, "a", ballot(1), state),
    ];
    for (const call of asyncCalls) {
      failure.next = broken;
      await assert.rejects(call(), AssertionError);
    }
    assert.equal(reported.length, calls.length + asyncCalls.length);
    assert.ok(reported.every((error) => error.message === "the index lost a key"));
    // Without a failure every call answers as the store does.
    assert.deepEqual(guarded.getEntry(table, "k"), store.getEntry(table, "k"));
    assert.deepEqual(guarded.acceptorOf(table, "k"), store.acceptorOf(table, "k"));
    assert.deepEqual(guarded.headOf(table, "k"), store.headOf(table, "k"));
    assert.deepEqual(guarded.viewOf(table, "k", state), store.viewOf(table, "k", state));
    assert.deepEqual([...guarded.scanKeys()], [{ table, key: "k" }]);
    assert.equal(reported.length, calls.length + asyncCalls.length);
  } finally {
    await store.close();
  }
});

Deno.test("guardStore() reports the store's assertion of the Paxos rules in promise/accept", async () => {
  const store = await openTestStore();
  try {
    const reported: Error[] = [];
    const guarded = guardStore(store, (error) => reported.push(error));
    await guarded.promise(table, "k", ballot(5));
    // The acceptor checks these rules first; a call that breaks them is a bug the store catches again.
    // Refused in the caller's turn, as the store queues in it.
    assert.throws(() => guarded.promise(table, "k", ballot(4)), AssertionError);
    assert.throws(() => guarded.accept(table, "k", ballot(3), state), AssertionError);
    assert.equal(reported.length, 2);
    assert.ok(reported.every((error) => error instanceof AssertionError));
    assert.equal(compareBallots(store.acceptorOf(table, "k").promised, ballot(5)), 0, "nothing changed");
    assert.equal(store.replicaOf(table, "k"), undefined);
  } finally {
    await store.close();
  }
});

Deno.test("guardStore() queues promise() and accept() in the caller's turn", async () => {
  const store = await openTestStore();
  try {
    const guarded = guardStore(store, () => assert.fail("nothing is broken"));
    const promised = guarded.promise(table, "k", ballot(2));
    // Seen before anything is awaited: the acceptor judges the next message against it.
    assert.equal(compareBallots(guarded.acceptorOf(table, "k").promised, ballot(2)), 0);
    const accepted = guarded.accept(table, "k", ballot(2), state);
    assert.equal(compareBallots(guarded.acceptorOf(table, "k").accepted, ballot(2)), 0);
    await promised;
    const entry = await accepted;
    assert.equal(entry.version, 1);
    assert.deepEqual(guarded.replicaOf(table, "k"), { ...state, ballot: ballot(2) });
  } finally {
    await store.close();
  }
});

Deno.test("guardStore() passes operating errors on unchanged and unreported", async () => {
  const store = await openTestStore();
  try {
    const failure: { next?: (() => Error) | undefined } = {};
    const reported: Error[] = [];
    const guarded = guardStore(failingOnce(store, failure), (error) => reported.push(error));
    const refusal = new InvalidRequestError("bad name");
    failure.next = () => refusal;
    await assert.rejects(guarded.delete(table, "k", alice), (error) => error === refusal);
    failure.next = () => refusal;
    assert.throws(() => guarded.acceptorOf(table, "k"), (error) => error === refusal);
    // The real store's refusals: a state it cannot hold, a name it does not take.
    assert.throws(() => guarded.viewOf(table, "k", { ...state, version: 0 }), KvError);
    await assert.rejects(guarded.put(table, "", 1, alice), KvError);
    assert.equal(reported.length, 0);
  } finally {
    await store.close();
  }
});

Deno.test({
  name: "guardStore() lets promise() and accept() throw the store's refusals synchronously",
  fn: async () => {
    const store = await openTestStore();
    const reported: Error[] = [];
    const guarded = guardStore(store, (error) => reported.push(error));
    assert.throws(() => guarded.promise(table, "", ballot(1)), KvError, "a name the store does not take");
    assert.throws(() => guarded.accept(table, "k", ballot(1), { ...state, version: 0 }), KvError);
    await store.close();
    assert.throws(() => guarded.promise(table, "k", ballot(1)), KvError, "a closed store");
    assert.throws(() => guarded.accept(table, "k", ballot(1), state), KvError);
    assert.equal(reported.length, 0);
  },
});
