// Goal: ManualClock's timers run only when the clock is advanced past their due time, in due order (ties in
// the order set), each once, reading its own due time, never after being cleared, and timers set by a
// callback run in the same advance when they fall due within it; raceDeadline() always clears its timer.
// Method: ManualClocks and callbacks that record what they saw; `timerCount` counts the armed timers. Deno
// 2.9's op sanitizer does not report a pending setTimeout, so the count is what shows a timer left armed.
import assert from "node:assert/strict";
import { AssertionError } from "../../../src/util/assert.ts";
import { ManualClock, raceDeadline, sleep, systemClock } from "../../../src/util/clock.ts";

Deno.test("ManualClock runs due timers in due order, ties in the order set, each at its due time", () => {
  const clock = new ManualClock(1_000);
  const runs: string[] = [];
  const record = (name: string) => () => runs.push(`${name}@${clock.monotonicMs()}/${clock.nowMs()}`);
  clock.setTimer(30, record("late"));
  clock.setTimer(10, record("early"));
  clock.setTimer(20, record("tie-1"));
  clock.setTimer(20, record("tie-2"));
  clock.setTimer(-5, record("negative")); // like setTimeout: now
  assert.equal(clock.timerCount, 5);
  clock.advance(9);
  assert.deepEqual(runs, ["negative@0/1000"], "nothing else is due before 10 ms");
  clock.advance(11);
  assert.deepEqual(runs, ["negative@0/1000", "early@10/1010", "tie-1@20/1020", "tie-2@20/1020"]);
  assert.equal(clock.monotonicMs(), 20);
  clock.advance(100);
  assert.deepEqual(runs.slice(4), ["late@30/1030"]);
  assert.equal(clock.monotonicMs(), 120, "the clock ends where it was told to");
  assert.equal(clock.nowMs(), 1_120);
  assert.equal(clock.timerCount, 0);
  clock.advance(1_000);
  assert.equal(runs.length, 5, "each timer runs once");
});

Deno.test(
  "ManualClock.clearTimer() cancels a timer; clearing twice, after it ran, or undefined is harmless",
  () => {
    const clock = new ManualClock();
    const runs: string[] = [];
    const kept = clock.setTimer(10, () => runs.push("kept"));
    const cleared = clock.setTimer(10, () => runs.push("cleared"));
    clock.clearTimer(cleared);
    clock.clearTimer(cleared);
    clock.clearTimer(undefined);
    assert.equal(clock.timerCount, 1);
    clock.advance(10);
    assert.deepEqual(runs, ["kept"]);
    clock.clearTimer(kept);
    assert.equal(clock.timerCount, 0);
  },
);

Deno.test(
  "ManualClock runs a timer set from a timer's callback in the same advance when it falls due",
  () => {
    const clock = new ManualClock();
    const runs: string[] = [];
    const record = (name: string) => () => runs.push(`${name}@${clock.monotonicMs()}`);
    clock.setTimer(10, () => {
      record("outer")();
      clock.setTimer(0, record("at once"));
      clock.setTimer(5, record("within"));
      clock.setTimer(50, record("beyond"));
    });
    clock.setTimer(12, record("other"));
    clock.advance(20);
    assert.deepEqual(runs, ["outer@10", "at once@10", "other@12", "within@15"]);
    assert.equal(clock.timerCount, 1, "the one due after the advance waits");
    clock.advance(40);
    assert.deepEqual(runs.slice(4), ["beyond@60"]);
  },
);

Deno.test("ManualClock: a callback can clear a timer due in the same advance, and it does not run", () => {
  const clock = new ManualClock();
  const runs: string[] = [];
  const later = clock.setTimer(20, () => runs.push("later"));
  clock.setTimer(10, () => {
    runs.push("first");
    clock.clearTimer(later);
  });
  clock.advance(30);
  assert.deepEqual(runs, ["first"]);
  assert.equal(clock.timerCount, 0);
});

Deno.test(
  "ManualClock.advance() stops a timer that re-arms itself at once forever with an AssertionError",
  () => {
    const clock = new ManualClock();
    const rearm = () => void clock.setTimer(0, rearm);
    clock.setTimer(0, rearm);
    assert.throws(() => clock.advance(1), AssertionError);
  },
);

Deno.test(
  "ManualClock.advance() with a negative delta sets only the wall clock back and runs no timer",
  () => {
    const clock = new ManualClock(1_000);
    clock.advance(10);
    let ran = false;
    clock.setTimer(0, () => ran = true);
    clock.advance(-500);
    assert.equal(clock.nowMs(), 510);
    assert.equal(clock.monotonicMs(), 10, "monotonic time never goes back");
    assert.equal(ran, false);
    assert.throws(() => clock.advance(Number.NaN), AssertionError);
  },
);

Deno.test(
  "raceDeadline() answers the promise's value and clears its timer when the promise wins",
  async () => {
    const clock = new ManualClock();
    const race = raceDeadline(Promise.resolve("value"), { clock, deadlineMs: 1_000 });
    assert.deepEqual(await race, { timedOut: false, value: "value" });
    assert.equal(clock.timerCount, 0, "no deadline timer is left armed");
  },
);

Deno.test(
  "raceDeadline() answers timedOut once the deadline passes, and handles a later rejection",
  async () => {
    const clock = new ManualClock();
    let reject!: (error: Error) => void;
    const never = new Promise<string>((_, rejectWith) => reject = rejectWith);
    const race = raceDeadline(never, { clock, deadlineMs: 1_000 });
    clock.advance(999);
    let ended = false;
    void race.then(() => ended = true);
    await Promise.resolve();
    assert.equal(ended, false, "not before the deadline");
    clock.advance(1);
    assert.deepEqual(await race, { timedOut: true });
    assert.equal(clock.timerCount, 0);
    reject(new Error("too late")); // an unhandled rejection would fail the test
    await Promise.resolve();
  },
);

Deno.test(
  "raceDeadline() rejects with the promise's error before the deadline and clears its timer",
  async () => {
    const clock = new ManualClock();
    await assert.rejects(
      raceDeadline(Promise.reject(new Error("failed")), { clock, deadlineMs: 1_000 }),
      /failed/,
    );
    assert.equal(clock.timerCount, 0);
  },
);

Deno.test("systemClock's timers run after their delay, and a cleared one never runs", async () => {
  const runs: string[] = [];
  const cleared = systemClock.setTimer(1, () => runs.push("cleared"));
  systemClock.clearTimer(cleared);
  const startedMs = systemClock.monotonicMs();
  await sleep(systemClock, 20);
  assert.ok(systemClock.monotonicMs() - startedMs >= 19, "not before the delay (1 ms of rounding)");
  assert.deepEqual(runs, []);
  const race = await raceDeadline(Promise.resolve(1), { clock: systemClock, deadlineMs: 60_000 });
  assert.deepEqual(race, { timedOut: false, value: 1 });
});

Deno.test("sleep() on a ManualClock resolves when the clock passes the delay", async () => {
  const clock = new ManualClock();
  let woke = false;
  const sleeping = sleep(clock, 50).then(() => woke = true);
  clock.advance(49);
  await Promise.resolve();
  assert.equal(woke, false);
  clock.advance(1);
  await sleeping;
  assert.equal(woke, true);
});
