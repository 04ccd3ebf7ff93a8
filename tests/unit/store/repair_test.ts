// Goal: `repair` turns a refused data dir into a running store without losing more than the damage took:
// a damaged WAL is copied to wal.log.broken.<ms> and cut at its last good frame; a damaged storage.db is
// moved aside and the state comes back from the newest readable snapshot plus the WAL; what was lost is
// logged; a wrong-key file is still refused. Without `repair` nothing changes on disk.
// Method: Stores on MemoryFs, damaged through crashCopy() images and writeFileDurably().
import assert from "node:assert/strict";
import { MemoryFs, Store, WalCorruptError, WrongKeyError } from "../../../src/store/mod.ts";
import { fileHeaderBytes } from "../../../src/store/frame.ts";
import { dumpTable, otherEncryption, RecordingLogger, storeOptions } from "./test_store.ts";

const walPath = "/data/wal.log";
const storagePath = "/data/storage.db";
const alice = { owner: "alice" };
/** ManualClock's start: the `<ms>` of a `.broken.<ms>` name. */
const startMs = 1_700_000_000_000;

/** A crash image whose WAL holds one batch per key; returns the WAL size after each batch. */
async function walOfBatches(keys: string[], fs = new MemoryFs()): Promise<{ fs: MemoryFs; sizes: number[] }> {
  const store = await Store.open(storeOptions({ fs }));
  const sizes = [store.stats().walBytes];
  for (const key of keys) {
    await store.put("t", key, { key }, alice);
    sizes.push(store.stats().walBytes);
  }
  const image = fs.crashCopy();
  await store.close();
  return { fs: image, sizes };
}

async function flipByte(fs: MemoryFs, path: string, offset: number): Promise<Uint8Array> {
  const bytes = (await fs.readFile(path))!.slice();
  bytes[offset]! ^= 0x10;
  await fs.writeFileDurably(path, bytes);
  return bytes;
}

Deno.test("Store.open({ repair }) copies a damaged WAL to .broken.<ms>, cuts it at the damage", async () => {
  const { fs, sizes } = await walOfBatches(["a", "b", "c", "d"]);
  const damaged = await flipByte(fs, walPath, sizes[2]! + 30);
  await assert.rejects(() => Store.open(storeOptions({ fs })), WalCorruptError);
  assert.deepEqual(await fs.readFile(walPath), damaged, "refusing changes nothing");
  const logger = new RecordingLogger();
  const store = await Store.open(storeOptions({ fs, logger, repair: true }));
  assert.deepEqual(Object.keys(dumpTable(store, "t")), ["a", "b"], "every frame before the damage is kept");
  assert.deepEqual(
    await fs.readFile(`${walPath}.broken.${startMs}`),
    damaged,
    "the copy is the damaged file",
  );
  const repairLine = logger.at("error").find((line) => line.message.startsWith("repair: cut"));
  assert.ok(repairLine !== undefined);
  assert.match(repairLine.message, new RegExp(`${walPath} at byte offset ${sizes[2]}`));
  assert.equal(repairLine.fields?.droppedBytes, sizes[4]! - sizes[2]!);
  assert.equal(store.stats().checkpointCount, 1, "the repaired state was checkpointed");
  assert.equal((await store.put("t", "c", "again", alice)).version, 1);
  await store.close();
  const reopened = await Store.open(storeOptions({ fs: fs.crashCopy() }));
  assert.deepEqual(Object.keys(dumpTable(reopened, "t")), ["a", "b", "c"], "a plain open works after it");
  await reopened.close();
});

Deno.test("Store.open({ repair }) rewrites a WAL with a damaged header, copy named apart", async () => {
  const { fs } = await walOfBatches(["a"]);
  await fs.writeFileDurably(`${walPath}.broken.${startMs}`, new Uint8Array([1]));
  const damaged = await flipByte(fs, walPath, 1);
  const store = await Store.open(storeOptions({ fs, repair: true }));
  assert.deepEqual(dumpTable(store, "t"), {});
  assert.equal(store.stats().walBytes, fileHeaderBytes);
  assert.deepEqual(await fs.readFile(`${walPath}.broken.${startMs + 1}`), damaged, "the next free name");
  await store.close();
});

/** A data dir with a snapshot (a), then storage.db (a, b), then the WAL (c). */
async function stateFilesAndWal(): Promise<MemoryFs> {
  const fs = new MemoryFs();
  const store = await Store.open(storeOptions({ fs }));
  await store.put("t", "a", 1, alice);
  await store.snapshot();
  await store.put("t", "b", 2, alice);
  await store.checkpoint();
  await store.put("t", "c", 3, alice);
  const image = fs.crashCopy();
  await store.close();
  return image;
}

Deno.test("Store.open({ repair }) moves storage.db aside, recovers snapshot + WAL", async () => {
  const fs = await stateFilesAndWal();
  const damaged = await flipByte(fs, storagePath, fileHeaderBytes + 25);
  await assert.rejects(
    () => Store.open(storeOptions({ fs })),
    (error: unknown) => error instanceof WalCorruptError && error.path === storagePath && error.offset === 21,
  );
  const logger = new RecordingLogger();
  const store = await Store.open(storeOptions({ fs, logger, repair: true }));
  assert.deepEqual(Object.keys(dumpTable(store, "t")), ["a", "c"], "b was only in storage.db");
  assert.deepEqual(await fs.readFile(`${storagePath}.broken.${startMs}`), damaged);
  const messages = logger.lines.map((line) => line.message);
  assert.ok(messages.some((message) => message.startsWith(`repair: moved the damaged ${storagePath}`)));
  assert.ok(
    messages.includes(
      "writes with sequences 2 to 2 are lost: they were in neither " +
        `/data/snapshots/snapshot_${startMs}.json nor ${walPath}`,
    ),
    messages.join("\n"),
  );
  assert.equal(store.stats().sequence, 3);
  await store.close();
  const reopened = await Store.open(storeOptions({ fs: fs.crashCopy() }));
  assert.deepEqual(Object.keys(dumpTable(reopened, "t")), ["a", "c"]);
  await reopened.close();
});

Deno.test("Store.open({ repair }) skips a damaged snapshot and falls back to the WAL alone", async () => {
  const fs = await stateFilesAndWal();
  await flipByte(fs, storagePath, fileHeaderBytes + 25);
  await flipByte(fs, `/data/snapshots/snapshot_${startMs}.json`, fileHeaderBytes + 25);
  const logger = new RecordingLogger();
  const store = await Store.open(storeOptions({ fs, logger, repair: true }));
  assert.deepEqual(Object.keys(dumpTable(store, "t")), ["c"]);
  assert.ok(logger.at("warn").some((line) => line.message.startsWith("skipping a damaged snapshot")));
  assert.ok(
    logger.at("warn").some((line) => line.message.startsWith("writes with sequences 1 to 2 are lost")),
  );
  await store.close();
});

Deno.test("Store.open({ repair }) still refuses a wrong-key file, untouched", async () => {
  const { fs } = await walOfBatches(["a"]);
  const before = await fs.readFile(walPath);
  await assert.rejects(
    () => Store.open(storeOptions({ fs, repair: true, encryption: otherEncryption })),
    WrongKeyError,
  );
  assert.deepEqual(await fs.readFile(walPath), before);
  assert.deepEqual((await fs.readDir("/data")).filter((name) => name.includes(".broken.")), []);
});
