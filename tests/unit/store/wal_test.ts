// Goal: the WAL group-commits: many concurrent writes share one write and one sync, batches respect
// walBatchRecordsMax, complete in order, and appends made during a sync wait for the next batch.
// Method: count writes and syncs of wal.log through a HookedFs; hold a sync open with a gate.
import assert from "node:assert/strict";
import { MemoryFs } from "../../../src/store/fs.ts";
import { HookedFs, openStore, storeOptions, waitFor } from "./test_store.ts";

const walPath = "/data/wal.log";

function countingFs() {
  const fs = new HookedFs(new MemoryFs());
  let writeCount = 0;
  fs.hooks.beforeWrite = (path) => {
    if (path === walPath) writeCount += 1;
  };
  return { fs, writes: () => writeCount };
}

Deno.test("Wal: 200 concurrent puts share far fewer than 200 syncs, one write per sync", async () => {
  const { fs, writes } = countingFs();
  const store = await openStore(storeOptions({ fs }));
  const syncsBefore = fs.syncCount(walPath);
  const writesBefore = writes();
  const entries = await Promise.all(
    Array.from({ length: 200 }, (_, index) => store.put("t", `k${index}`, { index }, { owner: "alice" })),
  );
  const syncs = fs.syncCount(walPath) - syncsBefore;
  assert(syncs >= 1);
  assert(syncs <= 5, `expected a handful of syncs, got ${syncs}`);
  assert.equal(writes() - writesBefore, syncs, "one write per batch");
  assert.equal(store.stats().walBatchCount, syncs);
  assert.equal(store.stats().walRecordCount, 200);
  assert.deepEqual(entries.map((entry) => entry.version), Array(200).fill(1));
  await store.close();
});

Deno.test("Wal: a batch holds at most walBatchRecordsMax records", async () => {
  const { fs, writes } = countingFs();
  const store = await openStore(storeOptions({ fs, limits: { walBatchRecordsMax: 10 } }));
  const writesBefore = writes();
  await Promise.all(
    Array.from({ length: 95 }, (_, index) => store.put("t", `k${index}`, index, { owner: "a" })),
  );
  assert.equal(store.stats().walBatchCount, 10);
  assert.equal(writes() - writesBefore, 10);
  await store.close();
});

Deno.test(
  "Wal: appends made while a batch syncs go into the next batch, and batches resolve in order",
  async () => {
    const fs = new HookedFs(new MemoryFs());
    const store = await openStore(storeOptions({ fs }));
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => release = resolve);
    let syncing = false;
    fs.hooks.beforeSyncData = async (path) => {
      if (path !== walPath || syncing) return;
      syncing = true;
      await gate;
    };
    const order: string[] = [];
    const first = store.put("t", "first", 1, { owner: "a" }).then(() => order.push("first"));
    await waitFor(() => syncing, { timeoutMs: 2_000 });
    const rest = Array.from(
      { length: 50 },
      (_, index) =>
        store.put("t", `later${index}`, index, { owner: "a" }).then(() => order.push(`later${index}`)),
    );
    assert.equal(store.stats().walBatchCount, 0);
    release();
    await Promise.all([first, ...rest]);
    assert.equal(store.stats().walBatchCount, 2);
    assert.deepEqual(order, ["first", ...Array.from({ length: 50 }, (_, index) => `later${index}`)]);
    await store.close();
  },
);

Deno.test("Wal: sequential writes each get their own durable batch", async () => {
  const fs = new HookedFs(new MemoryFs());
  const store = await openStore(storeOptions({ fs }));
  const syncsBefore = fs.syncCount(walPath);
  for (let index = 0; index < 5; index += 1) await store.put("t", "k", index, { owner: "a" });
  assert.equal(fs.syncCount(walPath) - syncsBefore, 5);
  assert.equal(store.get("t", "k")?.version, 5);
  await store.close();
});
