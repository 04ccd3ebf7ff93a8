// Goal: a Subscriber sends frames once and in id order, bounds its queue and reports why it stopped.
// Method: drive one Subscriber directly and read its stream with a reader.
import assert from "node:assert/strict";
import { DeliveryTimer } from "../../../src/sse/delivery.ts";
import { ManualClock } from "../../../src/util/clock.ts";
import { keepaliveFrame } from "../../../src/sse/event_format.ts";
import { SubscriberTooSlowError } from "../../../src/sse/errors.ts";
import { type Frame, frameOf } from "../../../src/sse/history.ts";
import { type CloseReason, Subscriber } from "../../../src/sse/subscriber.ts";
import { FrameReader, readyText } from "./sse_helpers.ts";

const encoder = new TextEncoder();

function frame(id: number): Frame {
  return frameOf(id, encoder.encode(`id: ${id}\n\n`));
}

function makeSubscriber(options: { queueDepthMax: number; lastId?: number }) {
  const reasons: CloseReason[] = [];
  const subscriber = new Subscriber({
    queueDepthMax: options.queueDepthMax,
    lastId: options.lastId ?? 0,
    delivery: new DeliveryTimer(new ManualClock()),
    onClose: (closing, reason) => {
      assert.equal(closing, subscriber);
      reasons.push(reason);
    },
  });
  return { subscriber, reasons, reader: new FrameReader(subscriber.stream) };
}

Deno.test("Subscriber starts with the ready block of its last id, its position", async () => {
  const { subscriber, reader } = makeSubscriber({ queueDepthMax: 4 });
  assert.equal(await reader.next(), readyText(0));
  subscriber.close();
  assert.deepEqual(await reader.rest(), []);
  const resumed = makeSubscriber({ queueDepthMax: 4, lastId: 42 });
  assert.equal(await resumed.reader.next(), readyText(42));
  resumed.subscriber.close();
});

Deno.test("Subscriber.send() skips ids at or below the last id sent", async () => {
  const { subscriber, reader } = makeSubscriber({ queueDepthMax: 8, lastId: 2 });
  for (const id of [1, 2, 3, 3, 5, 4, 6]) subscriber.send(frame(id));
  assert.equal(subscriber.lastId, 6);
  subscriber.close();
  assert.deepEqual(await reader.rest(), [readyText(2), "id: 3\n\n", "id: 5\n\n", "id: 6\n\n"]);
});

Deno.test("Subscriber holds sseQueueDepthMax live frames", async () => {
  const { subscriber, reader, reasons } = makeSubscriber({ queueDepthMax: 3 });
  await reader.next(); // empty the queue of the ready block
  for (const id of [1, 2, 3]) assert.equal(subscriber.send(frame(id)), true);
  assert.equal(subscriber.closed, false);
  subscriber.close();
  assert.deepEqual(await reader.rest(), ["id: 1\n\n", "id: 2\n\n", "id: 3\n\n"]);
  assert.deepEqual(reasons, ["closed"]);
});

Deno.test("Subscriber is disconnected without its backlog at sseQueueDepthMax + 1", async () => {
  const { subscriber, reader, reasons } = makeSubscriber({ queueDepthMax: 3 });
  await reader.next();
  for (const id of [1, 2, 3]) subscriber.send(frame(id));
  assert.equal(subscriber.send(frame(4)), false);
  assert.equal(subscriber.closed, true);
  assert.deepEqual(reasons, ["overflow"]);
  await assert.rejects(reader.reader.read(), SubscriberTooSlowError);
  assert.equal(subscriber.send(frame(5)), true, "a closed subscriber ignores frames");
  assert.deepEqual(reasons, ["overflow"], "onClose is called once");
});

Deno.test(
  "Subscriber.replay() is not bounded by the queue: the replay is bounded by the history",
  async () => {
    const { subscriber, reader } = makeSubscriber({ queueDepthMax: 1 });
    for (const id of [1, 2, 3]) subscriber.replay(frame(id));
    assert.equal(subscriber.closed, false);
    subscriber.close();
    assert.deepEqual(await reader.rest(), [readyText(0), "id: 1\n\n", "id: 2\n\n", "id: 3\n\n"]);
  },
);

Deno.test(
  "Subscriber.sendResync() queues a frame without an id within the queue bound; lastId stays",
  async () => {
    const resync = encoder.encode('data: {"event":"Resync","table":"t","key":"k"}\n\n');
    const { subscriber, reader, reasons } = makeSubscriber({ queueDepthMax: 3, lastId: 2 });
    await reader.next(); // empty the queue of the ready block
    assert.equal(subscriber.sendResync(resync), true);
    assert.equal(subscriber.lastId, 2, "a Resync carries no version");
    assert.equal(subscriber.send(frame(5)), true);
    assert.equal(subscriber.sendResync(resync), true, "the third queued chunk: at sseQueueDepthMax");
    assert.equal(subscriber.sendResync(resync), false, "the fourth overflows");
    assert.deepEqual(reasons, ["overflow"]);
    await assert.rejects(
      reader.reader.read(),
      SubscriberTooSlowError,
      "the backlog, Resync included, is dropped",
    );
    assert.equal(subscriber.sendResync(resync), true, "a closed subscriber ignores it");
  },
);

Deno.test(
  "Subscriber.replayResync() queues a frame without an id outside the queue bound; lastId stays",
  async () => {
    const resync = encoder.encode('data: {"event":"Resync","table":"t","key":"k"}\n\n');
    const { subscriber, reader } = makeSubscriber({ queueDepthMax: 1, lastId: 1 });
    subscriber.replayResync(resync);
    assert.equal(subscriber.lastId, 1);
    subscriber.replay(frame(4));
    assert.equal(subscriber.closed, false);
    subscriber.close();
    assert.deepEqual(await reader.rest(), [readyText(1), new TextDecoder().decode(resync), "id: 4\n\n"]);
  },
);

Deno.test("Subscriber.sendComment() sends a keepalive only when nothing is queued", async () => {
  const { subscriber, reader } = makeSubscriber({ queueDepthMax: 4 });
  subscriber.sendComment(keepaliveFrame); // the ready block is still queued: skipped
  assert.equal(await reader.next(), readyText(0));
  subscriber.sendComment(keepaliveFrame);
  assert.equal(await reader.nextBytes(), keepaliveFrame);
  subscriber.close();
  assert.deepEqual(await reader.rest(), []);
});

Deno.test("Subscriber reports a cancelled stream once", async () => {
  const { subscriber, reader, reasons } = makeSubscriber({ queueDepthMax: 4 });
  await reader.cancel();
  assert.equal(subscriber.closed, true);
  subscriber.close();
  assert.deepEqual(reasons, ["cancelled"]);
});

Deno.test(
  "Subscriber.onEnd() calls its listener once when the subscriber stops, for any reason",
  async () => {
    for (const stop of ["close", "overflow", "cancel"] as const) {
      const { subscriber, reader } = makeSubscriber({ queueDepthMax: 1 });
      let ends = 0;
      subscriber.onEnd(() => ends += 1);
      assert.equal(ends, 0, "not before it stops");
      if (stop === "close") subscriber.close();
      if (stop === "overflow") [1, 2].forEach((id) => subscriber.send(frame(id)));
      if (stop === "cancel") await reader.reader.cancel();
      assert.equal(ends, 1, `once on ${stop}`);
      subscriber.close();
      assert.equal(ends, 1, `and never again after ${stop}`);
    }
    const { subscriber } = makeSubscriber({ queueDepthMax: 1 });
    subscriber.close();
    let late = 0;
    subscriber.onEnd(() => late += 1);
    assert.equal(late, 1, "a listener given after the end is called at once");
  },
);
