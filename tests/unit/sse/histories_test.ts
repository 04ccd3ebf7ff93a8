// Goal: Histories keeps every history within depthMax frames, topicsMax histories of each kind and
// bytesMax bytes over all of them, forgetting the least recently changed first and never losing track
// of a gap.
// Method: remember frames of known sizes and check what is held, what is forgotten, and frameBytes.
import assert from "node:assert/strict";
import { Histories, type HistoryKind, notNewer } from "../../../src/sse/histories.ts";
import { type Frame, frameOf } from "../../../src/sse/history.ts";
import { AssertionError } from "../../../src/util/assert.ts";

function frame(id: number, frameBytes: number): Frame {
  return frameOf(id, new Uint8Array(frameBytes));
}

function makeHistories(options: { bytesMax: number; depthMax?: number; topicsMax?: number }): Histories {
  return new Histories({
    depthMax: options.depthMax ?? 8,
    topicsMax: options.topicsMax ?? 100,
    bytesMax: options.bytesMax,
  });
}

function held(histories: Histories, kind: HistoryKind, topic: string): number[] | undefined {
  return histories.history(kind, topic)?.framesAfter(0)?.map((kept) => kept.id);
}

Deno.test("Histories holds frames of exactly bytesMax bytes", () => {
  const histories = makeHistories({ bytesMax: 10 });
  histories.remember({ kind: "key", topic: "a", frame: frame(1, 4), watched: true });
  histories.remember({ kind: "table", topic: "t", frame: frame(1, 6) });
  assert.equal(histories.frameBytes, 10);
  assert.equal(histories.historyCount, 2);
  assert.deepEqual(held(histories, "key", "a"), [1]);
  assert.deepEqual(held(histories, "table", "t"), [1]);
});

Deno.test("Histories forgets the least recently changed history at bytesMax + 1", () => {
  const histories = makeHistories({ bytesMax: 10 });
  histories.remember({ kind: "key", topic: "a", frame: frame(1, 4), watched: true });
  histories.remember({ kind: "table", topic: "t", frame: frame(1, 6) });
  histories.remember({ kind: "key", topic: "b", frame: frame(1, 1), watched: true });
  assert.equal(histories.frameBytes, 7);
  assert.equal(histories.history("key", "a"), undefined);
  assert.deepEqual(held(histories, "table", "t"), [1]);
  assert.deepEqual(held(histories, "key", "b"), [1]);
});

Deno.test("Histories forgets whole histories of either kind, least recently changed first", () => {
  const histories = makeHistories({ bytesMax: 12 });
  histories.remember({ kind: "key", topic: "a", frame: frame(1, 3), watched: true });
  histories.remember({ kind: "table", topic: "t", frame: frame(1, 3) });
  histories.remember({ kind: "key", topic: "b", frame: frame(1, 3), watched: true });
  histories.remember({ kind: "key", topic: "a", frame: frame(2, 3), watched: true }); // order now: t, b, a
  assert.equal(histories.frameBytes, 12);
  histories.remember({ kind: "table", topic: "u", frame: frame(1, 3) });
  assert.equal(histories.history("table", "t"), undefined, "t was the least recently changed");
  assert.deepEqual(held(histories, "key", "b"), [1]);
  histories.remember({ kind: "key", topic: "c", frame: frame(1, 3), watched: true });
  assert.equal(histories.history("key", "b"), undefined);
  assert.deepEqual(held(histories, "key", "a"), [1, 2], "a changed after b: kept whole");
  assert.deepEqual(held(histories, "table", "u"), [1]);
  assert.equal(histories.frameBytes, 12);
  assert.equal(histories.historyCount, 3);
});

Deno.test("Histories forgets the oldest frames of a history that alone is over bytesMax", () => {
  const histories = makeHistories({ bytesMax: 10 });
  histories.remember({ kind: "key", topic: "b", frame: frame(1, 2), watched: true });
  histories.remember({ kind: "key", topic: "a", frame: frame(1, 4), watched: true });
  histories.remember({ kind: "key", topic: "a", frame: frame(2, 4), watched: true });
  assert.equal(histories.frameBytes, 10);
  histories.remember({ kind: "key", topic: "a", frame: frame(3, 4), watched: true });
  assert.equal(histories.frameBytes, 10, "a is trimmed to 8 bytes, then b fits beside it");
  assert.deepEqual(held(histories, "key", "b"), [1]);
  const a = histories.history("key", "a");
  assert.equal(a?.framesAfter(0), undefined, "a knows it lost frame 1");
  assert.deepEqual(a?.framesAfter(1)?.map((kept) => kept.id), [2, 3]);
});

Deno.test("Histories forgets a history whose newest frame alone is over bytesMax", () => {
  const histories = makeHistories({ bytesMax: 10 });
  histories.remember({ kind: "key", topic: "a", frame: frame(1, 4), watched: true });
  histories.remember({ kind: "key", topic: "b", frame: frame(1, 10), watched: true });
  assert.equal(histories.history("key", "a"), undefined, "b at bytesMax fits only alone");
  assert.deepEqual(held(histories, "key", "b"), [1]);
  histories.remember({ kind: "key", topic: "b", frame: frame(2, 11), watched: true });
  assert.equal(histories.history("key", "b"), undefined, "its frames are lost: the history goes");
  histories.remember({ kind: "table", topic: "t", frame: frame(3, 11) });
  assert.equal(histories.history("table", "t"), undefined, "a new history over bytesMax is not kept");
  assert.equal(histories.frameBytes, 0);
  assert.equal(histories.historyCount, 0);
});

Deno.test("Histories keeps topicsMax histories of each kind and frees the bytes of a forgotten one", () => {
  const histories = makeHistories({ bytesMax: 100, topicsMax: 1 });
  histories.remember({ kind: "key", topic: "a", frame: frame(1, 5), watched: true });
  histories.remember({ kind: "table", topic: "t", frame: frame(1, 7) });
  assert.equal(histories.historyCount, 2, "the bound is per kind");
  histories.remember({ kind: "key", topic: "b", frame: frame(1, 3), watched: true });
  assert.equal(histories.history("key", "a"), undefined);
  assert.deepEqual(held(histories, "table", "t"), [1]);
  assert.equal(histories.frameBytes, 10);
});

Deno.test("Histories refuses an id not above the newest, even after the byte budget took the frames", () => {
  const histories = makeHistories({ bytesMax: 10, topicsMax: 2 });
  assert.equal(histories.remember({ kind: "key", topic: "a", frame: frame(5, 4), watched: true }), 0);
  assert.equal(
    histories.remember({ kind: "key", topic: "a", frame: frame(5, 4), watched: true }),
    notNewer,
    "the same id",
  );
  assert.equal(
    histories.remember({ kind: "key", topic: "a", frame: frame(4, 4), watched: true }),
    notNewer,
    "a lower id",
  );
  assert.equal(histories.frameBytes, 4, "a refused frame is not counted");
  histories.remember({ kind: "key", topic: "b", frame: frame(1, 10), watched: true });
  assert.equal(histories.history("key", "a"), undefined, "a's frames went for b's");
  assert.equal(histories.topicCount("key"), 2, "a's topic stays, with its newest id");
  assert.equal(histories.remember({ kind: "key", topic: "a", frame: frame(5, 1), watched: true }), notNewer);
  assert.equal(
    histories.remember({ kind: "key", topic: "a", frame: frame(6, 1), watched: true }),
    5,
    "the newest id before, though its frame is gone",
  );
  assert.equal(held(histories, "key", "a"), undefined, "frames before 6 were lost: a gap");
  assert.deepEqual(histories.history("key", "a")?.framesHeldAfter(0).map((kept) => kept.id), [6]);
  histories.remember({ kind: "key", topic: "c", frame: frame(1, 1), watched: true });
  assert.equal(histories.topicCount("key"), 2, "past topicsMax, b (least recently changed) is forgotten");
  assert.equal(
    histories.remember({ kind: "key", topic: "b", frame: frame(1, 1), watched: true }),
    0,
    "b is new again: no newest id before",
  );
  assert.equal(histories.frameBytes, 2);
});

Deno.test("Histories keeps a key's frames only once it is watched, and tables' always", () => {
  const histories = makeHistories({ bytesMax: 100, topicsMax: 2 });
  assert.equal(histories.remember({ kind: "key", topic: "a", frame: frame(1, 5) }), 0);
  assert.equal(histories.remember({ kind: "table", topic: "t", frame: frame(1, 5) }), 0);
  assert.equal(histories.history("key", "a"), undefined, "an unwatched key holds no frame");
  assert.deepEqual(held(histories, "table", "t"), [1]);
  assert.equal(histories.frameBytes, 5);
  assert.equal(
    histories.remember({ kind: "key", topic: "a", frame: frame(1, 5) }),
    notNewer,
    "its id is known",
  );
  histories.watch("key", "a");
  assert.equal(histories.remember({ kind: "key", topic: "a", frame: frame(2, 5) }), 1);
  assert.equal(held(histories, "key", "a"), undefined, "version 1 came before the watch: a gap");
  assert.deepEqual(histories.history("key", "a")?.framesHeldAfter(1).map((kept) => kept.id), [2]);
  histories.watch("key", "b"); // not published yet: watched from its first change
  assert.equal(
    histories.remember({ kind: "key", topic: "b", frame: frame(1, 5) }),
    0,
    "watched, never changed",
  );
  assert.deepEqual(held(histories, "key", "b"), [1]);
  histories.remember({ kind: "key", topic: "c", frame: frame(1, 5), watched: true }); // a subscriber now
  assert.deepEqual(held(histories, "key", "c"), [1]);
  assert.equal(histories.topicCount("key"), 2, "a, the least recently changed, went with its watch");
  histories.remember({ kind: "key", topic: "a", frame: frame(3, 5) });
  assert.equal(histories.history("key", "a"), undefined, "a is a new, unwatched topic again");
  assert.equal(histories.history("key", "b"), undefined, "and b, now the least recently changed, went");
  assert.equal(histories.frameBytes, 10, "c's frame and t's");
});

Deno.test("Histories rejects bounds below their minimum", () => {
  assert.throws(() => makeHistories({ bytesMax: -1 }), AssertionError);
  assert.throws(() => makeHistories({ bytesMax: 10, depthMax: 0 }), AssertionError);
  assert.throws(() => makeHistories({ bytesMax: 10, topicsMax: 0 }), AssertionError);
});

Deno.test("Histories counts frameOverheadBytes per frame against bytesMax", () => {
  const histories = new Histories({ depthMax: 8, topicsMax: 100, bytesMax: 30, frameOverheadBytes: 10 });
  histories.remember({ kind: "key", topic: "a", frame: frame(1, 5), watched: true });
  histories.remember({ kind: "key", topic: "a", frame: frame(2, 5), watched: true });
  assert.equal(histories.frameBytes, 30, "two frames of 5 bytes and 10 of overhead: at bytesMax");
  histories.remember({ kind: "key", topic: "a", frame: frame(3, 1), watched: true });
  assert.deepEqual(held(histories, "key", "a"), undefined, "the oldest went: a gap before 2");
  assert.deepEqual(histories.history("key", "a")?.framesHeldAfter(0).map((kept) => kept.id), [2, 3]);
  assert.equal(histories.frameBytes, 26);
  histories.remember({ kind: "table", topic: "t", frame: frame(1, 25) });
  assert.equal(histories.history("table", "t"), undefined, "25 + 10 is over bytesMax alone");
  assert.equal(histories.frameBytes, 26);
  assert.throws(
    () => new Histories({ depthMax: 8, topicsMax: 1, bytesMax: 1, frameOverheadBytes: -1 }),
    AssertionError,
  );
});
