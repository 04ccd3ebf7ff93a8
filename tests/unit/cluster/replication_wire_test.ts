// Goal: every peer message that reaches the store or the event broker is checked at the wire against
// what they assert (STYLE B3): stored and published JSON is one line of valid Unicode, valid JSON, not
// nested too deep, every number finite; names are valid; versions leave room to write; a tombstone has no
// value. The scan behind it finds nesting and possible overflow in one pass, never missing an overflow.
// Method: safeParse hand-made items at and beyond each rule; the shared JSON scanner over edge cases.
import assert from "node:assert/strict";
import { internalJsonDepthMax } from "../../../src/cluster/mod.ts";
import { scanJson } from "../../../src/util/json.ts";
import { PaxosItem } from "../../../src/cluster/paxos_wire.ts";
import {
  ApplyItem,
  ListReply,
  ReadReply,
  ReplicaEntryWire,
  RestoreRequest,
  versionWireMax,
  WriteReply,
} from "../../../src/cluster/replication_wire.ts";

const entry = { version: 1, timestamp: 1, owner: "alice", deleted: false, valueJson: '{"a":1}' };
const notice = { op: "chosen", table: "t", key: "k", kind: "Updated", version: 1, json: '{"value":1}' };

function refusedJson(valueJson: string): boolean {
  return !ReplicaEntryWire.safeParse({ ...entry, valueJson }).success &&
    !PaxosItem.safeParse({ ...notice, json: valueJson }).success;
}

Deno.test(
  "replication wire: stored and published JSON must be one line (the apply that stopped a node)",
  () => {
    for (const text of ['{\n"a":1}', '{"a":1}\r', "[1,\r\n2]", "\n1"]) {
      assert.ok(refusedJson(text), JSON.stringify(text));
    }
    assert.ok(ApplyItem.safeParse({ store: true, table: "t", key: "k", entry }).success);
    assert.ok(PaxosItem.safeParse(notice).success);
    // A line break inside a JSON string is always escaped: allowed, it is one line.
    assert.ok(ReplicaEntryWire.safeParse({ ...entry, valueJson: '"a\\nb"' }).success);
  },
);

Deno.test(
  "replication wire: JSON must be valid, valid Unicode, nested at most internalJsonDepthMax, finite",
  () => {
    for (const text of ["", "{", '"\ud800"', "1e400", '{"a":[-2e308]}', `[${"1".repeat(400)}]`]) {
      assert.ok(refusedJson(text), JSON.stringify(text.slice(0, 40)));
    }
    const nested = (depth: number) => "[".repeat(depth) + "]".repeat(depth);
    assert.ok(!refusedJson(nested(internalJsonDepthMax)));
    assert.ok(refusedJson(nested(internalJsonDepthMax + 1)));
    for (const text of ["1e308", "-1e-400", '"1e400"', "null", "[]", '{"a":"é😀"}']) {
      assert.ok(!refusedJson(text), text);
    }
  },
);

Deno.test("replication wire: names, owner, versions and the tombstone rule", () => {
  const bad = [
    { ...entry, version: versionWireMax + 1 },
    { ...entry, version: 0 },
    { ...entry, owner: "" },
    { ...entry, deleted: true },
    { version: 1, timestamp: 1, owner: "a", deleted: false },
  ];
  for (const value of bad) assert.ok(!ReplicaEntryWire.safeParse(value).success, JSON.stringify(value));
  assert.ok(ReplicaEntryWire.safeParse({ ...entry, version: versionWireMax }).success);
  assert.ok(ReplicaEntryWire.safeParse({ version: 2, timestamp: 1, owner: "a", deleted: true }).success);
  for (const name of ["", "a/b", "a\u0000", "\ud800", "x".repeat(1025)]) {
    const item = { items: [{ table: "t", key: name, entry }] };
    assert.ok(!RestoreRequest.safeParse(item).success, JSON.stringify(name));
  }
});

Deno.test("replication wire: JSON a peer answers with must be one line before it is served", () => {
  const lines = '{"value":\n1}';
  assert.ok(!ReadReply.safeParse({ entry: { json: lines, version: 1, deleted: false } }).success);
  assert.ok(!ListReply.safeParse({ exists: true, entries: [{ key: "k", json: lines, version: 1 }] }).success);
  assert.ok(!WriteReply.safeParse({ json: lines, version: 1, deleted: false }).success);
  assert.ok(ReadReply.safeParse({ entry: { json: '{"value":1}', version: 1, deleted: false } }).success);
});

Deno.test("scanJson() as the wire uses it: nesting outside strings, and every number that overflows", () => {
  assert.equal(scanJson('[{"a":"[[[{"},[]]').depth, 2);
  assert.equal(scanJson('"\\"[["').depth, 0, "an escaped quote does not end the string");
  const overflowing = ["1e400", "1E+309", "2e0400", `${"9".repeat(400)}`, "[1,2e999]", "[1e-400,1e400]"];
  for (const text of overflowing) assert.notEqual(scanJson(text).overflowNumber, undefined, text);
  const clear = ["1e99", "1e-999", "9".repeat(199), '"1e999"', `"${"9".repeat(400)}"`, "[true,false,1e5]"];
  for (const text of clear) assert.equal(scanJson(text).overflowNumber, undefined, text);
  // Every overflowing literal is found, whatever its mantissa and exponent.
  for (const text of ["1e309", `${"9".repeat(199)}e110`, `${"9".repeat(210)}e99`]) {
    assert.equal(JSON.parse(text), Infinity, text);
    assert.notEqual(scanJson(text).overflowNumber, undefined, text);
  }
});

Deno.test("replication wire: a stored value holding 1e400 anywhere is refused", () => {
  const entry = { version: 1, timestamp: 1, owner: "a", deleted: false, valueJson: '{"a":[1,{"b":1e400}]}' };
  assert.ok(!ReplicaEntryWire.safeParse(entry).success);
  assert.ok(ReplicaEntryWire.safeParse({ ...entry, valueJson: '{"a":[1,{"b":1e300}],"c":"1e400"}' }).success);
});
