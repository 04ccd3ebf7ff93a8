// Goal: records round trip through their binary layout and rebuild Entry.json without parsing values.
// Method: encode and decode every op with odd strings and large numbers; damage bytes and check errors.
import assert from "node:assert/strict";
import { RecordDecodeError } from "../../../src/store/errors.ts";
import { AssertionError } from "../../../src/util/assert.ts";
import {
  ballotAt,
  checkRecordAt,
  decodeRecord,
  decodeRecordHead,
  type DeleteRecord,
  encodeRecord,
  entryAt,
  entryOf,
  entryOfEncoded,
  headAt,
  keyAt,
  opCodeOf,
  type PromiseRecord,
  type PurgeRecord,
  type PutRecord,
  recordFixedBytes,
  sequenceAt,
  setRecordSequence,
  stateAt,
  tableAndKeyAt,
  tableNameAt,
  valueJsonOf,
  versionAt,
  type WalRecord,
} from "../../../src/store/wal_record.ts";

const put: PutRecord = {
  op: "put",
  sequence: 2 ** 53 - 1,
  version: 7,
  timestamp: 1_700_000_000_123,
  table: "fruits ünïcode",
  key: 'k"ey\\ 🍎',
  owner: 'al"ice',
  valueJson: '{"n":1,"s":"a,\\"version\\":9 🍐"}',
};

Deno.test("encodeRecord()/decodeRecord() round trip every op", () => {
  const records: WalRecord[] = [
    put,
    { op: "delete", sequence: 8, version: 8, timestamp: 5, table: "t", key: "k", owner: "o" },
    { op: "checkpointEnd", sequence: 42, entryCount: 3, timestamp: 9 },
  ];
  for (const record of records) assert.deepEqual(decodeRecord(encodeRecord(record)), record);
  assert.equal(encodeRecord(records[2]!).length, recordFixedBytes);
});

Deno.test("encodeRecord() writes UTF-8 exactly like TextEncoder, ASCII, mixed, long and astral", () => {
  const texts = [
    "plain",
    "ascii then é",
    "é first",
    "🍎".repeat(40),
    `${"x".repeat(100)}ü`,
    "\u07ff\u0800\uffff",
  ];
  for (const text of texts) {
    const record: PutRecord = { ...put, key: text, owner: text, valueJson: JSON.stringify(text) };
    const bytes = encodeRecord(record);
    const expected = new TextEncoder().encode(JSON.stringify(text));
    assert.deepEqual(bytes.subarray(bytes.length - expected.length), expected);
    assert.deepEqual(decodeRecord(bytes), record);
  }
});

Deno.test("entryOf() builds the live VersionedValue and the tombstone JSON by concatenation", () => {
  const live = entryOf(put);
  assert.deepEqual(JSON.parse(live.json), {
    value: JSON.parse(put.valueJson),
    version: 7,
    timestamp: 1_700_000_000_123,
    owner: 'al"ice',
  });
  assert.equal(live.deleted, false);
  assert.equal(valueJsonOf(live), put.valueJson);
  const tombstone = entryOf({
    op: "delete",
    sequence: 1,
    version: 8,
    timestamp: 5,
    table: "t",
    key: 'k"',
    owner: "o",
  });
  assert.equal(tombstone.json, '{"key":"k\\"","version":8,"timestamp":5}');
  assert.equal(tombstone.deleted, true);
  assert.equal(tombstone.owner, "o");
});

Deno.test("entryAt() decodes the same entry entryOf() concatenates, for puts and tombstones", () => {
  const records: Array<PutRecord | DeleteRecord> = [
    put,
    { ...put, owner: "plain", valueJson: '"ascii"' },
    { ...put, valueJson: JSON.stringify({ text: "x".repeat(70_000) }) },
    { op: "delete", sequence: 3, version: 4, timestamp: 5, table: "t", key: 'k"🍎', owner: "ö" },
  ];
  for (const record of records) {
    const bytes = encodeRecord(record);
    const padded = new Uint8Array(bytes.length + 10);
    padded.set(bytes, 3);
    assert.deepEqual(entryAt({ bytes: padded, start: 3, end: 3 + bytes.length }), entryOf(record));
    assert.deepEqual(entryOfEncoded(bytes), entryOf(record));
    assert.equal(versionAt({ bytes, start: 0, end: bytes.length }), record.version);
    assert.deepEqual(tableAndKeyAt({ bytes, start: 0, end: bytes.length }), {
      table: record.table,
      key: record.key,
    });
  }
});

Deno.test("decodeRecordHead() reads what indexing needs and checks the owner and value bytes", () => {
  const bytes = encodeRecord(put);
  assert.deepEqual(decodeRecordHead(bytes, 0, bytes.length), {
    op: "put",
    sequence: put.sequence,
    version: put.version,
    table: put.table,
    key: put.key,
  });
  const badValue = bytes.slice();
  badValue[bytes.length - 3] = 0xff;
  assert.throws(() => decodeRecordHead(badValue, 0, badValue.length), /not valid UTF-8/);
  const badOwner = encodeRecord({ ...put, owner: "é", valueJson: '"v"' });
  badOwner[badOwner.length - 3 - 2] = 0xff; // the first of the owner's two bytes, before the 3-byte value
  assert.throws(() => decodeRecordHead(badOwner, 0, badOwner.length), /not valid UTF-8/);
  const end = encodeRecord({ op: "checkpointEnd", sequence: 5, entryCount: 2, timestamp: 9 });
  assert.deepEqual(decodeRecordHead(end, 0, end.length), {
    op: "checkpointEnd",
    sequence: 5,
    entryCount: 2,
    timestamp: 9,
  });
  const purgeBytes = encodeRecord(purge);
  assert.deepEqual(decodeRecordHead(purgeBytes, 0, purgeBytes.length), purge);
  assert.throws(() => decodeRecordHead(bytes, 0, 40), RecordDecodeError);
});

Deno.test(
  "checkRecordAt() checks a record in place as decodeRecordHead() does and returns its op code",
  () => {
    const end: WalRecord = { op: "checkpointEnd", sequence: 5, entryCount: 2, timestamp: 9 };
    const deleted: DeleteRecord = { ...put, op: "delete", sequence: 3 };
    for (const record of [put, deleted, purge, end]) {
      const encoded = encodeRecord(record);
      const bytes = new Uint8Array(encoded.length + 10);
      bytes.set(encoded, 7);
      assert.equal(checkRecordAt(bytes, 7, 7 + encoded.length), opCodeOf(record.op));
      assert.equal(sequenceAt(bytes, 7), record.sequence);
      if (record.op !== "checkpointEnd") {
        const keyField = 7 + 25 + 4 + new TextEncoder().encode(record.table).length;
        assert.equal(tableNameAt(bytes, 7, keyField), record.table);
        assert.equal(keyAt(bytes, keyField), record.key);
      }
    }
    const short = encodeRecord(put);
    assert.throws(() => checkRecordAt(short, 0, 40), RecordDecodeError);
    const badKey = encodeRecord({ ...put, key: "é" });
    badKey[25 + 4 + new TextEncoder().encode(put.table).length + 4] = 0xff;
    assert.throws(() => checkRecordAt(badKey, 0, badKey.length), /not valid UTF-8/);
  },
);

Deno.test("checkRecordAt() finds a byte that is not UTF-8 anywhere in a long value, at any alignment", () => {
  const valueJson = JSON.stringify("v".repeat(70));
  for (let shift = 0; shift < 4; shift += 1) {
    const encoded = encodeRecord({ ...put, valueJson });
    const buffer = new Uint8Array(encoded.length + shift);
    const bytes = buffer.subarray(shift);
    bytes.set(encoded);
    assert.equal(checkRecordAt(bytes, 0, bytes.length), opCodeOf("put"));
    const valueStart = bytes.length - valueJson.length;
    for (let at = valueStart; at < bytes.length; at += 1) {
      const damaged = buffer.slice();
      damaged[shift + at] = 0x80;
      assert.throws(
        () => checkRecordAt(damaged.subarray(shift), 0, bytes.length),
        /not valid UTF-8/,
        `shift ${shift}, byte ${at - valueStart} of the value`,
      );
    }
  }
  const text = encodeRecord({ ...put, valueJson: JSON.stringify("é🍎".repeat(30)) });
  assert.equal(checkRecordAt(text, 0, text.length), opCodeOf("put"), "valid UTF-8 beyond ASCII passes");
});

Deno.test("decodeRecord() rejects damaged layouts", () => {
  const bytes = encodeRecord(put);
  const cases: Array<[string, Uint8Array]> = [
    ["too short", bytes.subarray(0, recordFixedBytes - 1)],
    ["unknown op", Uint8Array.of(9, ...bytes.subarray(1))],
    ["string past the end", bytes.subarray(0, 40)],
    ["put without value", encodeRecord({ ...put, valueJson: "" })],
  ];
  const unsafe = bytes.slice();
  unsafe[1] = 0xff; // the sequence's high bytes
  cases.push(["unsafe integer", unsafe]);
  const zeroVersion = encodeRecord({ ...put, version: 1 });
  zeroVersion[16] = 0;
  cases.push(["version 0", zeroVersion]);
  const badUtf8 = bytes.slice();
  badUtf8[29] = 0xff; // first byte of the table name
  cases.push(["bad UTF-8", badUtf8]);
  for (const [name, damaged] of cases) {
    assert.throws(() => decodeRecord(damaged), RecordDecodeError, name);
  }
});

Deno.test("encodeRecord() asserts that numbers are safe non-negative integers", () => {
  assert.throws(() => encodeRecord({ ...put, sequence: 2 ** 53 }), /safe integer/);
  assert.throws(() => encodeRecord({ ...put, version: -1 }), /negative/);
});

const purge: PurgeRecord = { op: "purge", sequence: 12, timestamp: 77, table: "fruits", key: 'k"ey 🍎' };

Deno.test("encodeRecord()/decodeRecord() round trip a purge: op 4, version 0, no owner, no value", () => {
  const bytes = encodeRecord(purge);
  assert.equal(bytes[0], 4);
  assert.deepEqual(bytes.subarray(9, 17), new Uint8Array(8), "version field is 0");
  assert.equal(bytes.length, recordFixedBytes + 6 + new TextEncoder().encode(purge.key).length);
  assert.deepEqual(decodeRecord(bytes), purge);
});

Deno.test("decodeRecord() rejects a purge with a version, an owner or trailing bytes", () => {
  const withVersion = encodeRecord(purge);
  withVersion[16] = 1;
  assert.throws(() => decodeRecord(withVersion), /purge record has a version/);
  const asDelete = encodeRecord({ ...purge, op: "delete", version: 1, owner: "o" });
  asDelete[0] = 4;
  asDelete.fill(0, 9, 17);
  assert.throws(() => decodeRecord(asDelete), /purge record has an owner/);
  const trailing = Uint8Array.of(...encodeRecord(purge), 0x31);
  assert.throws(() => decodeRecord(trailing), /purge record has trailing bytes/);
});

Deno.test("setRecordSequence() writes the sequence of an encoded record and refuses a checkpoint end", () => {
  const bytes = encodeRecord({ ...put, sequence: 0 });
  setRecordSequence(bytes, 2 ** 53 - 1);
  assert.deepEqual(decodeRecord(bytes), put);
  const purgeBytes = encodeRecord({ ...purge, sequence: 0 });
  setRecordSequence(purgeBytes, 12);
  assert.deepEqual(decodeRecord(purgeBytes), purge);
  const end = encodeRecord({ op: "checkpointEnd", sequence: 1, entryCount: 0, timestamp: 1 });
  assert.throws(() => setRecordSequence(end, 2), /checkpoint end/);
  assert.throws(() => setRecordSequence(bytes, -1), /negative/);
});

Deno.test("stateAt() reads version, timestamp and tombstone, and hashes everything but the sequence", () => {
  const spanOf = (record: WalRecord) => {
    const bytes = encodeRecord(record);
    return { bytes, start: 0, end: bytes.length };
  };
  const state = stateAt(spanOf(put));
  assert.deepEqual({ ...state, contentHash: 0 }, {
    version: 7,
    timestamp: 1_700_000_000_123,
    deleted: false,
    ballot: { counter: 0, node: "" },
    contentHash: 0,
  });
  assert.equal(
    stateAt(spanOf({ ...put, sequence: 1 })).contentHash,
    state.contentHash,
    "the sequence is local",
  );
  const others: WalRecord[] = [
    { ...put, version: 8 },
    { ...put, timestamp: put.timestamp + 1 },
    { ...put, owner: "bob" },
    { ...put, valueJson: '{"n":2}' },
    { ...put, key: "other" },
    { ...put, table: "other" },
    { ...put, ballot: { counter: 1, node: "a" } },
  ];
  for (const other of others) assert.notEqual(stateAt(spanOf(other)).contentHash, state.contentHash);
  const { valueJson: _value, ...rest } = put;
  const deleted = stateAt(spanOf({ ...rest, op: "delete" }));
  assert.equal(deleted.deleted, true);
  assert.notEqual(deleted.contentHash, state.contentHash);
  // In place, inside a larger buffer, as the index reads it.
  const bytes = encodeRecord(put);
  const framed = new Uint8Array(bytes.length + 7);
  framed.set(bytes, 5);
  assert.deepEqual(stateAt({ bytes: framed, start: 5, end: 5 + bytes.length }), state);
});

const ballot = { counter: 2 ** 53 - 1, node: "nœud-🍎:6660" };
const zero = { counter: 0, node: "" };
const promise: PromiseRecord = {
  op: "promise",
  sequence: 0,
  timestamp: 78,
  table: "fruits",
  key: "k",
  ballot,
};

Deno.test(
  "encodeRecord(): a put or delete with a ballot is ops 5 and 6, the old layout then the ballot",
  () => {
    const deleted: DeleteRecord = {
      op: "delete",
      sequence: 8,
      version: 8,
      timestamp: 5,
      table: "t",
      key: "k",
      owner: "o",
    };
    for (const [record, code] of [[put, 5], [deleted, 6]] as const) {
      const plain = encodeRecord(record);
      const withBallot = encodeRecord({ ...record, ballot });
      const nodeBytes = new TextEncoder().encode(ballot.node);
      assert.equal(withBallot[0], code);
      assert.deepEqual(withBallot.subarray(1, plain.length), plain.subarray(1), "the old fields, unchanged");
      assert.equal(withBallot.length, plain.length + 8 + nodeBytes.length + 4);
      const view = new DataView(withBallot.buffer);
      assert.equal(view.getUint32(withBallot.length - 4), nodeBytes.length, "the node's length comes last");
      assert.deepEqual(withBallot.subarray(plain.length + 8, withBallot.length - 4), nodeBytes);
      assert.deepEqual(decodeRecord(withBallot), { ...record, ballot });
      assert.equal(checkRecordAt(withBallot, 0, withBallot.length), code);
      assert.deepEqual(encodeRecord({ ...record, ballot: zero }), plain, "the zero ballot is never written");
    }
    const bytes = encodeRecord({ ...put, ballot });
    const span = { bytes, start: 0, end: bytes.length };
    assert.deepEqual(entryAt(span), entryOf({ ...put, ballot }));
    assert.deepEqual(entryAt(span).ballot, ballot);
    assert.equal(entryAt(span).json, entryOf(put).json, "the reader's JSON does not show the ballot");
    assert.deepEqual(headAt(span), {
      version: 7,
      timestamp: put.timestamp,
      owner: put.owner,
      deleted: false,
      ballot,
      expiresAt: 0,
    });
    assert.deepEqual(ballotAt(span), ballot);
    assert.deepEqual(ballotAt({ bytes: encodeRecord(put), start: 0, end: encodeRecord(put).length }), zero);
    assert.equal(versionAt(span), 7);
  },
);

Deno.test(
  "encodeRecord()/decodeRecord() round trip a promise: op 7, version 0, no owner, then its ballot",
  () => {
    const bytes = encodeRecord(promise);
    assert.equal(bytes[0], opCodeOf("promise"));
    assert.equal(bytes[0], 7);
    assert.deepEqual(bytes.subarray(9, 17), new Uint8Array(8), "version field is 0");
    assert.deepEqual(decodeRecord(bytes), promise);
    assert.deepEqual(decodeRecordHead(bytes, 0, bytes.length), promise);
    assert.equal(checkRecordAt(bytes, 0, bytes.length), 7);
    assert.deepEqual(tableAndKeyAt({ bytes, start: 0, end: bytes.length }), { table: "fruits", key: "k" });
    assert.throws(
      () => encodeRecord({ ...promise, ballot: zero }),
      AssertionError,
      "a promise of the zero ballot",
    );
  },
);

Deno.test("encodeRecord() takes a ballot node of 300 bytes and asserts on 301", () => {
  const atMax = { counter: 1, node: "é".repeat(150) };
  assert.deepEqual(decodeRecord(encodeRecord({ ...promise, ballot: atMax })), { ...promise, ballot: atMax });
  assert.throws(
    () => encodeRecord({ ...promise, ballot: { counter: 1, node: `${"é".repeat(150)}x` } }),
    AssertionError,
  );
});

Deno.test("decodeRecord() and checkRecordAt() reject damaged ballots and promises", () => {
  const plain = encodeRecord(put);
  const withOp = (bytes: Uint8Array, op: number) => Uint8Array.of(op, ...bytes.subarray(1));
  const trailer = (counter: number, node: Uint8Array) => {
    const bytes = new Uint8Array(8 + node.length + 4);
    new DataView(bytes.buffer).setUint32(4, counter);
    bytes.set(node, 8);
    new DataView(bytes.buffer).setUint32(8 + node.length, node.length);
    return bytes;
  };
  const longNode = Uint8Array.of(...withOp(plain, 5), ...trailer(1, Uint8Array.of(65)));
  new DataView(longNode.buffer).setUint32(longNode.length - 4, 200); // 200 bytes of node: past the owner
  const overlong = Uint8Array.of(...withOp(plain, 5), ...trailer(1, new Uint8Array(301).fill(65)));
  const notUtf8 = Uint8Array.of(...withOp(plain, 5), ...trailer(1, Uint8Array.of(0xff)));
  const cases: Array<[string, Uint8Array, RegExp]> = [
    [
      "zero ballot in op 5",
      Uint8Array.of(...withOp(plain, 5), ...trailer(0, new Uint8Array())),
      /zero ballot/,
    ],
    ["too short for a ballot", withOp(encodeRecord(purge), 7), /ends inside its ballot/],
    ["node runs into the fields before it", longNode, /runs into the fields before it/],
    ["node over 300 bytes", overlong, /301 bytes, limit is 300/],
    ["node not UTF-8", notUtf8, /not valid UTF-8/],
  ];
  const promiseBytes = encodeRecord(promise);
  const withVersion = promiseBytes.slice();
  withVersion[16] = 1;
  cases.push(["promise with a version", withVersion, /promise record has a version/]);
  const asDelete = encodeRecord({ ...put, op: "delete", version: 1, ballot } as DeleteRecord);
  asDelete[0] = 7;
  asDelete.fill(0, 9, 17);
  cases.push(["promise with an owner", asDelete, /promise record has an owner/]);
  const deleteWithValue = encodeRecord({ ...put, ballot });
  deleteWithValue[0] = 6;
  cases.push(["delete with a ballot and a value", deleteWithValue, /delete record has trailing bytes/]);
  for (const [name, bytes, message] of cases) {
    assert.throws(() => decodeRecord(bytes), message, name);
    assert.throws(() => checkRecordAt(bytes, 0, bytes.length), RecordDecodeError, name);
  }
});
