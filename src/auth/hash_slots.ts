import { assert } from "../util/assert.ts";
import { UnavailableError } from "../util/errors.ts";

/**
 * Runs at most `concurrencyMax` password hashes at once; up to `queueMax` more wait their turn, first come
 * first served. A PBKDF2 hash is ~150 ms of one core on a thread of its own: fifty at once (a burst of
 * registrations of one name) would leave the event loop a sliver of the CPU, and with it gossip and
 * replication, so peers would take the node for dead. Queued, the burst takes as long in total and the
 * node keeps answering.
 */
export class HashSlots {
  readonly #concurrencyMax: number;
  readonly #queueMax: number;
  #running = 0;
  readonly #queue: Array<() => void> = [];

  constructor(options: { concurrencyMax: number; queueMax: number }) {
    assert(Number.isSafeInteger(options.concurrencyMax), "concurrencyMax must be an integer");
    assert(options.concurrencyMax >= 1, "concurrencyMax must be positive");
    assert(Number.isSafeInteger(options.queueMax), "queueMax must be an integer");
    assert(options.queueMax >= 0, "queueMax must not be negative");
    this.#concurrencyMax = options.concurrencyMax;
    this.#queueMax = options.queueMax;
  }

  /** Hashes running now. */
  get runningCount(): number {
    return this.#running;
  }

  /** Hashes waiting for a slot now. */
  get queuedCount(): number {
    return this.#queue.length;
  }

  /**
   * Runs `hash` once a slot is free.
   *
   * @throws {UnavailableError} at once when `queueMax` hashes are already waiting.
   */
  async run<T>(hash: () => Promise<T>): Promise<T> {
    if (this.#running < this.#concurrencyMax) {
      this.#running += 1;
    } else {
      if (this.#queue.length >= this.#queueMax) {
        throw new UnavailableError(
          `Cannot check a secret now: ${this.#queue.length} are waiting for a hash, the limit is ` +
            `${this.#queueMax}; retry`,
        );
      }
      // The slot is handed over by the hash that ends, so `#running` stays as it is.
      await new Promise<void>((resolve) => this.#queue.push(resolve));
    }
    assert(this.#running <= this.#concurrencyMax, "no more hashes run than slots");
    try {
      return await hash();
    } finally {
      const next = this.#queue.shift();
      if (next === undefined) this.#running -= 1;
      else next();
      assert(this.#running >= 0, "a slot is released once");
    }
  }
}
