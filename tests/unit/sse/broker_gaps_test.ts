// Goal: SPEC §4b "No silent gaps": on one connection the events of a key form an unbroken run of versions,
// or the jump is announced by the key's Resync (`data: {"event":"Resync","table":..,"key":..}`, no id)
// right before the version after it; live and replayed, on key and table streams. A change without a
// gap costs no Resync anywhere.
// Method: publish ChangeEvents that skip versions (as a node that missed some would receive them) into a
// Broker and read its streams with real Subscribers; no sockets, no sleeps.
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
  watchKeys,
} from "./sse_helpers.ts";

const ready = readyText;
const resyncK = keyResyncText("t", "k");

/** The clock reads 1 ms, so table-stream ids start at 1000: the n-th published change has id 1000 + n. */
function makeBroker(overrides: Partial<Limits> = {}): Broker {
  return new Broker({ limits: testLimits(overrides), logger: silentLogger, clock: new ManualClock(1) });
}

function keyFrame(version: number): string {
  return keyFrameText("Updated", version, liveJson(version, version));
}

function tableFrame(id: number, key: string, version: number, table = "t"): string {
  return `id: ${id}\ndata: {"event":"Updated","table":"${table}","key":"${key}","value":${
    liveJson(version, version)
  }}\n\n`;
}

Deno.test(
  "Broker key stream: a version after a gap comes after the key's Resync, the same bytes for every " +
    "subscriber",
  async () => {
    const broker = makeBroker();
    const events = new EventMaker();
    const first = new FrameReader(broker.subscribeKey("t", "k", { current: undefined }).stream);
    const second = new FrameReader(broker.subscribeKey("t", "k", { current: undefined }).stream);
    const other = new FrameReader(broker.subscribeKey("t", "j", { current: undefined }).stream);
    for (const version of [1, 2]) broker.publish(events.updated({ table: "t", key: "k", version }));
    broker.publish(events.updated({ table: "t", key: "j", version: 1 }));
    broker.publish(events.updated({ table: "t", key: "k", version: 5 })); // this node missed 3 and 4
    broker.publish(events.updated({ table: "t", key: "k", version: 6 }));
    for (const reader of [first, second]) {
      for (const expected of [ready(0), keyFrame(1), keyFrame(2)]) {
        assert.equal(await reader.next(), expected);
      }
    }
    const resyncBytes = await first.nextBytes();
    assert.equal(await second.nextBytes(), resyncBytes, "encoded once for the publish");
    broker.close();
    assert.equal(new TextDecoder().decode(resyncBytes), resyncK);
    assert.deepEqual(await first.rest(), [keyFrame(5), keyFrame(6)], "no Resync once the run goes on");
    assert.deepEqual(await second.rest(), [keyFrame(5), keyFrame(6)]);
    assert.deepEqual(await other.rest(), [ready(0), keyFrame(1)], "another key's stream is not told");
  },
);

Deno.test(
  "Broker: consecutive versions and dropped duplicates send no Resync on key or table streams",
  async () => {
    const broker = makeBroker();
    const events = new EventMaker();
    const keyReader = new FrameReader(broker.subscribeKey("t", "k", { current: undefined }).stream);
    const tableReader = new FrameReader(broker.subscribeTable("t", {}).stream);
    for (const version of [1, 2, 3]) broker.publish(events.updated({ table: "t", key: "k", version }));
    broker.publish(events.updated({ table: "t", key: "k", version: 3, value: "the same version again" }));
    broker.publish(events.updated({ table: "t", key: "k", version: 2, value: "late" }));
    broker.publish(events.updated({ table: "t", key: "k", version: 4 }));
    broker.close();
    assert.deepEqual(await keyReader.rest(), [ready(0), keyFrame(1), keyFrame(2), keyFrame(3), keyFrame(4)]);
    assert.deepEqual(await tableReader.rest(), [
      ready(1000),
      tableFrame(1001, "k", 1),
      tableFrame(1002, "k", 2),
      tableFrame(1003, "k", 3),
      tableFrame(1004, "k", 4),
    ]);
  },
);

Deno.test(
  "Broker table stream: a key that skipped versions gets its Resync before the change, for every " +
    "subscriber of the table",
  async () => {
    const broker = makeBroker();
    const events = new EventMaker();
    const readers = [0, 1].map(() => new FrameReader(broker.subscribeTable("t", {}).stream));
    const otherTable = new FrameReader(broker.subscribeTable("u", {}).stream);
    broker.publish(events.updated({ table: "t", key: "k", version: 1 })); // 1001
    broker.publish(events.updated({ table: "t", key: "j", version: 1 })); // 1002
    broker.publish(events.updated({ table: "u", key: "k", version: 1 })); // 1003
    broker.publish(events.updated({ table: "t", key: "k", version: 4 })); // 1004: 2 and 3 missed
    broker.publish(events.updated({ table: "u", key: "k", version: 2 })); // 1005
    broker.publish(events.updated({ table: "t", key: "j", version: 2 })); // 1006
    const gapBytes: Uint8Array[] = [];
    for (const reader of readers) {
      assert.equal(await reader.next(), ready(1000));
      for (const id of [1001, 1002]) assert.match(await reader.next(), new RegExp(`^id: ${id}\n`));
      gapBytes.push(await reader.nextBytes());
    }
    assert.equal(gapBytes[0], gapBytes[1], "one frame, encoded once, for every subscriber");
    assert.equal(new TextDecoder().decode(gapBytes[0]), resyncK + tableFrame(1004, "k", 4));
    broker.close();
    for (const reader of readers) assert.deepEqual(await reader.rest(), [tableFrame(1006, "j", 2)]);
    assert.deepEqual(await otherTable.rest(), [
      ready(1000),
      tableFrame(1003, "k", 1, "u"),
      tableFrame(1005, "k", 2, "u"),
    ], "the same key name in another table is another key");
  },
);

Deno.test(
  "Broker.subscribeKey() resumed across a gap replays the versions it has, with the Resync where " +
    "they jump",
  async () => {
    const broker = makeBroker();
    const events = new EventMaker();
    watchKeys(broker, "t", ["k"]);
    for (const version of [1, 2, 5, 6]) broker.publish(events.updated({ table: "t", key: "k", version }));
    const current = entryOf({ key: "k", version: 6 });
    const resume = (lastEventId: number) =>
      new FrameReader(broker.subscribeKey("t", "k", { lastEventId, current }).stream);
    const fromOne = resume(1);
    const fromTwo = resume(2);
    const fromFive = resume(5);
    // A client that got the Resync but was cut before version 5 still has 2, and is told again.
    const fromThree = resume(3);
    broker.publish(events.updated({ table: "t", key: "k", version: 7 }));
    broker.close();
    assert.deepEqual(await fromOne.rest(), [
      ready(1),
      keyFrame(2),
      resyncK,
      keyFrame(5),
      keyFrame(6),
      keyFrame(7),
    ]);
    assert.deepEqual(await fromTwo.rest(), [ready(2), resyncK, keyFrame(5), keyFrame(6), keyFrame(7)]);
    assert.deepEqual(await fromFive.rest(), [ready(5), keyFrame(6), keyFrame(7)]);
    assert.deepEqual(await fromThree.rest(), [ready(3), resyncK, keyFrame(5), keyFrame(6), keyFrame(7)]);
  },
);

Deno.test(
  "Broker.subscribeTable() resumed across a key's gap replays the Resync with the change it announced",
  async () => {
    const broker = makeBroker();
    const events = new EventMaker();
    broker.publish(events.updated({ table: "t", key: "k", version: 1 })); // 1001
    broker.publish(events.updated({ table: "t", key: "k", version: 3 })); // 1002: 2 missed
    broker.publish(events.updated({ table: "t", key: "k", version: 4 })); // 1003
    const before = new FrameReader(broker.subscribeTable("t", { lastEventId: 1001 }).stream);
    const after = new FrameReader(broker.subscribeTable("t", { lastEventId: 1002 }).stream);
    broker.close();
    assert.deepEqual(await before.rest(), [
      ready(1001),
      resyncK + tableFrame(1002, "k", 3),
      tableFrame(1003, "k", 4),
    ]);
    assert.deepEqual(await after.rest(), [ready(1002), tableFrame(1003, "k", 4)]);
  },
);

Deno.test(
  "Broker.subscribeKey(): a new subscriber whose position is below its first event gets the Resync " +
    "first",
  async () => {
    const broker = makeBroker();
    const events = new EventMaker();
    // The store read version 3; this broker never published k. Versions 4 and 5 then reach it as 6.
    const behind = new FrameReader(
      broker.subscribeKey("t", "k", { current: entryOf({ key: "k", version: 3 }) }).stream,
    );
    const next = new FrameReader(
      broker.subscribeKey("t", "k", { current: entryOf({ key: "k", version: 5 }) }).stream,
    );
    const tableReader = new FrameReader(broker.subscribeTable("t", {}).stream);
    broker.publish(events.updated({ table: "t", key: "k", version: 6 }));
    broker.close();
    assert.deepEqual(await behind.rest(), [ready(3), resyncK, keyFrame(6)]);
    assert.deepEqual(await next.rest(), [ready(5), keyFrame(6)], "6 follows its position 5: no gap");
    // Nothing of k was published here before, so no table subscriber was sent an earlier version.
    assert.deepEqual(await tableReader.rest(), [ready(1000), tableFrame(1001, "k", 6)]);
  },
);

Deno.test(
  "Broker table stream: a key whose last version was forgotten (past sseHistoryKeysMax) gets no " +
    "Resync",
  async () => {
    const broker = makeBroker({ sseHistoryKeysMax: 2 });
    const events = new EventMaker();
    const tableReader = new FrameReader(broker.subscribeTable("t", {}).stream);
    broker.publish(events.updated({ table: "t", key: "k", version: 1 })); // 1001
    broker.publish(events.updated({ table: "t", key: "a", version: 1 })); // 1002
    broker.publish(events.updated({ table: "t", key: "b", version: 1 })); // 1003: k is forgotten
    broker.publish(events.updated({ table: "t", key: "k", version: 3 })); // 1004: unknown previous
    broker.publish(events.updated({ table: "t", key: "k", version: 5 })); // 1005: 4 missed, known
    broker.close();
    const texts = await tableReader.rest();
    assert.deepEqual(texts.slice(4), [tableFrame(1004, "k", 3), resyncK + tableFrame(1005, "k", 5)]);
    assert.equal(texts.length, 6, "the ready block and five changes");
  },
);
