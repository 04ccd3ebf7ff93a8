// Goal: the store's part of keys that expire (src/store/DESIGN.md, "Expiry support"): a put or patch with
// ttlSecs gives the state a lifetime and one without clears it; an expired state is missing to writers and
// listings; expire() is a conditional write that happens once; the expiry queue hands out the keys that
// still hold their lifetime, and is rebuilt at open from storage.db and the WAL.
// Method: a Store on MemoryFs with a manual clock, reopened on the same MemoryFs.
import assert from "node:assert/strict";
import { ManualClock } from "../../../src/util/clock.ts";
import { InvalidRequestError } from "../../../src/util/errors.ts";
import { defaultLimits } from "../../../src/config/limits.ts";
import {
  type ChangeEvent,
  KeyNotFoundError,
  MemoryFs,
  type Store,
  VersionConflictError,
} from "../../../src/store/mod.ts";
import { openStore, storeOptions } from "./test_store.ts";

const alice = { owner: "alice" };
const bob = { owner: "bob" };

async function setup(): Promise<{ store: Store; clock: ManualClock; fs: MemoryFs }> {
  const clock = new ManualClock(1_000_000);
  const fs = new MemoryFs();
  return { store: await openStore(storeOptions({ clock, fs })), clock, fs };
}

Deno.test(
  "Store.put()/patch() with ttlSecs set expires_at from the write's timestamp; without, clear it",
  async () => {
    const { store, clock } = await setup();
    const first = await store.put("t", "k", { a: 1 }, { ...alice, ttlSecs: 30 });
    assert.equal(first.expiresAt, 1_030_000);
    assert.equal(
      first.json,
      '{"value":{"a":1},"version":1,"timestamp":1000000,"owner":"alice","expires_at":1030000}',
    );
    assert.deepEqual(store.get("t", "k"), first);
    clock.advance(10);
    const patched = await store.patch("t", "k", { b: 2 }, { ...alice, ttlSecs: 5 });
    assert.equal(patched.expiresAt, 1_005_010);
    assert.deepEqual(JSON.parse(patched.json).value, { a: 1, b: 2 });
    const cleared = await store.patch("t", "k", { c: 3 }, alice);
    assert.equal(cleared.expiresAt, 0);
    assert.equal(cleared.json.includes("expires_at"), false);
    const again = await store.put("t", "k", 1, { ...alice, ttlSecs: 1 });
    assert.equal(again.expiresAt, again.timestamp + 1_000);
    const plain = await store.put("t", "k", 2, alice);
    assert.equal(plain.expiresAt, 0);
    assert.equal(store.get("t", "k")!.json, '{"value":2,"version":5,"timestamp":1000010,"owner":"alice"}');
    await store.close();
  },
);

Deno.test(
  "Store.put() refuses ttlSecs 0, negative, fractional and ttlSecsMax + 1, and takes ttlSecsMax",
  async () => {
    const { store } = await setup();
    const ttlSecsMax = defaultLimits.ttlSecsMax;
    for (const ttlSecs of [0, -1, 1.5, ttlSecsMax + 1, Number.NaN]) {
      await assert.rejects(() => store.put("t", "k", 1, { ...alice, ttlSecs }), InvalidRequestError);
      await assert.rejects(() => store.patch("t", "k", {}, { ...alice, ttlSecs }), InvalidRequestError);
    }
    await assert.rejects(
      () => store.put("t", "k", 1, { ...alice, ttlSecs: 0 }),
      /ttl_secs is 0; it must be an integer from 1 to 315360000 \(ttlSecsMax\)/,
    );
    assert.equal(store.getEntry("t", "k"), undefined, "nothing was written");
    assert.equal(store.stats().sequence, 0);
    const longest = await store.put("t", "k", 1, { ...alice, ttlSecs: ttlSecsMax });
    assert.equal(longest.expiresAt, longest.timestamp + ttlSecsMax * 1000);
    await store.close();
  },
);

Deno.test(
  "Store: a state whose lifetime ended is missing to writers: re-created by anyone after its version",
  async () => {
    const { store, clock } = await setup();
    await store.put("t", "k", { a: 1 }, { ...alice, ttlSecs: 2 });
    clock.advance(1_999);
    await assert.rejects(() => store.put("t", "k", 1, bob), /owned by another user/);
    clock.advance(1); // expires_at reached: expired
    await assert.rejects(() => store.patch("t", "k", { b: 1 }, alice), KeyNotFoundError);
    await assert.rejects(() => store.delete("t", "k", alice), KeyNotFoundError);
    await assert.rejects(() => store.put("t", "k", 1, { ...alice, ifVersion: 1 }), VersionConflictError);
    const recreated = await store.put("t", "k", "bob's", { ...bob, ifVersion: 0 });
    assert.equal(recreated.version, 2, "it continues after the expired state's version");
    assert.equal(recreated.owner, "bob");
    assert.equal(recreated.expiresAt, 0);
    await store.close();
  },
);

Deno.test(
  "Store.entries() with liveAtMs leaves out expired states without counting them in the limit",
  async () => {
    const { store, clock } = await setup();
    for (const key of ["a", "b", "c", "d"]) {
      await store.put("t", key, key, key === "b" || key === "c" ? { ...alice, ttlSecs: 1 } : alice);
    }
    const keysAt = (liveAtMs: number | undefined, limit: number) =>
      [...store.entries("t", liveAtMs === undefined ? { limit } : { limit, liveAtMs })].map(([key]) => key);
    assert.deepEqual(keysAt(clock.nowMs(), 10), ["a", "b", "c", "d"]);
    clock.advance(1_000);
    assert.deepEqual(keysAt(clock.nowMs(), 2), ["a", "d"]);
    assert.deepEqual(keysAt(undefined, 2), ["a", "b"], "without liveAtMs, every live state");
    await store.close();
  },
);

Deno.test(
  "Store.expire() writes the expiry tombstone once, only for the version it names and only when due",
  async () => {
    const { store, clock } = await setup();
    const events: ChangeEvent[] = [];
    store.onChange((event) => events.push(event));
    const live = await store.put("t", "k", { a: 1 }, { ...alice, ttlSecs: 10 });
    assert.equal(await store.expire("t", "k", { version: 1 }), undefined, "not due yet");
    clock.advance(10_000);
    assert.equal(await store.expire("t", "k", { version: 2 }), undefined, "another version");
    assert.equal(await store.expire("t", "missing", { version: 1 }), undefined);
    const [expired, twice] = await Promise.all([
      store.expire("t", "k", { version: 1 }),
      store.expire("t", "k", { version: 1 }),
    ]);
    assert.equal(twice, undefined, "the second sees the tombstone the first queued");
    assert.equal(expired!.version, 2);
    assert.equal(expired!.deleted, true);
    assert.equal(expired!.owner, "alice");
    assert.equal(expired!.expiresAt, live.expiresAt);
    assert.equal(expired!.json, `{"key":"k","version":2,"timestamp":${clock.nowMs()},"reason":"expired"}`);
    assert.deepEqual(events.map((event) => [event.kind, event.version, event.json]), [
      ["Updated", 1, live.json],
      ["Deleted", 2, expired!.json],
    ]);
    assert.deepEqual(store.getEntry("t", "k"), expired);
    await store.put("t", "plain", 1, alice);
    assert.equal(await store.expire("t", "plain", { version: 1 }), undefined, "no lifetime, no expiry");
    await store.close();
  },
);

Deno.test(
  "Store.takeExpired() hands out due keys that still hold their lifetime, in bounded batches",
  async () => {
    const { store, clock } = await setup();
    for (let index = 0; index < 10; index += 1) {
      await store.put("t", `k${index}`, index, { ...alice, ttlSecs: 1 + index });
    }
    await store.put("t", "k0", "no lifetime now", alice); // superseded: dropped when due
    await store.delete("t", "k1", alice);
    await store.put("t", "k2", "longer", { ...alice, ttlSecs: 100 }); // moved
    assert.equal(store.nextExpiryMs(), 1_001_000);
    assert.deepEqual(store.takeExpired(clock.nowMs(), 10), []);
    clock.advance(10_000);
    const first = store.takeExpired(clock.nowMs(), 3);
    assert.deepEqual(first.map((item) => item.key), ["k3", "k4", "k5"]);
    assert.deepEqual(first[0], { table: "t", key: "k3", version: 1, expiresAtMs: 1_004_000, deferrals: 0 });
    assert.equal(store.deferExpiry(first[0]!, clock.nowMs() + 5_000), true);
    assert.deepEqual(store.takeExpired(clock.nowMs(), 100).map((item) => item.key), ["k6", "k7", "k8", "k9"]);
    assert.deepEqual(store.takeExpired(clock.nowMs(), 100), []);
    clock.advance(5_000);
    assert.deepEqual(store.takeExpired(clock.nowMs(), 100), [{ ...first[0]!, deferrals: 1 }]);
    assert.equal(store.expiredVersionOf("t", "k3", clock.nowMs()), 1);
    assert.equal(store.expiredVersionOf("t", "k2", clock.nowMs()), undefined, "k2 lives until 100 s");
    assert.equal(store.expiredVersionOf("t", "k0", clock.nowMs()), undefined);
    await store.close();
  },
);

Deno.test(
  "Store: the expiry queue is rebuilt at open from storage.db and the WAL; expiry tombstones stay",
  async () => {
    const { store, clock, fs } = await setup();
    await store.put("t", "db", 1, { ...alice, ttlSecs: 5 });
    await store.put("t", "gone", 1, { ...alice, ttlSecs: 1 });
    await store.put("t", "forever", 1, { ...alice, ttlSecs: 1 });
    await store.checkpoint();
    await store.put("t", "forever", 2, alice); // the WAL takes its lifetime away
    await store.put("t", "wal", 1, { ...alice, ttlSecs: 3 });
    clock.advance(1_000);
    assert.equal((await store.expire("t", "gone", { version: 1 }))?.version, 2);
    // A crash: storage.db and the WAL as they are (no final checkpoint).
    const crashed = await openStore(storeOptions({ clock, fs: fs.crashCopy() }));
    assert.equal(crashed.nextExpiryMs(), 1_001_000, "the stale entry of forever is there, dropped when due");
    await store.close(); // its final checkpoint holds every key once
    const reopened = await openStore(storeOptions({ clock, fs }));
    assert.equal(reopened.nextExpiryMs(), 1_003_000);
    clock.advance(10_000);
    for (const opened of [crashed, reopened]) {
      assert.deepEqual(opened.takeExpired(clock.nowMs(), 10).map((item) => [item.key, item.version]), [
        ["wal", 1],
        ["db", 1],
      ]);
      assert.equal(opened.getEntry("t", "gone")!.json.endsWith(',"reason":"expired"}'), true);
      assert.equal(opened.get("t", "forever")!.expiresAt, 0);
      await opened.close();
    }
  },
);

Deno.test("Store.applyReplicas() and accept() keep a state's lifetime and queue it", async () => {
  const { store, clock } = await setup();
  const ballot = { counter: 3, node: "n1:1" };
  const state = { version: 4, timestamp: 1_000_000, owner: "alice", deleted: false, valueJson: "1" };
  assert.equal(await store.applyReplica("t", "r", { ...state, ballot, expiresAt: 1_002_000 }), "applied");
  await store.accept("t", "a", ballot, { ...state, expiresAt: 1_003_000 });
  assert.deepEqual(store.replicaOf("t", "r"), { ...state, ballot, expiresAt: 1_002_000 });
  assert.equal(store.getEntry("t", "a")!.expiresAt, 1_003_000);
  clock.advance(5_000);
  assert.deepEqual(store.takeExpired(clock.nowMs(), 10).map((item) => item.key), ["r", "a"]);
  await assert.rejects(
    () => store.applyReplica("t", "bad", { ...state, expiresAt: -1 }),
    /A replica's expiry must be a positive safe integer/,
  );
  await store.close();
});
