// Goal: a restart recovers every acknowledged write and nothing else; torn WAL tails are cut off with
// a warning naming file and offset; damage elsewhere and foreign keys stop the open without touching files.
// Method: write through a Store on MemoryFs, take crashCopy() (what a power cut leaves), damage the WAL
// bytes, and reopen.
import assert from "node:assert/strict";
import { MemoryFs } from "../../../src/store/fs.ts";
import { Store, WalCorruptError, WrongKeyError } from "../../../src/store/mod.ts";
import { fileHeaderBytes } from "../../../src/store/frame.ts";
import {
  dumpTable,
  HookedFs,
  openStore,
  otherEncryption,
  RecordingLogger,
  storeOptions,
  waitFor,
} from "./test_store.ts";

const walPath = "/data/wal.log";
const alice = { owner: "alice" };

/** A store with three batches (a, b, c) in its WAL; returns the WAL size after each. */
async function threeBatches(): Promise<{ fs: MemoryFs; sizes: number[] }> {
  const fs = new MemoryFs();
  const store = await openStore(storeOptions({ fs }));
  const sizes: number[] = [store.stats().walBytes];
  for (const key of ["a", "b", "c"]) {
    await store.put("t", key, { key }, alice);
    sizes.push(store.stats().walBytes);
  }
  return { fs: fs.crashCopy(), sizes };
}

async function walBytes(fs: MemoryFs): Promise<Uint8Array> {
  const bytes = await fs.readFile(walPath);
  assert(bytes !== undefined);
  return bytes;
}

Deno.test("Store.open() after a crash recovers every acknowledged write, versions and sequence", async () => {
  const fs = new MemoryFs();
  const store = await openStore(storeOptions({ fs }));
  await store.put("t", "k", 1, alice);
  await store.delete("t", "k", alice);
  await store.put("t", "x", { n: 1 }, alice);
  await store.patch("t", "x", { m: 2 }, alice);
  const before = dumpTable(store, "t");
  const recovered = await openStore(storeOptions({ fs: fs.crashCopy() }));
  assert.deepEqual(dumpTable(recovered, "t"), before);
  assert.equal(recovered.getEntry("t", "k")?.json, store.getEntry("t", "k")?.json);
  assert.equal(recovered.stats().sequence, 4);
  assert.equal((await recovered.put("t", "k", "again", { owner: "bob" })).version, 3);
  const events: number[] = [];
  recovered.onChange((event) => events.push(event.sequence));
  await recovered.put("t", "x", 0, alice);
  assert.deepEqual(events, [6]);
  await recovered.close();
  await store.close();
});

Deno.test("Store.open() after a crash has no trace of a write that was not yet acknowledged", async () => {
  const inner = new MemoryFs();
  const fs = new HookedFs(inner);
  const store = await openStore(storeOptions({ fs }));
  await store.put("t", "acked", 1, alice);
  let crashed: MemoryFs | undefined;
  let release: () => void = () => {};
  const gate = new Promise<void>((resolve) => release = resolve);
  fs.hooks.beforeSyncData = async (path) => {
    if (path !== walPath || crashed !== undefined) return;
    crashed = inner.crashCopy();
    await gate;
  };
  const pending = store.put("t", "pending", 2, alice);
  await waitFor(() => crashed !== undefined, { timeoutMs: 2_000 });
  release();
  await pending;
  const recovered = await openStore(storeOptions({ fs: crashed! }));
  assert.deepEqual(Object.keys(dumpTable(recovered, "t")), ["acked"]);
  await recovered.close();
  await store.close();
});

Deno.test(
  "Store.open() cuts a torn WAL tail at several offsets, warns with file and offset, and appends " +
    "again",
  async () => {
    const { fs: base, sizes } = await threeBatches();
    const [, , lastFrameOffset, end] = sizes as [number, number, number, number];
    const original = await walBytes(base);
    assert.equal(original.length, end);
    for (
      const cut of [
        lastFrameOffset + 1,
        lastFrameOffset + 8,
        lastFrameOffset + 20,
        lastFrameOffset + 30,
        end - 1,
      ]
    ) {
      const fs = base.crashCopy();
      await fs.writeFileDurably(walPath, original.subarray(0, cut));
      const logger = new RecordingLogger();
      const store = await openStore(storeOptions({ fs, logger }));
      assert.deepEqual(Object.keys(dumpTable(store, "t")), ["a", "b"], `cut at ${cut}`);
      const warnings = logger.at("warn");
      assert.equal(warnings.length, 1);
      assert.match(warnings[0]!.message, new RegExp(`${walPath} at byte offset ${lastFrameOffset}$`));
      assert.equal(warnings[0]!.fields?.offset, lastFrameOffset);
      assert.equal((await walBytes(fs)).length, lastFrameOffset, "the file was truncated");
      assert.equal((await store.put("t", "d", 4, alice)).version, 1);
      const again = await openStore(storeOptions({ fs: fs.crashCopy(), logger: new RecordingLogger() }));
      assert.deepEqual(Object.keys(dumpTable(again, "t")), ["a", "b", "d"]);
      await again.close();
      await store.close();
    }
  },
);

Deno.test("Store.open() rewrites a WAL whose header was torn", async () => {
  const { fs, sizes } = await threeBatches();
  assert.equal(sizes[0], fileHeaderBytes);
  await fs.writeFileDurably(walPath, (await walBytes(fs)).subarray(0, 10));
  const logger = new RecordingLogger();
  const store = await openStore(storeOptions({ fs, logger }));
  assert.equal(logger.at("warn").length, 1);
  assert.equal(store.stats().walBytes, fileHeaderBytes);
  await store.put("t", "k", 1, alice);
  await store.close();
});

Deno.test(
  "Store.open() refuses a WAL damaged before its last frame with WalCorruptError naming file and " +
    "offset",
  async () => {
    const { fs, sizes } = await threeBatches();
    const damaged = (await walBytes(fs)).slice();
    damaged[sizes[1]! + 25]! ^= 0x40;
    await fs.writeFileDurably(walPath, damaged);
    await assert.rejects(
      () => Store.open(storeOptions({ fs })),
      (error: unknown) =>
        error instanceof WalCorruptError && error.code === "wal_corrupt" && error.offset === sizes[1] &&
        error.message.startsWith(`${walPath} is corrupt at byte offset ${sizes[1]}`),
    );
    assert.deepEqual(await walBytes(fs), damaged, "the WAL was not modified");
  },
);

Deno.test("Store.open() refuses a WAL with a foreign magic", async () => {
  const { fs } = await threeBatches();
  const damaged = (await walBytes(fs)).slice();
  damaged[0] = 0x58;
  await fs.writeFileDurably(walPath, damaged);
  await assert.rejects(
    () => Store.open(storeOptions({ fs })),
    (error: unknown) => error instanceof WalCorruptError && error.offset === 0,
  );
});

Deno.test(
  "Store.open() refuses a WAL and a storage.db written under another key, without touching them",
  async () => {
    const { fs } = await threeBatches();
    const wal = await walBytes(fs);
    const isWrongKey = (file: string) => (error: unknown) =>
      error instanceof WrongKeyError && error.code === "wrong_key" && error.message.includes(file) &&
      error.message.includes(`key id ${storeOptions().encryption.keyId}`) &&
      error.message.includes(`this build has key id ${otherEncryption.keyId}`);
    await assert.rejects(
      () => Store.open(storeOptions({ fs, encryption: otherEncryption })),
      isWrongKey("wal.log"),
    );
    assert.deepEqual(await walBytes(fs), wal);
    const store = await openStore(storeOptions({ fs }));
    await store.close();
    const storage = await fs.readFile("/data/storage.db");
    assert(storage !== undefined);
    await assert.rejects(
      () => Store.open(storeOptions({ fs, encryption: otherEncryption })),
      isWrongKey("storage.db"),
    );
    assert.deepEqual(await fs.readFile("/data/storage.db"), storage);
  },
);

Deno.test("Store.open() removes .tmp files left by an interrupted checkpoint or snapshot", async () => {
  const { fs } = await threeBatches();
  await fs.mkdir("/data/snapshots", { permissions: 0o700 });
  await fs.writeFileDurably("/data/storage.db.tmp", new Uint8Array(100));
  await fs.writeFileDurably("/data/snapshots/snapshot_5.json.tmp", new Uint8Array(100));
  await fs.writeFileDurably("/data/notes.tmp", new Uint8Array(1));
  const store = await openStore(storeOptions({ fs }));
  assert.equal(await fs.stat("/data/storage.db.tmp"), undefined);
  assert.deepEqual(await fs.readDir("/data/snapshots"), []);
  assert((await fs.stat("/data/notes.tmp")) !== undefined, "a file that is not ours is left alone");
  assert.deepEqual(Object.keys(dumpTable(store, "t")), ["a", "b", "c"]);
  await store.close();
});

Deno.test("Store.open() refuses a storage.db damaged anywhere, its tail included", async () => {
  const { fs } = await threeBatches();
  const store = await openStore(storeOptions({ fs }));
  await store.close();
  const storage = await fs.readFile("/data/storage.db");
  assert(storage !== undefined);
  for (const damaged of [storage.subarray(0, storage.length - 1), storage.subarray(0, 30)]) {
    const copy = fs.crashCopy();
    await copy.writeFileDurably("/data/storage.db", damaged);
    await assert.rejects(() => Store.open(storeOptions({ fs: copy })), WalCorruptError);
  }
});

Deno.test(
  "Store.open() indexes storage.db cold, then reads, rewrites, purges, lists and restarts the same",
  async () => {
    const fs = new MemoryFs();
    const store = await openStore(storeOptions({ fs }));
    const text = "lorem ipsum dolor sit amet ".repeat(12);
    for (let start = 0; start < 6_000; start += 500) {
      await Promise.all(
        Array.from(
          { length: 500 },
          (_, index) => store.put("t", `k${start + index}`, { text, n: start + index }, alice),
        ),
      );
    }
    await store.delete("t", "k5", alice);
    const before = dumpTable(store, "t");
    await store.close();
    assert.equal((await fs.stat(walPath))?.sizeBytes, fileHeaderBytes, "everything is in storage.db");
    const reopened = await openStore(storeOptions({ fs }));
    assert.deepEqual(dumpTable(reopened, "t"), before);
    assert.equal(reopened.tableCounts().get("t"), 5_999);
    await reopened.put("t", "k7", { rewritten: true }, alice);
    await reopened.purge("t", "k8");
    await reopened.delete("t", "k9", alice);
    const after = dumpTable(reopened, "t");
    assert.equal(JSON.parse(reopened.get("t", "k7")!.json).version, 2);
    assert.equal(reopened.get("t", "k8"), undefined);
    assert.equal([...reopened.scan()].length, 6_000 - 1, "every key but the purged one, tombstones included");
    await reopened.close();
    const third = await openStore(storeOptions({ fs }));
    assert.deepEqual(dumpTable(third, "t"), after);
    // One WAL batch of rewrites (a deflated frame, cold once replayed) over cold storage.db pages.
    await Promise.all(
      Array.from({ length: 800 }, (_, index) => third.put("t", `k${index * 7}`, { text, b: 1 }, alice)),
    );
    const crashed = await openStore(storeOptions({ fs: fs.crashCopy() }));
    assert.deepEqual(dumpTable(crashed, "t"), dumpTable(third, "t"));
    await crashed.close();
    await third.close();
  },
);
