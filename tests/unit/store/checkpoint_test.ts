// Goal: checkpoints compact the WAL into storage.db atomically, replay after a crash between the rename
// and the WAL truncation is idempotent, and snapshots are written, readable and pruned to the limit.
// Method: Stores on MemoryFs with a small walCheckpointBytes; crashCopy() at chosen file operations.
import assert from "node:assert/strict";
import { ManualClock } from "../../../src/util/clock.ts";
import { listSnapshots, readStateFile, type StateFrame } from "../../../src/store/checkpoint.ts";
import { fileHeaderBytes, recordsOf } from "../../../src/store/frame.ts";
import { MemoryFs } from "../../../src/store/fs.ts";
import { StorageFullError } from "../../../src/store/mod.ts";
import { decodeRecord } from "../../../src/store/wal_record.ts";
import { dumpTable, HookedFs, openStore, storeOptions, testEncryption, waitFor } from "./test_store.ts";

const alice = { owner: "alice" };

/** The keys of a state file frame's entry records. */
function keysOf(frame: StateFrame): string[] {
  return recordsOf(frame.records).slice(0, frame.entryCount).map((bytes) => {
    const record = decodeRecord(bytes);
    assert(record.op === "put" || record.op === "delete");
    return record.key;
  });
}

Deno.test("Store: the WAL is checkpointed into storage.db once it passes walCheckpointBytes", async () => {
  const fs = new MemoryFs();
  const store = await openStore(storeOptions({ fs, limits: { walCheckpointBytes: 4096 } }));
  for (let index = 0; index < 60; index += 1) await store.put("t", `k${index}`, "v".repeat(100), alice);
  await waitFor(() => store.stats().checkpointCount >= 1, { timeoutMs: 2_000 });
  assert(store.stats().walBytes < 4096 + 400);
  assert((await fs.stat("/data/storage.db")) !== undefined);
  const recovered = await openStore(storeOptions({ fs: fs.crashCopy() }));
  assert.deepEqual(dumpTable(recovered, "t"), dumpTable(store, "t"));
  assert.equal(recovered.stats().sequence, 60);
  await recovered.close();
  await store.close();
});

Deno.test(
  "Store.checkpoint() truncates the WAL to its header, and a restart recovers everything",
  async () => {
    const fs = new MemoryFs();
    const store = await openStore(storeOptions({ fs }));
    await store.put("t", "live", { n: 1 }, alice);
    await store.put("t", "dead", 1, alice);
    await store.delete("t", "dead", alice);
    const writes = Array.from({ length: 10 }, (_, index) => store.put("u", `k${index}`, index, alice));
    const checkpoint = store.checkpoint();
    await Promise.all(writes);
    await checkpoint;
    assert.equal(store.stats().checkpointCount, 1);
    await store.put("t", "after", 2, alice);
    const recovered = await openStore(storeOptions({ fs: fs.crashCopy() }));
    assert.deepEqual(dumpTable(recovered, "t"), dumpTable(store, "t"));
    assert.deepEqual(dumpTable(recovered, "u"), dumpTable(store, "u"));
    assert.equal(recovered.getEntry("t", "dead")?.version, 2, "tombstones survive the checkpoint");
    assert.equal(recovered.stats().sequence, 14);
    await store.checkpoint();
    assert.equal(store.stats().walBytes, fileHeaderBytes);
    await recovered.close();
    await store.close();
  },
);

Deno.test(
  "Store: a crash between the storage.db rename and the WAL truncation replays idempotently",
  async () => {
    const inner = new MemoryFs();
    const fs = new HookedFs(inner);
    const store = await openStore(storeOptions({ fs }));
    await store.put("t", "k", 1, alice);
    await store.put("t", "k", 2, alice);
    await store.put("t", "gone", 1, alice);
    await store.delete("t", "gone", alice);
    let crashed: MemoryFs | undefined;
    fs.hooks.beforeTruncate = (path) => {
      if (path === "/data/wal.log") crashed ??= inner.crashCopy();
    };
    await store.checkpoint();
    assert(crashed !== undefined);
    assert((await crashed.stat("/data/storage.db")) !== undefined);
    assert(
      (await crashed.stat("/data/wal.log"))!.sizeBytes > fileHeaderBytes,
      "the WAL still holds the records",
    );
    const recovered = await openStore(storeOptions({ fs: crashed }));
    assert.deepEqual(dumpTable(recovered, "t"), dumpTable(store, "t"));
    assert.equal(recovered.getEntry("t", "gone")?.version, 2);
    assert.equal(recovered.stats().sequence, 4);
    assert.equal((await recovered.put("t", "k", 3, alice)).version, 3);
    assert.equal((await recovered.put("t", "gone", 3, alice)).version, 3);
    await recovered.close();
    await store.close();
  },
);

Deno.test(
  "Store.close() writes a final checkpoint: the WAL is empty and storage.db holds everything",
  async () => {
    const fs = new MemoryFs();
    const store = await openStore(storeOptions({ fs }));
    for (let index = 0; index < 3000; index += 1) {
      await store.put("t", `k${index}`, { text: `${index}`.repeat(60) }, alice);
    }
    await store.close();
    assert.equal((await fs.stat("/data/wal.log"))?.sizeBytes, fileHeaderBytes);
    const seen: string[] = [];
    const summary = await readStateFile(
      { fs, path: "/data/storage.db", encryption: testEncryption },
      (frame) => seen.push(...keysOf(frame)),
    );
    assert.deepEqual(summary, { sequence: 3000, entryCount: 3000 });
    assert.equal(new Set(seen).size, 3000);
    const reopened = await openStore(storeOptions({ fs }));
    assert.equal(reopened.tableCounts().get("t"), 3000);
    assert.equal(JSON.parse(reopened.get("t", "k2999")!.json).value.text, "2999".repeat(60));
    await reopened.close();
  },
);

Deno.test(
  "Store.checkpoint() on a full disk rejects with StorageFullError, keeps the WAL and stays writable",
  async () => {
    const fs = new MemoryFs();
    const store = await openStore(storeOptions({ fs }));
    for (let index = 0; index < 20; index += 1) await store.put("t", `k${index}`, "x".repeat(50), alice);
    const walBefore = store.stats().walBytes;
    fs.capacityBytes = walBefore + 100;
    await assert.rejects(() => store.checkpoint(), StorageFullError);
    assert.equal(await fs.stat("/data/storage.db.tmp"), undefined, "the tmp file was removed");
    assert.equal(store.stats().walBytes, walBefore);
    fs.capacityBytes = Infinity;
    await store.put("t", "more", 1, alice);
    const recovered = await openStore(storeOptions({ fs: fs.crashCopy() }));
    assert.equal(recovered.tableCounts().get("t"), 21);
    await recovered.close();
    await store.close();
  },
);

Deno.test("Store.snapshot() writes a readable snapshot and keeps only the newest snapshotLimit", async () => {
  const fs = new MemoryFs();
  const clock = new ManualClock(1_000);
  const store = await openStore(storeOptions({ fs, clock, snapshotLimit: 3 }));
  const paths: string[] = [];
  for (let index = 0; index < 5; index += 1) {
    await store.put("t", `k${index}`, index, alice);
    paths.push(await store.snapshot());
    clock.advance(1_000);
  }
  assert.deepEqual(
    paths,
    [1_000, 2_000, 3_000, 4_000, 5_000].map((ms) => `/data/snapshots/snapshot_${ms}.json`),
  );
  const kept = await listSnapshots(fs, "/data/snapshots");
  assert.deepEqual(kept.map((snapshot) => snapshot.timestampMs), [3_000, 4_000, 5_000]);
  const keys: string[] = [];
  const summary = await readStateFile(
    { fs, path: paths[4]!, encryption: testEncryption },
    (frame) => keys.push(...keysOf(frame)),
  );
  assert.deepEqual(summary, { sequence: 5, entryCount: 5 });
  assert.deepEqual(keys.sort(), ["k0", "k1", "k2", "k3", "k4"]);
  assert.equal(store.stats().snapshotCount, 5);
  const second = await Promise.all([store.snapshot(), store.snapshot()]);
  assert.notEqual(second[0], second[1], "snapshots in the same millisecond get distinct names");
  await store.close();
});

Deno.test(
  "Store: the snapshot timer writes snapshots every snapshotIntervalSecs and close() clears it",
  async () => {
    const fs = new MemoryFs();
    const store = await openStore(storeOptions({ fs, snapshotIntervalSecs: 1 }));
    await store.put("t", "k", 1, alice);
    await waitFor(() => store.stats().snapshotCount >= 1, { timeoutMs: 5_000 });
    assert.equal((await listSnapshots(fs, "/data/snapshots")).length, 1);
    await store.close();
  },
);

Deno.test("Store: rewriting keys keeps the index pages compact, before and after a restart", async () => {
  const fs = new MemoryFs();
  const store = await openStore(storeOptions({ fs }));
  const text = "lorem ipsum ".repeat(40);
  for (let round = 1; round <= 40; round += 1) {
    await Promise.all(
      Array.from({ length: 100 }, (_, key) => store.put("t", `k${key}`, { round, text }, alice)),
    );
  }
  const running = store.stats();
  assert(running.indexLiveBytes > 100 * text.length);
  assert(
    running.indexPageBytes <= 2 * running.indexLiveBytes + 2 * 65_536,
    `${running.indexPageBytes} page bytes for ${running.indexLiveBytes} live`,
  );
  const snapshot = store.snapshot();
  await store.put("t", "k0", "after the cut", alice);
  const snapshotPath = await snapshot;
  const liveBytes = store.stats().indexLiveBytes;
  await store.close();
  const reopened = await openStore(storeOptions({ fs }));
  const after = reopened.stats();
  assert.equal(after.indexLiveBytes, liveBytes, "storage.db holds the same records, sequences aside");
  assert(after.indexPageBytes - after.indexLiveBytes <= 64, "only the checkpoint end is not indexed");
  const cut: string[] = [];
  await readStateFile(
    { fs, path: snapshotPath, encryption: testEncryption },
    (frame) =>
      cut.push(
        ...recordsOf(frame.records).slice(0, frame.entryCount).map((bytes) =>
          new TextDecoder().decode(bytes)
        ),
      ),
  );
  assert(cut.some((text) => text.includes('"round":40') && text.includes("k0")), "the cut holds k0 before");
  assert.equal(JSON.parse(reopened.get("t", "k0")!.json).value, "after the cut");
  assert.equal(JSON.parse(reopened.get("t", "k99")!.json).value.round, 40);
  await reopened.close();
});

Deno.test(
  "storage.db holds each outstanding promise after the keys, counted by the checkpoint end",
  async () => {
    const fs = new MemoryFs();
    const store = await openStore(storeOptions({ fs }));
    const ballot = { counter: 3, node: "n1:6660" };
    await store.put("t", "a", 1, alice);
    await store.promise("t", "a", ballot);
    await store.promise("t", "bare", ballot);
    await store.promise("t", "cleared", ballot);
    await store.accept("t", "cleared", { counter: 4, node: "n1:6660" }, {
      version: 1,
      timestamp: 1,
      owner: "alice",
      deleted: false,
      valueJson: "2",
    });
    await store.checkpoint();
    const frames: StateFrame[] = [];
    const summary = await readStateFile(
      { fs, path: "/data/storage.db", encryption: testEncryption },
      (frame) => frames.push(frame),
    );
    assert.deepEqual(summary, { sequence: 2, entryCount: 4 }, "two keys and two promises");
    const promises = frames.flatMap((frame) => frame.promises);
    assert.deepEqual(promises.sort((a, b) => a.key < b.key ? -1 : 1), [
      { table: "t", key: "a", ballot },
      { table: "t", key: "bare", ballot },
    ]);
    const ops = frames.flatMap((frame) => recordsOf(frame.records).map((record) => decodeRecord(record).op));
    assert.deepEqual(ops.slice(0, 2), ["put", "put"]);
    assert.deepEqual(ops.slice(2), ["promise", "promise", "checkpointEnd"], "promises follow the keys");
    await store.close();
  },
);
