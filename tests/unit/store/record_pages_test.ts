// Goal: records appended to or adopted into pages are read back byte for byte by their address, pages
// nobody points into are dropped and their slots reused, mostly dead pages are queued for compaction,
// and a view taken earlier still reads what it saw.
// Method: small records of known bytes, retain/release by hand, page counts and bytes checked.
import assert from "node:assert/strict";
import { deflateRawSync } from "node:zlib";
import { freezeLagPages, RecordPages, writePageBytes } from "../../../src/store/record_pages.ts";
import { AssertionError } from "../../../src/util/assert.ts";

function record(fill: number, length = 100): Uint8Array {
  return new Uint8Array(length).fill(fill);
}

function bytesAt(
  pages: { recordAt(address: number): { bytes: Uint8Array; start: number; end: number } },
  a: number,
) {
  const { bytes, start, end } = pages.recordAt(a);
  return bytes.slice(start, end);
}

/** A frame's plaintext records: each after its u32 length, back to back; returns the record views. */
function framed(records: Uint8Array[]): Uint8Array[] {
  const total = records.reduce((sum, item) => sum + 4 + item.length, 0);
  const packed = new Uint8Array(total);
  const view = new DataView(packed.buffer);
  const views: Uint8Array[] = [];
  let offset = 0;
  for (const item of records) {
    view.setUint32(offset, item.length);
    packed.set(item, offset + 4);
    views.push(packed.subarray(offset + 4, offset + 4 + item.length));
    offset += 4 + item.length;
  }
  return views;
}

Deno.test("RecordPages.append() packs records into write pages and reads each back by its address", () => {
  const pages = new RecordPages();
  const addresses = Array.from({ length: 1000 }, (_, index) => {
    const address = pages.append(record(index % 251));
    pages.retain(address);
    return address;
  });
  for (const [index, address] of addresses.entries()) {
    assert.deepEqual(bytesAt(pages, address), record(index % 251));
    assert.equal(pages.opAt(address), index % 251);
  }
  assert.equal(new Set(addresses).size, 1000);
  const perPage = Math.floor(writePageBytes / 104);
  assert.equal(pages.pageCount, Math.ceil(1000 / perPage));
  assert.equal(pages.liveBytes, 1000 * 104);
});

Deno.test("RecordPages.append() gives a record larger than a write page a page of its own", () => {
  const pages = new RecordPages();
  const small = pages.append(record(1));
  const large = pages.append(record(2, writePageBytes));
  const next = pages.append(record(3));
  assert.deepEqual(bytesAt(pages, large), record(2, writePageBytes));
  assert.deepEqual(bytesAt(pages, next), record(3));
  assert.equal(pages.pageCount, 2);
  pages.retain(large);
  pages.release(large);
  assert.equal(pages.pageCount, 1, "the large record's page is dropped with it");
  assert.deepEqual(bytesAt(pages, small), record(1));
});

Deno.test("RecordPages drops a sealed page nobody points into and reuses its slot", () => {
  const pages = new RecordPages();
  const first = pages.append(record(1, writePageBytes / 2));
  pages.retain(first);
  const second = pages.append(record(2, writePageBytes / 2)); // does not fit: a new write page
  pages.retain(second);
  assert.equal(pages.pageCount, 2);
  assert.equal(pages.liveBytes, 2 * (4 + writePageBytes / 2));
  pages.release(first);
  assert.equal(pages.pageCount, 1);
  assert.equal(pages.pageBytes, writePageBytes);
  const third = pages.append(record(3, writePageBytes / 2)); // a new write page in the freed slot
  assert.equal(Math.floor(third / writePageBytes), Math.floor(first / writePageBytes));
  assert.deepEqual(bytesAt(pages, third), record(3, writePageBytes / 2));
  assert.throws(() => pages.release(first), AssertionError, "a released record's page is gone");
});

Deno.test("RecordPages queues a sealed page under half live as sparse, once", () => {
  const pages = new RecordPages();
  const addresses: number[] = [];
  for (let index = 0; index < 10; index += 1) addresses.push(pages.append(record(index, 6000)));
  for (const address of addresses) pages.retain(address);
  assert.deepEqual(pages.takeSparse(), [], "a full page is not sparse");
  for (const address of addresses.slice(0, 4)) pages.release(address);
  pages.append(record(99, writePageBytes - 8)); // seals the first write page
  assert.deepEqual(pages.takeSparse(), [], "6 of 10 records live: not sparse");
  pages.release(addresses[4]!);
  assert.deepEqual(pages.takeSparse(), [], "half live is not less than half");
  pages.release(addresses[5]!);
  const sparse = pages.takeSparse();
  assert.equal(sparse.length, 1);
  const live = [...pages.records(sparse[0]!)].map((item) => item.address);
  assert.deepEqual(live, addresses, "records() walks every record of the page");
  pages.release(addresses[6]!);
  assert.equal(pages.takeSparse().length, 1, "queued again once taken");
  pages.release(addresses[7]!);
  pages.release(addresses[8]!);
  assert.equal(pages.takeSparse().length, 1);
});

Deno.test("RecordPages.adopt() uses a frame's bytes as is; seal() drops it when nothing was retained", () => {
  const pages = new RecordPages();
  const records = framed([record(7), record(8, 70_000), record(9)]);
  const page = pages.adopt(
    new Uint8Array(records[0]!.buffer, 0, records[2]!.byteOffset + records[2]!.length),
  );
  const addresses = records.map((item) => pages.addressIn(page, item.byteOffset - 4));
  assert.deepEqual(bytesAt(pages, addresses[2]!), record(9));
  assert.equal(pages.recordAt(addresses[1]!).bytes.buffer, records[0]!.buffer, "no copy");
  pages.retain(addresses[2]!);
  pages.seal(page);
  assert.equal(pages.pageCount, 1);
  pages.release(addresses[2]!);
  assert.equal(pages.pageCount, 0);
  const other = pages.adopt(new Uint8Array(framed([record(1)])[0]!.buffer));
  pages.seal(other);
  assert.equal(pages.pageCount, 0, "an adopted page nobody points into is dropped at seal");
  assert.throws(() => pages.addressIn(page, 0), AssertionError, "a sealed page is no longer addressed");
  const open = pages.adopt(new Uint8Array(framed([record(1)])[0]!.buffer));
  assert.throws(() => pages.addressIn(open, 1), AssertionError, "an offset inside a record is refused");
});

Deno.test(
  "RecordPages.view() reads records as they were after their page was dropped and its slot reused",
  () => {
    const pages = new RecordPages();
    const first = pages.append(record(1, writePageBytes - 4));
    pages.retain(first);
    const view = pages.view();
    pages.retain(pages.append(record(2))); // seals the first page
    pages.release(first);
    const reused = pages.append(record(3, writePageBytes - 4));
    assert.equal(Math.floor(reused / writePageBytes), Math.floor(first / writePageBytes));
    assert.deepEqual(bytesAt(view, first), record(1, writePageBytes - 4));
    assert.deepEqual(bytesAt(pages, reused), record(3, writePageBytes - 4));
  },
);

Deno.test(
  "RecordPages: an adopted page with deflated bytes goes cold at seal and inflates at its first read",
  () => {
    const pages = new RecordPages();
    const records = framed([record(5, 40_000), record(6, 50_000), record(7, 30)]);
    const bytes = new Uint8Array(records[0]!.buffer);
    const sizeBytes = bytes.length;
    const deflated = deflateRawSync(bytes);
    const page = pages.adopt(bytes, deflated);
    const addresses = records.map((item) => pages.addressIn(page, item.byteOffset - 4));
    for (const address of addresses) pages.retain(address);
    const view = pages.view();
    pages.seal(page);
    assert.equal(page.cold, true, "only the deflated bytes are held");
    assert.equal(bytes.length, 0, "the page owned the inflated bytes and freed them");
    assert.equal(pages.pageBytes, sizeBytes, "a cold page counts its records' bytes");
    assert.deepEqual(bytesAt(view, addresses[1]!), record(6, 50_000), "a view taken before reads it too");
    assert.equal(page.cold, false, "inflated once, then kept");
    assert.deepEqual(bytesAt(pages, addresses[2]!), record(7, 30));
    assert.notEqual(pages.recordAt(addresses[0]!).bytes, bytes, "the records were inflated anew");
    for (const address of addresses) pages.release(address);
    assert.equal(pages.pageBytes, 0);
  },
);

Deno.test("RecordPages: a page sealed sparse stays inflated for the compaction that reads it next", () => {
  const pages = new RecordPages();
  const records = framed([record(1, 1_000), record(2, 1_000), record(3, 1_000)]);
  const bytes = new Uint8Array(records[0]!.buffer);
  const page = pages.adopt(bytes, deflateRawSync(bytes));
  const address = pages.addressIn(page, records[1]!.byteOffset - 4);
  pages.retain(address);
  pages.seal(page);
  assert.equal(page.cold, false);
  assert.deepEqual(pages.takeSparse(), [page]);
  const unsealed = pages.adopt(new Uint8Array(framed([record(4)])[0]!.buffer));
  assert.throws(() => unsealed.cool(), AssertionError, "a page being indexed does not go cold");
});

Deno.test(
  "RecordPages: a write page still dense freezeLagPages seals later is kept deflated until read",
  () => {
    const pages = new RecordPages();
    const perPage = Math.floor(writePageBytes / 104);
    const append = (index: number) => {
      const address = pages.append(record(index % 251));
      pages.retain(address);
      return address;
    };
    const addresses = Array.from({ length: perPage }, (_, index) => append(index));
    const first = pages.recordAt(addresses[0]!);
    for (let index = perPage; index < perPage * (freezeLagPages + 1); index += 1) {
      addresses.push(append(index));
    }
    assert.equal(pages.coldPageCount, 0, "sealed pages wait freezeLagPages seals before deflating");
    addresses.push(append(perPage * (freezeLagPages + 1)));
    assert.equal(pages.pageCount, freezeLagPages + 2);
    assert.equal(pages.coldPageCount, 1, "the first page holds only its deflated records");
    assert.deepEqual(first.bytes.slice(first.start, first.end), record(0), "a span read before still reads");
    assert.deepEqual(bytesAt(pages.view(), addresses[1]!), record(1), "the page inflates at its first read");
    assert.equal(pages.coldPageCount, 0, "inflated once, then kept");
    for (const [index, address] of addresses.entries()) {
      assert.deepEqual(bytesAt(pages, address), record(index % 251));
    }
    assert.equal(
      pages.pageBytes,
      (freezeLagPages + 2) * writePageBytes,
      "a frozen page counts its records' bytes",
    );
  },
);

Deno.test("RecordPages: a write page that turned sparse before its turn is not deflated", () => {
  const pages = new RecordPages();
  const perPage = Math.floor(writePageBytes / 104);
  const firstPage = Array.from({ length: perPage }, (_, index) => {
    const address = pages.append(record(index % 251));
    pages.retain(address);
    return address;
  });
  for (const address of firstPage.slice(0, perPage - 1)) pages.release(address); // overwritten
  for (let index = 0; index < perPage * (freezeLagPages + 1); index += 1) {
    pages.retain(pages.append(record(1)));
  }
  assert.equal(pages.coldPageCount, 0, "at its turn the first page was sparse: compaction reads it next");
  assert.deepEqual(bytesAt(pages, firstPage.at(-1)!), record((perPage - 1) % 251));
});

Deno.test("RecordPages: a write page sealed with no live record is dropped, not deflated", () => {
  const pages = new RecordPages();
  const perPage = Math.floor(writePageBytes / 104);
  for (let index = 0; index <= perPage; index += 1) pages.append(record(index % 251));
  assert.equal(pages.coldPageCount, 0);
  assert.equal(pages.pageCount, 1, "the first page was dropped when sealed");
});
