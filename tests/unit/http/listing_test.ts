// Goal: `streamListing` (src/http/routes/listing.ts) answers one JSON document of only the records a
// `where` filter matches, in source order, with `limit` counting matches; a filter that matches nothing
// in a million-record table still streams in short chunks and ends; reaching the limit releases the
// source. Method: streamListing over in-memory generators, its body read chunk by chunk.
import assert from "node:assert/strict";
import { parseFilter } from "../../../src/filter/mod.ts";
import { chunkScanCountMax, streamListing } from "../../../src/http/routes/listing.ts";

type Listed = { key: string; json: string };

const jsonOf = (value: unknown, owner = "alice") =>
  JSON.stringify({ value, version: 1, timestamp: 1, owner });

/** A source of `count` records `k000000`.. with value `{ n: index }`, and what happened to it. */
function source(count: number) {
  const seen = { scanned: 0, released: false };
  async function* generate(): AsyncGenerator<Listed> {
    try {
      for (let index = 0; index < count; index += 1) {
        seen.scanned += 1;
        yield { key: `k${String(index).padStart(6, "0")}`, json: jsonOf({ n: index }) };
      }
    } finally {
      seen.released = true;
    }
  }
  return { iterator: generate(), seen };
}

async function listed(
  count: number,
  options: Parameters<typeof streamListing>[1],
): Promise<{ chunks: string[]; seen: { scanned: number; released: boolean } }> {
  const { iterator, seen } = source(count);
  const first = await iterator.next();
  const response = streamListing({ first, iterator }, options);
  const chunks: string[] = [];
  const decoder = new TextDecoder();
  for await (const chunk of response.body!) chunks.push(decoder.decode(chunk));
  return { chunks, seen };
}

Deno.test("streamListing() answers only matching records, in order, as store and as keys", async () => {
  const filter = parseFilter('{"n":{"$in":[3,1,700,2000]}}');
  const store = await listed(2_500, { shape: "store", filter });
  assert.deepEqual(Object.keys(JSON.parse(store.chunks.join(""))), [
    "k000001",
    "k000003",
    "k000700",
    "k002000",
  ]);
  assert.deepEqual(JSON.parse(store.chunks.join("")).k000700, {
    value: { n: 700 },
    version: 1,
    timestamp: 1,
    owner: "alice",
  });
  const keys = await listed(2_500, { shape: "keys", filter });
  assert.deepEqual(JSON.parse(keys.chunks.join("")), ["k000001", "k000003", "k000700", "k002000"]);
  const none = await listed(10, { shape: "keys", filter: parseFilter('{"$owner":"bob"}') });
  assert.deepEqual(JSON.parse(none.chunks.join("")), []);
  const empty = await listed(0, { shape: "store", filter });
  assert.deepEqual(JSON.parse(empty.chunks.join("")), {});
});

Deno.test(
  "streamListing() with a filter counts limit in matches and releases the source at the limit",
  async () => {
    const even = parseFilter('{"$key":{"$prefix":"k0000"},"n":{"$nin":[1,3,5,7,9]}}');
    const page = await listed(1_000, { shape: "keys", filter: even, limit: 3 });
    assert.deepEqual(JSON.parse(page.chunks.join("")), ["k000000", "k000002", "k000004"]);
    assert.equal(page.seen.scanned, 5, "the scan stops at the third match");
    assert.equal(page.seen.released, true, "the source is closed (its cursors released)");
    const exact = await listed(1_000, { shape: "keys", filter: even, limit: 5 });
    assert.deepEqual(JSON.parse(exact.chunks.join("")), [
      "k000000",
      "k000002",
      "k000004",
      "k000006",
      "k000008",
    ]);
    const unfiltered = await listed(1_000, { shape: "keys", limit: 2 });
    assert.deepEqual(JSON.parse(unfiltered.chunks.join("")), ["k000000", "k000001"]);
  },
);

Deno.test(
  "streamListing() with a filter matching nothing in 1,000,000 records streams short chunks and ends",
  async () => {
    const count = 1_000_000;
    const nothing = parseFilter('{"n":{"$lt":0}}');
    const { chunks, seen } = await listed(count, { shape: "store", filter: nothing });
    assert.deepEqual(JSON.parse(chunks.join("")), {});
    assert.equal(seen.scanned, count);
    assert.equal(
      chunks.length,
      Math.floor(count / chunkScanCountMax) + 1,
      "one chunk per scan bound, the last one closing",
    );
    assert.ok(chunks.every((chunk) => chunk.length <= 2), "each chunk is white space or a bracket");
    // A match now and then still comes out in the chunk that scanned it, bounded by the scan.
    const rare = await listed(100_000, { shape: "keys", filter: parseFilter('{"n":{"$in":[0,99999]}}') });
    assert.deepEqual(JSON.parse(rare.chunks.join("")), ["k000000", "k099999"]);
    assert.equal(rare.chunks.length, Math.floor(100_000 / chunkScanCountMax) + 1);
  },
);

Deno.test("streamListing() unfiltered keeps its chunks of entries", async () => {
  const { chunks } = await listed(1_100, { shape: "keys" });
  assert.equal(JSON.parse(chunks.join("")).length, 1_100);
  assert.equal(chunks.length, 3, "512 + 512 + 76 entries and the closing bracket");
});
