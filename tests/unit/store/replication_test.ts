// Goal: what replication needs of the store: replica states applied durably by the conflict rule (with the
// same events as local writes, in order, after the sync), group-committed in batches, surviving restart
// and checkpoint; replicaOf/scan to read states out; purge to drop keys that moved away; and no lost or
// regressed write when a replica meets a pending local write of its key.
// Method: Stores on MemoryFs with a manual clock; a HookedFs counts syncs and holds a WAL sync open where
// a write must stay pending; crashCopy() stands for a power cut.
import assert from "node:assert/strict";
import { InvalidRequestError } from "../../../src/util/errors.ts";
import { ManualClock } from "../../../src/util/clock.ts";
import { MemoryFs } from "../../../src/store/fs.ts";
import { type ChangeEvent, type ReplicaEntry, type Store, StoreClosedError } from "../../../src/store/mod.ts";
import { dumpTable, HookedFs, openStore, storeOptions, waitFor } from "./test_store.ts";

const walPath = "/data/wal.log";
const alice = { owner: "alice" };
const t0 = 1_700_000_000_000;

function live(version: number, valueJson: string, overrides: Partial<ReplicaEntry> = {}): ReplicaEntry {
  return { version, timestamp: t0, owner: "alice", deleted: false, valueJson, ...overrides };
}

function dead(version: number, overrides: Partial<ReplicaEntry> = {}): ReplicaEntry {
  return { version, timestamp: t0, owner: "alice", deleted: true, ...overrides };
}

/** Every key of the store as `table/key -> Entry.json`, tombstones included, from scan(). */
function dumpAll(store: Store): Record<string, string> {
  const result: Record<string, string> = {};
  for (const { table, key, entry } of store.scan()) result[`${table}/${key}`] = entry.json;
  return result;
}

/** Holds every sync of wal.log until the returned release() is called. */
function holdWalSyncs(fs: HookedFs): { held: () => boolean; release: () => void } {
  let release: () => void = () => {};
  const gate = new Promise<void>((resolve) => release = resolve);
  let held = false;
  fs.hooks.beforeSyncData = async (path) => {
    if (path !== walPath) return;
    held = true;
    await gate;
  };
  return { held: () => held, release };
}

Deno.test("Store.applyReplica() applies a winning state, refuses stale and identical ones", async () => {
  const store = await openStore(storeOptions());
  assert.equal(await store.applyReplica("t", "k", live(3, '{"n":3}')), "applied");
  const entry = store.get("t", "k");
  assert.equal(entry?.json, `{"value":{"n":3},"version":3,"timestamp":${t0},"owner":"alice"}`);
  assert.equal(await store.applyReplica("t", "k", live(3, '{"n":3}')), "identical");
  assert.equal(await store.applyReplica("t", "k", live(2, '{"n":9}', { timestamp: t0 + 9 })), "stale");
  assert.deepEqual(store.get("t", "k"), entry, "a stale replica changes nothing");
  assert.equal(await store.applyReplica("t", "k", live(3, '{"n":4}', { timestamp: t0 + 1 })), "applied");
  assert.equal(await store.applyReplica("t", "k", dead(3, { timestamp: t0 + 1 })), "applied");
  assert.equal(store.get("t", "k"), undefined);
  assert.equal(store.getEntry("t", "k")?.json, `{"key":"k","version":3,"timestamp":${t0 + 1}}`);
  assert.equal(await store.applyReplica("t", "k", live(3, '"z"', { timestamp: t0 + 1 })), "stale");
  assert.equal(store.stats().sequence, 3, "one sequence per applied replica");
  await store.close();
});

Deno.test(
  "Store: a local write after a replica continues from its version and checks its owner",
  async () => {
    const store = await openStore(storeOptions());
    await store.applyReplica("t", "k", live(7, "1", { owner: "bob" }));
    await assert.rejects(() => store.put("t", "k", 2, alice), /owned by another user/);
    assert.equal((await store.put("t", "k", 2, { owner: "bob" })).version, 8);
    await store.applyReplica("t", "gone", dead(4));
    const recreated = await store.put("t", "gone", 1, alice);
    assert.equal(recreated.version, 5, "a re-created key continues after the replica's tombstone");
    await store.close();
  },
);

Deno.test(
  "Store: a replica's Entry.json and ChangeEvent are exactly those of the same local write",
  async () => {
    const clock = new ManualClock(t0);
    const coordinator = await openStore(storeOptions({ clock }));
    const replica = await openStore(storeOptions());
    const localEvents: ChangeEvent[] = [];
    const replicaEvents: ChangeEvent[] = [];
    coordinator.onChange((event) => localEvents.push(event));
    replica.onChange((event) => replicaEvents.push(event));
    const key = 'k"1 😀';
    const value = { s: 'a,"version":9,"owner":"x"}', list: [1, { deep: null }], unicode: "é\u2028" };
    const states: ReplicaEntry[] = [];
    await coordinator.put("_users", key, value, alice);
    states.push(coordinator.replicaOf("_users", key)!);
    clock.advance(3);
    await coordinator.patch("_users", key, { more: true }, alice);
    states.push(coordinator.replicaOf("_users", key)!);
    await coordinator.delete("_users", key, alice);
    states.push(coordinator.replicaOf("_users", key)!);
    assert.equal(states[0]!.valueJson, JSON.stringify(value), "replicaOf() round-trips the value's JSON");
    assert.equal(states[2]!.valueJson, undefined);
    for (const state of states) assert.equal(await replica.applyReplica("_users", key, state), "applied");
    assert.deepEqual(replicaEvents.map((event) => event.source), ["replica", "replica", "replica"]);
    assert.deepEqual(localEvents.map((event) => event.source), ["local", "local", "local"]);
    assert.deepEqual(
      replicaEvents.map((event) => ({ ...event, source: "local" })),
      localEvents,
      "the same change but its source",
    );
    assert.deepEqual(dumpAll(replica), dumpAll(coordinator));
    assert.deepEqual(replica.replicaOf("_users", key), states[2]);
    assert.equal(replica.replicaOf("_users", "missing"), undefined);
    await replica.close();
    await coordinator.close();
  },
);

Deno.test("Store.applyReplicas() publishes applied states in order, only after their sync", async () => {
  const fs = new HookedFs(new MemoryFs());
  const store = await openStore(storeOptions({ fs }));
  await store.put("t", "a", "old", alice);
  const gate = holdWalSyncs(fs);
  let acked = false;
  const seen: Array<{ event: ChangeEvent; acked: boolean; visible: string | undefined }> = [];
  store.onChange((event) =>
    seen.push({ event, acked, visible: store.getEntry(event.table, event.key)?.json })
  );
  const applying = store.applyReplicas([
    { table: "t", key: "a", entry: live(5, '"new"') },
    { table: "t", key: "b", entry: dead(2) },
    { table: "u", key: "c", entry: live(1, "[]") },
  ]).then((results) => {
    acked = true;
    return results;
  });
  await waitFor(gate.held, { timeoutMs: 2_000 });
  assert.equal(seen.length, 0);
  assert.equal(JSON.parse(store.get("t", "a")!.json).value, "old", "no dirty read of a replica");
  assert.equal(store.getEntry("t", "b"), undefined);
  gate.release();
  assert.deepEqual(await applying, ["applied", "applied", "applied"]);
  assert.deepEqual(
    seen.map(({ event: { kind, table, key, version, sequence }, acked }) => ({
      kind,
      table,
      key,
      version,
      sequence,
      acked,
    })),
    [
      { kind: "Updated", table: "t", key: "a", version: 5, sequence: 2, acked: false },
      { kind: "Deleted", table: "t", key: "b", version: 2, sequence: 3, acked: false },
      { kind: "Updated", table: "u", key: "c", version: 1, sequence: 4, acked: false },
    ],
  );
  for (const { event, visible } of seen) assert.equal(visible, event.json, "visible before it is published");
  await store.close();
});

Deno.test("Store.applyReplicas() shares one WAL batch and one sync, with results in order", async () => {
  const fs = new HookedFs(new MemoryFs());
  const store = await openStore(storeOptions({ fs }));
  await store.applyReplica("t", "k0", live(10, "0"));
  const syncsBefore = fs.syncCount(walPath);
  const batchesBefore = store.stats().walBatchCount;
  const items = Array.from({ length: 200 }, (_, index) => ({
    table: `t${index % 3}`,
    key: `k${index}`,
    entry: live(index + 1, `${index}`),
  }));
  items.push({ table: "t", key: "k0", entry: live(9, '"older"') });
  items.push({ table: "t", key: "dup", entry: live(2, '"first"') });
  items.push({ table: "t", key: "dup", entry: live(1, '"lower than the item before"') });
  items.push({ table: "t", key: "dup", entry: live(2, '"later"', { timestamp: t0 + 1 }) });
  const results = await store.applyReplicas(items);
  assert.equal(fs.syncCount(walPath) - syncsBefore, 1);
  assert.equal(store.stats().walBatchCount - batchesBefore, 1);
  assert.deepEqual(results.slice(200), ["stale", "applied", "stale", "applied"]);
  assert(results.slice(0, 200).every((result) => result === "applied"));
  assert.equal(JSON.parse(store.get("t", "dup")!.json).value, "later");
  assert.equal(store.stats().sequence, 1 + 202);
  assert.deepEqual(await store.applyReplicas([]), []);
  await store.close();
});

Deno.test("Store.applyReplicas() checks every item first: one invalid item refuses the list", async () => {
  const limits = { requestBytesMax: 1000, nameBytesMax: 10 };
  const store = await openStore(storeOptions({ limits }));
  const good = { table: "t", key: "good", entry: live(1, "1") };
  const invalid: Array<{ table: string; key: string; entry: ReplicaEntry }> = [
    { table: "t", key: "k", entry: { ...live(1, "1"), version: 0 } },
    { table: "t", key: "k", entry: { ...live(1, "1"), timestamp: -5 } },
    { table: "t", key: "k", entry: { ...dead(1), valueJson: "1" } },
    { table: "t", key: "k", entry: { version: 1, timestamp: 1, owner: "a", deleted: false } },
    { table: "t", key: "k", entry: live(1, "1", { owner: "" }) },
    { table: "", key: "k", entry: live(1, "1") },
    { table: "t", key: "k".repeat(11), entry: live(1, "1") },
    { table: "t", key: "k", entry: live(1, "x".repeat(1388)) },
    { table: "t", key: "k", entry: live(1, "1", { ballot: { counter: -1, node: "n" } }) },
    { table: "t", key: "k", entry: live(1, "1", { ballot: { counter: 1, node: "n".repeat(301) } }) },
    { table: "t", key: "k", entry: live(1, "1", { ballot: { counter: 1, node: "\uD800" } }) },
  ];
  for (const item of invalid) {
    await assert.rejects(() => store.applyReplicas([good, item]), InvalidRequestError);
  }
  // A record holds 37 fixed bytes + names + value (+ a ballot, + an expiry); its limit is
  // requestBytesMax + 3 * nameBytesMax + 37 + 312 + 8 (the largest ballot: u64, u32 and a 300-byte node;
  // an expiry: u64).
  const valueBytesMax = 1000 + 30 - 3 + 312 + 8;
  const atMax = live(1, `"${"x".repeat(valueBytesMax - 2)}"`, { owner: "a" });
  const overMax = live(1, `"${"x".repeat(valueBytesMax - 1)}"`, { owner: "a" });
  await assert.rejects(() => store.applyReplica("t", "w", overMax), /record is 1388 bytes, limit is 1387/);
  await assert.rejects(() => store.applyReplica("t", "w", overMax), InvalidRequestError);
  assert.equal(store.stats().sequence, 0, "nothing was written");
  assert.equal(store.getEntry("t", "good"), undefined);
  assert.equal(await store.applyReplica("t", "v", atMax), "applied");
  await store.close();
  await assert.rejects(() => store.applyReplica("t", "v", live(2, "2")), StoreClosedError);
});

Deno.test(
  "Store: replicas survive a crash, a checkpoint, and a crash between storage.db and WAL truncation",
  async () => {
    const inner = new MemoryFs();
    const fs = new HookedFs(inner);
    const store = await openStore(storeOptions({ fs }));
    await store.applyReplica("t", "k", live(4, '"first"'));
    // Same version, later timestamp: replay must use the conflict rule, not the version alone.
    await store.applyReplica("t", "k", live(4, '"second"', { timestamp: t0 + 1 }));
    await store.applyReplica("t", "tie", live(2, '"a"'));
    await store.applyReplica("t", "tie", dead(2));
    await store.applyReplica("_auth", "x", live(1, '{"hash":"h"}', { owner: "root" }));
    const expected = dumpAll(store);
    const afterCrash = await openStore(storeOptions({ fs: inner.crashCopy() }));
    assert.deepEqual(dumpAll(afterCrash), expected);
    assert.equal(afterCrash.stats().sequence, 5);
    await afterCrash.close();
    let crashed: MemoryFs | undefined;
    fs.hooks.beforeTruncate = (path) => {
      if (path === walPath) crashed ??= inner.crashCopy();
    };
    await store.checkpoint();
    assert(crashed !== undefined);
    const halfway = await openStore(storeOptions({ fs: crashed }));
    assert.deepEqual(dumpAll(halfway), expected, "storage.db plus the whole WAL replays to the same state");
    await halfway.close();
    await store.applyReplica("t", "k", live(4, '"third"', { timestamp: t0 + 2 }));
    await store.close();
    const reopened = await openStore(storeOptions({ fs: inner.crashCopy() }));
    assert.equal(JSON.parse(reopened.get("t", "k")!.json).value, "third");
    assert.equal(reopened.getEntry("t", "tie")?.deleted, true);
    assert.equal(reopened.stats().sequence, 6);
    await reopened.close();
  },
);

Deno.test(
  "Store.scan() yields every key of every table, tombstones and reserved tables included, lazily",
  async () => {
    const store = await openStore(storeOptions());
    await store.put("_users", "alice", {}, alice);
    await store.put("t", "a", 1, alice);
    await store.put("t", "b", 2, alice);
    await store.delete("t", "b", alice);
    await store.applyReplica("u", "c", dead(3));
    const seen = [...store.scan()].map(({ table, key, entry }) => `${table}/${key}/${entry.deleted}`).sort();
    assert.deepEqual(seen, ["_users/alice/false", "t/a/false", "t/b/true", "u/c/true"]);
    const keys = [...store.scanKeys()].map(({ table, key }) => `${table}/${key}`).sort();
    assert.deepEqual(keys, ["_users/alice", "t/a", "t/b", "u/c"], "scanKeys() walks the same keys");
    const iterator = store.scan()[Symbol.iterator]();
    const first = iterator.next();
    assert(!first.done);
    await store.put("t", "new", 1, alice);
    await store.purge("u", "c");
    const rest = [];
    for (let next = iterator.next(); !next.done; next = iterator.next()) rest.push(next.value);
    assert(rest.length >= 2, "the walk went on through the changes");
    assert(rest.every(({ table, key }) => !(table === "u" && key === "c")), "a purged key is not yielded");
    await store.close();
  },
);

Deno.test(
  "Store.purge() drops a key without a tombstone or an event, durably across restart and checkpoint",
  async () => {
    const inner = new MemoryFs();
    const fs = new HookedFs(inner);
    const store = await openStore(storeOptions({ fs }));
    const events: ChangeEvent[] = [];
    store.onChange((event) => events.push(event));
    for (const key of ["a", "b", "c"]) await store.put("t", key, key, alice);
    await store.delete("t", "c", alice);
    await store.applyReplica("only", "x", live(3, "3"));
    const walBytes = store.stats().walBytes;
    await store.purge("t", "missing");
    await store.purge("never", "x");
    assert.equal(store.stats().walBytes, walBytes, "purging a key this node lacks writes nothing");
    await store.purge("t", "b");
    await store.purge("t", "c");
    await store.purge("only", "x");
    assert.equal(events.length, 5, "a purge publishes nothing");
    assert.equal(store.stats().sequence, 5, "and takes no sequence");
    assert.equal(store.getEntry("t", "b"), undefined);
    assert.equal(store.getEntry("t", "c"), undefined, "no tombstone either");
    assert.equal(store.replicaOf("t", "b"), undefined);
    assert.deepEqual(dumpTable(store, "t"), { a: store.get("t", "a")!.json });
    assert.deepEqual(store.tableCounts(), new Map([["t", 1]]), "a table purged empty is gone");
    assert(!store.hasTable("only"));
    const expected = dumpAll(store);
    const afterCrash = await openStore(storeOptions({ fs: inner.crashCopy() }));
    assert.deepEqual(dumpAll(afterCrash), expected);
    assert(!afterCrash.hasTable("only"));
    await afterCrash.close();
    let crashed: MemoryFs | undefined;
    fs.hooks.beforeTruncate = (path) => {
      if (path === walPath) crashed ??= inner.crashCopy();
    };
    await store.checkpoint();
    const halfway = await openStore(storeOptions({ fs: crashed! }));
    assert.deepEqual(dumpAll(halfway), expected, "storage.db plus the whole WAL, purges included");
    await halfway.close();
    const recreated = await store.put("t", "b", "again", { owner: "bob" });
    assert.equal(recreated.version, 1, "a purged key starts over");
    assert.equal(events.at(-1)?.sequence, 6, "sequences stay contiguous across purges");
    await store.close();
    const reopened = await openStore(storeOptions({ fs: inner.crashCopy() }));
    assert.deepEqual(dumpAll(reopened), dumpAll(store));
    assert.equal(reopened.stats().sequence, 6);
    await reopened.close();
  },
);

Deno.test(
  "Store: a key purged and written again replays to its last state, from the WAL and from storage.db",
  async () => {
    const inner = new MemoryFs();
    const fs = new HookedFs(inner);
    const store = await openStore(storeOptions({ fs }));
    await store.put("t", "k", 1, alice);
    await store.put("t", "k", 2, alice);
    await store.purge("t", "k");
    await store.put("t", "k", "back", { owner: "bob" });
    await store.purge("t", "k");
    await store.purge("t", "k");
    await store.applyReplica("t", "k", live(1, '"replica"', { owner: "carol" }));
    const expected = dumpAll(store);
    assert.equal(expected["t/k"], `{"value":"replica","version":1,"timestamp":${t0},"owner":"carol"}`);
    let crashed: MemoryFs | undefined;
    fs.hooks.beforeTruncate = (path) => {
      if (path === walPath) crashed ??= inner.crashCopy();
    };
    await store.checkpoint();
    for (const copy of [crashed!, inner.crashCopy()]) {
      const reopened = await openStore(storeOptions({ fs: copy }));
      assert.deepEqual(dumpAll(reopened), expected);
      assert.equal(reopened.stats().sequence, 4);
      await reopened.close();
    }
    await store.close();
  },
);

Deno.test(
  "Store: a purge during a listing and a key re-added after a purge keep listings exact",
  async () => {
    const store = await openStore(storeOptions());
    for (const key of ["a", "b", "c", "d"]) await store.put("t", key, key, alice);
    const iterator = store.entries("t", { limit: 10 })[Symbol.iterator]();
    assert.equal(iterator.next().value?.[0], "a");
    await store.purge("t", "b");
    await store.purge("t", "d");
    await store.put("t", "d", "again", alice);
    await store.put("t", "e", "new", alice);
    assert.deepEqual([...{ [Symbol.iterator]: () => iterator }].map(([key]) => key), ["c", "d"]);
    assert.deepEqual([...store.entries("t", { limit: 10 })].map(([key]) => key), ["a", "c", "d", "e"]);
    await store.purge("t", "a");
    await store.put("t", "a", 1, alice);
    await store.purge("t", "a");
    assert.deepEqual([...store.entries("t", { after: "", limit: 10 })].map(([key]) => key), ["c", "d", "e"]);
    assert.deepEqual(store.tableCounts(), new Map([["t", 3]]));
    await store.close();
  },
);

Deno.test("Store.applyReplica() waits behind a pending local write of its key, then compares", async () => {
  const fs = new HookedFs(new MemoryFs());
  const store = await openStore(storeOptions({ fs }));
  await store.put("t", "k", "v1", alice);
  const gate = holdWalSyncs(fs);
  const local = store.put("t", "k", "v2 local", alice);
  await waitFor(gate.held, { timeoutMs: 2_000 });
  let settled = false;
  const wins = store.applyReplica("t", "k", live(2, '"v2 replica"', { timestamp: t0 + 5 })).finally(() => {
    settled = true;
  });
  const loses = store.applyReplica("t", "k", live(2, '"v2 older"', { timestamp: t0 - 5 }));
  const other = store.applyReplica("t", "other", live(1, "1"));
  // One macrotask turn runs every microtask: a replica that did not wait would have been queued by now.
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.equal(settled, false, "the replica waits for the pending write");
  assert.equal(store.getEntry("t", "other"), undefined, "and so does a replica queued behind the held sync");
  gate.release();
  assert.equal((await local).version, 2, "the local write is not lost");
  assert.equal(await wins, "applied", "compared against the now durable v2");
  assert.equal(await loses, "stale");
  assert.equal(await other, "applied");
  assert.equal(JSON.parse(store.get("t", "k")!.json).value, "v2 replica");
  assert.equal((await store.put("t", "k", "v3", alice)).version, 3, "versions never regress");
  await store.close();
});

Deno.test(
  "Store: a replica waiting behind a local write that fails on a full disk is then applied",
  async () => {
    const inner = new MemoryFs();
    const fs = new HookedFs(inner);
    const store = await openStore(storeOptions({ fs }));
    await store.put("t", "k", "v1", alice);
    const gate = holdWalSyncs(fs);
    const blocker = store.put("t", "blocker", 1, alice);
    await waitFor(gate.held, { timeoutMs: 2_000 });
    // The next WAL write (the batch holding the local write) finds the disk full; later ones fit.
    let fullWrites = 1;
    fs.hooks.beforeWrite = (path) => {
      if (path !== walPath || fullWrites === 0) return;
      fullWrites -= 1;
      throw new Error("No space left on device (os error 28)");
    };
    const local = store.put("t", "k", "v2 local", alice);
    const replica = store.applyReplica("t", "k", live(2, '"v2 replica"', { timestamp: t0 - 5 }));
    gate.release();
    await blocker;
    await assert.rejects(() => local, /disk is full/);
    assert.equal(await replica, "applied", "a stale verdict against the failed write would have lost it");
    assert.equal(store.get("t", "k")?.version, 2);
    assert.equal((await store.put("t", "k", "v3", alice)).version, 3);
    await store.close();
  },
);

Deno.test("Store.purge() waits behind pending writes of its key; a later write starts over", async () => {
  const fs = new HookedFs(new MemoryFs());
  const store = await openStore(storeOptions({ fs }));
  await store.put("t", "k", "v1", alice);
  const gate = holdWalSyncs(fs);
  const local = store.put("t", "k", "v2", alice);
  await waitFor(gate.held, { timeoutMs: 2_000 });
  const purged = store.purge("t", "k");
  gate.release();
  assert.equal((await local).version, 2);
  await purged;
  assert.equal(store.getEntry("t", "k"), undefined);
  const purging = store.purge("t", "x");
  const closing = store.close();
  await purging;
  await closing;
  await assert.rejects(() => store.purge("t", "k"), StoreClosedError);
});

Deno.test("Store: a replica waiting when the store closes is refused with StoreClosedError", async () => {
  const fs = new HookedFs(new MemoryFs());
  const store = await openStore(storeOptions({ fs }));
  const gate = holdWalSyncs(fs);
  const local = store.put("t", "k", 1, alice);
  await waitFor(gate.held, { timeoutMs: 2_000 });
  const replica = store.applyReplica("t", "k", live(9, "9"));
  const closing = store.close();
  gate.release();
  await local;
  await assert.rejects(() => replica, StoreClosedError);
  await closing;
});
