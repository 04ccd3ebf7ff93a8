// Goal: a state's lifetime (and an expiry tombstone's mark) round trips through the record, which keeps the
// old layout byte for byte plus a trailing u64, and every reader of a record finds it; records without one
// are unchanged (tests/unit/store/compat_test.ts opens data dirs written before lifetimes existed).
// Method: encode and decode puts and deletes with and without ballots and expiries; compare bytes with the
// records without the expiry; damage the expiry and the op byte.
import assert from "node:assert/strict";
import { RecordDecodeError } from "../../../src/store/errors.ts";
import {
  checkRecordAt,
  decodeRecord,
  decodeRecordHead,
  type DeleteRecord,
  encodeRecord,
  entryAt,
  entryOf,
  entryOfEncoded,
  expiredTombstoneTail,
  expiryBytes,
  expiryOpBit,
  headAt,
  isBallotStateOpCode,
  isDeleteOpCode,
  isStateOpCode,
  lifetimeAt,
  type PutRecord,
  stateAt,
  valueJsonOf,
  versionAt,
} from "../../../src/store/wal_record.ts";
import { entryOfReplica, recordOfReplica, replicaOfEntry } from "../../../src/store/replica.ts";

const expiresAt = 1_700_000_360_123;
const ballot = { counter: 12, node: "10.0.0.7:6660" };
const put: PutRecord = {
  op: "put",
  sequence: 3,
  version: 7,
  timestamp: 1_700_000_000_123,
  table: "sessions",
  key: 'k"ey 🍎',
  owner: "alice",
  valueJson: '{"user":"bob","n":1}',
};
const tombstone: DeleteRecord = {
  op: "delete",
  sequence: 4,
  version: 8,
  timestamp: 1_700_000_360_200,
  table: "sessions",
  key: 'k"ey 🍎',
  owner: "alice",
};

Deno.test(
  "encodeRecord()/decodeRecord() round trip puts and deletes with an expiry, with and without a " +
    "ballot",
  () => {
    const records = [
      { ...put, expiresAt },
      { ...put, ballot, expiresAt },
      { ...tombstone, expiresAt },
      { ...tombstone, ballot, expiresAt },
    ];
    const codes = [1, 5, 2, 6].map((code) => code | expiryOpBit);
    records.forEach((record, index) => {
      const bytes = encodeRecord(record);
      assert.equal(bytes[0], codes[index]);
      assert.deepEqual(decodeRecord(bytes), record);
    });
  },
);

Deno.test(
  "encodeRecord(): an expiry is the record without it, byte for byte, then a u64; 0 writes none",
  () => {
    for (const record of [put, { ...put, ballot }, tombstone, { ...tombstone, ballot }]) {
      const without = encodeRecord(record);
      const withExpiry = encodeRecord({ ...record, expiresAt });
      assert.equal(withExpiry.length, without.length + expiryBytes);
      assert.equal(withExpiry[0], without[0]! | expiryOpBit);
      assert.deepEqual(withExpiry.subarray(1, without.length), without.subarray(1));
      const tail = new DataView(withExpiry.buffer, without.length);
      assert.equal(tail.getUint32(0) * 2 ** 32 + tail.getUint32(4), expiresAt);
      assert.deepEqual(encodeRecord({ ...record, expiresAt: 0 }), without);
    }
  },
);

Deno.test(
  "entryOf() and entryAt(): expires_at ends the VersionedValue; an expiry tombstone ends with its " +
    "reason",
  () => {
    const live = entryOf({ ...put, expiresAt });
    const bytes = encodeRecord({ ...put, expiresAt });
    assert.deepEqual(entryAt({ bytes, start: 0, end: bytes.length }), live);
    assert.equal(live.expiresAt, expiresAt);
    assert.equal(live.json.endsWith(`,"owner":"alice","expires_at":${expiresAt}}`), true);
    assert.deepEqual(JSON.parse(live.json), {
      value: { user: "bob", n: 1 },
      version: 7,
      timestamp: put.timestamp,
      owner: "alice",
      expires_at: expiresAt,
    });
    assert.equal(valueJsonOf(live), put.valueJson);
    const expired = entryOfEncoded(encodeRecord({ ...tombstone, expiresAt }));
    assert.deepEqual(expired, entryOf({ ...tombstone, expiresAt }));
    assert.equal(
      expired.json,
      `{"key":${
        JSON.stringify(tombstone.key)
      },"version":8,"timestamp":${tombstone.timestamp},"reason":"expired"}`,
    );
    assert.equal(expired.json.endsWith(expiredTombstoneTail), true);
    const deleted = entryOfEncoded(encodeRecord(tombstone));
    assert.equal(deleted.expiresAt, 0);
    assert.equal(deleted.json.includes("reason"), false);
    assert.equal(entryOf(put).json.includes("expires_at"), false);
    assert.equal(entryOf(put).expiresAt, 0);
  },
);

Deno.test("headAt(), lifetimeAt(), versionAt() and stateAt() read a record with an expiry", () => {
  const bytes = encodeRecord({ ...put, ballot, expiresAt });
  const span = { bytes, start: 0, end: bytes.length };
  assert.deepEqual(headAt(span), {
    version: 7,
    timestamp: put.timestamp,
    owner: "alice",
    deleted: false,
    ballot,
    expiresAt,
  });
  assert.deepEqual(lifetimeAt(span), { version: 7, expiresAt });
  assert.equal(versionAt(span), 7);
  const plain = encodeRecord({ ...put, ballot });
  assert.equal(lifetimeAt({ bytes: plain, start: 0, end: plain.length }), undefined);
  const expired = encodeRecord({ ...tombstone, expiresAt });
  assert.equal(lifetimeAt({ bytes: expired, start: 0, end: expired.length }), undefined);
  // A lifetime is part of the state: two replicas with and without one differ.
  assert.notEqual(
    stateAt(span).contentHash,
    stateAt({ bytes: plain, start: 0, end: plain.length }).contentHash,
  );
  assert.equal(stateAt(span).version, 7);
});

Deno.test(
  "checkRecordAt() and decodeRecordHead() take a record with an expiry inside a larger buffer",
  () => {
    const record = encodeRecord({ ...put, ballot, expiresAt });
    const buffer = new Uint8Array(record.length + 10);
    buffer.set(record, 5);
    assert.equal(checkRecordAt(buffer, 5, 5 + record.length), 5 | expiryOpBit);
    assert.deepEqual(decodeRecordHead(buffer, 5, 5 + record.length), {
      op: "put",
      sequence: 3,
      version: 7,
      table: "sessions",
      key: put.key,
    });
    assert.deepEqual(entryAt({ bytes: buffer, start: 5, end: 5 + record.length }), entryOfEncoded(record));
  },
);

Deno.test(
  "decodeRecord() rejects an expiry of 0, a record too short for one, and the bit on other ops",
  () => {
    const bytes = encodeRecord({ ...put, expiresAt });
    const zero = bytes.slice();
    zero.fill(0, zero.length - expiryBytes);
    assert.throws(() => decodeRecord(zero), RecordDecodeError);
    const checkpointEnd = encodeRecord({ op: "checkpointEnd", sequence: 1, entryCount: 0, timestamp: 1 });
    checkpointEnd[0] = checkpointEnd[0]! | expiryOpBit;
    assert.throws(() => decodeRecord(checkpointEnd), /unknown record op 131/);
    const promise = encodeRecord({ op: "promise", sequence: 0, timestamp: 1, table: "t", key: "k", ballot });
    promise[0] = promise[0]! | expiryOpBit;
    assert.throws(() => decodeRecord(promise), /unknown record op 135/);
    // A put whose expiry bit is set but which has no room for it: its last 8 bytes are not an expiry.
    const plain = encodeRecord({ ...put, valueJson: "1" });
    plain[0] = plain[0]! | expiryOpBit;
    assert.throws(() => decodeRecord(plain), RecordDecodeError);
  },
);

Deno.test("isDeleteOpCode(), isStateOpCode() and isBallotStateOpCode() see through the expiry bit", () => {
  for (const code of [1, 2, 5, 6]) {
    const flagged = code | expiryOpBit;
    assert.equal(isDeleteOpCode(flagged), isDeleteOpCode(code));
    assert.equal(isStateOpCode(flagged), true);
    assert.equal(isBallotStateOpCode(flagged), isBallotStateOpCode(code));
  }
  assert.equal(isStateOpCode(3 | expiryOpBit), false);
});

Deno.test("replicaOfEntry()/entryOfReplica()/recordOfReplica() carry the expiry both ways", () => {
  for (
    const record of [{ ...put, ballot, expiresAt }, { ...tombstone, ballot, expiresAt }, { ...put, ballot }]
  ) {
    const entry = entryOfEncoded(encodeRecord(record));
    const replica = replicaOfEntry(entry);
    assert.equal(replica.expiresAt, record.expiresAt);
    assert.equal("expiresAt" in replica, record.expiresAt !== undefined);
    const rebuilt = recordOfReplica({ table: record.table, key: record.key, entry: replica });
    assert.deepEqual(entryOfEncoded(encodeRecord(rebuilt)), entry);
    assert.deepEqual(entryOfReplica(record.key, replica), entry);
  }
});
