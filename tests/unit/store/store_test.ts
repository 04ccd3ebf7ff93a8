// Goal: the Store's write semantics (versions, owners, ifVersion, patch, delete), its read API (no dirty
// reads, ordered lazy listings, counts) and its change events.
// Method: a Store on MemoryFs with a manual clock; a HookedFs holds a WAL sync open where a test needs
// a write to be pending.
import assert from "node:assert/strict";
import { InvalidRequestError, KvError, PayloadTooLargeError } from "../../../src/util/errors.ts";
import { ManualClock } from "../../../src/util/clock.ts";
import { MemoryFs } from "../../../src/store/fs.ts";
import {
  type ChangeEvent,
  ForbiddenError,
  KeyNotFoundError,
  NotAnObjectError,
  StoreClosedError,
  VersionConflictError,
} from "../../../src/store/mod.ts";
import { dumpTable, HookedFs, openStore, RecordingLogger, storeOptions, waitFor } from "./test_store.ts";

const alice = { owner: "alice" };
const bob = { owner: "bob" };

function hasCode(code: string) {
  return (error: unknown) => error instanceof KvError && error.code === code;
}

Deno.test(
  "Store.put() starts at version 1, adds 1 per write and reads back the same VersionedValue",
  async () => {
    const clock = new ManualClock(1_000);
    const store = await openStore(storeOptions({ clock }));
    const first = await store.put("t", "k", { a: [1, "x"] }, alice);
    assert.equal(first.json, '{"value":{"a":[1,"x"]},"version":1,"timestamp":1000,"owner":"alice"}');
    clock.advance(5);
    const second = await store.put("t", "k", "text", alice);
    assert.equal(second.version, 2);
    assert.equal(second.json, '{"value":"text","version":2,"timestamp":1005,"owner":"alice"}');
    assert.deepEqual(store.get("t", "k"), second);
    assert.deepEqual(store.getEntry("t", "k"), second);
    await store.close();
  },
);

Deno.test("Store.delete() leaves a tombstone; a re-created key continues after its version", async () => {
  const store = await openStore(storeOptions());
  await store.put("t", "k", 1, alice);
  await store.put("t", "k", 2, alice);
  const tombstone = await store.delete("t", "k", alice);
  assert.equal(tombstone.version, 3);
  assert.equal(tombstone.deleted, true);
  assert.equal(tombstone.owner, "alice");
  assert.equal(tombstone.json, `{"key":"k","version":3,"timestamp":${tombstone.timestamp}}`);
  assert.equal(store.get("t", "k"), undefined);
  assert.deepEqual(store.getEntry("t", "k"), tombstone);
  assert(store.hasTable("t"));
  const recreated = await store.put("t", "k", "again", bob);
  assert.equal(recreated.version, 4);
  assert.equal(recreated.owner, "bob", "anyone may create a deleted key");
  await store.close();
});

Deno.test("Store: only the owner may put, patch or delete a live key", async () => {
  const store = await openStore(storeOptions());
  await store.put("t", "k", { n: 1 }, alice);
  await assert.rejects(() => store.put("t", "k", 2, bob), ForbiddenError);
  await assert.rejects(() => store.patch("t", "k", { n: 2 }, bob), hasCode("forbidden"));
  await assert.rejects(() => store.delete("t", "k", bob), ForbiddenError);
  assert.equal(store.get("t", "k")?.version, 1);
  await store.close();
});

Deno.test("Store: delete and patch of a missing or deleted key throw KeyNotFoundError", async () => {
  const store = await openStore(storeOptions());
  await assert.rejects(() => store.delete("t", "missing", alice), KeyNotFoundError);
  await assert.rejects(() => store.patch("t", "missing", {}, alice), hasCode("key_not_found"));
  await store.put("t", "k", {}, alice);
  await store.delete("t", "k", alice);
  await assert.rejects(() => store.delete("t", "k", alice), KeyNotFoundError);
  await assert.rejects(() => store.patch("t", "k", {}, alice), KeyNotFoundError);
  await store.close();
});

Deno.test(
  "Store: ifVersion must equal the live version; ifVersion 0 means the key must not exist live",
  async () => {
    const store = await openStore(storeOptions());
    await assert.rejects(() => store.put("t", "k", 1, { ...alice, ifVersion: 1 }), VersionConflictError);
    await store.put("t", "k", 1, { ...alice, ifVersion: 0 });
    await assert.rejects(
      () => store.put("t", "k", 2, { ...alice, ifVersion: 0 }),
      (error: unknown) =>
        error instanceof VersionConflictError && error.code === "version_conflict" &&
        error.currentVersion === 1,
    );
    await assert.rejects(() => store.put("t", "k", 2, { ...alice, ifVersion: 2 }), VersionConflictError);
    assert.equal((await store.put("t", "k", 2, { ...alice, ifVersion: 1 })).version, 2);
    await assert.rejects(() => store.delete("t", "k", { ...alice, ifVersion: 1 }), VersionConflictError);
    await assert.rejects(() => store.patch("t", "k", {}, { ...alice, ifVersion: 1 }), VersionConflictError);
    await store.delete("t", "k", { ...alice, ifVersion: 2 });
    await assert.rejects(() => store.put("t", "k", 3, { ...bob, ifVersion: 3 }), VersionConflictError);
    assert.equal((await store.put("t", "k", 3, { ...bob, ifVersion: 0 })).version, 4);
    await assert.rejects(() => store.put("t", "k", 3, { ...bob, ifVersion: -1 }), InvalidRequestError);
    await assert.rejects(() => store.put("t", "k", 3, { ...bob, ifVersion: 1.5 }), InvalidRequestError);
    await store.close();
  },
);

Deno.test(
  "Store.patch() merges an object value as RFC 7396 and refuses a non-object stored value",
  async () => {
    const store = await openStore(storeOptions());
    await store.put("t", "k", { keep: 1, drop: 2, nested: { a: 1, b: 2 } }, alice);
    const patched = await store.patch("t", "k", { drop: null, nested: { b: null, c: 3 }, added: [1] }, alice);
    assert.equal(patched.version, 2);
    assert.deepEqual(JSON.parse(patched.json).value, { keep: 1, nested: { a: 1, c: 3 }, added: [1] });
    await store.put("t", "list", [1, 2], alice);
    await assert.rejects(
      () => store.patch("t", "list", { a: 1 }, alice),
      (error: unknown) => error instanceof NotAnObjectError && error.code === "invalid_request",
    );
    await store.close();
  },
);

Deno.test(
  "Store: concurrent writes to one key get consecutive versions; only one ifVersion 0 create wins",
  async () => {
    const store = await openStore(storeOptions());
    const versions = await Promise.all([
      store.put("t", "k", 1, alice),
      store.patch("t", "k", { x: 1 }, alice).catch((error) => error),
      store.put("t", "k", { y: 1 }, alice),
      store.patch("t", "k", { z: 1 }, alice),
      store.delete("t", "k", alice),
      store.put("t", "k", "b", bob),
    ]);
    assert(versions[1] instanceof NotAnObjectError, "the patch saw the pending value 1");
    assert.deepEqual(versions.filter((entry) => !(entry instanceof Error)).map((entry) => entry.version), [
      1,
      2,
      3,
      4,
      5,
    ]);
    assert.equal(store.get("t", "k")?.owner, "bob");
    const creates = await Promise.allSettled([
      store.put("t", "user", "first", { owner: "x", ifVersion: 0 }),
      store.put("t", "user", "second", { owner: "x", ifVersion: 0 }),
    ]);
    assert.equal(creates[0].status, "fulfilled");
    assert(creates[1].status === "rejected" && creates[1].reason instanceof VersionConflictError);
    await store.close();
  },
);

Deno.test(
  "Store.get() never sees a write before it is durable; listeners run after it, before the ack",
  async () => {
    const fs = new HookedFs(new MemoryFs());
    const store = await openStore(storeOptions({ fs }));
    await store.put("t", "k", "old", alice);
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => release = resolve);
    let held = false;
    fs.hooks.beforeSyncData = async () => {
      held = true;
      await gate;
    };
    let acked = false;
    const seen: Array<{ json: string | undefined; acked: boolean }> = [];
    store.onChange(() => seen.push({ json: store.get("t", "k")?.json, acked }));
    const put = store.put("t", "k", "new", alice).then((entry) => {
      acked = true;
      return entry;
    });
    await waitFor(() => held, { timeoutMs: 2_000 });
    assert.equal(JSON.parse(store.get("t", "k")!.json).value, "old");
    assert.equal(seen.length, 0);
    release();
    const entry = await put;
    assert.deepEqual(seen, [{ json: entry.json, acked: false }]);
    await store.close();
  },
);

Deno.test(
  "Store.onChange() reports every change in commit order with its sequence, until unsubscribed",
  async () => {
    const logger = new RecordingLogger();
    const store = await openStore(storeOptions({ logger }));
    const events: ChangeEvent[] = [];
    store.onChange(() => {
      throw new Error("a broken listener");
    });
    const unsubscribe = store.onChange((event) => events.push(event));
    await Promise.all([store.put("a", "1", 1, alice), store.put("b", "2", 2, alice)]);
    const tombstone = await store.delete("a", "1", alice);
    unsubscribe();
    await store.put("a", "3", 3, alice);
    assert.deepEqual(
      events.map(({ kind, table, key, version, sequence }) => ({ kind, table, key, version, sequence })),
      [
        { kind: "Updated", table: "a", key: "1", version: 1, sequence: 1 },
        { kind: "Updated", table: "b", key: "2", version: 1, sequence: 2 },
        { kind: "Deleted", table: "a", key: "1", version: 2, sequence: 3 },
      ],
    );
    assert.equal(events[2]!.json, tombstone.json);
    assert.equal(logger.at("error").filter((line) => line.message.includes("listener")).length, 4);
    assert.equal(store.stats().sequence, 4);
    await store.close();
  },
);

Deno.test("Store.entries() lists live keys in code-unit order and pages with after and limit", async () => {
  const store = await openStore(storeOptions());
  const keys = ["\uFF21", "a", "😀", "B", "é", "gone", "b"];
  for (const key of keys) await store.put("t", key, key, alice);
  await store.delete("t", "gone", alice);
  const all = [...store.entries("t", { limit: 100 })].map(([key]) => key);
  assert.deepEqual(all, ["B", "a", "b", "é", "😀", "\uFF21"]);
  assert.deepEqual([...store.entries("t", { limit: 2 })].map(([key]) => key), ["B", "a"]);
  assert.deepEqual([...store.entries("t", { after: "a", limit: 2 })].map(([key]) => key), ["b", "é"]);
  assert.deepEqual([...store.entries("t", { after: "c", limit: 10 })].map(([key]) => key), [
    "é",
    "😀",
    "\uFF21",
  ]);
  assert.deepEqual([...store.entries("t", { after: "\uFF21", limit: 10 })], []);
  assert.deepEqual([...store.entries("t", { limit: 0 })], []);
  assert.deepEqual([...store.entries("missing", { limit: 10 })], []);
  await store.put("t", "aa", 1, alice);
  assert.deepEqual([...store.entries("t", { after: "a", limit: 1 })].map(([key]) => key), ["aa"]);
  const [[, entry]] = [...store.entries("t", { after: "aa", limit: 1 })] as [[string, unknown]];
  assert.deepEqual(entry, store.get("t", "b"));
  await store.close();
});

Deno.test("Store.entries() is lazy: it reads the state as it is iterated", async () => {
  const store = await openStore(storeOptions());
  await store.put("t", "a", 1, alice);
  await store.put("t", "b", 1, alice);
  const iterator = store.entries("t", { limit: 10 })[Symbol.iterator]();
  assert.equal(iterator.next().value?.[0], "a");
  await store.delete("t", "b", alice);
  assert.equal(iterator.next().done, true, "b was deleted before the iterator reached it");
  await store.close();
});

Deno.test(
  "Store.tableCounts() and hasTable() count live keys of every table, reserved ones included",
  async () => {
    const store = await openStore(storeOptions());
    await store.put("_users", "alice", {}, alice);
    await store.put("t", "a", 1, alice);
    await store.put("t", "b", 1, alice);
    await store.put("gone", "x", 1, alice);
    await store.delete("gone", "x", alice);
    assert.deepEqual(store.tableCounts(), new Map([["_users", 1], ["t", 2], ["gone", 0]]));
    assert(store.hasTable("gone"));
    assert(!store.hasTable("never"));
    await store.close();
  },
);

Deno.test(
  "Store: names and values over their limits are refused at max + 1 and accepted at max",
  async () => {
    const limits = { requestBytesMax: 1000, nameBytesMax: 10 };
    const store = await openStore(storeOptions({ limits }));
    await store.put("t", "k".repeat(10), 1, alice);
    await assert.rejects(() => store.put("t", "k".repeat(11), 1, alice), InvalidRequestError);
    await assert.rejects(() => store.put("t", "é".repeat(6), 1, alice), /12 bytes, limit is 10/);
    await assert.rejects(() => store.put("", "k", 1, alice), InvalidRequestError);
    await assert.rejects(() => store.put("t", "\uD800", 1, alice), InvalidRequestError);
    await assert.rejects(() => store.put("t", "k", 1, { owner: "" }), InvalidRequestError);
    await assert.rejects(() => store.put("t", "k", undefined, alice), InvalidRequestError);
    // A record holds 37 fixed bytes + names + value (+ a ballot, + an expiry); its limit is
    // requestBytesMax + 3 * nameBytesMax + 37 + 312 + 8 (the largest ballot: u64, u32 and a 300-byte node;
    // an expiry: u64).
    const valueBytesMax = 1000 + 30 - 3 + 312 + 8;
    await store.put("t", "v", "x".repeat(valueBytesMax - 2), { owner: "a" });
    await assert.rejects(
      () => store.put("t", "w", "x".repeat(valueBytesMax - 1), { owner: "a" }),
      PayloadTooLargeError,
    );
    assert.equal(store.get("t", "w"), undefined);
    assert.equal(store.stats().sequence, 2, "a refused write takes no sequence");
    await store.close();
  },
);

Deno.test("Store.close() waits for accepted writes, then refuses writes with StoreClosedError", async () => {
  const fs = new MemoryFs();
  const store = await openStore(storeOptions({ fs }));
  const writes = Array.from({ length: 20 }, (_, index) => store.put("t", `k${index}`, index, alice));
  const closed = store.close();
  assert.equal(store.close(), closed, "close() is idempotent");
  await assert.rejects(() => store.put("t", "late", 1, alice), StoreClosedError);
  await Promise.all(writes);
  await closed;
  await assert.rejects(() => store.delete("t", "k1", alice), hasCode("unavailable"));
  await assert.rejects(() => store.checkpoint(), StoreClosedError);
  await assert.rejects(() => store.snapshot(), StoreClosedError);
  const reopened = await openStore(storeOptions({ fs }));
  assert.equal(Object.keys(dumpTable(reopened, "t")).length, 20);
  await reopened.close();
});

Deno.test(
  "Store.close() rewrites storage.db only when the WAL holds writes since the last checkpoint",
  async () => {
    const fs = new HookedFs(new MemoryFs());
    const renames: string[] = [];
    fs.hooks.beforeRename = (_source, target) => void renames.push(target);
    const first = await openStore(storeOptions({ fs }));
    await first.put("t", "k", "v1", alice);
    await first.close();
    assert.equal(renames.filter((target) => target.endsWith("storage.db")).length, 1);
    const second = await openStore(storeOptions({ fs }));
    await second.close();
    assert.equal(renames.filter((target) => target.endsWith("storage.db")).length, 1, "nothing changed");
    const third = await openStore(storeOptions({ fs }));
    assert.equal(JSON.parse(third.get("t", "k")!.json).value, "v1");
    await third.put("t", "k", "v2", alice);
    await third.close();
    assert.equal(renames.filter((target) => target.endsWith("storage.db")).length, 2);
  },
);
