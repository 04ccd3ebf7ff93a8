// Goal: the replica conflict rule is a total order that every node evaluates the same way; ballots order
// accepted states and decideReplica() applies the accept rule; a replica's state sent by a peer, its
// ballot included, is checked before it reaches the WAL.
// Method: a table with one case per tie-break level, checked in both directions; a sorted set checked
// for consistency; checkReplicaEntry() on valid and invalid entries.
import assert from "node:assert/strict";
import { InvalidRequestError } from "../../../src/util/errors.ts";
import {
  type Ballot,
  compareBallots,
  compareReplicaEntries,
  type Entry,
  type ReplicaEntry,
  type ReplicaResult,
  zeroBallot,
} from "../../../src/store/mod.ts";
import {
  checkReplicaEntry,
  decideReplica,
  entryOfReplica,
  recordOfReplica,
  replicaOfEntry,
} from "../../../src/store/replica.ts";
import { successorOf } from "../../../src/util/ballot.ts";
import { encodeRecord, entryOf, entryOfEncoded } from "../../../src/store/wal_record.ts";
import { Random } from "../../helpers/seed.ts";

const base: ReplicaEntry = { version: 3, timestamp: 1_000, owner: "bob", deleted: false, valueJson: '"b"' };
const tombstone: ReplicaEntry = { version: 3, timestamp: 1_000, owner: "bob", deleted: true };

/** Pairs whose first member wins, one per level of the rule. */
const winners: Array<{ level: string; winner: ReplicaEntry; loser: ReplicaEntry }> = [
  { level: "higher version", winner: { ...base, version: 4, timestamp: 1 }, loser: base },
  { level: "higher version over a tombstone", winner: { ...base, version: 4 }, loser: tombstone },
  { level: "later timestamp", winner: { ...base, timestamp: 1_001, valueJson: '"a"' }, loser: base },
  { level: "later timestamp beats a tombstone", winner: { ...base, timestamp: 1_001 }, loser: tombstone },
  { level: "tombstone over a live value", winner: tombstone, loser: { ...base, valueJson: '"zzz"' } },
  { level: "larger valueJson", winner: { ...base, valueJson: '"c"', owner: "a" }, loser: base },
  {
    level: "valueJson by code units",
    winner: { ...base, valueJson: '"\uFF21"' },
    loser: { ...base, valueJson: '"😀"' },
  },
  { level: "valueJson prefix", winner: { ...base, valueJson: '"b"1' }, loser: base },
  { level: "larger owner", winner: { ...base, owner: "carol" }, loser: base },
  { level: "larger owner of tombstones", winner: { ...tombstone, owner: "carol" }, loser: tombstone },
];

Deno.test("compareReplicaEntries() orders every tie-break level and is antisymmetric", () => {
  for (const { level, winner, loser } of winners) {
    assert.equal(compareReplicaEntries(winner, loser), 1, level);
    assert.equal(compareReplicaEntries(loser, winner), -1, level);
  }
  assert.equal(compareReplicaEntries(base, { ...base }), 0);
  assert.equal(compareReplicaEntries(tombstone, { ...tombstone }), 0);
});

Deno.test(
  "compareReplicaEntries() is a total order: sign(a, b) = -sign(b, a) and sorting is consistent",
  () => {
    const entries: ReplicaEntry[] = [base, tombstone];
    for (const { winner, loser } of winners) entries.push(winner, loser);
    for (const a of entries) {
      for (const b of entries) {
        assert.equal(Math.sign(compareReplicaEntries(a, b)), -Math.sign(compareReplicaEntries(b, a)) || 0);
      }
    }
    const sorted = [...entries].sort(compareReplicaEntries);
    for (let low = 0; low < sorted.length; low += 1) {
      for (let high = low; high < sorted.length; high += 1) {
        assert(compareReplicaEntries(sorted[low]!, sorted[high]!) <= 0, "transitive");
      }
    }
  },
);

Deno.test('replicaOfEntry() slices the value out of Entry.json, even when a string holds ,"version":', () => {
  const valueJson = JSON.stringify({ s: ',"version":9,"timestamp":1,"owner":"x"}', n: [1] });
  const record = { sequence: 1, version: 2, timestamp: 5, table: "t", key: "k", owner: ',"version":' };
  const live = entryOf({ op: "put", ...record, valueJson });
  assert.deepEqual(replicaOfEntry(live), {
    version: 2,
    timestamp: 5,
    owner: ',"version":',
    deleted: false,
    valueJson,
  });
  const dead = entryOf({ op: "delete", ...record });
  assert.deepEqual(replicaOfEntry(dead), { version: 2, timestamp: 5, owner: ',"version":', deleted: true });
});

Deno.test(
  "checkReplicaEntry() accepts valid entries and refuses each broken rule with InvalidRequestError",
  () => {
    const options = { valueCodeUnitsMax: 10 };
    checkReplicaEntry(base, options);
    checkReplicaEntry(tombstone, options);
    checkReplicaEntry({ ...base, timestamp: 0 }, options);
    checkReplicaEntry({ ...base, version: Number.MAX_SAFE_INTEGER, valueJson: "x".repeat(10) }, options);
    const broken: Array<[string, ReplicaEntry, RegExp]> = [
      ["version 0", { ...base, version: 0 }, /version/],
      ["fractional version", { ...base, version: 1.5 }, /version/],
      ["unsafe version", { ...base, version: 2 ** 53 }, /version/],
      ["negative timestamp", { ...base, timestamp: -1 }, /timestamp/],
      ["unsafe timestamp", { ...base, timestamp: 2 ** 53 }, /timestamp/],
      ["empty owner", { ...base, owner: "" }, /owner/],
      ["lone surrogate owner", { ...base, owner: "\uD800" }, /owner/],
      ["tombstone with a value", { ...tombstone, valueJson: "1" }, /tombstone/],
      ["live without a value", { version: 1, timestamp: 1, owner: "a", deleted: false }, /no value/],
      ["live with an empty value", { ...base, valueJson: "" }, /no value/],
      ["value at max + 1", { ...base, valueJson: "x".repeat(11) }, /11 UTF-16 code units, limit is 10/],
      ["lone surrogate value", { ...base, valueJson: '"\uDC00"' }, /Unicode/],
      ["deleted not a boolean", { ...base, deleted: "no" as unknown as boolean }, /deleted/],
    ];
    for (const [name, entry, message] of broken) {
      assert.throws(() => checkReplicaEntry(entry, options), InvalidRequestError, name);
      assert.throws(() => checkReplicaEntry(entry, options), message, name);
    }
  },
);

/** An index entry of `replica` (its ballot included), as the store decides with. */
function recordEntryOf(replica: ReplicaEntry): Entry {
  return entryOf(recordOfReplica({ table: "t", key: "k", entry: replica }));
}

Deno.test("compareBallots() orders by counter, then by node id in plain string order", () => {
  const sorted: Ballot[] = [
    zeroBallot,
    { counter: 0, node: "a" },
    { counter: 1, node: "" },
    { counter: 1, node: "10.0.0.2:6660" },
    { counter: 1, node: "9.0.0.1:6660" }, // "1" < "9" as strings
    { counter: 2, node: "a" },
    { counter: 2 ** 53 - 1, node: "a" },
  ];
  for (const [i, a] of sorted.entries()) {
    for (const [j, b] of sorted.entries()) assert.equal(Math.sign(compareBallots(a, b)), Math.sign(i - j));
  }
  assert.deepEqual(successorOf({ counter: 4, node: "n" }), { counter: 5, node: "n" });
  assert.throws(() => successorOf({ counter: 2 ** 53 - 1, node: "n" }), /safe integer/);
});

Deno.test(
  "decideReplica() follows the accept rule by ballot and the conflict rule only at one ballot",
  () => {
    const at = (counter: number, node = "n") => ({ counter, node });
    const current = recordEntryOf({ ...base, ballot: at(3) });
    const cases: Array<[string, ReplicaEntry, Ballot, ReplicaResult]> = [
      ["above accepted and promise", { ...base, version: 1, ballot: at(4) }, zeroBallot, "applied"],
      ["below the accepted ballot", { ...base, version: 9, ballot: at(2, "z") }, zeroBallot, "stale"],
      ["below the successor of the accepted", { ...base, ballot: at(3, "z") }, zeroBallot, "stale"],
      ["below the explicit promise", { ...base, ballot: at(4) }, at(5), "stale"],
      ["at the explicit promise", { ...base, ballot: at(5) }, at(5), "applied"],
      ["same state, same ballot", { ...base, ballot: at(3) }, zeroBallot, "identical"],
      [
        "another state at the same ballot, winning",
        { ...base, version: 4, ballot: at(3) },
        zeroBallot,
        "applied",
      ],
      [
        "another state at the same ballot, losing",
        { ...base, version: 2, ballot: at(3) },
        zeroBallot,
        "stale",
      ],
      ["same ballot, below the promise", { ...base, version: 4, ballot: at(3) }, at(4), "stale"],
    ];
    const atMax = recordEntryOf({ ...base, ballot: at(Number.MAX_SAFE_INTEGER, "a") });
    const aboveMax = recordEntryOf({ ...base, ballot: at(Number.MAX_SAFE_INTEGER, "b") });
    assert.equal(
      decideReplica({ entry: aboveMax, current: atMax, promised: zeroBallot, strict: false }),
      "stale",
      "nothing reaches the successor of the largest counter, and nothing asserts",
    );
    for (const [name, replica, promised, expected] of cases) {
      assert.equal(
        decideReplica({ entry: recordEntryOf(replica), current, promised, strict: false }),
        expected,
        name,
      );
    }
    const legacy = recordEntryOf(base);
    const newer = recordEntryOf({ ...base, timestamp: 1_001 });
    assert.equal(
      decideReplica({ entry: newer, current: legacy, promised: zeroBallot, strict: false }),
      "applied",
    );
    assert.equal(
      decideReplica({ entry: newer, current: legacy, promised: zeroBallot, strict: true }),
      "stale",
    );
    assert.equal(
      decideReplica({ entry: newer, current: undefined, promised: zeroBallot, strict: true }),
      "applied",
    );
    assert.equal(
      decideReplica({ entry: newer, current: undefined, promised: at(1), strict: false }),
      "stale",
    );
    const strictHigher = recordEntryOf({ ...base, version: 1, ballot: at(9) });
    assert.equal(
      decideReplica({ entry: strictHigher, current: legacy, promised: zeroBallot, strict: true }),
      "applied",
      "strict counts only between zero-ballot states",
    );
  },
);

Deno.test(
  "checkReplicaEntry() checks a replica's ballot: counter, Unicode, node of at most 300 bytes",
  () => {
    const valueCodeUnitsMax = 100;
    const good: Ballot[] = [zeroBallot, { counter: 2 ** 53 - 1, node: "é".repeat(150) }];
    for (const ballot of good) checkReplicaEntry({ ...base, ballot }, { valueCodeUnitsMax });
    const bad: Array<[unknown, RegExp]> = [
      [{ counter: -1, node: "n" }, /counter must be a non-negative safe integer, got -1/],
      [{ counter: 2 ** 53, node: "n" }, /safe integer/],
      [{ counter: 1.5, node: "n" }, /safe integer/],
      [{ counter: 1, node: 7 }, /node is not valid Unicode/],
      [{ counter: 1, node: "\uD800" }, /node is not valid Unicode/],
      [{ counter: 1, node: `${"é".repeat(150)}x` }, /node is 301 bytes, limit is 300/],
      [null, /not an object/],
    ];
    for (const [ballot, message] of bad) {
      assert.throws(
        () => checkReplicaEntry({ ...base, ballot: ballot as Ballot }, { valueCodeUnitsMax }),
        (error: unknown) => error instanceof InvalidRequestError && message.test(error.message),
        String(message),
      );
    }
  },
);

Deno.test("replicaOfEntry() includes a ballot only when it is not the zero ballot", () => {
  assert.equal("ballot" in replicaOfEntry(recordEntryOf(base)), false);
  assert.equal("ballot" in replicaOfEntry(recordEntryOf({ ...base, ballot: zeroBallot })), false);
  const ballot = { counter: 1, node: "n" };
  assert.deepEqual(replicaOfEntry(recordEntryOf({ ...tombstone, ballot })), { ...tombstone, ballot });
});

Deno.test("entryOfReplica() builds exactly the entry that decoding the state's record gives (seeded)", () => {
  const random = Random.fromEnv("entryOfReplica");
  const texts = ["", "a", "é", "表", "\u{1F600}", '"', "\\", ',"version":1', "\u0000", "\u2028"];
  const text = () => Array.from({ length: random.int(4) }, () => random.pick(texts)).join("");
  for (let index = 0; index < 1_000; index += 1) {
    const deleted = random.int(4) === 0;
    const ballot = random.int(3) === 0
      ? undefined
      : random.int(4) === 0
      ? zeroBallot
      : { counter: 1 + random.int(1_000_000), node: `127.0.0.1:${7000 + random.int(3)}${text()}` };
    const entry: ReplicaEntry = {
      version: 1 + random.int(1_000_000),
      timestamp: random.int(2 ** 52),
      owner: text(),
      deleted,
      ...(deleted
        ? {}
        : { valueJson: JSON.stringify(random.int(2) === 0 ? text() : { s: text(), n: index }) }),
      ...(ballot === undefined ? {} : { ballot }),
    };
    const key = `k${text()}`;
    const decoded = entryOfEncoded(encodeRecord(recordOfReplica({ table: "t", key, entry })));
    assert.deepEqual(entryOfReplica(key, entry), decoded, JSON.stringify({ key, entry }));
  }
});
