// Goal: the index keeps every key's record as bytes in pages and answers like a map of entries: frames
// read from files are indexed in order (a key's last record wins) without copying, writes replace
// records, purges remove keys, promises are left to the store, a cut keeps reading what it saw, and
// mostly dead pages are compacted away.
// Method: records encoded with encodeRecord and framed as a frame's plaintext holds them; entries
// compared with the concatenation reference entryOf(); page bytes checked against live bytes.
import assert from "node:assert/strict";
import type { FrameRecords } from "../../../src/store/frame.ts";
import { VisibleIndex } from "../../../src/store/visible_index.ts";
import {
  type DeleteRecord,
  encodeRecord,
  entryOf,
  type PromiseRecord,
  type PurgeRecord,
  type PutRecord,
  type WalRecord,
} from "../../../src/store/wal_record.ts";

function put(key: string, version: number, value: unknown, extra: Partial<PutRecord> = {}): PutRecord {
  const valueJson = JSON.stringify(value);
  return {
    op: "put",
    sequence: 0,
    version,
    timestamp: 1_000 + version,
    table: "t",
    key,
    owner: "o",
    valueJson,
    ...extra,
  };
}

function del(key: string, version: number): DeleteRecord {
  return { op: "delete", sequence: 0, version, timestamp: 1_000 + version, table: "t", key, owner: "o" };
}

/** The records as one frame's plaintext holds them (back to back, each after its u32 length). */
function frameOf(records: WalRecord[]): FrameRecords {
  const encoded = records.map((record) => encodeRecord(record));
  const bytes = new Uint8Array(encoded.reduce((sum, item) => sum + 4 + item.length, 0));
  let offset = 0;
  for (const item of encoded) {
    new DataView(bytes.buffer).setUint32(offset, item.length);
    bytes.set(item, offset + 4);
    offset += 4 + item.length;
  }
  return { bytes, count: records.length };
}

Deno.test("VisibleIndex.loadFrame() indexes a frame's records in place and decodes entries on demand", () => {
  const index = new VisibleIndex();
  const records = [put("a", 1, { n: 1 }), put("é🍎", 2, "ü"), del("gone", 3)];
  const frame = frameOf(records);
  index.loadFrame(frame, frame.count);
  assert.deepEqual(index.get("t", "a"), entryOf(records[0] as PutRecord));
  assert.deepEqual(index.get("t", "é🍎"), entryOf(records[1] as PutRecord));
  assert.deepEqual(index.get("t", "gone"), entryOf(records[2] as DeleteRecord));
  assert.equal(index.getLive("t", "gone"), undefined);
  assert.equal(index.versionOf("t", "gone"), 3);
  assert.deepEqual(index.tableCounts(), new Map([["t", 2]]));
  const { pageBytes, liveBytes } = index.pageStats;
  assert.equal(pageBytes, liveBytes, "the frame's bytes are the page: nothing copied, nothing dead");
});

Deno.test(
  "VisibleIndex.loadFrame() applies records in order: a key's last record wins, a purge removes it",
  () => {
    const index = new VisibleIndex();
    const first = frameOf([put("k", 5, "five"), put("x", 1, 1), put("tie", 2, "a")]);
    index.loadFrame(first, first.count);
    const purge: PurgeRecord = { op: "purge", sequence: 0, timestamp: 9, table: "t", key: "x" };
    const ballot = { counter: 3, node: "n1:7000" };
    const second = frameOf([put("k", 4, "accepted at a ballot", { ballot }), purge, del("tie", 2)]);
    index.loadFrame(second, second.count);
    // Ballots, not versions, order accepted states: a lower version logged later was applied later.
    const k = index.get("t", "k")!;
    assert.equal(JSON.parse(k.json).value, "accepted at a ballot");
    assert.deepEqual(k.ballot, ballot);
    assert.equal(index.get("t", "x"), undefined, "a purge removes the key");
    assert.equal(index.get("t", "tie")!.deleted, true);
    assert.deepEqual(index.tableCounts(), new Map([["t", 1]]));
    const promise: PromiseRecord = { op: "promise", sequence: 0, timestamp: 9, table: "p", key: "k", ballot };
    const newer = frameOf([put("k", 6, "six"), promise]);
    index.loadFrame(newer, newer.count);
    assert.equal(index.versionOf("t", "k"), 6);
    assert.deepEqual(
      index.get("t", "k")!.ballot,
      { counter: 0, node: "" },
      "a local write is at the zero ballot",
    );
    assert.equal(index.hasTable("p"), false, "a promise is not a key's state");
  },
);

Deno.test(
  "VisibleIndex.loadFrame() indexes only the first entryCount records (a checkpoint end follows)",
  () => {
    const index = new VisibleIndex();
    const end: WalRecord = { op: "checkpointEnd", sequence: 7, entryCount: 2, timestamp: 9 };
    const frame = frameOf([put("a", 1, "a"), del("b", 1), end]);
    index.loadFrame(frame, 2);
    assert.deepEqual(index.tableCounts(), new Map([["t", 1]]));
    assert.equal(index.get("t", "b")!.deleted, true);
    const { pageBytes, liveBytes } = index.pageStats;
    assert.equal(pageBytes - liveBytes, frame.bytes.length - liveBytes, "the whole frame is the page");
    assert(pageBytes - liveBytes < 64, "only the checkpoint end is dead");
    const purgesOnly = frameOf([
      { op: "purge", sequence: 8, timestamp: 9, table: "t", key: "a" },
      { op: "purge", sequence: 8, timestamp: 9, table: "elsewhere", key: "a" },
    ]);
    index.loadFrame(purgesOnly, 2);
    assert.equal(index.get("t", "a"), undefined);
    assert.equal(index.hasTable("elsewhere"), false, "a purge of an unknown table makes no table");
    assert.equal(index.tableCount, 1);
    assert.equal(index.pageStats.pageBytes, pageBytes, "a page nobody points into is not kept");
  },
);

Deno.test("VisibleIndex finds every key among many, across tables, after purges and rewrites", () => {
  const index = new VisibleIndex();
  const expected = new Map<string, number>();
  for (let round = 1; round <= 3; round += 1) {
    const records: WalRecord[] = [];
    for (let key = 0; key < 3000; key += 1) {
      const table = key % 3 === 0 ? "u" : "t";
      if (round === 2 && key % 5 === 0) {
        records.push({ op: "purge", sequence: 0, timestamp: 1, table, key: `k${key}é` });
        expected.delete(`${table}/k${key}é`);
      } else if (round !== 3 || key % 2 === 0) {
        records.push(put(`k${key}é`, round, key, { table }));
        expected.set(`${table}/k${key}é`, round);
      }
    }
    const frame = frameOf(records);
    index.loadFrame(frame, frame.count);
  }
  for (let key = 0; key < 3000; key += 1) {
    for (const table of ["t", "u"]) {
      assert.equal(
        index.versionOf(table, `k${key}é`),
        expected.get(`${table}/k${key}é`),
        `${table}/k${key}é`,
      );
    }
  }
  assert.equal(index.versionOf("t", "k1"), undefined, "a key is its whole bytes, not a prefix");
  assert.equal(index.versionOf("t", "k1\ud800"), undefined, "a lone surrogate finds no key");
  const scanned = [...index.scan()].map(({ table, key, entry }) => [`${table}/${key}`, entry.version]);
  assert.deepEqual(new Map(scanned as Array<[string, number]>), expected);
  const listed = [...index.entries("t", { limit: 10_000 })].map(([key]) => key);
  assert.deepEqual(
    listed,
    [...expected.keys()].filter((name) => name.startsWith("t/")).map((name) => name.slice(2)).sort(),
  );
  assert.equal(index.cut().addresses.length, expected.size);
});

Deno.test(
  "VisibleIndex.applyRecord() replaces records, tells the version replaced, and compact() keeps dead " +
    "bytes bounded",
  () => {
    const index = new VisibleIndex();
    const text = "x".repeat(500);
    for (let round = 1; round <= 200; round += 1) {
      for (let key = 0; key < 50; key += 1) {
        const encoded = encodeRecord(put(`k${key}`, round, { round, text }));
        const replaced = index.applyRecord({ table: "t", key: `k${key}`, encoded, deleted: false });
        assert.equal(replaced, round - 1, "the version it replaced, 0 for a new key");
      }
      index.compact();
    }
    assert.equal(JSON.parse(index.get("t", "k7")!.json).value.round, 200);
    const { pageBytes, liveBytes } = index.pageStats;
    assert(liveBytes > 50 * 500);
    assert(pageBytes <= 2 * liveBytes + 2 * 65_536, `${pageBytes} page bytes for ${liveBytes} live`);
  },
);

Deno.test("VisibleIndex.cut() keeps reading the records it saw while keys change and pages go", () => {
  const index = new VisibleIndex();
  for (let key = 0; key < 300; key += 1) {
    index.applyRecord({
      table: "t",
      key: `k${key}`,
      encoded: encodeRecord(put(`k${key}`, 1, key)),
      deleted: false,
    });
  }
  const cut = index.cut();
  for (let key = 0; key < 300; key += 1) {
    index.applyRecord({
      table: "t",
      key: `k${key}`,
      encoded: encodeRecord(put(`k${key}`, 2, -key)),
      deleted: false,
    });
    if (key % 2 === 0) index.remove("t", `k${key}`);
  }
  index.compact();
  assert.equal(cut.addresses.length, 300);
  const versions = cut.addresses.map((address) => {
    const { bytes, start } = cut.pages.recordAt(address);
    return new DataView(bytes.buffer, bytes.byteOffset).getUint32(start + 13);
  });
  assert.deepEqual(new Set(versions), new Set([1]));
  assert.equal(index.tableCounts().get("t"), 150);
});

Deno.test("VisibleIndex.entries() lists live keys in order; remove() drops a table with its last key", () => {
  const index = new VisibleIndex();
  const frame = frameOf([put("b", 1, 1), put("a", 1, 1), del("c", 1), put("d", 1, 1)]);
  index.loadFrame(frame, frame.count);
  assert.deepEqual([...index.entries("t", { limit: 10 })].map(([key]) => key), ["a", "b", "d"]);
  assert.deepEqual([...index.entries("t", { after: "b", limit: 10 })].map(([key]) => key), ["d"]);
  for (const key of ["a", "b", "c", "d"]) assert(index.remove("t", key));
  assert.equal(index.remove("t", "a"), false);
  assert.equal(index.hasTable("t"), false);
  assert.equal(index.pageStats.pageBytes, 0, "a page nobody points into is dropped");
});

Deno.test(
  "VisibleIndex.get() never answers a kept entry once its page went and the address is reused",
  () => {
    const index = new VisibleIndex();
    const text = "y".repeat(700);
    const expected = new Map<string, number>();
    for (let round = 1; round <= 120; round += 1) {
      for (let key = 0; key < 40; key += 1) {
        // Keys rewritten at different rates, so pages empty unevenly and slots are reused at new offsets.
        if ((round + key) % (1 + (key % 3)) !== 0) continue;
        const name = `k${key}`;
        index.applyRecord({
          table: "t",
          key: name,
          encoded: encodeRecord(put(name, round, { round, text })),
          deleted: false,
        });
        expected.set(name, round);
      }
      index.compact();
      for (const [name, version] of expected) {
        const entry = index.getLive("t", name);
        assert.equal(entry?.version, version, `${name} in round ${round}`);
        assert.equal(JSON.parse(entry.json).value.round, version);
      }
    }
  },
);
