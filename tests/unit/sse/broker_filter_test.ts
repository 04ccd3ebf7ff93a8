// Goal: filtered streams (SPEC §4b "Filters with enter and leave") against a model that applies the same
// writes: every change after which a record matches is sent as Updated, one that stops matching as Left,
// a deleted record that matched as Deleted, and nothing else; a snapshot with a filter shows exactly the
// matching records; a resume from the change log keeps the same verdicts. Method: seeded random writes
// (updates that move records in and out of the filter, deletes, re-creates) published to a Broker with a
// real ChangeLog on MemoryFs; each event's id is mapped back to the write that made it.
import assert from "node:assert/strict";
import { type Filter, parseFilter } from "../../../src/filter/mod.ts";
import { Broker, type SnapshotRecord } from "../../../src/sse/mod.ts";
import { ChangeLog } from "../../../src/store/change_log.ts";
import { MemoryFs } from "../../../src/store/fs.ts";
import { ManualClock } from "../../../src/util/clock.ts";
import { silentLogger } from "../../../src/util/log.ts";
import { testEncryption } from "../../helpers/test_key.ts";
import { Random } from "../../helpers/seed.ts";
import {
  FrameReader,
  readBlocksUntil,
  type SeenEvent,
  seenOf,
  streamBlocksOf,
  testLimits,
} from "./sse_helpers.ts";

interface Write {
  key: string;
  version: number;
  value: { n: number; color: string } | undefined; // undefined: a delete
}

type Seen = SeenEvent;

function blocksOf(text: string): Seen[] {
  return streamBlocksOf(text).map(seenOf);
}

const jsonOf = (write: Write) =>
  write.value === undefined
    ? JSON.stringify({ key: write.key, version: write.version, timestamp: 1 })
    : JSON.stringify({ value: write.value, version: write.version, timestamp: 1, owner: "alice" });

const matches = (value: Write["value"]) => value !== undefined && value.n >= 5 && value.color !== "blue";
const filterText = '{"n":{"$gte":5},"color":{"$ne":"blue"}}';

async function readAll(reader: FrameReader, until: (seen: Seen) => boolean): Promise<Seen[]> {
  return (await readBlocksUntil(reader, (block) => until(seenOf(block)))).map(seenOf);
}

/** A Broker over a real ChangeLog on MemoryFs, with room for every event of the test. */
async function openFilteredBroker(): Promise<{ log: ChangeLog; broker: Broker }> {
  const fs = new MemoryFs();
  const log = await ChangeLog.open({
    dir: "/data",
    fs,
    encryption: testEncryption,
    clock: new ManualClock(1_700_000_000_000),
    logger: silentLogger,
    retention: { ageMs: 600_000, recordsMax: 100_000, bytesMax: 64 << 20 },
  });
  const broker = new Broker({
    limits: testLimits({ sseQueueDepthMax: 8_192 }),
    logger: silentLogger,
    history: log,
  });
  return { log, broker };
}

/** A snapshot stream with the filter holds exactly the model's matching records. */
async function assertSnapshotMatches(
  broker: Broker,
  filter: Filter,
  model: Map<string, Write>,
  seed: number,
): Promise<void> {
  // A snapshot stream: its records are the model's matching ones; pages read the model now.
  async function* pages(): AsyncGenerator<SnapshotRecord[]> {
    const records = [...model.values()].filter((entry) => entry.value !== undefined).sort((a, b) =>
      a.key < b.key ? -1 : 1
    );
    yield records.map((entry) => ({
      table: "t",
      key: entry.key,
      version: entry.version,
      json: jsonOf(entry),
    }));
  }
  const snapshotReader = new FrameReader(
    broker.subscribeMulti({ tables: ["t"], keys: [] }, { filter, snapshot: { pages: pages() } }).stream,
  );
  const snapshotBlocks = await readAll(snapshotReader, (seen) => seen.event === "Synced");
  const snapshotKeys = snapshotBlocks.filter((seen) => seen.event === "Updated").map((seen) => seen.key)
    .sort();
  const expectedKeys = [...model.values()].filter((entry) => matches(entry.value)).map((entry) => entry.key)
    .sort();
  assert.deepEqual(
    snapshotKeys,
    expectedKeys,
    `seed ${seed}: the snapshot holds the matching records`,
  );
}

/** What each write of `after` must send, from the model: `[id, event, key, version]`, in order. */
function expectedVerdicts(
  before: Map<string, Write>,
  after: Write[],
  firstId: number,
): Array<[number, string, string, number]> {
  const expected: Array<[number, string, string, number]> = [];
  const state = new Map(before);
  // The broker knows a key's past once a filtered stream exists: the snapshot's live records, and every
  // change published since. A key it knows nothing of may have been in the filter: a non-matching change
  // of it is sent as Left (or Deleted), never dropped.
  const known = new Set(
    [...before.values()].filter((entry) => entry.value !== undefined).map((entry) => entry.key),
  );
  after.forEach((entry, index) => {
    const wasIn = known.has(entry.key) ? matches(state.get(entry.key)?.value) : true;
    known.add(entry.key);
    state.set(entry.key, entry);
    const isIn = matches(entry.value);
    const event = isIn ? "Updated" : !wasIn ? undefined : entry.value === undefined ? "Deleted" : "Left";
    if (event !== undefined) expected.push([firstId + index, event, entry.key, entry.version]);
  });
  return expected;
}

/**
 * Resumed from the change log at the first live write: the same verdicts, but the first change of each key
 * has no known past in the replay, so a non-matching one may also come as a Left (never dropped).
 */
async function assertResumedVerdicts(
  broker: Broker,
  filter: Filter,
  firstId: number,
  expected: Array<[number, string, string, number]>,
): Promise<void> {
  const resumed = new FrameReader(
    broker.subscribeMulti({ tables: ["t"], keys: [] }, { filter, lastEventId: firstId - 1 }).stream,
  );
  await resumed.next();
  const replayed = await readAll(resumed, (seen) => seen.key === "end");
  const replayedSet = new Set(replayed.slice(0, -1).map((seen) => `${seen.id} ${seen.event}`));
  for (const [id, event] of expected) {
    assert.ok(replayedSet.has(`${id} ${event}`), `replay lacks ${id} ${event}`);
  }
  assert.ok(
    replayed.slice(0, -1).every((seen) =>
      seen.event !== "Updated" || expected.some(([id]) => id === Number(seen.id))
    ),
  );
}

Deno.test(
  "Broker filtered streams match a model of the same writes: Updated, Left, Deleted and nothing else " +
    "(seeded)",
  async () => {
    const random = Random.fromEnv("filter model");
    const { log, broker } = await openFilteredBroker();
    const filter = parseFilter(filterText);
    const model = new Map<string, Write>();
    const writes: Write[] = [];
    const write = () => {
      const key = `k${random.int(40)}`;
      const version = (model.get(key)?.version ?? 0) + 1;
      const value = random.next() < 0.15
        ? undefined
        : { n: random.int(10), color: ["red", "blue", "green"][random.int(3)]! };
      const entry: Write = { key, version, value };
      model.set(key, entry);
      writes.push(entry);
      const json = jsonOf(entry);
      const kind = value === undefined ? "Deleted" : "Updated";
      broker.publish({ kind, table: "t", key, version, sequence: 0, json, source: "local" });
    };
    for (let count = 0; count < 200; count += 1) write();
    await assertSnapshotMatches(broker, filter, model, random.seed);
    const liveReader = new FrameReader(broker.subscribeMulti({ tables: ["t"], keys: [] }, { filter }).stream);
    const firstId = Number(blocksOf(await liveReader.next())[0]!.id) + 1;
    const before = new Map(model);
    const startIndex = writes.length;
    for (let count = 0; count < 600; count += 1) write();
    const expected = expectedVerdicts(before, writes.slice(startIndex), firstId);
    broker.publish({
      kind: "Updated",
      table: "t",
      key: "end",
      version: 1,
      sequence: 0,
      json: jsonOf({ key: "end", version: 1, value: { n: 9, color: "red" } }),
      source: "local",
    });
    const live = await readAll(liveReader, (seen) => seen.key === "end");
    assert.deepEqual(
      live.slice(0, -1).map((seen) => [Number(seen.id), seen.event, seen.key, seen.version]),
      expected,
      `seed ${random.seed}: each write's verdict`,
    );
    await assertResumedVerdicts(broker, filter, firstId, expected);
    broker.close();
    await log.close();
  },
);

Deno.test(
  "Broker filter groups: subscribers of one filter share it; the last one leaving forgets the " +
    "table's states",
  async () => {
    const broker = new Broker({ limits: testLimits(), logger: silentLogger });
    const filter = parseFilter('{"n":{"$gt":1}}');
    const same = parseFilter('{ "n" : { "$gt" : 1 } }');
    const readers = [filter, same].map((one) =>
      new FrameReader(broker.subscribeMulti({ tables: ["t"], keys: [] }, { filter: one }).stream)
    );
    for (const reader of readers) await reader.next();
    const json = (n: number, version: number) =>
      JSON.stringify({ value: { n }, version, timestamp: 1, owner: "a" });
    broker.publish({
      kind: "Updated",
      table: "t",
      key: "a",
      version: 1,
      sequence: 0,
      json: json(5, 1),
      source: "local",
    });
    broker.publish({
      kind: "Updated",
      table: "t",
      key: "a",
      version: 2,
      sequence: 0,
      json: json(0, 2),
      source: "local",
    });
    broker.publish({
      kind: "Updated",
      table: "t",
      key: "b",
      version: 1,
      sequence: 0,
      json: json(0, 1),
      source: "local",
    });
    for (const reader of readers) {
      assert.deepEqual(blocksOf(await reader.next()).map((seen) => seen.event), ["Updated"]);
      assert.deepEqual(blocksOf(await reader.next()).map((seen) => [seen.event, seen.key, seen.version]), [[
        "Left",
        "a",
        2,
      ]]);
      await reader.cancel();
    }
    assert.equal(broker.activeCount, 0);
    broker.close();
  },
);

Deno.test("Broker: a filtered stream refused at subscribersMax leaves no filter group behind", () => {
  const broker = new Broker({ limits: testLimits({ subscribersMax: 1 }), logger: silentLogger });
  const filter = parseFilter('{"n":1}');
  broker.subscribeMulti({ tables: ["t"], keys: [] }, {}); // takes the one place
  assert.throws(() => broker.subscribeMulti({ tables: ["u"], keys: [] }, { filter }), /subscribers/i);
  assert.equal(broker.filteredTableCount, 0, "no group joined, no states kept for u");
  broker.close();
  assert.equal(broker.filteredTableCount, 0);
});
