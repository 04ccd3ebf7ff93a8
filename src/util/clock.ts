import { assert } from "./assert.ts";

declare const timerBrand: unique symbol;

/** A timer armed by {@linkcode Clock.setTimer}: opaque, only good for handing back to `clearTimer`. */
export interface TimerHandle {
  readonly [timerBrand]: true;
}

/** What `setTimeout` returns (an object in Deno 2.9, as in Node). */
type SystemTimer = ReturnType<typeof setTimeout>;

/**
 * The one door to time: reading it, and waiting on it. Tests inject a {@linkcode ManualClock}, on which
 * nothing happens until the test moves time forward.
 */
export interface Clock {
  /** Wall-clock milliseconds since the epoch (record timestamps). */
  nowMs(): number;
  /** Monotonic milliseconds (durations, rate windows). */
  monotonicMs(): number;
  /** Calls `callback` once, `delayMs` from now on the monotonic clock, unless cleared first. */
  setTimer(delayMs: number, callback: () => void): TimerHandle;
  /** Cancels a timer: its callback never runs. Clearing one that ran or was cleared is harmless. */
  clearTimer(handle: TimerHandle | undefined): void;
}

/** The real clock: `Date.now()`, `performance.now()` and `setTimeout`. */
export const systemClock: Clock = {
  nowMs: () => Date.now(),
  monotonicMs: () => performance.now(),
  setTimer: (delayMs, callback) => setTimeout(callback, delayMs) as unknown as TimerHandle,
  clearTimer: (handle) => clearTimeout(handle as unknown as SystemTimer | undefined),
};

/** How {@linkcode raceDeadline} ended: the promise settled first (with its value), or the deadline passed. */
export type DeadlineRace<T> = { timedOut: false; value: T } | { timedOut: true };

/**
 * Waits for `promise` until `deadlineMs` has passed on `clock`, and clears the deadline's timer however the
 * race ends: a bare `Promise.race` with a `setTimeout` leaves the timer running after the promise wins. A
 * rejection of `promise` before the deadline rejects the race; one after it is handled (and ignored).
 */
export function raceDeadline<T>(
  promise: Promise<T>,
  options: { clock: Clock; deadlineMs: number },
): Promise<DeadlineRace<T>> {
  const { clock, deadlineMs } = options;
  let timer: TimerHandle | undefined;
  const deadline = new Promise<DeadlineRace<T>>((resolve) => {
    timer = clock.setTimer(deadlineMs, () => resolve({ timedOut: true }));
  });
  const settled = promise.then((value): DeadlineRace<T> => ({ timedOut: false, value }));
  return Promise.race([settled, deadline]).finally(() => clock.clearTimer(timer));
}

/** Resolves after `delayMs` on `clock` (a pause between retries). */
export function sleep(clock: Clock, delayMs: number): Promise<void> {
  return new Promise((resolve) => clock.setTimer(delayMs, resolve));
}

/** One timer of a {@linkcode ManualClock}. */
interface ManualTimer {
  dueMs: number;
  callback: () => void;
}

/**
 * Timers one `advance()` may run. A callback that always sets another timer due at once would otherwise
 * hold `advance()` forever; that is a bug of the code under test, reported by an assertion.
 */
const manualTimerRunsMax = 100_000;

/**
 * A clock that moves only when told to; for unit tests. Its timers run only inside {@linkcode advance}:
 * synchronously, in due order (timers due at the same time in the order they were set), each with the clock
 * reading its due time, including timers set by a callback that fall due before the advance ends.
 */
export class ManualClock implements Clock {
  #nowMs: number;
  #monotonicMs = 0;
  /** Pending timers by handle, in the order they were set (a Map keeps insertion order). */
  readonly #timers = new Map<TimerHandle, ManualTimer>();

  constructor(startMs = 1_700_000_000_000) {
    this.#nowMs = startMs;
  }

  nowMs(): number {
    return this.#nowMs;
  }

  monotonicMs(): number {
    return this.#monotonicMs;
  }

  /** Timers set and not yet run or cleared. */
  get timerCount(): number {
    return this.#timers.size;
  }

  setTimer(delayMs: number, callback: () => void): TimerHandle {
    assert(Number.isFinite(delayMs), "a timer's delay is finite");
    const handle = Object.freeze({}) as TimerHandle;
    // Like setTimeout, a negative delay means now.
    this.#timers.set(handle, { dueMs: this.#monotonicMs + Math.max(0, delayMs), callback });
    return handle;
  }

  clearTimer(handle: TimerHandle | undefined): void {
    if (handle !== undefined) this.#timers.delete(handle);
  }

  /**
   * Moves both clocks forward by `deltaMs`, running every timer that falls due on the way. A negative
   * `deltaMs` sets only the wall clock back (a host's clock stepped back): monotonic time never goes back,
   * and no timer runs.
   */
  advance(deltaMs: number): void {
    assert(Number.isFinite(deltaMs), "a manual clock moves by a finite time");
    if (deltaMs < 0) {
      this.#nowMs += deltaMs;
      return;
    }
    const targetMs = this.#monotonicMs + deltaMs;
    for (let runCount = 0;; runCount += 1) {
      const next = this.#nextDue(targetMs);
      if (next === undefined) break;
      assert(runCount < manualTimerRunsMax, `over ${manualTimerRunsMax} timers ran in one advance()`);
      this.#timers.delete(next.handle);
      this.#moveTo(next.timer.dueMs);
      next.timer.callback();
    }
    this.#moveTo(targetMs);
    assert(this.#monotonicMs === targetMs);
  }

  /** The earliest timer due at or before `targetMs`; of equal ones, the first set. */
  #nextDue(targetMs: number): { handle: TimerHandle; timer: ManualTimer } | undefined {
    let next: { handle: TimerHandle; timer: ManualTimer } | undefined;
    for (const [handle, timer] of this.#timers) {
      if (timer.dueMs > targetMs) continue;
      if (next === undefined || timer.dueMs < next.timer.dueMs) next = { handle, timer };
    }
    return next;
  }

  #moveTo(monotonicMs: number): void {
    const deltaMs = monotonicMs - this.#monotonicMs;
    assert(deltaMs >= 0, "no timer is due before the time it was set at");
    this.#nowMs += deltaMs;
    this.#monotonicMs = monotonicMs;
  }
}
