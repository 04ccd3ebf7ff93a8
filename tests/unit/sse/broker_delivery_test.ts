// Goal: `Broker.deliverySeconds` times every live frame from its change's publication to its hand-over
// to a stream, once per frame handed over (replays not counted), and costs a publish without
// subscriptions no clock read. Method: a Broker on a clock that counts its reads and moves only when told;
// frames read back from the streams are counted against the histogram.
import assert from "node:assert/strict";
import { Broker, type SnapshotRecord } from "../../../src/sse/mod.ts";
import { ChangeLog } from "../../../src/store/change_log.ts";
import { MemoryFs } from "../../../src/store/fs.ts";
import { type Clock, ManualClock, type TimerHandle } from "../../../src/util/clock.ts";
import { silentLogger } from "../../../src/util/log.ts";
import { testEncryption } from "../../helpers/test_key.ts";
import { EventMaker, FrameReader, streamBlocksOf, testLimits, withTimeout } from "./sse_helpers.ts";

/** A clock whose monotonic time moves only when told, and which counts how often it was read. */
class CountingClock implements Clock {
  monotonicReadCount = 0;
  #monotonicMs = 0;
  /** Added to the monotonic time after each read: a fan-out then lasts this long. */
  stepMs = 0;

  nowMs(): number {
    return 1;
  }

  monotonicMs(): number {
    this.monotonicReadCount += 1;
    const now = this.#monotonicMs;
    this.#monotonicMs += this.stepMs;
    return now;
  }

  advance(deltaMs: number): void {
    this.#monotonicMs += deltaMs;
    this.#timers.advance(deltaMs);
  }

  /** Timers (the broker's keepalive) run on a manual clock of their own, which reads are not counted on. */
  readonly #timers = new ManualClock();

  setTimer(delayMs: number, callback: () => void): TimerHandle {
    return this.#timers.setTimer(delayMs, callback);
  }

  clearTimer(handle: TimerHandle | undefined): void {
    this.#timers.clearTimer(handle);
  }
}

/** The change events (not ready blocks, Synced or Resyncs) in `texts`. */
function changeCount(texts: string[]): number {
  return texts.flatMap((text) => streamBlocksOf(text))
    .filter((block) => block.data.event === "Updated" || block.data.event === "Deleted").length;
}

Deno.test(
  "Broker.publish() reads no clock without subscriptions, and times each live frame handed over",
  async () => {
    const clock = new CountingClock();
    const broker = new Broker({ limits: testLimits(), logger: silentLogger, clock });
    const events = new EventMaker();
    broker.publish(events.updated({ table: "t", key: "k", version: 1 }));
    broker.publish(events.updated({ table: "t", key: "k", version: 2 }));
    assert.equal(clock.monotonicReadCount, 0, "no subscription: no clock read");
    const keyReader = new FrameReader(broker.subscribeKey("t", "k", { current: undefined }).stream);
    const tableReader = new FrameReader(broker.subscribeTable("t", {}).stream);
    const otherReader = new FrameReader(broker.subscribeKey("t", "other", { current: undefined }).stream);
    clock.stepMs = 5;
    broker.publish(events.updated({ table: "t", key: "k", version: 3 }));
    assert.equal(clock.monotonicReadCount, 2, "one read as the publish starts, one as its fan-out ends");
    broker.publish(events.updated({ table: "u", key: "k", version: 1 }));
    assert.equal(clock.monotonicReadCount, 3, "nothing handed over: only the read as it starts");
    broker.publish(events.deleted({ table: "t", key: "k", version: 4 }));
    broker.publish(events.updated({ table: "t", key: "x", version: 1 }));
    broker.close();
    const texts = [...await keyReader.rest(), ...await tableReader.rest(), ...await otherReader.rest()];
    const seconds = broker.deliverySeconds;
    assert.equal(changeCount(texts), 5, "k:3 and k:4 to two streams, x:1 to the table's");
    assert.equal(seconds.count, 5);
    assert.ok(Math.abs(seconds.sum - 5 * 0.005) < 1e-9, `each timed by its fan-out's 5 ms (${seconds.sum})`);
  },
);

Deno.test(
  "Broker times a change held behind a snapshot from its publication to the snapshot's end",
  async () => {
    const clock = new CountingClock();
    const broker = new Broker({ limits: testLimits(), logger: silentLogger, clock });
    const events = new EventMaker();
    let releasePage!: () => void;
    const pageGate = new Promise<void>((resolve) => releasePage = resolve);
    const pages = async function* (): AsyncGenerator<SnapshotRecord[]> {
      await pageGate;
      yield [{ table: "t", key: "a", version: 1, json: '{"value":1,"version":1}' }];
    };
    const reader = new FrameReader(broker.subscribeTable("t", { snapshot: { pages: pages() } }).stream);
    // Published while the snapshot's first page is read: held, and handed over 250 ms later.
    broker.publish(events.updated({ table: "t", key: "a", version: 2 }));
    broker.publish(events.updated({ table: "t", key: "b", version: 1 }));
    assert.equal(broker.deliverySeconds.count, 0, "nothing handed over yet");
    clock.advance(250);
    releasePage();
    const texts: string[] = [];
    while (!texts.some((text) => text.includes('"Synced"'))) {
      texts.push(await withTimeout(reader.next(), 2_000));
    }
    broker.close();
    texts.push(...await reader.rest());
    // a:2 replaces the page's a:1 (sent in its place), b:1 follows the last page.
    assert.equal(changeCount(texts), 2);
    assert.equal(broker.deliverySeconds.count, 2);
    assert.ok(Math.abs(broker.deliverySeconds.sum - 2 * 0.25) < 1e-9, `${broker.deliverySeconds.sum}`);
  },
);

Deno.test(
  "Broker times live frames held behind a replay from the change log, and not the replayed ones",
  async () => {
    const clock = new CountingClock();
    const log = await ChangeLog.open({
      dir: "/data",
      fs: new MemoryFs(),
      encryption: testEncryption,
      clock,
      logger: silentLogger,
      retention: { ageMs: 600_000, recordsMax: 100_000, bytesMax: 64 << 20 },
      batchBytesMax: 2_000,
    });
    const limits = testLimits({ sseHistoryDepth: 2, sseHistoryKeysMax: 2 });
    const broker = new Broker({ limits, logger: silentLogger, history: log, clock });
    const events = new EventMaker();
    for (let version = 1; version <= 10; version += 1) {
      broker.publish(events.updated({ table: "t", key: "k", version }));
    }
    const reader = new FrameReader(broker.subscribeTable("t", { lastEventId: log.floorSeq }).stream);
    broker.publish(events.updated({ table: "t", key: "k", version: 11 }));
    clock.advance(100);
    const texts: string[] = [];
    while (changeCount(texts) < 11) texts.push(await withTimeout(reader.next(), 2_000));
    assert.equal(broker.deliverySeconds.count, 1, "ten replayed, one live");
    assert.ok(Math.abs(broker.deliverySeconds.sum - 0.1) < 1e-9, `${broker.deliverySeconds.sum}`);
    broker.close();
    await reader.rest();
    await log.close();
  },
);
