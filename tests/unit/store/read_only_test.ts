// Goal: a read-only store (an offline export's) reads the whole state a node would recover and changes no
// file: a torn WAL tail is read up to its last good frame and reported, not cut; nothing is created,
// removed, checkpointed or snapshotted; every write is refused with StoreReadOnlyError. The data dir's lock
// keeps a second writer out, and a reader out while a writer has the store open.
// Method: write through a Store on MemoryFs, take crashCopy() (a WAL that was never checkpointed), tear the
// WAL's last frame, then open read-only and compare every file, byte for byte, before and after.
import assert from "node:assert/strict";
import { type Fs, MemoryFs, ReadOnlyFs } from "../../../src/store/fs.ts";
import { AssertionError } from "../../../src/util/assert.ts";
import { DataDirLockedError, lockFileName, Store, StoreReadOnlyError } from "../../../src/store/mod.ts";
import { dumpTable, openStore, RecordingLogger, storeOptions } from "./test_store.ts";

const walPath = "/data/wal.log";
const alice = { owner: "alice" };

/** Every file under `dir` (recursively) with its bytes and permission bits, by path. */
async function filesOf(fs: MemoryFs, dir: string): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  const pending = [dir];
  // Bounded by the directories under `dir`.
  while (pending.length > 0) {
    const current = pending.pop()!;
    for (const name of await fs.readDir(current)) {
      const path = `${current}/${name}`;
      const bytes = await fs.readFile(path);
      if (bytes === undefined) {
        pending.push(path);
        continue;
      }
      files.set(path, `${(await fs.stat(path))?.permissions.toString(8)} ${bytes.join(",")}`);
    }
  }
  return files;
}

/**
 * A crashed data dir: `base` checkpointed into storage.db, a snapshot, then in the WAL `b` and a delete
 * of `base`, then the frame of `c` torn halfway; a `storage.db.tmp` left by an interrupted checkpoint.
 */
async function crashedWithTornTail(): Promise<{ fs: MemoryFs; tornOffset: number }> {
  const fs = new MemoryFs();
  const store = await openStore(storeOptions({ fs }));
  await store.put("t", "base", { n: 0 }, alice);
  await store.put("t", "gone", 1, alice);
  await store.checkpoint();
  await store.snapshot();
  await store.put("t", "b", { n: 1 }, { ...alice, ttlSecs: 60 });
  await store.delete("t", "gone", alice);
  const tornOffset = store.stats().walBytes;
  await store.put("t", "c", { n: 2 }, alice);
  const end = store.stats().walBytes;
  const image = fs.crashCopy();
  const wal = await image.readFile(walPath);
  assert(wal !== undefined && wal.length === end);
  await image.writeFileDurably(walPath, wal.subarray(0, tornOffset + Math.floor((end - tornOffset) / 2)));
  await image.writeFileDurably("/data/storage.db.tmp", new Uint8Array([1, 2, 3]));
  await store.close();
  return { fs: image, tornOffset };
}

Deno.test(
  "Store.open({ readOnly }) reads storage.db and the WAL up to a torn tail, reports it, and changes " +
    "no file",
  async () => {
    const { fs, tornOffset } = await crashedWithTornTail();
    const before = await filesOf(fs, "/data");
    assert.ok(before.has("/data/storage.db.tmp"));
    assert.ok([...before.keys()].some((path) => path.startsWith("/data/snapshots/snapshot_")));
    const logger = new RecordingLogger();
    const store = await Store.open(storeOptions({ fs, logger, readOnly: true }));
    assert.deepEqual(Object.keys(dumpTable(store, "t")).sort(), ["b", "base"]);
    assert.equal(store.get("t", "b")?.version, 1);
    assert.ok((store.get("t", "b")?.expiresAt ?? 0) > 0, "the lifetime is read back");
    assert.equal(store.getEntry("t", "gone")?.deleted, true);
    const torn = logger.at("warn").filter((line) => line.message.includes("torn tail"));
    assert.equal(torn.length, 1, JSON.stringify(logger.lines));
    assert.match(torn[0]!.message, new RegExp(`^${walPath} has a torn tail at byte offset ${tornOffset}:`));
    assert.equal(torn[0]!.fields?.offset, tornOffset);
    const refused = (error: unknown) =>
      error instanceof StoreReadOnlyError && /read-only/.test(error.message);
    await assert.rejects(() => store.put("t", "x", 1, alice), refused);
    await assert.rejects(() => store.delete("t", "b", alice), refused);
    await assert.rejects(
      () =>
        store.applyReplicas([{
          table: "t",
          key: "x",
          entry: { ...alice, version: 9, timestamp: 1, deleted: true },
        }]),
      refused,
    );
    await assert.rejects(() => store.purge("t", "b"), refused);
    await assert.rejects(() => store.checkpoint(), refused);
    await assert.rejects(() => store.snapshot(), refused);
    assert.throws(() => store.promise("t", "b", { counter: 1, node: "n:1" }), refused);
    await store.close();
    assert.deepEqual(await filesOf(fs, "/data"), before, "every file as it was, and no other");
    // The node that opens it next cuts the tail and sees the same state.
    const node = await openStore(storeOptions({ fs }));
    assert.deepEqual(Object.keys(dumpTable(node, "t")).sort(), ["b", "base"]);
    assert.equal((await fs.readFile(walPath))?.length, tornOffset);
    await node.close();
  },
);

Deno.test(
  "Store.open({ readOnly }) reads a WAL without storage.db, a torn WAL header as empty, and a " +
    "missing dir as empty",
  async () => {
    const fs = new MemoryFs();
    const store = await openStore(storeOptions({ fs }));
    await store.put("t", "k", 1, alice);
    const image = fs.crashCopy();
    await store.close();
    const before = await filesOf(image, "/data");
    assert.ok(!before.has("/data/storage.db"));
    const reader = await Store.open(storeOptions({ fs: image, readOnly: true }));
    assert.equal(reader.get("t", "k")?.version, 1);
    await reader.close();
    await image.writeFileDurably(walPath, new Uint8Array(7));
    const tornHeader = await filesOf(image, "/data");
    const logger = new RecordingLogger();
    const empty = await Store.open(storeOptions({ fs: image, logger, readOnly: true }));
    assert.equal(empty.tableCounts().size, 0);
    assert.equal(logger.at("warn").filter((line) => /torn WAL header/.test(line.message)).length, 1);
    await empty.close();
    assert.deepEqual(await filesOf(image, "/data"), tornHeader);
    const nothing = new MemoryFs();
    const none = await Store.open(storeOptions({ fs: nothing, dir: "/absent", readOnly: true }));
    assert.equal(none.tableCounts().size, 0);
    await none.close();
    assert.deepEqual(await nothing.readDir("/"), [], "no directory was created");
  },
);

Deno.test(
  "Store.open() holds node.lock: a second store, or a read-only one, is refused while it is open",
  async () => {
    const fs = new MemoryFs();
    const store = await openStore(storeOptions({ fs }));
    await store.put("t", "k", 1, alice);
    const locked = (readOnly: boolean) => (error: unknown) =>
      error instanceof DataDirLockedError && error.code === "config_invalid" &&
      error.message.startsWith("/data is in use") && error.message.includes(`/data/${lockFileName}`) &&
      (readOnly ? /a node runs on it/ : /another process/).test(error.message);
    await assert.rejects(() => openStore(storeOptions({ fs })), locked(false));
    await assert.rejects(() => Store.open(storeOptions({ fs, readOnly: true })), locked(true));
    assert.equal(store.get("t", "k")?.version, 1, "the refused opens touched nothing");
    await store.close();
    const first = await Store.open(storeOptions({ fs, readOnly: true }));
    const second = await Store.open(storeOptions({ fs, readOnly: true }));
    await assert.rejects(() => openStore(storeOptions({ fs })), locked(false));
    await first.close();
    await assert.rejects(() => openStore(storeOptions({ fs })), locked(false));
    await second.close();
    const reopened = await openStore(storeOptions({ fs }));
    assert.equal(reopened.get("t", "k")?.version, 1);
    await reopened.close();
  },
);

Deno.test("Store.open() lets the lock go when recovery fails", async () => {
  const fs = new MemoryFs();
  const store = await openStore(storeOptions({ fs }));
  await store.put("t", "k", 1, alice);
  await store.close();
  const storage = (await fs.readFile("/data/storage.db"))!.slice();
  const good = storage.slice();
  storage[40]! ^= 0x10;
  await fs.writeFileDurably("/data/storage.db", storage);
  await assert.rejects(() => openStore(storeOptions({ fs })), { code: "wal_corrupt" });
  await assert.rejects(() => Store.open(storeOptions({ fs, readOnly: true })), { code: "wal_corrupt" });
  await fs.writeFileDurably("/data/storage.db", good);
  const again = await openStore(storeOptions({ fs }));
  assert.equal(again.get("t", "k")?.version, 1);
  await again.close();
});

Deno.test("ReadOnlyFs fails an assertion on every call that would write", async () => {
  const inner = new MemoryFs();
  await inner.writeFileDurably("/f", new Uint8Array([1]));
  const fs: Fs = new ReadOnlyFs(inner);
  const create = { permissions: 0o600 };
  const file = await fs.openRead("/f");
  assert(file !== undefined);
  assert.equal(await file.sizeBytes(), 1);
  const writes: Array<() => unknown> = [
    () => fs.mkdir("/d", create),
    () => fs.openAppend("/f", create),
    () => fs.createFile("/g", create),
    () => fs.rename("/f", "/g"),
    () => fs.remove("/f"),
    () => fs.narrowPermissions("/f", 0o600),
    () => fs.syncDir("/"),
    () => fs.tryLock("/f", { exclusive: true }),
    () => fs.tryLock("/f", { exclusive: false, create }),
    () => file.write(new Uint8Array(1)),
    () => file.truncate(0),
    () => file.syncData(),
  ];
  for (const write of writes) assert.throws(write, AssertionError, String(write));
  file.close();
  assert.deepEqual(await inner.readFile("/f"), new Uint8Array([1]));
  const shared = await fs.tryLock("/f", { exclusive: false });
  assert(shared !== undefined);
  shared.release();
});
