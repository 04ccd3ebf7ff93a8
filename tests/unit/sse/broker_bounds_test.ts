// Goal: the Broker keeps every bound of SPEC §4 and §7: subscribers, per-subscriber queues, histories,
// the one keepalive timer; and it cleans up after cancelled streams and on close.
// Method: publish into a Broker with small limits and read its streams; wait on frames, never sleep.
// The keepalive runs on the broker's clock: the tests move a ManualClock and count its armed timers.
import assert from "node:assert/strict";
import { Broker, TooManySubscribersError } from "../../../src/sse/mod.ts";
import { historyFrameOverheadBytes } from "../../../src/sse/broker.ts";
import { SubscriberTooSlowError } from "../../../src/sse/errors.ts";
import { AssertionError } from "../../../src/util/assert.ts";
import { UnavailableError } from "../../../src/util/errors.ts";
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
  recordingLogger,
  testLimits,
  watchKeys,
  withTimeout,
} from "./sse_helpers.ts";

const ready = readyText;

/** The clock reads 1 ms, so table-stream ids start at 1000: the n-th published change has id 1000 + n. */
function makeBroker(overrides: Partial<Limits> = {}): Broker {
  return new Broker({ limits: testLimits(overrides), logger: silentLogger, clock: new ManualClock(1) });
}

Deno.test(
  "Broker disconnects a slow subscriber at sseQueueDepthMax + 1 while a fast one gets everything",
  async () => {
    const logger = recordingLogger();
    const broker = new Broker({ limits: testLimits({ sseQueueDepthMax: 4 }), logger });
    const events = new EventMaker();
    const slow = new FrameReader(broker.subscribeKey("t", "k", { current: undefined }).stream);
    const fast = new FrameReader(broker.subscribeKey("t", "k", { current: undefined }).stream);
    assert.equal(await slow.next(), ready(0));
    assert.equal(await fast.next(), ready(0));
    for (let version = 1; version <= 4; version += 1) {
      broker.publish(events.updated({ table: "t", key: "k", version }));
      assert.equal(await fast.next(), keyFrameText("Updated", version, liveJson(version, version)));
    }
    assert.equal(broker.activeCount, 2, "at sseQueueDepthMax the slow subscriber is still open");
    assert.equal(broker.droppedCount, 0);
    for (let version = 5; version <= 12; version += 1) {
      broker.publish(events.updated({ table: "t", key: "k", version }));
      assert.equal(await fast.next(), keyFrameText("Updated", version, liveJson(version, version)));
    }
    assert.equal(broker.activeCount, 1);
    assert.equal(broker.droppedCount, 1);
    assert.deepEqual(logger.debugMessages, ["sse: disconnected a slow subscriber"]);
    await assert.rejects(slow.reader.read(), SubscriberTooSlowError, "the backlog is dropped, not delivered");
    broker.close();
    assert.deepEqual(await fast.rest(), []);
  },
);

Deno.test("Broker holds sseQueueDepthMax frames for a subscriber that has not read yet", async () => {
  const broker = makeBroker({ sseQueueDepthMax: 3 });
  const events = new EventMaker();
  const reader = new FrameReader(broker.subscribeTable("t", {}).stream);
  assert.equal(await reader.next(), ready(1000));
  for (const key of ["a", "b", "c"]) broker.publish(events.updated({ table: "t", key, version: 1 }));
  assert.equal(broker.droppedCount, 0);
  broker.close();
  assert.equal((await reader.rest()).length, 3);
});

Deno.test("Broker accepts subscribersMax subscriptions and refuses one more", async () => {
  const broker = makeBroker({ subscribersMax: 3 });
  const readers = [
    new FrameReader(broker.subscribeKey("t", "a", { current: undefined }).stream),
    new FrameReader(broker.subscribeKey("t", "b", { current: undefined }).stream),
    new FrameReader(broker.subscribeTable("t", {}).stream),
  ];
  assert.equal(broker.activeCount, 3);
  const refused = (error: unknown) => {
    assert.ok(error instanceof TooManySubscribersError);
    assert.equal(error.code, "too_many_subscribers");
    assert.match(error.message, /3 subscribers are open, limit is subscribersMax=3/);
    return true;
  };
  assert.throws(() => broker.subscribeKey("t", "c", { current: undefined }), refused);
  assert.throws(() => broker.subscribeTable("t", {}), refused);
  assert.equal(broker.activeCount, 3);
  await readers[0]!.cancel();
  const again = new FrameReader(broker.subscribeKey("t", "c", { current: undefined }).stream);
  assert.equal(broker.activeCount, 3);
  broker.close();
  const positions = [0, 1000, 0]; // the key streams start at version 0, the table stream at id 1000
  for (const [index, reader] of [...readers.slice(1), again].entries()) {
    assert.deepEqual(await reader.rest(), [ready(positions[index]!)]);
  }
});

Deno.test("Broker unregisters a cancelled stream and sends it nothing more", async () => {
  const broker = makeBroker();
  const events = new EventMaker();
  const keyReader = new FrameReader(broker.subscribeKey("t", "k", { current: undefined }).stream);
  const tableReader = new FrameReader(broker.subscribeTable("t", {}).stream);
  assert.equal(broker.activeCount, 2);
  await keyReader.cancel();
  assert.equal(broker.activeCount, 1);
  assert.equal(broker.keepaliveRunning, true);
  await tableReader.cancel();
  assert.equal(broker.activeCount, 0);
  assert.equal(broker.keepaliveRunning, false, "the last subscriber left: the timer stops");
  broker.publish(events.updated({ table: "t", key: "k", version: 1 })); // nobody left: must not throw
});

Deno.test("Subscription.close() ends the stream after the queued frames and unregisters it", async () => {
  const broker = makeBroker();
  const events = new EventMaker();
  const subscription = broker.subscribeKey("t", "k", { current: undefined });
  const reader = new FrameReader(subscription.stream);
  broker.publish(events.updated({ table: "t", key: "k", version: 1 }));
  subscription.close();
  subscription.close();
  assert.equal(broker.activeCount, 0);
  assert.equal(broker.keepaliveRunning, false);
  broker.publish(events.updated({ table: "t", key: "k", version: 2 }));
  assert.deepEqual(await reader.rest(), [ready(0), keyFrameText("Updated", 1, liveJson(1, 1))]);
});

Deno.test(
  "Broker sends one shared keepalive to every open stream every sseKeepaliveMs of its clock",
  async () => {
    const clock = new ManualClock(1);
    const broker = new Broker({ limits: testLimits({ sseKeepaliveMs: 20 }), logger: silentLogger, clock });
    const events = new EventMaker();
    const first = new FrameReader(broker.subscribeKey("t", "k", { current: undefined }).stream);
    const second = new FrameReader(broker.subscribeTable("t", {}).stream);
    assert.equal(await first.next(), ready(0));
    assert.equal(await second.next(), ready(1000));
    assert.equal(clock.timerCount, 1, "one timer for every stream");
    clock.advance(19);
    // Not due yet: the next frame of each stream is a change published after the 19 ms.
    broker.publish(events.updated({ table: "t", key: "k", version: 1 }));
    assert.equal(await first.next(), keyFrameText("Updated", 1, liveJson(1, 1)));
    await second.next();
    clock.advance(1);
    const firstKeepalive = await withTimeout(first.nextBytes(), 2_000);
    const secondKeepalive = await withTimeout(second.nextBytes(), 2_000);
    assert.equal(new TextDecoder().decode(firstKeepalive), ": keepalive\n\n");
    assert.equal(secondKeepalive, firstKeepalive, "one Uint8Array for every stream");
    clock.advance(20);
    assert.equal(await withTimeout(first.next(), 2_000), ": keepalive\n\n", "it repeats");
    assert.equal(clock.timerCount, 1);
    await first.cancel();
    await second.cancel();
    assert.equal(broker.keepaliveRunning, false);
    assert.equal(clock.timerCount, 0, "the last subscriber left: no timer is left armed");
  },
);

Deno.test(
  "Broker restarts the keepalive timer for a subscriber that arrives after all had left",
  async () => {
    const clock = new ManualClock(1);
    const broker = new Broker({ limits: testLimits({ sseKeepaliveMs: 20 }), logger: silentLogger, clock });
    assert.equal(broker.keepaliveRunning, false, "no timer before the first subscriber");
    await new FrameReader(broker.subscribeKey("t", "k", { current: undefined }).stream).cancel();
    assert.equal(broker.activeCount, 0);
    assert.equal(broker.keepaliveRunning, false);
    assert.equal(clock.timerCount, 0);
    const reader = new FrameReader(broker.subscribeKey("t", "k", { current: undefined }).stream);
    assert.equal(await reader.next(), ready(0));
    clock.advance(20);
    assert.equal(await withTimeout(reader.next(), 2_000), ": keepalive\n\n");
    broker.close();
    assert.deepEqual(await reader.rest(), []);
    assert.equal(clock.timerCount, 0, "close() clears the keepalive's timer");
  },
);

Deno.test(
  "Broker replays sseHistoryDepth versions of a key, and falls back to Resync and the current value " +
    "past it",
  async () => {
    const broker = makeBroker({ sseHistoryDepth: 3 });
    const events = new EventMaker();
    watchKeys(broker, "t", ["k"]);
    for (const version of [1, 2, 3]) broker.publish(events.updated({ table: "t", key: "k", version }));
    const atMax = new FrameReader(
      broker.subscribeKey("t", "k", { lastEventId: 0, current: entryOf({ key: "k", version: 3 }) }).stream,
    );
    broker.publish(events.updated({ table: "t", key: "k", version: 4 }));
    const current = entryOf({ key: "k", version: 4 });
    const overMax = new FrameReader(broker.subscribeKey("t", "k", { lastEventId: 0, current }).stream);
    const withinMax = new FrameReader(broker.subscribeKey("t", "k", { lastEventId: 1, current }).stream);
    broker.close();
    const frame = (version: number) => keyFrameText("Updated", version, liveJson(version, version));
    assert.deepEqual(await atMax.rest(), [ready(0), frame(1), frame(2), frame(3), frame(4)]);
    assert.deepEqual(await overMax.rest(), [
      ready(0),
      keyResyncText("t", "k"),
      keyFrameText("Updated", 4, current.json),
    ]);
    assert.deepEqual(await withinMax.rest(), [ready(1), frame(2), frame(3), frame(4)]);
  },
);

Deno.test("Broker remembers sseHistoryKeysMax keys and forgets the least recently changed one", async () => {
  const broker = makeBroker({ sseHistoryKeysMax: 2 });
  const events = new EventMaker();
  const frame = (version: number) => keyFrameText("Updated", version, liveJson(version, version));
  const resume = (key: string, version: number) =>
    new FrameReader(
      broker.subscribeKey("t", key, { lastEventId: 0, current: entryOf({ key, version }) }).stream,
    );
  watchKeys(broker, "t", ["a", "b"]);
  broker.publish(events.updated({ table: "t", key: "a", version: 1 }));
  broker.publish(events.updated({ table: "t", key: "b", version: 1 }));
  broker.publish(events.updated({ table: "t", key: "a", version: 2 })); // a is now the most recent
  const aAtMax = resume("a", 2);
  const bAtMax = resume("b", 1);
  broker.publish(events.updated({ table: "t", key: "c", version: 7 })); // b is forgotten
  const aOverMax = resume("a", 2);
  const bOverMax = resume("b", 1);
  broker.close();
  assert.deepEqual(await aAtMax.rest(), [ready(0), frame(1), frame(2)]);
  assert.deepEqual(await bAtMax.rest(), [ready(0), frame(1)]);
  assert.deepEqual(await aOverMax.rest(), [ready(0), frame(1), frame(2)], "replayed from history");
  const bCurrent = entryOf({ key: "b", version: 1 });
  assert.deepEqual(await bOverMax.rest(), [ready(0), keyFrameText("Updated", 1, bCurrent.json)]);
});

Deno.test("Broker remembers sseHistoryKeysMax tables and sends Resync for a forgotten one", async () => {
  const broker = makeBroker({ sseHistoryKeysMax: 2 });
  const events = new EventMaker();
  broker.publish(events.updated({ table: "t", key: "a", version: 1 })); // id 1001
  broker.publish(events.updated({ table: "u", key: "a", version: 1 })); // id 1002
  const tAtMax = new FrameReader(broker.subscribeTable("t", { lastEventId: 1000 }).stream);
  broker.publish(events.updated({ table: "v", key: "a", version: 1 })); // id 1003, t is forgotten
  const tOverMax = new FrameReader(broker.subscribeTable("t", { lastEventId: 1000 }).stream);
  broker.close();
  assert.deepEqual(await tAtMax.rest(), [
    ready(1000),
    `id: 1001\ndata: {"event":"Updated","table":"t","key":"a","value":${liveJson(1, 1)}}\n\n`,
  ]);
  assert.deepEqual(await tOverMax.rest(), [ready(1000), 'id: 1003\ndata: {"event":"Resync"}\n\n']);
});

Deno.test("Broker.close() ends every stream and refuses new subscriptions", async () => {
  const broker = makeBroker();
  const reader = new FrameReader(broker.subscribeTable("t", {}).stream);
  broker.close();
  assert.equal(broker.activeCount, 0);
  assert.equal(broker.keepaliveRunning, false);
  assert.deepEqual(await reader.rest(), [ready(1000)]);
  assert.throws(() => broker.subscribeKey("t", "k", { current: undefined }), UnavailableError);
  broker.publish(new EventMaker().updated({ table: "t", key: "k", version: 1 }));
});

Deno.test(
  "Broker.publish() ignores event.sequence and asserts the version is a positive safe integer",
  () => {
    const broker = makeBroker();
    const events = new EventMaker();
    const first = events.updated({ table: "t", key: "k", version: 1 });
    broker.publish({ ...first, sequence: 0 }); // a forwarded change has no local sequence
    broker.publish({ ...first, key: "j", sequence: 0 });
    assert.equal(broker.publishedVersionCount, 2);
    assert.throws(() => broker.publish({ ...first, version: 0 }), AssertionError);
    assert.throws(() => broker.publish({ ...first, version: 2.5 }), AssertionError);
  },
);

Deno.test("Broker asserts that its first table-stream id is a positive safe integer", () => {
  const limits = testLimits();
  assert.throws(
    () => new Broker({ limits, logger: silentLogger, clock: new ManualClock(0) }),
    AssertionError,
  );
  const farFuture = new ManualClock(Number.MAX_SAFE_INTEGER / 100);
  assert.throws(() => new Broker({ limits, logger: silentLogger, clock: farFuture }), AssertionError);
});

/**
 * Bytes counted for the key and table frames of an `Updated` of a one-letter key, one-digit version,
 * 4-digit id: each frame's bytes plus the per-frame overhead.
 */
function eventBytes(): { keyFrameBytes: number; tableFrameBytes: number } {
  const encoder = new TextEncoder();
  const json = liveJson(1, 1);
  const tableFrame = `id: 1001\ndata: {"event":"Updated","table":"t","key":"a","value":${json}}\n\n`;
  return {
    keyFrameBytes: encoder.encode(keyFrameText("Updated", 1, json)).length + historyFrameOverheadBytes,
    tableFrameBytes: encoder.encode(tableFrame).length + historyFrameOverheadBytes,
  };
}

Deno.test(
  "Broker.historyBytes counts key and table frames with their overhead, within sseHistoryBytesMax",
  () => {
    const { keyFrameBytes, tableFrameBytes } = eventBytes();
    const broker = makeBroker({ sseHistoryBytesMax: 2 * (keyFrameBytes + tableFrameBytes) });
    const events = new EventMaker();
    for (const [table, key] of [["t", "a"], ["u", "b"], ["v", "c"]]) watchKeys(broker, table!, [key!]);
    assert.equal(broker.historyBytes, 0);
    broker.publish(events.updated({ table: "t", key: "a", version: 1 }));
    assert.equal(broker.historyBytes, keyFrameBytes + tableFrameBytes);
    broker.publish(events.updated({ table: "u", key: "b", version: 1 }));
    assert.equal(broker.historyBytes, 2 * (keyFrameBytes + tableFrameBytes), "at sseHistoryBytesMax");
    broker.publish(events.updated({ table: "v", key: "c", version: 1 }));
    assert.equal(broker.historyBytes, 2 * (keyFrameBytes + tableFrameBytes), "one over: the oldest went");
  },
);

Deno.test("Broker resumes a key or table evicted by sseHistoryBytesMax: value, Resync", async () => {
  const { keyFrameBytes, tableFrameBytes } = eventBytes();
  const broker = makeBroker({ sseHistoryBytesMax: 2 * (keyFrameBytes + tableFrameBytes) });
  const events = new EventMaker();
  const current = entryOf({ key: "a", version: 1 });
  const resumeKey = () => new FrameReader(broker.subscribeKey("t", "a", { lastEventId: 0, current }).stream);
  const resumeTable = () => new FrameReader(broker.subscribeTable("t", { lastEventId: 1000 }).stream);
  for (const [table, key] of [["t", "a"], ["u", "b"], ["v", "c"]]) watchKeys(broker, table!, [key!]);
  broker.publish(events.updated({ table: "t", key: "a", version: 1 })); // id 1001
  broker.publish(events.updated({ table: "u", key: "b", version: 1 })); // id 1002: at the max
  const keyAtMax = resumeKey();
  const tableAtMax = resumeTable();
  broker.publish(events.updated({ table: "v", key: "c", version: 1 })); // id 1003: a and t are forgotten
  const keyOverMax = resumeKey();
  const tableOverMax = resumeTable();
  const keptKey = new FrameReader(broker.subscribeKey("u", "b", { lastEventId: 0, current }).stream);
  broker.close();
  const tableFrame = `id: 1001\ndata: {"event":"Updated","table":"t","key":"a","value":${
    liveJson(1, 1)
  }}\n\n`;
  assert.deepEqual(await keyAtMax.rest(), [ready(0), keyFrameText("Updated", 1, liveJson(1, 1))]);
  assert.deepEqual(await tableAtMax.rest(), [ready(1000), tableFrame]);
  assert.deepEqual(await keyOverMax.rest(), [ready(0), keyFrameText("Updated", 1, current.json)]);
  assert.deepEqual(await tableOverMax.rest(), [ready(1000), 'id: 1003\ndata: {"event":"Resync"}\n\n']);
  assert.deepEqual(
    await keptKey.rest(),
    [ready(0), keyFrameText("Updated", 1, liveJson(1, 1))],
    "b is kept",
  );
});
