// Goal: the expiry queue hands out keys earliest first, in bounded batches, holds one entry per key (a newer
// lifetime moves it), and puts taken keys back only when nothing newer came.
// Method: drive ExpiryQueue directly; a seeded run checks it against a sorted list.
import assert from "node:assert/strict";
import { type ExpiringKey, ExpiryQueue } from "../../../src/store/expiry_queue.ts";
import { Random } from "../../helpers/seed.ts";

function keysOf(items: readonly ExpiringKey[]): string[] {
  return items.map((item) => item.key);
}

Deno.test("ExpiryQueue.takeDue() hands out due keys earliest first, at most countMax a call", () => {
  const queue = new ExpiryQueue();
  for (const [key, expiresAtMs] of [["c", 300], ["a", 100], ["d", 400], ["b", 200], ["e", 5_000]] as const) {
    queue.set({ table: "t", key, version: 1, expiresAtMs });
  }
  assert.equal(queue.size, 5);
  assert.equal(queue.nextDueMs, 100);
  assert.deepEqual(queue.takeDue(50, 10), [], "nothing is due before its time");
  assert.deepEqual(keysOf(queue.takeDue(400, 3)), ["a", "b", "c"]);
  assert.deepEqual(keysOf(queue.takeDue(400, 3)), ["d"], "the batch stops at the first key not due");
  assert.deepEqual(queue.takeDue(400, 0), []);
  assert.equal(queue.size, 1);
  assert.deepEqual(queue.takeDue(5_000, 3), [{
    table: "t",
    key: "e",
    version: 1,
    expiresAtMs: 5_000,
    deferrals: 0,
  }]);
  assert.equal(queue.nextDueMs, undefined);
});

Deno.test("ExpiryQueue.set() keeps one entry per key: a newer lifetime moves it, earlier or later", () => {
  const queue = new ExpiryQueue();
  queue.set({ table: "t", key: "k", version: 1, expiresAtMs: 1_000 });
  queue.set({ table: "t", key: "other", version: 4, expiresAtMs: 1_500 });
  queue.set({ table: "u", key: "k", version: 9, expiresAtMs: 2_000 }); // another table, another key
  // A session refreshed every second keeps one entry.
  for (let version = 2; version <= 100; version += 1) {
    queue.set({ table: "t", key: "k", version, expiresAtMs: 1_000 + version * 1_000 });
  }
  assert.equal(queue.size, 3);
  assert.deepEqual(keysOf(queue.takeDue(99_999, 10)), ["other", "k"]);
  queue.set({ table: "t", key: "k", version: 101, expiresAtMs: 500 }); // moved earlier
  assert.equal(queue.nextDueMs, 500);
  assert.deepEqual(queue.takeDue(500, 10), [{
    table: "t",
    key: "k",
    version: 101,
    expiresAtMs: 500,
    deferrals: 0,
  }]);
  assert.deepEqual(queue.takeDue(Number.MAX_SAFE_INTEGER, 10), []);
  assert.equal(queue.size, 0);
});

Deno.test("ExpiryQueue.requeue() puts a taken key back later, unless its key got a newer lifetime", () => {
  const queue = new ExpiryQueue();
  queue.set({ table: "t", key: "a", version: 3, expiresAtMs: 100 });
  queue.set({ table: "t", key: "b", version: 5, expiresAtMs: 100 });
  const [a, b] = queue.takeDue(100, 2);
  assert.equal(queue.requeue(a!, 700), true);
  assert.deepEqual(queue.takeDue(699, 10), []);
  assert.deepEqual(queue.takeDue(700, 10), [{ ...a!, deferrals: 1 }]);
  queue.set({ table: "t", key: "b", version: 6, expiresAtMs: 900 }); // b was overwritten meanwhile
  assert.equal(queue.requeue(b!, 200), false, "the newer lifetime wins");
  assert.deepEqual(queue.takeDue(10_000, 10), [{
    table: "t",
    key: "b",
    version: 6,
    expiresAtMs: 900,
    deferrals: 0,
  }]);
  queue.clear();
  assert.equal(queue.size, 0);
});

Deno.test("ExpiryQueue hands out what a sorted list of each key's newest lifetime would (seeded)", () => {
  const random = new Random(Number(Deno.env.get("KV_TEST_SEED") ?? 20));
  const queue = new ExpiryQueue();
  const newest = new Map<string, number>();
  let nowMs = 0;
  for (let step = 0; step < 5_000; step += 1) {
    if (random.next() < 0.7) {
      const key = `k${random.int(300)}`;
      const expiresAtMs = nowMs + 1 + random.int(1_000);
      queue.set({ table: "t", key, version: step + 1, expiresAtMs });
      newest.set(key, expiresAtMs);
      continue;
    }
    nowMs += random.int(200);
    const countMax = 1 + random.int(20);
    const expected = [...newest].filter(([, due]) => due <= nowMs).sort((x, y) => x[1] - y[1]).slice(
      0,
      countMax,
    );
    const taken = queue.takeDue(nowMs, countMax);
    assert.deepEqual(taken.map((item) => item.expiresAtMs), expected.map(([, due]) => due));
    for (const item of taken) {
      assert.equal(newest.get(item.key), item.expiresAtMs);
      newest.delete(item.key);
    }
    assert.equal(queue.size, newest.size);
  }
});
