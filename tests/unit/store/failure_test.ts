// Goal: a failed WAL write or sync is never acknowledged: the batch and every pending write are rejected,
// and after a sync or I/O failure every later write is refused until restart. A full disk rolls the
// batch back and leaves the store writable once space is freed.
// Method: a HookedFs that fails syncData or write of wal.log; a MemoryFs with a capacity.
import assert from "node:assert/strict";
import { MemoryFs } from "../../../src/store/fs.ts";
import { StorageFailedError, StorageFullError } from "../../../src/store/mod.ts";
import { dumpTable, HookedFs, openStore, RecordingLogger, storeOptions, waitFor } from "./test_store.ts";

const walPath = "/data/wal.log";
const alice = { owner: "alice" };

Deno.test(
  "Store: a failed WAL sync rejects the batch and the pending writes, then refuses every write",
  async () => {
    const inner = new MemoryFs();
    const fs = new HookedFs(inner);
    const logger = new RecordingLogger();
    const store = await openStore(storeOptions({ fs, logger }));
    await store.put("t", "acked", 1, alice);
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => release = resolve);
    let syncing = false;
    fs.hooks.beforeSyncData = async (path) => {
      if (path !== walPath) return;
      syncing = true;
      await gate;
      throw new Error("EIO: input/output error");
    };
    const inBatch = store.put("t", "k", 1, alice);
    await waitFor(() => syncing, { timeoutMs: 2_000 });
    const pending = [store.put("t", "k", 2, alice), store.put("t", "other", 3, alice)];
    release();
    for (const write of [inBatch, ...pending]) {
      await assert.rejects(
        () => write,
        (error: unknown) =>
          error instanceof StorageFailedError && error.code === "storage_failed" &&
          error.cause instanceof Error,
      );
    }
    assert.equal(store.get("t", "k"), undefined, "nothing of the failed batch became visible");
    assert.equal(store.get("t", "acked")?.version, 1, "reads go on");
    await assert.rejects(() => store.put("t", "later", 1, alice), StorageFailedError);
    await assert.rejects(() => store.delete("t", "acked", alice), StorageFailedError);
    await assert.rejects(() => store.checkpoint(), StorageFailedError);
    assert(logger.at("error").some((line) => line.message.includes("refusing all writes")));
    fs.hooks = {};
    await store.close();
    const recovered = await openStore(storeOptions({ fs: inner.crashCopy() }));
    assert.deepEqual(Object.keys(dumpTable(recovered, "t")), ["acked"]);
    await recovered.close();
  },
);

Deno.test("Store: a failed WAL write (not ENOSPC) refuses every later write", async () => {
  const fs = new HookedFs(new MemoryFs());
  const store = await openStore(storeOptions({ fs }));
  fs.hooks.beforeWrite = (path) => {
    if (path === walPath) throw new Error("EIO: input/output error");
  };
  await assert.rejects(() => store.put("t", "k", 1, alice), StorageFailedError);
  fs.hooks = {};
  await assert.rejects(() => store.put("t", "k", 1, alice), StorageFailedError);
  await store.close();
});

Deno.test(
  "Store: on a full disk the batch is rolled back with StorageFullError and writes resume after",
  async () => {
    const fs = new MemoryFs();
    const store = await openStore(storeOptions({ fs }));
    await store.put("t", "k", "small", alice);
    const sizeBefore = store.stats().walBytes;
    fs.capacityBytes = sizeBefore + 30;
    const writes = [store.put("t", "k", "x".repeat(200), alice), store.put("t", "j", "y", alice)];
    for (const write of writes) {
      await assert.rejects(
        () => write,
        (error: unknown) => error instanceof StorageFullError && error.code === "storage_full",
      );
    }
    assert.equal((await fs.stat(walPath))?.sizeBytes, sizeBefore, "the partial frame was cut off");
    assert.equal(store.get("t", "k")?.version, 1);
    fs.capacityBytes = Infinity;
    const entry = await store.put("t", "k", "fits", alice);
    assert.equal(entry.version, 2, "the rolled-back write took no version");
    assert.equal(store.stats().sequence, 2);
    const recovered = await openStore(storeOptions({ fs: fs.crashCopy() }));
    assert.equal(recovered.get("t", "k")?.json, entry.json);
    assert.equal(recovered.get("t", "j"), undefined);
    await recovered.close();
    await store.close();
  },
);
