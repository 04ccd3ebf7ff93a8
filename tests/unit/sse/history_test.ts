// Goal: FrameHistory keeps the last depthMax frames and says when a gap is older than what it holds.
// Method: append frames with known ids and query framesAfter at the edges.
import assert from "node:assert/strict";
import { type Frame, FrameHistory, frameOf } from "../../../src/sse/history.ts";
import { AssertionError } from "../../../src/util/assert.ts";

function frame(id: number): Frame {
  return frameOf(id, new Uint8Array([id]));
}

function ids(frames: Frame[] | undefined): number[] | undefined {
  return frames?.map((held) => held.id);
}

Deno.test("FrameHistory holds depthMax frames and replays every one after the floor", () => {
  const history = new FrameHistory({ depthMax: 3, first: frame(5) });
  assert.equal(history.append(frame(6)), true);
  assert.equal(history.append(frame(7)), true);
  assert.equal(history.frameCount, 3);
  assert.deepEqual(ids(history.framesAfter(4)), [5, 6, 7]);
  assert.deepEqual(ids(history.framesAfter(6)), [7]);
  assert.deepEqual(ids(history.framesAfter(7)), []);
  assert.deepEqual(ids(history.framesAfter(100)), []);
  assert.equal(history.framesAfter(3), undefined, "frame 4 was never seen: the gap is older");
});

Deno.test("FrameHistory forgets the oldest frame at depthMax + 1", () => {
  const history = new FrameHistory({ depthMax: 3, first: frame(1) });
  for (const id of [2, 3, 4]) history.append(frame(id));
  assert.equal(history.frameCount, 3);
  assert.equal(history.newestId, 4);
  assert.equal(history.framesAfter(0), undefined, "frame 1 was forgotten");
  assert.deepEqual(ids(history.framesAfter(1)), [2, 3, 4]);
});

Deno.test("FrameHistory keeps gaps between ids (a table history holds only its own table's ids)", () => {
  const history = new FrameHistory({ depthMax: 2, first: frame(10) });
  history.append(frame(20));
  history.append(frame(30));
  assert.equal(history.framesAfter(9), undefined);
  assert.deepEqual(ids(history.framesAfter(10)), [20, 30]);
  assert.deepEqual(ids(history.framesAfter(15)), [20, 30]);
  assert.deepEqual(ids(history.framesAfter(25)), [30]);
});

Deno.test("FrameHistory.append() ignores an id at or below the newest", () => {
  const history = new FrameHistory({ depthMax: 3, first: frame(5) });
  assert.equal(history.append(frame(5)), false);
  assert.equal(history.append(frame(4)), false);
  assert.equal(history.frameCount, 1);
  assert.deepEqual(ids(history.framesAfter(4)), [5]);
});

Deno.test("FrameHistory rejects a depthMax below 1", () => {
  assert.throws(() => new FrameHistory({ depthMax: 0, first: frame(1) }), AssertionError);
});

Deno.test("FrameHistory.frameBytes sums the bytes held as frames come and go", () => {
  const history = new FrameHistory({ depthMax: 2, first: frameOf(1, new Uint8Array(3)) });
  assert.equal(history.frameBytes, 3);
  history.append(frameOf(2, new Uint8Array(5)));
  assert.equal(history.frameBytes, 8);
  history.append(frameOf(3, new Uint8Array(7)));
  assert.equal(history.frameBytes, 12, "frame 1 went at depthMax + 1");
  history.append(frameOf(3, new Uint8Array(100)));
  assert.equal(history.frameBytes, 12, "an id at or below the newest adds nothing");
});

Deno.test("FrameHistory.forgetOldest() reports the lost frame as a gap and keeps the newest", () => {
  const history = new FrameHistory({ depthMax: 4, first: frame(1) });
  for (const id of [2, 3]) history.append(frame(id));
  history.forgetOldest();
  assert.equal(history.frameCount, 2);
  assert.equal(history.frameBytes, 2);
  assert.equal(history.framesAfter(0), undefined, "frame 1 was forgotten");
  assert.deepEqual(ids(history.framesAfter(1)), [2, 3]);
  history.forgetOldest();
  assert.deepEqual(ids(history.framesAfter(2)), [3]);
  assert.equal(history.framesAfter(1), undefined);
  assert.throws(() => history.forgetOldest(), AssertionError, "a history is never empty");
});

Deno.test(
  "FrameHistory.framesHeldAfter() returns the frames held past a gap, where framesAfter() says " +
    "undefined",
  () => {
    const history = new FrameHistory({ depthMax: 2, first: frame(1) });
    for (const id of [2, 3, 4]) history.append(frame(id));
    assert.equal(history.framesAfter(1), undefined);
    assert.deepEqual(ids(history.framesHeldAfter(1)), [3, 4]);
    assert.deepEqual(ids(history.framesHeldAfter(0)), [3, 4]);
    assert.deepEqual(ids(history.framesHeldAfter(3)), [4]);
    assert.deepEqual(ids(history.framesHeldAfter(4)), []);
  },
);

Deno.test("FrameHistory holds what a plain list would through appends and forgets in any order", () => {
  let seed = 7;
  const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
  for (let round = 0; round < 50; round += 1) {
    const depthMax = 1 + Math.floor(next() * 6);
    const history = new FrameHistory({ depthMax, first: frameOf(1, new Uint8Array(1)) });
    const model: Frame[] = [frameOf(1, new Uint8Array(1))];
    let id = 1;
    for (let step = 0; step < 40; step += 1) {
      if (next() < 0.25 && model.length >= 2) {
        history.forgetOldest();
        model.shift();
      } else {
        id += 1 + Math.floor(next() * 2);
        const frame = frameOf(id, new Uint8Array(id % 5));
        assert.equal(history.append(frame), true);
        model.push(frame);
        if (model.length > depthMax) model.shift();
      }
      assert.deepEqual(history.framesHeldAfter(0).map((frame) => frame.id), model.map((frame) => frame.id));
      assert.equal(history.frameCount, model.length);
      assert.equal(history.newestId, model.at(-1)!.id);
      assert.equal(history.frameBytes, model.reduce((sum, frame) => sum + frame.byteLength, 0));
      const pivot = model[Math.floor(next() * model.length)]!.id;
      assert.deepEqual(
        history.framesHeldAfter(pivot).map((frame) => frame.id),
        model.filter((frame) => frame.id > pivot).map((frame) => frame.id),
      );
    }
  }
});
