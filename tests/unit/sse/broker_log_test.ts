// Goal: a stream resumes from the change log, not from luck (SPEC §4b): changes older than the in-memory
// histories, of keys nobody watched here, and from before a restart are replayed exactly, each once and in
// order, with the live changes published during the replay after them; a gap the log cannot fill is a
// Resync. Method: a real ChangeLog on MemoryFs behind a Broker with tiny in-memory histories; streams read
// frame by frame and parsed; every change names itself (key, version) so the check is exact.
import assert from "node:assert/strict";
import { Broker } from "../../../src/sse/mod.ts";
import { ChangeLog } from "../../../src/store/change_log.ts";
import { MemoryFs } from "../../../src/store/fs.ts";
import { ManualClock } from "../../../src/util/clock.ts";
import { silentLogger } from "../../../src/util/log.ts";
import { testEncryption } from "../../helpers/test_key.ts";
import {
  entryOf,
  EventMaker,
  FrameReader,
  type SeenEvent,
  seenOf,
  streamBlocksOf,
  testLimits,
  withTimeout,
} from "./sse_helpers.ts";

type Seen = SeenEvent;

function parseFrame(text: string): Seen[] {
  return streamBlocksOf(text).map(seenOf);
}

async function readEvents(reader: FrameReader, count: number): Promise<Seen[]> {
  const seen: Seen[] = [];
  while (seen.length < count) seen.push(...parseFrame(await withTimeout(reader.next(), 2_000)));
  return seen;
}

async function openLog(fs: MemoryFs, clock = new ManualClock(1_700_000_000_000)) {
  return await ChangeLog.open({
    dir: "/data",
    fs,
    encryption: testEncryption,
    clock,
    logger: silentLogger,
    retention: { ageMs: 600_000, recordsMax: 100_000, bytesMax: 64 << 20 },
    batchBytesMax: 2_000,
  });
}

function brokerOf(log: ChangeLog): Broker {
  // Memory holds 2 frames per history: every resume below is answered from the log.
  const limits = testLimits({ sseHistoryDepth: 2, sseHistoryKeysMax: 2 });
  return new Broker({ limits, logger: silentLogger, history: log });
}

Deno.test(
  "Broker resumes a table stream from the change log, then the live changes that came during the " +
    "replay",
  async () => {
    const fs = new MemoryFs();
    const log = await openLog(fs);
    const broker = brokerOf(log);
    const events = new EventMaker();
    const first = broker.subscribeTable("t", {});
    const firstReader = new FrameReader(first.stream);
    const ready = parseFrame(await firstReader.next())[0]!;
    for (let version = 1; version <= 400; version += 1) {
      broker.publish(events.updated({ table: "t", key: `k${version % 7}`, version: Math.ceil(version / 7) }));
    }
    const sent = await readEvents(firstReader, 400);
    await firstReader.cancel();
    await log.flush(); // part of the replay from disk, the newest batch from memory
    const resumeFrom = Number(sent[99]!.id);
    const resumed = broker.subscribeTable("t", { lastEventId: resumeFrom });
    // Published while the replay has not been read: held back, then sent after it.
    broker.publish(events.updated({ table: "t", key: "live", version: 1 }));
    const reader = new FrameReader(resumed.stream);
    assert.deepEqual(parseFrame(await reader.next()), [{ id: String(resumeFrom), event: "Ready" }]);
    const replayed = await readEvents(reader, 301);
    assert.deepEqual(replayed.slice(0, 300), sent.slice(100), "every change after the position, exactly");
    assert.deepEqual(replayed[300]!.key, "live");
    assert.equal(Number(replayed[300]!.id), Number(sent[399]!.id) + 1);
    assert.equal(ready.event, "Ready");
    broker.close();
    await log.close();
  },
);

Deno.test(
  "Broker resumes a key nobody watched on this node from the change log, each version once",
  async () => {
    const fs = new MemoryFs();
    const log = await openLog(fs);
    const broker = brokerOf(log);
    const events = new EventMaker();
    for (let version = 1; version <= 50; version += 1) {
      broker.publish(events.updated({ table: "t", key: "a", version }));
      broker.publish(events.updated({ table: "t", key: `other${version}`, version: 1 }));
    }
    const current = entryOf({ key: "a", version: 50 });
    const resumed = broker.subscribeKey("t", "a", { lastEventId: 40, current });
    broker.publish(events.updated({ table: "t", key: "a", version: 51 }));
    const reader = new FrameReader(resumed.stream);
    assert.deepEqual(parseFrame(await reader.next()), [{ id: "40", event: "Ready" }]);
    const replayed = await readEvents(reader, 11);
    assert.deepEqual(
      replayed.map((seen) => [seen.id, seen.event, seen.version]),
      Array.from({ length: 11 }, (_, index) => [String(41 + index), "Updated", 41 + index]),
    );
    broker.close();
    await log.close();
  },
);

/** A broker over a log on MemoryFs, `count` versions of t/k published and read by a table stream. */
async function publishedOnATable(count: number) {
  const fs = new MemoryFs();
  const clock = new ManualClock(1_700_000_000_000);
  const log = await openLog(fs, clock);
  const broker = brokerOf(log);
  const events = new EventMaker();
  const stream = new FrameReader(broker.subscribeTable("t", {}).stream);
  await stream.next();
  for (let version = 1; version <= count; version += 1) {
    broker.publish(events.updated({ table: "t", key: "k", version }));
  }
  return { fs, clock, log, broker, events, stream, sent: await readEvents(stream, count) };
}

Deno.test("Broker after a restart continues the ids and resumes a table stream from before it", async () => {
  const { fs, clock, log, broker, events, sent } = await publishedOnATable(30);
  broker.close();
  await log.close();
  clock.advance(10_000);
  const reopened = await openLog(fs, clock);
  const restarted = brokerOf(reopened);
  const resumed = new FrameReader(restarted.subscribeTable("t", { lastEventId: Number(sent[9]!.id) }).stream);
  await resumed.next();
  restarted.publish(events.updated({ table: "t", key: "k", version: 31 }));
  const replayed = await readEvents(resumed, 21);
  assert.deepEqual(replayed.slice(0, 20), sent.slice(10));
  assert.ok(Number(replayed[20]!.id) > Number(sent[29]!.id), "ids keep growing across the restart");
  restarted.close();
  await reopened.close();
});

Deno.test(
  "Broker answers a table resume across a crash's gap with a Resync, never a silent skip",
  async () => {
    const { fs, clock, log, broker, events, stream, sent } = await publishedOnATable(20);
    await log.flush();
    broker.publish(events.updated({ table: "t", key: "k", version: 21 })); // sent, never written
    const lost = await readEvents(stream, 1);
    const crashed = fs.crashCopy({ keepUnsynced: true });
    broker.close();
    await log.close();
    clock.advance(5_000);
    const reopened = await openLog(crashed, clock);
    const restarted = brokerOf(reopened);
    // The client that got the lost change, and one that stopped before it: both meet the gap.
    for (const position of [Number(lost[0]!.id), Number(sent[15]!.id)]) {
      const resumed = new FrameReader(restarted.subscribeTable("t", { lastEventId: position }).stream);
      await resumed.next();
      const replayed = await readEvents(resumed, position === Number(lost[0]!.id) ? 1 : 5);
      assert.equal(replayed.at(-1)!.event, "Resync", JSON.stringify(replayed));
      assert.ok(replayed.slice(0, -1).every((seen) => seen.event === "Updated"));
      await resumed.cancel();
    }
    restarted.close();
    await reopened.close();
  },
);

Deno.test(
  "Broker disconnects a resuming subscriber whose held live frames pass the queue bound",
  async () => {
    const fs = new MemoryFs();
    const log = await openLog(fs);
    const limits = testLimits({ sseHistoryDepth: 2, sseHistoryKeysMax: 2, sseQueueDepthMax: 8 });
    const broker = new Broker({ limits, logger: silentLogger, history: log });
    const events = new EventMaker();
    for (let version = 1; version <= 100; version += 1) {
      broker.publish(events.updated({ table: "t", key: "k", version }));
    }
    const resumed = broker.subscribeTable("t", { lastEventId: log.floorSeq });
    let ended = false;
    resumed.onEnd(() => ended = true);
    // The client reads nothing: the replay waits for room, and the live frames pile up to the bound.
    for (let version = 101; version <= 120; version += 1) {
      broker.publish(events.updated({ table: "t", key: "k", version }));
    }
    assert.ok(ended, "the stream stopped at the bound");
    assert.equal(broker.droppedCount, 1);
    assert.equal(broker.activeCount, 0);
    broker.close();
    await log.close();
  },
);

Deno.test(
  "Broker.subscribeMulti() sends the changes of its tables and keys once each, and resumes them from " +
    "the log",
  async () => {
    const fs = new MemoryFs();
    const log = await openLog(fs);
    const broker = brokerOf(log);
    const events = new EventMaker();
    const sources = { tables: ["a"], keys: [{ table: "b", key: "x" }, { table: "a", key: "k1" }] };
    const reader = new FrameReader(broker.subscribeMulti(sources, {}).stream);
    const ready = parseFrame(await reader.next())[0]!;
    let version = 0;
    for (const [table, key] of [["a", "k1"], ["b", "x"], ["b", "y"], ["c", "x"], ["a", "k2"], ["b", "x"]]) {
      broker.publish(events.updated({ table: table!, key: key!, version: ++version }));
    }
    const seen = await readEvents(reader, 4);
    // The change of a/k1 matches two sources and is sent once; b/y and c/x are no source's.
    assert.deepEqual(seen.map((event) => [event.key, event.version]), [["k1", 1], ["x", 2], ["k2", 5], [
      "x",
      6,
    ]]);
    assert.ok(seen.every((event, index) => index === 0 || Number(event.id) > Number(seen[index - 1]!.id)));
    await reader.cancel();
    // Resumed after its first change, from the change log (memory holds no multiplexed history).
    const resumed = new FrameReader(
      broker.subscribeMulti(sources, { lastEventId: Number(seen[0]!.id) }).stream,
    );
    await resumed.next();
    assert.deepEqual(await readEvents(resumed, 3), seen.slice(1));
    assert.equal(ready.id, String(log.nextSeq - 7));
    broker.close();
    await log.close();
  },
);
