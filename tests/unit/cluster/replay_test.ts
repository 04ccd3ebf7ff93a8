// Goal: the anti-replay window accepts every counter once, in any order within its width, refuses a
// counter seen before or fallen below the window, keeps a stream exactly as long as one of its requests
// could still pass the time check, and refuses a new stream at its bound instead of forgetting a live one.
// Method: drive SequenceWindow and ReplayGuard directly at their edges, with explicit times.
import assert from "node:assert/strict";
import {
  ClusterAuthError,
  parseSequence,
  ReplayGuard,
  SequenceSource,
  SequenceWindow,
  sequenceWindowBits,
} from "../../../src/cluster/mod.ts";
import { AssertionError } from "../../../src/util/assert.ts";
import { UnavailableError } from "../../../src/util/errors.ts";

Deno.test("SequenceWindow accepts each counter once, in any order", () => {
  const window = new SequenceWindow(64);
  for (const counter of [3, 1, 2, 10, 5, 4]) {
    assert.equal(window.status(counter), "fresh", `counter ${counter}`);
    window.accept(counter, 0);
    assert.equal(window.status(counter), "seen");
  }
  assert.equal(window.top, 10);
  for (const counter of [6, 7, 8, 9, 11]) assert.equal(window.status(counter), "fresh");
  assert.throws(() => window.accept(3, 0), AssertionError, "a seen counter is never accepted");
});

Deno.test(
  "SequenceWindow keeps exactly `bits` counters: top - (bits - 1) is in, top - bits is too old",
  () => {
    const bits = 64;
    const window = new SequenceWindow(bits);
    window.accept(1_000, 0);
    assert.equal(window.status(1_000 - (bits - 1)), "fresh", "the lowest counter in the window");
    assert.equal(window.status(1_000 - bits), "too_old", "one below it");
    window.accept(1_000 - (bits - 1), 0);
    assert.equal(window.status(1_000 - (bits - 1)), "seen");
    // Sliding up by one pushes that counter out: it is too old now, never fresh again.
    window.accept(1_001, 0);
    assert.equal(window.status(1_000 - (bits - 1)), "too_old");
    assert.equal(window.status(1_001 - (bits - 1)), "fresh");
  },
);

Deno.test(
  "SequenceWindow clears the slots it slides over, by one, by many and by more than its width",
  () => {
    const bits = 32;
    const window = new SequenceWindow(bits);
    for (let counter = 1; counter <= bits; counter += 1) window.accept(counter, 0);
    // Every slot is set; counters bits+1.. reuse them and must read as fresh, not as seen.
    for (let counter = bits + 1; counter <= 2 * bits; counter += 1) {
      assert.equal(window.status(counter), "fresh", `counter ${counter} after a full window`);
    }
    window.accept(bits + 5, 0); // a jump of 5: slots of bits+1..bits+5 cleared, only bits+5 set
    assert.equal(window.status(bits + 3), "fresh");
    assert.equal(window.status(bits + 5), "seen");
    assert.equal(window.status(6), "seen", "still in the window and accepted before");
    window.accept(10 * bits, 0); // a jump over the whole width
    assert.equal(window.status(10 * bits), "seen");
    for (let counter = 9 * bits + 1; counter < 10 * bits; counter += 1) {
      assert.equal(window.status(counter), "fresh", `counter ${counter} after a long jump`);
    }
    assert.equal(window.status(9 * bits), "too_old");
  },
);

Deno.test("SequenceWindow's default width is 65,536 counters and remembers the latest signed time", () => {
  assert.equal(sequenceWindowBits, 65_536);
  const window = new SequenceWindow();
  window.accept(70_000, 5);
  window.accept(70_000 - 65_535, 3);
  assert.equal(window.status(70_000 - 65_536), "too_old");
  assert.equal(window.lastTimeMs, 5, "an older request does not move the time back");
});

Deno.test("parseSequence() and SequenceSource: <16 hex>-<counter from 1>", () => {
  const source = new SequenceSource();
  const first = parseSequence(source.next("a:1"));
  assert.ok(first !== undefined);
  assert.equal(first.counter, 1);
  assert.equal(parseSequence(source.next("a:1"))!.counter, 2);
  assert.equal(parseSequence(source.next("b:1"))!.counter, 1);
  assert.equal(parseSequence(source.next("b:1"))!.epoch, first.epoch);
  for (const bad of ["", "1", "0123456789abcdef-0", "0123456789ABCDEF-1", "0123456789abcdef-1x", "x-1"]) {
    assert.equal(parseSequence(bad), undefined, bad);
  }
  assert.equal(parseSequence("0123456789abcdef-9007199254740991")?.counter, Number.MAX_SAFE_INTEGER);
  assert.equal(parseSequence("0123456789abcdef-9007199254740992"), undefined, "beyond safe integers");
});

const path = "/_internal/apply";
const windowMs = 30_000;

Deno.test("ReplayGuard refuses a recorded request, also after its sender restarted with a new epoch", () => {
  const guard = new ReplayGuard({ windowMs });
  const sequence = { epoch: "0000000000000001", counter: 1 };
  const request = { path, sender: "10.0.0.1:1", sequence, timeMs: 1_000, nowMs: 1_000 };
  guard.check(request);
  guard.record(request);
  assert.throws(() => guard.check({ ...request, nowMs: 2_000 }), ClusterAuthError);
  assert.throws(() => guard.record({ ...request, nowMs: 2_000 }), /it is a replay/);
  // The sender restarts: a new epoch counts from 1 again, and the old stream is still remembered.
  const restarted = { ...request, sequence: { epoch: "0000000000000002", counter: 1 } };
  guard.record(restarted);
  assert.throws(() => guard.check(request), /it is a replay/);
  // Another sender with the same epoch is another stream.
  guard.record({ ...request, sender: "10.0.0.2:1" });
  assert.equal(guard.streamCount, 3);
});

Deno.test(
  "ReplayGuard keeps a stream while a request of it could pass the time check, then forgets it",
  () => {
    const guard = new ReplayGuard({ windowMs, streamsMax: 2 });
    const old = { path, sender: "a:1", sequence: { epoch: "000000000000000a", counter: 1 }, timeMs: 0 };
    guard.record({ ...old, nowMs: 0 });
    guard.record({ ...old, sender: "b:1", timeMs: 10_000, nowMs: 10_000 });
    const fresh = {
      path,
      sender: "c:1",
      sequence: { epoch: "000000000000000c", counter: 1 },
      timeMs: 30_000,
    };
    // At now = 30,000 a request signed at 0 still passes the time check (|30,000 - 0| <= window): no room.
    assert.throws(() => guard.check({ ...fresh, nowMs: 30_000 }), UnavailableError);
    assert.throws(() => guard.check({ ...old, nowMs: 30_000 }), /it is a replay/);
    // One ms later it cannot pass any more: its stream is forgotten and the new sender fits.
    guard.record({ ...fresh, nowMs: 30_001 });
    assert.equal(guard.streamCount, 2);
    assert.throws(() => guard.check({ ...fresh, nowMs: 30_001 }), /it is a replay/);
  },
);

Deno.test("ReplayGuard at its bound refuses a new stream (503) and still serves known ones", () => {
  const guard = new ReplayGuard({ windowMs, streamsMax: 3 });
  for (let index = 0; index < 3; index += 1) {
    guard.record({
      path,
      sender: `n:${index}`,
      sequence: { epoch: "0000000000000000", counter: 1 },
      timeMs: 0,
      nowMs: 0,
    });
  }
  const newcomer = {
    path,
    sender: "n:9",
    sequence: { epoch: "0000000000000000", counter: 1 },
    timeMs: 0,
    nowMs: 0,
  };
  assert.throws(() => guard.check(newcomer), (error: unknown) => {
    assert.ok(error instanceof UnavailableError);
    assert.match(error.message, /3 senders .* limit is 3/);
    return true;
  });
  guard.record({
    path,
    sender: "n:1",
    sequence: { epoch: "0000000000000000", counter: 2 },
    timeMs: 0,
    nowMs: 0,
  });
  assert.equal(guard.streamCount, 3);
});

Deno.test("ReplayGuard refuses a counter below its stream's window as too old", () => {
  const guard = new ReplayGuard({ windowMs, windowBits: 32 });
  const at = (counter: number) => ({
    path,
    sender: "a:1",
    sequence: { epoch: "0000000000000000", counter },
    timeMs: 0,
    nowMs: 0,
  });
  guard.record(at(100));
  guard.record(at(69)); // 100 - 31: the lowest still in
  assert.throws(() => guard.check(at(68)), /more than 32 below the newest/);
});
