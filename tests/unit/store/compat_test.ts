// Goal: a data dir written before ballots (ops 1-4 only) opens and reads the same with this build, from
// storage.db + WAL and from a snapshot, and takes ballot records after it; plain local writes, replicas
// at the zero ballot and purges still write exactly the old layout.
// Method: fixtures/pre_ballot/ holds wal.log, storage.db and a snapshot (.bin) written by the store of commit
// 51c7c1a (see its README.md) with the tests' key, and expected.json what that build read back. Each test
// copies it into Deno.makeTempDir() and opens it on DenoFs; frames are decrypted to look at op codes.
import assert from "node:assert/strict";
import { fileHeaderBytes, readFully, recordsOf, scanFrames } from "../../../src/store/frame.ts";
import { DenoFs, type Store, zeroBallot } from "../../../src/store/mod.ts";
import { encodeRecord } from "../../../src/store/wal_record.ts";
import { openStore, storeOptions, testEncryption } from "./test_store.ts";

const fixtureDir = new URL("./fixtures/pre_ballot/", import.meta.url).pathname;
const snapshotName = "snapshot_1700000001001.json";
const expected: { sequence: number; entries: Record<string, string> } = JSON.parse(
  await Deno.readTextFile(`${fixtureDir}expected.json`),
);

/** A copy of the fixture's data dir in a new temp dir. */
async function copyFixture(): Promise<string> {
  const dir = await Deno.makeTempDir();
  await Deno.mkdir(`${dir}/snapshots`);
  for (const name of ["wal.log", "storage.db"]) await Deno.copyFile(`${fixtureDir}${name}`, `${dir}/${name}`);
  // Stored under another extension: `deno fmt` would try to format a `.json` file.
  await Deno.copyFile(`${fixtureDir}${snapshotName}.bin`, `${dir}/snapshots/${snapshotName}`);
  return dir;
}

function dumpAll(store: Store): Record<string, string> {
  const result: Record<string, string> = {};
  for (const { table, key, entry } of store.scan()) result[`${table}/${key}`] = entry.json;
  return Object.fromEntries(Object.entries(result).sort());
}

/** The op code of every record of the WAL in `dir`, in order. */
async function walOpCodes(dir: string): Promise<number[]> {
  const fs = new DenoFs();
  const path = `${dir}/wal.log`;
  const file = (await fs.openRead(path))!;
  const ops: number[] = [];
  try {
    const header = new Uint8Array(fileHeaderBytes);
    assert.equal(await readFully(file, header), fileHeaderBytes);
    const sizeBytes = await file.sizeBytes();
    await scanFrames({ file, path, sizeBytes, encryption: testEncryption, header }, (frame) => {
      for (const record of recordsOf(frame)) ops.push(record[0]!);
    });
  } finally {
    file.close();
  }
  return ops;
}

Deno.test("Store.open() reads a data dir written before ballots exactly as that build did", async () => {
  const dir = await copyFixture();
  try {
    const store = await openStore(storeOptions({ dir, fs: new DenoFs() }));
    assert.deepEqual(dumpAll(store), expected.entries);
    assert.equal(store.stats().sequence, expected.sequence);
    for (const { state } of store.scanStates()) assert.deepEqual(state.ballot, zeroBallot);
    assert.deepEqual(store.acceptorOf("t", "r"), {
      promised: zeroBallot,
      accepted: zeroBallot,
      entry: { version: 5, timestamp: 1_700_000_000_500, owner: "bob", deleted: false, valueJson: '"newer"' },
    });
    assert.equal(store.replicaOf("t", "r")!.ballot, undefined, "the zero ballot is left out");
    await store.accept("t", "r", { counter: 1, node: "n1:6660" }, {
      version: 6,
      timestamp: 1_700_000_002_000,
      owner: "bob",
      deleted: false,
      valueJson: '"accepted"',
    });
    await store.promise("t", "c", { counter: 1, node: "n1:6660" });
    await store.close();
    const reopened = await openStore(storeOptions({ dir, fs: new DenoFs() }));
    assert.equal(JSON.parse(reopened.get("t", "r")!.json).value, "accepted");
    assert.deepEqual(reopened.acceptorOf("t", "c").promised, { counter: 1, node: "n1:6660" });
    assert.equal(reopened.get("t", "a")!.json, expected.entries["t/a"], "old records read as before");
    await reopened.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Store.open() starts from a snapshot written before ballots", async () => {
  const dir = await copyFixture();
  try {
    await Deno.remove(`${dir}/storage.db`);
    const store = await openStore(storeOptions({ dir, fs: new DenoFs() }));
    assert.deepEqual(dumpAll(store), expected.entries, "the snapshot plus the whole WAL");
    await store.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test(
  "Store: plain writes, zero-ballot replicas and purges still write the old op codes 1, 2 and 4",
  async () => {
    const dir = await Deno.makeTempDir();
    try {
      const store = await openStore(storeOptions({ dir, fs: new DenoFs() }));
      const alice = { owner: "alice" };
      await store.put("t", "a", 1, alice);
      await store.patch("t", "a", {}, alice).catch(() => {}); // not an object: refused, nothing written
      await store.delete("t", "a", alice);
      await store.applyReplica("t", "r", {
        version: 2,
        timestamp: 5,
        owner: "bob",
        deleted: false,
        valueJson: "2",
      });
      await store.applyReplica("t", "d", { version: 2, timestamp: 5, owner: "bob", deleted: true });
      await store.purge("t", "r");
      assert.deepEqual(await walOpCodes(dir), [1, 2, 1, 2, 4]);
      const zero = encodeRecord({
        op: "put",
        sequence: 3,
        version: 2,
        timestamp: 5,
        table: "t",
        key: "r",
        owner: "bob",
        valueJson: "2",
        ballot: { counter: 0, node: "" },
      });
      const none = encodeRecord({
        op: "put",
        sequence: 3,
        version: 2,
        timestamp: 5,
        table: "t",
        key: "r",
        owner: "bob",
        valueJson: "2",
      });
      assert.deepEqual(zero, none, "a zero ballot adds no byte");
      await store.close();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
