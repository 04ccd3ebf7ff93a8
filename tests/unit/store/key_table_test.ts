// Goal: the key table finds every key it holds, by its bytes or its string, and no other, through
// growth and deletions (backward shifts), with addresses of any size.
// Method: records encoded with encodeRecord in a fake page directory (address -> record); a seeded
// random mix of inserts, rewrites and deletes checked step by step against a Map.
import assert from "node:assert/strict";
import { hashKeyBytes, hashKeyString, KeyTable } from "../../../src/store/key_table.ts";
import type { PagesView, RecordSpan } from "../../../src/store/record_pages.ts";
import { AssertionError } from "../../../src/util/assert.ts";
import { encodeRecord, keyFieldAt } from "../../../src/store/wal_record.ts";

/** Records by address, as the record pages would hold them. */
class FakePages implements PagesView {
  readonly records = new Map<number, Uint8Array>();

  add(address: number, key: string): Uint8Array {
    const bytes = encodeRecord({
      op: "put",
      sequence: 1,
      version: 1,
      timestamp: 1,
      table: "t",
      key,
      owner: "o",
      valueJson: "1",
    });
    this.records.set(address, bytes);
    return bytes;
  }

  recordAt(address: number): RecordSpan {
    const bytes = this.records.get(address);
    assert(bytes !== undefined, `no record at ${address}`);
    return { bytes, start: 0, end: bytes.length };
  }
}

/** The key bytes of an encoded record, for findBytes. */
function keyRange(record: Uint8Array): { start: number; end: number } {
  const keyField = keyFieldAt(record, 0);
  const length = new DataView(record.buffer, record.byteOffset).getUint32(keyField);
  return { start: keyField + 4, end: keyField + 4 + length };
}

function insert(table: KeyTable, pages: FakePages, options: { address: number; key: string }): void {
  const record = pages.add(options.address, options.key);
  const { start, end } = keyRange(record);
  const hash = hashKeyBytes(record, start, end);
  table.reserve();
  const found = table.findBytes(hash, record, start, end);
  if (found >= 0) {
    table.replaceAt(found, options.address);
  } else {
    table.insertAt(-1 - found, hash, options.address);
  }
}

/** A small seeded generator (mulberry32), so that a failure replays. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let mixed = Math.imul(state ^ (state >>> 15), 1 | state);
    mixed ^= mixed + Math.imul(mixed ^ (mixed >>> 7), 61 | mixed);
    return ((mixed ^ (mixed >>> 14)) >>> 0) / 2 ** 32;
  };
}

Deno.test("hashKeyBytes() and hashKeyString() agree on the UTF-8 bytes of a key", () => {
  const encoder = new TextEncoder();
  for (const key of ["", "a", "r999999", "é", "🍎 pomme", "x".repeat(300)]) {
    const bytes = encoder.encode(key);
    assert.equal(hashKeyBytes(bytes, 0, bytes.length), hashKeyString(key), key);
  }
  assert.notEqual(hashKeyString("ab"), hashKeyString("ba"));
});

Deno.test("KeyTable finds each key through growth, rewrites and deletions, and no other key", () => {
  const seed = Number(Deno.env.get("KV_TEST_SEED") ?? Date.now() % 100_000);
  console.log(`KV_TEST_SEED=${seed}`);
  const next = random(seed);
  const pages = new FakePages();
  const table = new KeyTable(pages);
  const expected = new Map<string, number>();
  let address = 0;
  for (let step = 0; step < 20_000; step += 1) {
    const key = `k${Math.floor(next() * 3_000)}${next() < 0.1 ? "é" : ""}`;
    const slot = table.findString(key);
    assert.equal(slot >= 0 ? table.addressAt(slot) : undefined, expected.get(key), `step ${step}: ${key}`);
    if (next() < 0.3 && slot >= 0) {
      table.deleteAt(slot);
      expected.delete(key);
    } else {
      address += 1 + Math.floor(next() * 100);
      insert(table, pages, { address, key });
      expected.set(key, address);
    }
    assert.equal(table.count, expected.size);
  }
  for (const [key, at] of expected) assert.equal(table.addressAt(table.findString(key)), at, key);
  assert(table.findString("k3000") < 0, "an absent key is not found");
  assert(table.findString("k1\ud800") < 0, "a lone surrogate finds no key");
  const addresses = new Float64Array(table.count + 1);
  assert.equal(table.copyAddresses(addresses, 1), table.count + 1);
  assert.deepEqual(
    [...addresses.subarray(1)].sort((a, b) => a - b),
    [...expected.values()].sort((a, b) => a - b),
  );
});

Deno.test("KeyTable keeps addresses of 2^32 and more, and refuses to fill a slot twice", () => {
  const pages = new FakePages();
  const table = new KeyTable(pages);
  insert(table, pages, { address: 7, key: "small" });
  insert(table, pages, { address: 2 ** 32 - 2, key: "edge" });
  insert(table, pages, { address: 2 ** 40 + 3, key: "large" });
  insert(table, pages, { address: 2 ** 32 + 5, key: "small" });
  assert.equal(table.addressAt(table.findString("small")), 2 ** 32 + 5);
  assert.equal(table.addressAt(table.findString("edge")), 2 ** 32 - 2);
  assert.equal(table.addressAt(table.findString("large")), 2 ** 40 + 3);
  assert.equal(table.count, 3);
  const record = pages.add(9, "edge");
  const { start, end } = keyRange(record);
  const found = table.findBytes(hashKeyBytes(record, start, end), record, start, end);
  assert(found >= 0);
  assert.throws(() => table.insertAt(found, 0, 9), AssertionError);
});
