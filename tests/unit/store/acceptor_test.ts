// Goal: the store is each key's durable Paxos acceptor (issue 19): promise() and accept() keep their rules
// (asserted), are seen by acceptorOf() in the caller's turn, are durable when they resolve and survive a
// restart, a checkpoint (WAL truncated) and a start from a snapshot; an accept clears the promise, a purge
// drops it; applyReplicas() decides by ballots; change events say where a change came from.
// Method: Stores in Deno.makeTempDir() on DenoFs for what must be on a real disk, on MemoryFs (with a
// HookedFs holding WAL syncs, or a full disk) where a write must stay pending or fail.
import assert from "node:assert/strict";
import { AssertionError } from "../../../src/util/assert.ts";
import { InvalidRequestError } from "../../../src/util/errors.ts";
import { fileHeaderBytes } from "../../../src/store/frame.ts";
import {
  type Ballot,
  type ChangeEvent,
  DenoFs,
  MemoryFs,
  type ReplicaEntry,
  StorageFullError,
  type Store,
  StoreClosedError,
  zeroBallot,
} from "../../../src/store/mod.ts";
import { HookedFs, openStore, RecordingLogger, storeOptions, waitFor } from "./test_store.ts";

const t0 = 1_700_000_000_000;
const alice = { owner: "alice" };

function ballot(counter: number, node = "n1:6660"): Ballot {
  return { counter, node };
}

function live(version: number, valueJson: string, overrides: Partial<ReplicaEntry> = {}): ReplicaEntry {
  return { version, timestamp: t0, owner: "alice", deleted: false, valueJson, ...overrides };
}

/** A store on a fresh temp dir of the real disk; `reopen()` closes it and opens the same dir again. */
class DiskStore {
  readonly dir: string;
  store: Store;

  private constructor(dir: string, store: Store) {
    this.dir = dir;
    this.store = store;
  }

  static async create(): Promise<DiskStore> {
    const dir = await Deno.makeTempDir();
    return new DiskStore(dir, await DiskStore.#open(dir));
  }

  static #open(dir: string): Promise<Store> {
    return openStore(storeOptions({ dir, fs: new DenoFs() }));
  }

  async reopen(): Promise<Store> {
    await this.store.close();
    this.store = await DiskStore.#open(this.dir);
    return this.store;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.store.close();
    await Deno.remove(this.dir, { recursive: true });
  }
}

Deno.test("Store.promise() asserts the ballot is above the key's promise and accepted ballot", async () => {
  const store = await openStore(storeOptions());
  await store.promise("t", "k", ballot(2));
  assert.throws(() => store.promise("t", "k", ballot(2)), AssertionError, "equal to the promise");
  assert.throws(() => store.promise("t", "k", ballot(1, "z")), AssertionError, "below the promise");
  await store.accept("t", "k", ballot(3), live(1, '"v"'));
  assert.throws(() => store.promise("t", "k", ballot(3)), AssertionError, "equal to the accepted");
  assert.throws(() => store.promise("t", "other", zeroBallot), AssertionError, "the zero ballot");
  assert.throws(
    () => store.promise("t", "k", { counter: -1, node: "n" }),
    InvalidRequestError,
    "a malformed ballot is bad input, not a bug",
  );
  assert.throws(() => store.promise("t", "k", ballot(9, "n".repeat(301))), InvalidRequestError);
  await store.promise("t", "k", ballot(4, "n".repeat(300)));
  assert.deepEqual(store.acceptorOf("t", "k").promised, ballot(4, "n".repeat(300)));
  assert.equal(store.stats().sequence, 1, "a promise takes no sequence");
  await store.close();
});

Deno.test(
  "Store.accept() asserts the ballot is at least the promise and above the accepted ballot",
  async () => {
    const store = await openStore(storeOptions());
    await store.promise("t", "k", ballot(5));
    assert.throws(() => store.accept("t", "k", ballot(4, "z"), live(1, "1")), AssertionError);
    const accepted = await store.accept("t", "k", ballot(5), live(1, "1"));
    assert.deepEqual(accepted.ballot, ballot(5), "an accept at exactly the promise");
    assert.throws(() => store.accept("t", "k", ballot(5), live(2, "2")), AssertionError, "same ballot");
    assert.throws(() => store.accept("t", "k", ballot(4), live(2, "2")), AssertionError, "below");
    assert.deepEqual(store.acceptorOf("t", "k"), {
      promised: zeroBallot,
      accepted: ballot(5),
      entry: { ...live(1, "1"), ballot: ballot(5) },
    });
    await store.close();
  },
);

Deno.test(
  "Store.accept() checks its entry like applyReplicas(): nothing is queued for a bad one",
  async () => {
    const limits = { requestBytesMax: 1000, nameBytesMax: 10 };
    const store = await openStore(storeOptions({ limits }));
    // The limit is 1000 + 3 * 10 + 37 + 312 + 8 = 1387 bytes; this record holds 37 fixed bytes, "t", "k",
    // "alice", the ballot (8 + 4 + 7) and the value, here at most 1387 - 63 = 1324 bytes.
    const valueBytesMax = 1324;
    await store.promise("t", "k", ballot(1));
    const bad: ReplicaEntry[] = [
      { ...live(1, "1"), version: 0 },
      { ...live(1, "1"), timestamp: -5 },
      { version: 1, timestamp: t0, owner: "a", deleted: false },
      { ...live(1, "1"), owner: "" },
      live(1, `"${"x".repeat(valueBytesMax - 1)}"`), // one byte over the record limit
    ];
    for (const entry of bad) {
      assert.throws(() => store.accept("t", "k", ballot(2), entry), InvalidRequestError);
      assert.deepEqual(store.acceptorOf("t", "k"), {
        promised: ballot(1),
        accepted: zeroBallot,
        entry: undefined,
      });
    }
    assert.throws(() => store.accept("t", "k".repeat(11), ballot(2), live(1, "1")), InvalidRequestError);
    assert.throws(
      () => store.accept("t", "k", { counter: 1.5, node: "n" }, live(1, "1")),
      InvalidRequestError,
    );
    assert.equal(store.stats().sequence, 0, "nothing was written");
    const atMax = await store.accept("t", "k", ballot(2), live(1, `"${"x".repeat(valueBytesMax - 2)}"`));
    assert.equal(atMax.version, 1, "a record at the limit is accepted");
    await store.close();
    assert.throws(() => store.promise("t", "k", ballot(9)), StoreClosedError, "at once, not as a rejection");
    assert.throws(() => store.accept("t", "k", ballot(9), live(2, "2")), StoreClosedError);
  },
);

Deno.test(
  "Store.acceptorOf() and ballotsOf() see a promise and an accept in the caller's turn, before they " +
    "are durable",
  async () => {
    const fs = new HookedFs(new MemoryFs());
    const store = await openStore(storeOptions({ fs }));
    const syncsBefore = fs.syncCount("/data/wal.log");
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => release = resolve);
    let held = false;
    fs.hooks.beforeSyncData = async (path) => {
      if (path !== "/data/wal.log") return;
      held = true;
      await gate;
    };
    const promised = store.promise("t", "k", ballot(1));
    assert.deepEqual(store.acceptorOf("t", "k").promised, ballot(1), "seen in the same turn");
    assert.deepEqual(store.ballotsOf("t", "k"), { promised: ballot(1), accepted: zeroBallot });
    const accepted = store.accept("t", "k", ballot(1), live(1, '"v"', { ballot: ballot(99) }));
    const state = store.acceptorOf("t", "k");
    assert.deepEqual(state, {
      promised: zeroBallot,
      accepted: ballot(1),
      entry: { ...live(1, '"v"'), ballot: ballot(1) },
    }, "the accept cleared the promise; the entry's own ballot is overridden");
    assert.deepEqual(
      store.ballotsOf("t", "k"),
      { promised: zeroBallot, accepted: ballot(1) },
      "ballotsOf agrees",
    );
    await waitFor(() => held, { timeoutMs: 2_000 });
    assert.equal(store.getEntry("t", "k"), undefined, "readers see only durable states");
    release();
    await promised;
    assert.deepEqual((await accepted).ballot, ballot(1));
    assert.deepEqual(store.replicaOf("t", "k"), { ...live(1, '"v"'), ballot: ballot(1) });
    assert.deepEqual(
      store.ballotsOf("t", "k"),
      { promised: zeroBallot, accepted: ballot(1) },
      "once durable too",
    );
    assert.equal(fs.syncCount("/data/wal.log") - syncsBefore, 1, "both in one batch");
    await store.close();
  },
);

Deno.test(
  "Store.promise(): durable across a restart, a checkpoint and a start from a snapshot (real disk)",
  async () => {
    await using handle = await DiskStore.create();
    await handle.store.promise("t", "fresh", ballot(1)); // before any change: it carries sequence 0
    await handle.store.accept("t", "k", ballot(2), live(1, '"one"'));
    await handle.store.promise("t", "k", ballot(3));
    let store = await handle.reopen();
    assert.deepEqual(store.acceptorOf("t", "fresh"), {
      promised: ballot(1),
      accepted: zeroBallot,
      entry: undefined,
    });
    assert.deepEqual(store.acceptorOf("t", "k").promised, ballot(3));
    assert.deepEqual(store.acceptorOf("t", "k").accepted, ballot(2));
    await store.checkpoint();
    assert.equal(store.stats().walBytes, fileHeaderBytes, "the WAL was truncated");
    store = await handle.reopen();
    assert.deepEqual(store.acceptorOf("t", "fresh").promised, ballot(1), "storage.db carries the promise");
    assert.deepEqual(store.acceptorOf("t", "k").promised, ballot(3));
    await store.promise("t", "k", ballot(4));
    await store.snapshot();
    await store.close(); // a final checkpoint: the WAL is empty after it
    await Deno.remove(`${handle.dir}/storage.db`);
    store = await handle.reopen();
    assert.deepEqual(store.acceptorOf("t", "k").promised, ballot(4), "the snapshot carries the promise");
    assert.deepEqual(store.acceptorOf("t", "fresh").promised, ballot(1));
    assert.deepEqual(store.acceptorOf("t", "k").entry, { ...live(1, '"one"'), ballot: ballot(2) });
  },
);

Deno.test(
  "Store.accept() clears the promise durably; an accepted state survives restart and checkpoint",
  async () => {
    await using handle = await DiskStore.create();
    await handle.store.promise("t", "k", ballot(7));
    const accepted = await handle.store.accept("t", "k", ballot(7), live(3, '{"n":3}'));
    let store = await handle.reopen();
    assert.deepEqual(store.acceptorOf("t", "k"), {
      promised: zeroBallot,
      accepted: ballot(7),
      entry: { ...live(3, '{"n":3}'), ballot: ballot(7) },
    });
    assert.deepEqual(store.getEntry("t", "k"), accepted);
    assert.equal(accepted.json, `{"value":{"n":3},"version":3,"timestamp":${t0},"owner":"alice"}`);
    await store.checkpoint();
    store = await handle.reopen();
    assert.deepEqual(store.acceptorOf("t", "k").promised, zeroBallot, "no promise record in storage.db");
    assert.deepEqual(store.getEntry("t", "k"), accepted);
  },
);

Deno.test(
  "Store.applyReplicas() decides by ballots: higher applied, lower stale, equal identical",
  async () => {
    const fs = new MemoryFs();
    const store = await openStore(storeOptions({ fs }));
    await store.accept("t", "k", ballot(2), live(5, '"at 2"'));
    const results = await store.applyReplicas([
      { table: "t", key: "k", entry: live(9, '"lower ballot, higher version"', { ballot: ballot(1, "z") }) },
      { table: "t", key: "k", entry: live(5, '"at 2"', { ballot: ballot(2) }) },
      { table: "t", key: "k", entry: live(4, '"higher ballot, lower version"', { ballot: ballot(3) }) },
      { table: "t", key: "k", entry: live(4, '"same counter, other node"', { ballot: ballot(3, "z") }) },
      { table: "t", key: "new", entry: live(1, '"absent key"', { ballot: ballot(1) }) },
      { table: "t", key: "k", entry: live(9, '"zero ballot"') },
    ]);
    assert.deepEqual(results, ["stale", "identical", "applied", "stale", "applied", "stale"]);
    const expected = live(4, '"higher ballot, lower version"', { ballot: ballot(3) });
    assert.deepEqual(store.acceptorOf("t", "k").entry, expected);
    // Accepting (3, n1) promised its successor (4, n1): a delayed accept follows the accept rule.
    assert.equal(await store.applyReplica("t", "k", live(6, '"x"', { ballot: ballot(4, "a") })), "stale");
    assert.equal(await store.applyReplica("t", "k", live(6, '"y"', { ballot: ballot(4) })), "applied");
    await store.applyReplica("t", "k", live(2, '"lower version again"', { ballot: ballot(9) }));
    const recovered = await openStore(storeOptions({ fs: fs.crashCopy() }));
    assert.deepEqual(
      recovered.replicaOf("t", "k"),
      live(2, '"lower version again"', { ballot: ballot(9) }),
      "replay keeps the state of the highest ballot, not of the highest version",
    );
    await recovered.close();
    await store.close();
  },
);

Deno.test(
  "Store.applyReplicas() refuses a ballot below the key's explicit promise, and clears it when " +
    "applied",
  async () => {
    const store = await openStore(storeOptions());
    await store.accept("t", "k", ballot(1), live(1, '"one"'));
    await store.promise("t", "k", ballot(5));
    await store.promise("t", "bare", ballot(5));
    const results = await store.applyReplicas([
      { table: "t", key: "k", entry: live(2, '"two"', { ballot: ballot(4) }) },
      { table: "t", key: "bare", entry: live(1, '"zero ballot"') },
      { table: "t", key: "bare", entry: live(1, '"at the promise"', { ballot: ballot(5) }) },
    ]);
    assert.deepEqual(results, ["stale", "stale", "applied"]);
    assert.deepEqual(store.acceptorOf("t", "k").promised, ballot(5));
    assert.deepEqual(store.acceptorOf("t", "bare"), {
      promised: zeroBallot,
      accepted: ballot(5),
      entry: live(1, '"at the promise"', { ballot: ballot(5) }),
    });
    await store.close();
  },
);

Deno.test("Store.applyReplicas(): legacy zero-ballot states keep the conflict rule and strict", async () => {
  const store = await openStore(storeOptions());
  await store.put("t", "k", "local", alice);
  const local = store.replicaOf("t", "k")!;
  assert.equal(local.ballot, undefined, "a plain local write is at the zero ballot, left out");
  assert.deepEqual(
    await store.applyReplicas([
      { table: "t", key: "k", entry: local },
      { table: "t", key: "k", entry: live(1, '"later"', { timestamp: local.timestamp + 1 }), strict: true },
      { table: "t", key: "k", entry: live(1, '"later"', { timestamp: local.timestamp + 1 }) },
      { table: "t", key: "k", entry: live(0 + 1, '"older"', { timestamp: local.timestamp - 1 }) },
    ]),
    ["identical", "stale", "applied", "stale"],
  );
  await store.close();
});

Deno.test("Store.purge() drops the key's promise durably, a key with only a promise too", async () => {
  const fs = new MemoryFs();
  const store = await openStore(storeOptions({ fs }));
  await store.accept("t", "k", ballot(1), live(1, '"v"'));
  await store.promise("t", "k", ballot(2));
  await store.promise("t", "bare", ballot(2));
  await store.purge("t", "k");
  await store.purge("t", "bare");
  const empty = { promised: zeroBallot, accepted: zeroBallot, entry: undefined };
  assert.deepEqual(store.acceptorOf("t", "k"), empty);
  assert.deepEqual(store.acceptorOf("t", "bare"), empty);
  const walBytes = store.stats().walBytes;
  await store.purge("t", "bare");
  assert.equal(store.stats().walBytes, walBytes, "nothing left to purge: nothing is written");
  const recovered = await openStore(storeOptions({ fs: fs.crashCopy() }));
  assert.deepEqual(recovered.acceptorOf("t", "k"), empty, "the purge record drops it on replay");
  assert.deepEqual(recovered.acceptorOf("t", "bare"), empty);
  await recovered.checkpoint();
  await recovered.close();
  const again = await openStore(storeOptions({ fs: fs.crashCopy() }));
  assert.deepEqual(again.acceptorOf("t", "bare"), empty);
  await again.close();
  await store.close();
});

Deno.test("Store.onChange(): events carry their source; promises and purges are not changes", async () => {
  const store = await openStore(storeOptions());
  const events: ChangeEvent[] = [];
  store.onChange((event) => events.push(event));
  await store.put("t", "a", 1, alice);
  await store.promise("t", "b", ballot(1));
  await store.accept("t", "b", ballot(1), live(1, "2"));
  await store.applyReplica("t", "c", live(1, "3", { ballot: ballot(1) }));
  await store.purge("t", "c");
  await store.delete("t", "a", alice);
  assert.deepEqual(
    events.map(({ kind, key, sequence, source }) => ({ kind, key, sequence, source })),
    [
      { kind: "Updated", key: "a", sequence: 1, source: "local" },
      { kind: "Updated", key: "b", sequence: 2, source: "accepted" },
      { kind: "Updated", key: "c", sequence: 3, source: "replica" },
      { kind: "Deleted", key: "a", sequence: 4, source: "local" },
    ],
  );
  assert.equal(events[1]!.json, `{"value":2,"version":1,"timestamp":${t0},"owner":"alice"}`, "no ballot");
  await store.close();
});

Deno.test("Store.scanStates(): the content hash covers the ballot", async () => {
  const store = await openStore(storeOptions());
  await store.applyReplica("t", "zero", live(1, '"same"'));
  await store.applyReplica("t", "one", live(1, '"same"', { ballot: ballot(1) }));
  await store.applyReplica("t", "two", live(1, '"same"', { ballot: ballot(2) }));
  const other = await openStore(storeOptions());
  await other.applyReplica("t", "one", live(1, '"same"', { ballot: ballot(1) }));
  const states = new Map([...store.scanStates()].map(({ key, state }) => [key, state]));
  assert.deepEqual(states.get("two")!.ballot, ballot(2));
  assert.deepEqual(states.get("zero")!.ballot, zeroBallot);
  const hashes = new Set([...states.values()].map((state) => state.contentHash));
  assert.equal(hashes.size, 3, "one value at three ballots hashes three ways");
  assert.equal(
    [...other.scanStates()][0]!.state.contentHash,
    states.get("one")!.contentHash,
    "replicas agree",
  );
  await other.close();
  await store.close();
});

Deno.test("Store: a batch that fails takes its pending promise with it", async () => {
  const fs = new MemoryFs();
  const store = await openStore(storeOptions({ fs }));
  await store.promise("t", "k", ballot(1));
  fs.capacityBytes = store.stats().walBytes + 10;
  const failed = store.promise("t", "k", ballot(2));
  assert.deepEqual(store.acceptorOf("t", "k").promised, ballot(2));
  await assert.rejects(() => failed, StorageFullError);
  assert.deepEqual(store.acceptorOf("t", "k").promised, ballot(1), "back to the durable promise");
  fs.capacityBytes = Infinity;
  await store.promise("t", "k", ballot(2));
  await store.close();
});

Deno.test("Store.viewOf() renders a replica's state as a reader sees it, writing nothing", async () => {
  const store = await openStore(storeOptions());
  const view = store.viewOf("t", "k", live(2, '{"a":1}', { ballot: ballot(3) }));
  assert.equal(view.json, `{"value":{"a":1},"version":2,"timestamp":${t0},"owner":"alice"}`);
  assert.deepEqual(view.ballot, ballot(3));
  assert.equal(store.getEntry("t", "k"), undefined);
  assert.throws(() => store.viewOf("t", "k", { ...live(1, "1"), version: 0 }), InvalidRequestError);
  await store.close();
});

Deno.test("Store.checkpoint() carries thousands of promises across state file frames", async () => {
  const fs = new MemoryFs();
  const store = await openStore(storeOptions({ fs }));
  const node = "node-".repeat(50);
  const keys = Array.from({ length: 2_000 }, (_, index) => `key-${index}`);
  await Promise.all(keys.map((key, index) => store.promise("p", key, ballot(index + 1, node))));
  await store.put("t", "k", 1, alice);
  await store.checkpoint();
  const recovered = await openStore(storeOptions({ fs: fs.crashCopy() }));
  for (const [index, key] of keys.entries()) {
    assert.deepEqual(recovered.acceptorOf("p", key).promised, ballot(index + 1, node));
  }
  assert.equal(recovered.hasTable("p"), false, "promises are not keys");
  assert.equal(recovered.stats().sequence, 1);
  await recovered.close();
  await store.close();
});

Deno.test(
  "Store.open() drops a promise a lossy recovery left at or below its key's accepted ballot",
  async () => {
    const fs = new MemoryFs();
    const store = await openStore(storeOptions({ fs }));
    await store.accept("t", "k", ballot(5), live(1, '"at 5"'));
    await store.snapshot();
    await store.put("t", "k", "local", alice); // lost below: in neither the snapshot nor the WAL
    await store.checkpoint();
    await store.promise("t", "k", ballot(3)); // above the local write's zero ballot
    await store.promise("t", "other", ballot(3));
    const image = fs.crashCopy(); // the WAL holds both promises
    await store.close();
    await image.remove("/data/storage.db");
    const logger = new RecordingLogger();
    const recovered = await openStore(storeOptions({ fs: image, logger }));
    assert.deepEqual(recovered.acceptorOf("t", "k"), {
      promised: zeroBallot,
      accepted: ballot(5),
      entry: { ...live(1, '"at 5"'), ballot: ballot(5) },
    });
    assert.deepEqual(recovered.acceptorOf("t", "other").promised, ballot(3), "a promise above its key stays");
    assert.ok(logger.at("warn").some((line) => line.message.includes("dropped promises")));
    await recovered.close();
  },
);

/** Lets the microtasks queued so far run (the WAL decides on a batch in one), but no timer. */
async function microtasks(): Promise<void> {
  for (let turn = 0; turn < 5; turn += 1) await Promise.resolve();
}

Deno.test(
  "Store.accept({ lazy }) starts no batch of its own: it waits for an urgent write or walLazyWaitMs, " +
    "and is seen only once durable",
  async () => {
    const fs = new HookedFs(new MemoryFs());
    const store = await openStore(storeOptions({ fs }));
    const batches = () => store.stats().walBatchCount;
    const before = batches();
    const syncsBefore = fs.syncCount("/data/wal.log");
    const lazyOne = store.accept("t", "a", ballot(1), live(1, '"a"'), { lazy: true });
    const lazyTwo = store.accept("t", "b", ballot(1), live(1, '"b"'), { lazy: true });
    assert.deepEqual(store.ballotsOf("t", "a").accepted, ballot(1), "the acceptor sees it in this turn");
    await microtasks();
    assert.equal(batches(), before, "no batch started by lazy accepts at once");
    assert.equal(fs.syncCount("/data/wal.log"), syncsBefore, "nor a sync");
    assert.equal(store.getEntry("t", "a"), undefined, "readers see only durable states");
    // Both go in one batch when the wait is over: they need not come with anything else.
    await Promise.all([lazyOne, lazyTwo]);
    assert.equal(batches(), before + 1);
    assert.equal(store.getEntry("t", "a")?.version, 1);
    // A lazy accept rides with the next urgent write, in its batch.
    const order: string[] = [];
    const lazyThree = store.accept("t", "c", ballot(1), live(1, '"c"'), { lazy: true }).then(() =>
      order.push("c")
    );
    const urgent = store.put("t", "d", 1, alice).then(() => order.push("d"));
    await Promise.all([lazyThree, urgent]);
    assert.equal(batches(), before + 2, "one batch for the urgent write and the lazy one queued before it");
    assert.deepEqual(order, ["c", "d"], "in queue order");
    // Closing writes what waits, at once.
    const lazyFour = store.accept("t", "e", ballot(1), live(1, '"e"'), { lazy: true });
    await store.close();
    await lazyFour;
    assert.equal(fs.syncCount("/data/wal.log") >= 1, true);
  },
);

Deno.test(
  "Store.accept({ lazy }) on a failing disk rejects like any accept, and the timer goes with it",
  async () => {
    const fs = new HookedFs(new MemoryFs());
    const store = await openStore(storeOptions({ fs }));
    fs.hooks.beforeSyncData = (path) => {
      if (path === "/data/wal.log") throw new Error("injected: sync failed");
    };
    const lazy = store.accept("t", "a", ballot(1), live(1, '"a"'), { lazy: true });
    await assert.rejects(lazy);
    await assert.rejects(store.close().then(() => store.put("t", "b", 1, alice)));
  },
);
