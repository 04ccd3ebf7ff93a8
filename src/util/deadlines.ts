import { assert } from "./assert.ts";
import { systemClock } from "./clock.ts";

/** One callback registered with {@linkcode Deadlines}. */
export interface Deadline {
  /** `systemClock.monotonicMs()` at or after which it runs (real time: a timer fires on it). */
  readonly dueMs: number;
  readonly expire: () => void;
}

/**
 * Callbacks due at a time, served by one timer instead of one each. A proposer's round waits for its
 * answers until a deadline, and nearly every round ends long before it, so a `setTimeout` and a
 * `clearTimeout` per round (~2.5-3.5 µs together on this host with Deno 2.9's timers) bought nothing. The
 * one timer is armed for the earliest callback due; when it fires it runs every callback due and arms itself
 * for the next. A callback runs at or after its due time, never before, and once at most; a deleted one never
 * runs. With nothing registered no timer is pending.
 */
export class Deadlines {
  readonly #due = new Set<Deadline>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** When the pending timer is due; Infinity when none is pending. */
  #armedAtMs = Infinity;

  /** Callbacks registered and not yet run or deleted. */
  get size(): number {
    return this.#due.size;
  }

  /** Whether a timer is pending (exactly when something is registered). */
  get timerPending(): boolean {
    return this.#timer !== undefined;
  }

  /** Runs `expire` in `delayMs` (from now), unless {@linkcode delete}d first. */
  add(delayMs: number, expire: () => void): Deadline {
    assert(Number.isFinite(delayMs) && delayMs >= 0, "a deadline is a finite delay");
    const deadline: Deadline = { dueMs: systemClock.monotonicMs() + delayMs, expire };
    this.#due.add(deadline);
    if (deadline.dueMs < this.#armedAtMs) this.#arm(deadline.dueMs);
    assert(this.#timer !== undefined && this.#armedAtMs <= deadline.dueMs, "a timer is due by then");
    return deadline;
  }

  /** Forgets `deadline` (a round that ended): it never runs. Deleting twice is harmless. */
  delete(deadline: Deadline): void {
    this.#due.delete(deadline);
    if (this.#due.size === 0) this.#disarm();
  }

  #arm(dueMs: number): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#armedAtMs = dueMs;
    this.#timer = setTimeout(() => this.#fire(), Math.max(0, dueMs - systemClock.monotonicMs()));
  }

  #disarm(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#armedAtMs = Infinity;
  }

  #fire(): void {
    this.#timer = undefined;
    this.#armedAtMs = Infinity;
    const nowMs = systemClock.monotonicMs();
    const expired: Deadline[] = [];
    let nextMs = Infinity;
    for (const deadline of this.#due) {
      if (deadline.dueMs <= nowMs) expired.push(deadline);
      else if (deadline.dueMs < nextMs) nextMs = deadline.dueMs;
    }
    for (const deadline of expired) this.#due.delete(deadline);
    // A timer may fire a fraction of a millisecond early: then nothing expired and it is armed again.
    if (nextMs !== Infinity) this.#arm(nextMs);
    assert(this.#due.size === 0 || this.#timer !== undefined, "what is left has a timer");
    for (const deadline of expired) deadline.expire();
  }
}
