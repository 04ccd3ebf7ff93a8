// Goal: Deadlines runs each callback once, never before its due time, in due order whatever the order they
// were added in, never a deleted one, and leaves no timer pending once nothing is registered.
// Method: real timers of a few milliseconds; each test waits on the callbacks' own promises (no sleeps)
// and checks `timerPending` once nothing is registered.
import assert from "node:assert/strict";
import { Deadlines } from "../../../src/util/deadlines.ts";

/** A callback that records when it ran, and a promise of its first run. */
function probe(name: string, runs: Array<{ name: string; atMs: number }>) {
  let ran!: () => void;
  const done = new Promise<void>((resolve) => ran = resolve);
  return {
    done,
    expire: () => {
      runs.push({ name, atMs: performance.now() });
      ran();
    },
  };
}

Deno.test("Deadlines runs callbacks in due order, each once and not before its due time", async () => {
  const deadlines = new Deadlines();
  const runs: Array<{ name: string; atMs: number }> = [];
  const late = probe("late", runs);
  const early = probe("early", runs);
  const middle = probe("middle", runs);
  // Added out of order: the earlier one re-arms the timer.
  const lateDeadline = deadlines.add(30, late.expire);
  const earlyDeadline = deadlines.add(5, early.expire);
  const middleDeadline = deadlines.add(15, middle.expire);
  await Promise.all([late.done, early.done, middle.done]);
  assert.deepEqual(runs.map((run) => run.name), ["early", "middle", "late"]);
  const dueOf = { early: earlyDeadline.dueMs, middle: middleDeadline.dueMs, late: lateDeadline.dueMs };
  for (const run of runs) {
    assert.ok(run.atMs >= dueOf[run.name as keyof typeof dueOf], `${run.name} ran early`);
  }
  assert.equal(deadlines.size, 0);
  assert.equal(deadlines.timerPending, false, "nothing left, no timer");
  deadlines.delete(lateDeadline); // after it ran: harmless
  assert.equal(runs.length, 3, "each ran once");
});

Deno.test("Deadlines never runs a deleted callback, and holds no timer once all are deleted", async () => {
  const deadlines = new Deadlines();
  const runs: Array<{ name: string; atMs: number }> = [];
  const kept = probe("kept", runs);
  const dropped = deadlines.add(1, () => runs.push({ name: "dropped", atMs: performance.now() }));
  deadlines.add(20, kept.expire);
  deadlines.delete(dropped);
  await kept.done;
  assert.deepEqual(runs.map((run) => run.name), ["kept"]);
  assert.equal(deadlines.timerPending, false);
  // Registered and deleted before its time: its timer goes with it.
  const gone = deadlines.add(60_000, () => runs.push({ name: "gone", atMs: performance.now() }));
  assert.equal(deadlines.size, 1);
  assert.equal(deadlines.timerPending, true);
  deadlines.delete(gone);
  assert.equal(deadlines.size, 0);
  assert.equal(deadlines.timerPending, false, "a deleted deadline leaves no timer behind");
});

Deno.test("Deadlines refuses a delay that is negative or not finite", () => {
  const deadlines = new Deadlines();
  assert.throws(() => deadlines.add(-1, () => {}), /finite delay/);
  assert.throws(() => deadlines.add(Number.NaN, () => {}), /finite delay/);
  assert.equal(deadlines.size, 0);
});
