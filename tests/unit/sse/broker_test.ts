// Goal: the Broker fans changes out to key and table streams in order, once each, resumes from
// Last-Event-ID, and keeps every bound of SPEC §4 (subscribers, queues, histories, keepalive).
// Method: publish ChangeEvents into a Broker and read its streams with readers; no sockets, no sleeps.
import assert from "node:assert/strict";
import { Broker } from "../../../src/sse/mod.ts";
import { ManualClock } from "../../../src/util/clock.ts";
import { silentLogger } from "../../../src/util/log.ts";
import type { Limits } from "../../../src/config/limits.ts";
import {
  entryOf,
  EventMaker,
  FrameReader,
  keyFrameText,
  keyResyncText,
  liveJson,
  readyText,
  testLimits,
  tombstoneJson,
  watchKeys,
} from "./sse_helpers.ts";

const ready = readyText;

/** The clock reads 1 ms, so table-stream ids start at 1000: the n-th published change has id 1000 + n. */
function makeBroker(overrides: Partial<Limits> = {}): Broker {
  return new Broker({ limits: testLimits(overrides), logger: silentLogger, clock: new ManualClock(1) });
}

Deno.test("Broker key stream sends Updated and Deleted frames byte-exact, in version order", async () => {
  const broker = makeBroker();
  const events = new EventMaker();
  const reader = new FrameReader(broker.subscribeKey("t", "k", { current: undefined }).stream);
  broker.publish(events.updated({ table: "t", key: "k", version: 1, value: { n: 1 } }));
  broker.publish(events.updated({ table: "t", key: "other", version: 1 }));
  broker.publish(events.updated({ table: "t", key: "k", version: 2, value: "two" }));
  broker.publish(events.deleted({ table: "t", key: "k", version: 3 }));
  broker.close();
  assert.deepEqual(await reader.rest(), [
    ready(0),
    keyFrameText("Updated", 1, liveJson({ n: 1 }, 1)),
    keyFrameText("Updated", 2, liveJson("two", 2)),
    keyFrameText("Deleted", 3, tombstoneJson("k", 3)),
  ]);
});

Deno.test("Broker table stream sends every key of its table with the broker's own ids", async () => {
  const broker = makeBroker();
  const events = new EventMaker();
  const reader = new FrameReader(broker.subscribeTable("t", {}).stream);
  broker.publish(events.updated({ table: "t", key: "a", version: 1 }));
  broker.publish(events.updated({ table: "other", key: "a", version: 1 }));
  broker.publish(events.deleted({ table: "t", key: 'b"', version: 4 }));
  broker.close();
  assert.deepEqual(await reader.rest(), [
    ready(1000),
    `id: 1001\ndata: {"event":"Updated","table":"t","key":"a","value":${liveJson(1, 1)}}\n\n`,
    `id: 1003\ndata: {"event":"Deleted","table":"t","key":"b\\"","value":${tombstoneJson('b"', 4)}}\n\n`,
  ]);
});

Deno.test("Broker keeps tables and keys apart even when their concatenations are equal", async () => {
  const broker = makeBroker();
  const events = new EventMaker();
  const reader = new FrameReader(broker.subscribeKey("ab", "c", { current: undefined }).stream);
  broker.publish(events.updated({ table: "a", key: "bc", version: 3 }));
  broker.publish(events.updated({ table: "ab", key: "c", version: 1 }));
  broker.close();
  assert.deepEqual(await reader.rest(), [ready(0), keyFrameText("Updated", 1, liveJson(1, 1))]);
});

Deno.test("Broker.subscribeKey() replays the history after Last-Event-ID, then goes live", async () => {
  const broker = makeBroker();
  const events = new EventMaker();
  watchKeys(broker, "t", ["k"]);
  for (const version of [1, 2, 3]) broker.publish(events.updated({ table: "t", key: "k", version }));
  const current = entryOf({ key: "k", version: 3 });
  const reader = new FrameReader(broker.subscribeKey("t", "k", { lastEventId: 1, current }).stream);
  broker.publish(events.deleted({ table: "t", key: "k", version: 4 }));
  broker.close();
  assert.deepEqual(await reader.rest(), [
    ready(1),
    keyFrameText("Updated", 2, liveJson(2, 2)),
    keyFrameText("Updated", 3, liveJson(3, 3)),
    keyFrameText("Deleted", 4, tombstoneJson("k", 4)),
  ]);
});

Deno.test(
  "Broker remembers a key's changes only once it was subscribed here; before that, a resume gets the " +
    "current value",
  async () => {
    const broker = makeBroker();
    const events = new EventMaker();
    for (const version of [1, 2]) broker.publish(events.updated({ table: "t", key: "k", version }));
    assert.equal(broker.historyBytes > 0, true, "the table's frames are remembered");
    const before = broker.historyBytes;
    const current = entryOf({ key: "k", version: 2 });
    // A client that was subscribed on another node resumes here: nothing of k was remembered.
    const moved = new FrameReader(broker.subscribeKey("t", "k", { lastEventId: 1, current }).stream);
    broker.publish(events.updated({ table: "t", key: "k", version: 3 }));
    assert.ok(broker.historyBytes > before, "from the subscription on, k's changes are remembered");
    const resumed = new FrameReader(broker.subscribeKey("t", "k", { lastEventId: 2, current }).stream);
    broker.close();
    const frame = (version: number) => keyFrameText("Updated", version, liveJson(version, version));
    assert.deepEqual(await moved.rest(), [ready(1), keyFrameText("Updated", 2, current.json), frame(3)]);
    assert.deepEqual(await resumed.rest(), [ready(2), frame(3)], "replayed from the history");
  },
);

Deno.test(
  "Broker.subscribeKey() without Last-Event-ID starts at the current version and replays nothing",
  async () => {
    const broker = makeBroker();
    const events = new EventMaker();
    for (const version of [1, 2]) broker.publish(events.updated({ table: "t", key: "k", version }));
    const current = entryOf({ key: "k", version: 2 });
    const reader = new FrameReader(broker.subscribeKey("t", "k", { current }).stream);
    broker.close();
    assert.deepEqual(await reader.rest(), [ready(2)]);
  },
);

Deno.test(
  "Broker.subscribeKey() sends the key's Resync and the current value when the gap is older than the " +
    "history",
  async () => {
    const broker = makeBroker({ sseHistoryDepth: 2 });
    const events = new EventMaker();
    for (const version of [1, 2, 3]) broker.publish(events.updated({ table: "t", key: "k", version }));
    const resync = keyResyncText("t", "k");
    const live = entryOf({ key: "k", version: 3, value: "now" });
    const liveReader = new FrameReader(
      broker.subscribeKey("t", "k", { lastEventId: 0, current: live }).stream,
    );
    const tombstone = entryOf({ key: "k", version: 3, deleted: true });
    const goneReader = new FrameReader(
      broker.subscribeKey("t", "k", { lastEventId: 0, current: tombstone }).stream,
    );
    // A key this broker never saw change (changed before a restart): the history is missing entirely.
    const unseen = entryOf({ key: "u", version: 9 });
    const unseenReader = new FrameReader(
      broker.subscribeKey("t", "u", { lastEventId: 4, current: unseen }).stream,
    );
    broker.close();
    // Versions 1 and 2 (5 to 8 for u) cannot be produced: announced, never a silent jump (SPEC §4b).
    assert.deepEqual(await liveReader.rest(), [ready(0), resync, keyFrameText("Updated", 3, live.json)]);
    assert.deepEqual(await goneReader.rest(), [ready(0), resync, keyFrameText("Deleted", 3, tombstone.json)]);
    assert.deepEqual(await unseenReader.rest(), [
      ready(4),
      keyResyncText("t", "u"),
      keyFrameText("Updated", 9, unseen.json),
    ]);
  },
);

Deno.test(
  "Broker.subscribeKey() resumes at the current version quietly, and past every known version with " +
    "the current value",
  async () => {
    const broker = makeBroker();
    const current = entryOf({ key: "k", version: 5 });
    const atReader = new FrameReader(broker.subscribeKey("t", "k", { lastEventId: 5, current }).stream);
    const pastReader = new FrameReader(broker.subscribeKey("t", "k", { lastEventId: 8, current }).stream);
    const noneReader = new FrameReader(
      broker.subscribeKey("t", "n", { lastEventId: 2, current: undefined }).stream,
    );
    broker.publish(new EventMaker().updated({ table: "t", key: "k", version: 6 }));
    broker.close();
    assert.deepEqual(await atReader.rest(), [ready(5), keyFrameText("Updated", 6, liveJson(6, 6))]);
    // 8 is no version this node knows (another node's, or garbage): it starts just below the current
    // value and sends it, rather than silently skipping every version up to 8.
    assert.deepEqual(await pastReader.rest(), [
      ready(4),
      keyFrameText("Updated", 5, current.json),
      keyFrameText("Updated", 6, liveJson(6, 6)),
    ]);
    assert.deepEqual(await noneReader.rest(), [ready(0)], "a key that does not exist: position 0");
  },
);

Deno.test("Broker never sends a version twice between replay and live", async () => {
  const broker = makeBroker({ sseHistoryDepth: 2 });
  const events = new EventMaker();
  for (const version of [1, 2, 3]) broker.publish(events.updated({ table: "t", key: "k", version }));
  // The gap is older than the history, and the index is already at version 4, not yet published.
  const current = entryOf({ key: "k", version: 4 });
  const reader = new FrameReader(broker.subscribeKey("t", "k", { lastEventId: 0, current }).stream);
  broker.publish(events.updated({ table: "t", key: "k", version: 4 }));
  broker.publish(events.updated({ table: "t", key: "k", version: 4, value: "same version again" }));
  broker.publish(events.updated({ table: "t", key: "k", version: 5 }));
  broker.close();
  assert.deepEqual(await reader.rest(), [
    ready(0),
    keyResyncText("t", "k"),
    keyFrameText("Updated", 4, current.json),
    keyFrameText("Updated", 5, liveJson(5, 5)),
  ]);
});

Deno.test("Broker.subscribeTable() replays the table history after Last-Event-ID", async () => {
  const broker = makeBroker();
  const events = new EventMaker();
  broker.publish(events.updated({ table: "t", key: "a", version: 1 })); // id 1001
  broker.publish(events.updated({ table: "x", key: "a", version: 1 })); // id 1002
  broker.publish(events.updated({ table: "t", key: "b", version: 1 })); // id 1003
  broker.publish(events.updated({ table: "t", key: "a", version: 2 })); // id 1004
  const reader = new FrameReader(broker.subscribeTable("t", { lastEventId: 1001 }).stream);
  broker.publish(events.deleted({ table: "t", key: "b", version: 2 })); // id 1005
  broker.close();
  assert.deepEqual(await reader.rest(), [
    ready(1001),
    `id: 1003\ndata: {"event":"Updated","table":"t","key":"b","value":${liveJson(1, 1)}}\n\n`,
    `id: 1004\ndata: {"event":"Updated","table":"t","key":"a","value":${liveJson(2, 2)}}\n\n`,
    `id: 1005\ndata: {"event":"Deleted","table":"t","key":"b","value":${tombstoneJson("b", 2)}}\n\n`,
  ]);
});

Deno.test("Broker.subscribeTable() sends Resync when the gap is older than the table history", async () => {
  const broker = makeBroker({ sseHistoryDepth: 2 });
  const events = new EventMaker();
  for (const key of ["a", "b", "c"]) broker.publish(events.updated({ table: "t", key, version: 1 }));
  // `sequence` is ignored: the Resync carries the broker's newest id, 1003.
  const oldReader = new FrameReader(broker.subscribeTable("t", { lastEventId: 0, sequence: 99 }).stream);
  const unseenReader = new FrameReader(broker.subscribeTable("u", { lastEventId: 1001 }).stream);
  const currentReader = new FrameReader(broker.subscribeTable("u", { lastEventId: 1003 }).stream);
  broker.publish(events.updated({ table: "t", key: "a", version: 2 })); // id 1004
  broker.close();
  assert.deepEqual(await oldReader.rest(), [
    ready(0),
    'id: 1003\ndata: {"event":"Resync"}\n\n',
    `id: 1004\ndata: {"event":"Updated","table":"t","key":"a","value":${liveJson(2, 2)}}\n\n`,
  ]);
  assert.deepEqual(await unseenReader.rest(), [ready(1001), 'id: 1003\ndata: {"event":"Resync"}\n\n']);
  assert.deepEqual(await currentReader.rest(), [ready(1003)]);
});

Deno.test("Broker encodes each frame once: every subscriber and the replay get the same bytes", async () => {
  const broker = makeBroker();
  const events = new EventMaker();
  const first = new FrameReader(broker.subscribeKey("t", "k", { current: undefined }).stream);
  const second = new FrameReader(broker.subscribeKey("t", "k", { current: undefined }).stream);
  const tableFirst = new FrameReader(broker.subscribeTable("t", {}).stream);
  const tableSecond = new FrameReader(broker.subscribeTable("t", {}).stream);
  broker.publish(events.updated({ table: "t", key: "k", version: 1 }));
  const replayed = new FrameReader(
    broker.subscribeKey("t", "k", { lastEventId: 0, current: undefined }).stream,
  );
  const readers = [first, second, tableFirst, tableSecond, replayed];
  const positions = [0, 0, 1000, 1000, 0];
  for (const [index, reader] of readers.entries()) {
    assert.equal(await reader.next(), ready(positions[index]!));
  }
  const keyBytes = await first.nextBytes();
  assert.equal(await second.nextBytes(), keyBytes);
  assert.equal(await replayed.nextBytes(), keyBytes);
  const tableBytes = await tableFirst.nextBytes();
  assert.equal(await tableSecond.nextBytes(), tableBytes);
  assert.notEqual(tableBytes, keyBytes);
  for (const reader of readers) await reader.cancel();
  assert.equal(broker.activeCount, 0);
});

Deno.test(
  "Broker.subscribeKey() without Last-Event-ID starts at the newest version it knows: read or " +
    "published since",
  async () => {
    const broker = makeBroker();
    const events = new EventMaker();
    for (const version of [1, 2, 3, 4, 5]) broker.publish(events.updated({ table: "t", key: "k", version }));
    // A remote read answered version 3 while versions 4 and 5 arrived here: the position is 5, not 3.
    const stale = new FrameReader(
      broker.subscribeKey("t", "k", { current: entryOf({ key: "k", version: 3 }) }).stream,
    );
    const tombstone = entryOf({ key: "gone", version: 8, deleted: true });
    const deleted = new FrameReader(broker.subscribeKey("t", "gone", { current: tombstone }).stream);
    broker.publish(events.updated({ table: "t", key: "k", version: 6 }));
    broker.close();
    assert.deepEqual(await stale.rest(), [ready(5), keyFrameText("Updated", 6, liveJson(6, 6))]);
    assert.deepEqual(await deleted.rest(), [ready(8)], "a deleted key's position is its tombstone's version");
  },
);

Deno.test(
  "Broker: a client that reconnects with its ready id before any change gets every change since",
  async () => {
    const broker = makeBroker();
    const events = new EventMaker();
    const fresh = new FrameReader(broker.subscribeKey("t", "k", { current: undefined }).stream);
    const freshTable = new FrameReader(broker.subscribeTable("t", {}).stream);
    assert.equal(await fresh.next(), ready(0));
    assert.equal(await freshTable.next(), ready(1000));
    await fresh.cancel(); // the connection breaks before any change
    await freshTable.cancel();
    for (const version of [1, 2, 3]) broker.publish(events.updated({ table: "t", key: "k", version }));
    // EventSource sends the ready id back as Last-Event-ID.
    const current = entryOf({ key: "k", version: 3 });
    const resumed = new FrameReader(broker.subscribeKey("t", "k", { lastEventId: 0, current }).stream);
    const resumedTable = new FrameReader(broker.subscribeTable("t", { lastEventId: 1000 }).stream);
    broker.close();
    const frame = (version: number) => keyFrameText("Updated", version, liveJson(version, version));
    assert.deepEqual(await resumed.rest(), [ready(0), frame(1), frame(2), frame(3)]);
    const tableTexts = await resumedTable.rest();
    assert.equal(tableTexts[0], ready(1000));
    assert.deepEqual(tableTexts.slice(1).map((text) => text.split("\n")[0]), [
      "id: 1001",
      "id: 1002",
      "id: 1003",
    ]);
  },
);
