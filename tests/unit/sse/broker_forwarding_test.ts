// Goal: the Broker takes changes both from the local store and forwarded by a key's coordinator: its
// table-stream ids are its own and grow across restarts, a key's duplicate or late version is dropped,
// a key resume past the history sends the current value and the newer remembered changes, and a table
// resume from an id this broker never gave out gets a Resync.
// Method: publish ChangeEvents (sequences are meaningless here) into Brokers on a ManualClock and read
// their streams; no sockets, no sleeps.
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

function makeBroker(options: { clock?: ManualClock; limits?: Partial<Limits> } = {}): Broker {
  const clock = options.clock ?? new ManualClock(1);
  return new Broker({ limits: testLimits(options.limits ?? {}), logger: silentLogger, clock });
}

function tableFrame(id: number, key: string, version: number): string {
  return `id: ${id}\ndata: {"event":"Updated","table":"t","key":"${key}","value":${
    liveJson(version, version)
  }}\n\n`;
}

function keyFrame(version: number): string {
  return keyFrameText("Updated", version, liveJson(version, version));
}

/** The `id:` of a frame's text. */
function idOf(frameText: string): number {
  const match = /^id: (\d+)\n/.exec(frameText);
  assert.ok(match !== null, `not a frame with an id: ${JSON.stringify(frameText)}`);
  return Number(match[1]);
}

Deno.test(
  "Broker table-stream ids start at clock.nowMs() * 1000, grow by 1 and keep growing in a later " +
    "Broker",
  async () => {
    const clock = new ManualClock();
    const first = makeBroker({ clock });
    const events = new EventMaker();
    const firstReader = new FrameReader(first.subscribeTable("t", {}).stream);
    for (const key of ["a", "b", "c"]) first.publish(events.updated({ table: "t", key, version: 1 }));
    first.close();
    const firstIds = (await firstReader.rest()).slice(1).map(idOf);
    const startId = 1_700_000_000_000 * 1000;
    assert.deepEqual(firstIds, [startId + 1, startId + 2, startId + 3]);
    clock.advance(1); // a restart: a new Broker, a millisecond later, and sequences starting over
    const second = makeBroker({ clock });
    const restarted = new EventMaker();
    const secondReader = new FrameReader(second.subscribeTable("t", {}).stream);
    second.publish(restarted.updated({ table: "t", key: "a", version: 2 }));
    // A client resuming from the first Broker's id has a gap older than this Broker's history.
    const resumed = new FrameReader(second.subscribeTable("t", { lastEventId: firstIds[2]! }).stream);
    second.close();
    const secondIds = (await secondReader.rest()).slice(1).map(idOf);
    assert.deepEqual(secondIds, [startId + 1000 + 1]);
    assert.ok(secondIds[0]! > firstIds[2]!, "ids keep growing across a restart");
    assert.deepEqual(await resumed.rest(), [
      ready(firstIds[2]!),
      `id: ${startId + 1001}\ndata: {"event":"Resync"}\n\n`,
    ]);
  },
);

Deno.test(
  "Broker.publish() drops a key's duplicate and late versions, and numbers only what it publishes",
  async () => {
    const broker = makeBroker();
    const local = new EventMaker();
    const keyReader = new FrameReader(broker.subscribeKey("t", "k", { current: undefined }).stream);
    const tableReader = new FrameReader(broker.subscribeTable("t", {}).stream);
    broker.publish(local.updated({ table: "t", key: "k", version: 1 })); // id 1001
    broker.publish(local.updated({ table: "t", key: "k", version: 2 })); // id 1002
    const forwarded = { ...local.updated({ table: "t", key: "k", version: 2 }), sequence: 0 };
    broker.publish(forwarded); // the same change again, forwarded: dropped
    broker.publish({ ...local.updated({ table: "t", key: "k", version: 1 }), sequence: 0 }); // late: dropped
    broker.publish(local.updated({ table: "t", key: "j", version: 1 })); // id 1003: another key
    broker.publish(local.deleted({ table: "t", key: "k", version: 5 })); // id 1004: 3 and 4 were skipped
    assert.equal(broker.publishedVersionCount, 2);
    broker.close();
    const deleted = keyFrameText("Deleted", 5, tombstoneJson("k", 5));
    assert.deepEqual(await keyReader.rest(), [
      ready(0),
      keyFrame(1),
      keyFrame(2),
      keyResyncText("t", "k"),
      deleted,
    ]);
    const tableTexts = await tableReader.rest();
    assert.deepEqual(tableTexts.slice(1, 4), [
      tableFrame(1001, "k", 1),
      tableFrame(1002, "k", 2),
      tableFrame(1003, "j", 1),
    ]);
    // The skip is announced on the table stream too: the Resync and the change are one frame, id 1004.
    assert.equal(
      tableTexts[4],
      keyResyncText("t", "k") +
        `id: 1004\ndata: {"event":"Deleted","table":"t","key":"k","value":${tombstoneJson("k", 5)}}\n\n`,
    );
    assert.equal(tableTexts.length, 5);
  },
);

Deno.test(
  "Broker remembers the published versions of sseHistoryKeysMax keys and forgets the least recently " +
    "changed",
  async () => {
    const broker = makeBroker({ limits: { sseHistoryKeysMax: 2 } });
    const events = new EventMaker();
    const keyReader = new FrameReader(broker.subscribeKey("t", "a", { current: undefined }).stream);
    broker.publish(events.updated({ table: "t", key: "a", version: 1 }));
    broker.publish(events.updated({ table: "t", key: "b", version: 1 }));
    assert.equal(broker.publishedVersionCount, 2, "at sseHistoryKeysMax");
    broker.publish(events.updated({ table: "t", key: "b", version: 1 })); // b is still tracked: dropped
    broker.publish(events.updated({ table: "t", key: "c", version: 1 })); // a is forgotten
    assert.equal(broker.publishedVersionCount, 2, "one over: the least recently changed went");
    const tableReader = new FrameReader(broker.subscribeTable("t", {}).stream);
    // a's version is no longer tracked, so its late duplicate reaches the table stream; the key stream
    // still drops it, since each subscriber sends versions in increasing order only.
    broker.publish(events.updated({ table: "t", key: "a", version: 1 }));
    broker.publish(events.updated({ table: "t", key: "a", version: 2 }));
    broker.close();
    assert.deepEqual(await keyReader.rest(), [ready(0), keyFrame(1), keyFrame(2)]);
    assert.deepEqual(await tableReader.rest(), [
      ready(1003),
      tableFrame(1004, "a", 1),
      tableFrame(1005, "a", 2),
    ]);
  },
);

Deno.test(
  "Broker.subscribeKey() past the history sends the current value, then the newer remembered versions",
  async () => {
    const broker = makeBroker({ limits: { sseHistoryDepth: 2 } });
    const events = new EventMaker();
    watchKeys(broker, "t", ["k"]);
    for (const version of [1, 2, 3]) broker.publish(events.updated({ table: "t", key: "k", version }));
    // The caller read version 3 from the store; versions 4 and 5 were published before it subscribed.
    const current = entryOf({ key: "k", version: 3, value: "read" });
    for (const version of [4, 5]) broker.publish(events.updated({ table: "t", key: "k", version }));
    const reader = new FrameReader(broker.subscribeKey("t", "k", { lastEventId: 1, current }).stream);
    // Current is even older than the history (which holds 4 and 5): the client gets it and the newest.
    const older = entryOf({ key: "k", version: 2, value: "stale read" });
    const olderReader = new FrameReader(
      broker.subscribeKey("t", "k", { lastEventId: 1, current: older }).stream,
    );
    // No current value at all (the key was absent when read): the remembered versions after lastEventId.
    const noneReader = new FrameReader(
      broker.subscribeKey("t", "k", { lastEventId: 2, current: undefined }).stream,
    );
    broker.publish(events.updated({ table: "t", key: "k", version: 6 }));
    broker.close();
    const expected = [keyFrame(4), keyFrame(5), keyFrame(6)];
    const resync = keyResyncText("t", "k");
    // Version 2 (the history holds only 4 and 5) cannot be produced: the jump to 3 is announced.
    assert.deepEqual(await reader.rest(), [
      ready(1),
      resync,
      keyFrameText("Updated", 3, current.json),
      ...expected,
    ]);
    // Version 2 follows 1; version 3 is neither remembered nor read: the jump to 4 is announced.
    assert.deepEqual(await olderReader.rest(), [
      ready(1),
      keyFrameText("Updated", 2, older.json),
      resync,
      ...expected,
    ]);
    assert.deepEqual(await noneReader.rest(), [ready(2), resync, ...expected], "3 is lost: announced");
  },
);

Deno.test(
  "Broker.subscribeTable() sends Resync for a Last-Event-ID beyond its newest id, then goes live",
  async () => {
    const broker = makeBroker();
    const events = new EventMaker();
    const beforeAny = new FrameReader(broker.subscribeTable("t", { lastEventId: 1001 }).stream);
    broker.publish(events.updated({ table: "t", key: "a", version: 1 })); // id 1001
    const atNewest = new FrameReader(broker.subscribeTable("t", { lastEventId: 1001 }).stream);
    const oneOver = new FrameReader(broker.subscribeTable("t", { lastEventId: 1002 }).stream);
    const farOver = new FrameReader(broker.subscribeTable("t", { lastEventId: 5_000_000 }).stream);
    broker.publish(events.updated({ table: "t", key: "b", version: 1 })); // id 1002
    broker.close();
    const live = tableFrame(1002, "b", 1);
    assert.deepEqual(await beforeAny.rest(), [
      ready(999),
      'id: 1000\ndata: {"event":"Resync"}\n\n',
      tableFrame(1001, "a", 1),
      live,
    ]);
    assert.deepEqual(await atNewest.rest(), [ready(1001), live], "at the newest id: no gap");
    assert.deepEqual(await oneOver.rest(), [ready(1000), 'id: 1001\ndata: {"event":"Resync"}\n\n', live]);
    assert.deepEqual(await farOver.rest(), [ready(1000), 'id: 1001\ndata: {"event":"Resync"}\n\n', live]);
  },
);
