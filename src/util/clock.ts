/** The one door to time. Tests inject a manual clock. */
export interface Clock {
  /** Wall-clock milliseconds since the epoch (record timestamps). */
  nowMs(): number;
  /** Monotonic milliseconds (durations, rate windows). */
  monotonicMs(): number;
}

/** The real clock. */
export const systemClock: Clock = {
  nowMs: () => Date.now(),
  monotonicMs: () => performance.now(),
};

/** A clock that moves only when told to; for unit tests. */
export class ManualClock implements Clock {
  #nowMs: number;
  #monotonicMs = 0;

  constructor(startMs = 1_700_000_000_000) {
    this.#nowMs = startMs;
  }

  nowMs(): number {
    return this.#nowMs;
  }

  monotonicMs(): number {
    return this.#monotonicMs;
  }

  /** Moves both clocks forward by `deltaMs`. */
  advance(deltaMs: number): void {
    this.#nowMs += deltaMs;
    this.#monotonicMs += deltaMs;
  }
}
