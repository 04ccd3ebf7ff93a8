// Goal: on a real disk (DenoFs) every file is encrypted, compressed or not; a store survives a restart;
// and a torn WAL tail is cut off in the real file.
// Method: Stores in Deno.makeTempDir(); scan every file under the dir for a marker string.
import assert from "node:assert/strict";
import { DenoFs, MemoryFs } from "../../../src/store/fs.ts";
import { Store } from "../../../src/store/mod.ts";
import { containsBytes, dumpTable, RecordingLogger, storeOptions } from "./test_store.ts";

const marker = "MARKER-7f3a9c-secret-value";
const alice = { owner: "alice" };

async function filesUnder(dir: string): Promise<string[]> {
  const paths: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) paths.push(...await filesUnder(path));
    else paths.push(path);
  }
  return paths;
}

async function assertMarkerNowhere(dir: string, expectedFiles: string[]): Promise<void> {
  const paths = await filesUnder(dir);
  for (const name of expectedFiles) assert(paths.includes(`${dir}/${name}`), `${name} exists`);
  const needles = [marker, "table-name-marker", "key-name-marker"].map((text) =>
    new TextEncoder().encode(text)
  );
  for (const path of paths) {
    const bytes = await Deno.readFile(path);
    for (const needle of needles) assert(!containsBytes(bytes, needle), `${path} holds plaintext`);
  }
}

Deno.test("Store on DenoFs: no file under the data dir holds a value, table or key in clear", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const store = await Store.open(storeOptions({ dir, fs: new DenoFs() }));
    await store.put("table-name-marker", "key-name-marker", marker, alice);
    await store.put("t", "compressed", { text: `${marker} `.repeat(100) }, alice);
    const noise = Array.from(crypto.getRandomValues(new Uint8Array(600)), (byte) => byte.toString(16)).join(
      "",
    );
    await store.put("t", "incompressible", `${noise}${marker}${noise}`, alice);
    await store.snapshot();
    await assertMarkerNowhere(dir, ["wal.log", `snapshots/snapshot_${1_700_000_000_000}.json`]);
    await store.close();
    await assertMarkerNowhere(dir, ["wal.log", "storage.db"]);
    const reopened = await Store.open(storeOptions({ dir, fs: new DenoFs() }));
    assert.equal(JSON.parse(reopened.get("table-name-marker", "key-name-marker")!.json).value, marker);
    assert.equal(reopened.tableCounts().get("t"), 2);
    await reopened.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test(
  "Store on DenoFs: a torn WAL tail is cut off in the real file and the store appends after it",
  async () => {
    const memory = new MemoryFs();
    const writer = await Store.open(storeOptions({ fs: memory }));
    await writer.put("t", "a", 1, alice);
    const lastFrameOffset = writer.stats().walBytes;
    await writer.put("t", "b", 2, alice);
    const wal = (await memory.crashCopy().readFile("/data/wal.log"))!;
    const dir = await Deno.makeTempDir();
    try {
      await Deno.writeFile(`${dir}/wal.log`, wal.subarray(0, wal.length - 5), { mode: 0o600 });
      const logger = new RecordingLogger();
      const store = await Store.open(storeOptions({ dir, fs: new DenoFs(), logger }));
      assert.deepEqual(Object.keys(dumpTable(store, "t")), ["a"]);
      assert.match(
        logger.at("warn")[0]!.message,
        new RegExp(`${dir}/wal.log at byte offset ${lastFrameOffset}`),
      );
      assert.equal((await Deno.stat(`${dir}/wal.log`)).size, lastFrameOffset);
      await store.put("t", "c", 3, alice);
      await store.close();
      const reopened = await Store.open(storeOptions({ dir, fs: new DenoFs() }));
      assert.deepEqual(Object.keys(dumpTable(reopened, "t")), ["a", "c"]);
      await reopened.close();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
    await writer.close();
  },
);
