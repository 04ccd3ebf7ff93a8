import { assert } from "../util/assert.ts";
import type { Clock } from "../util/clock.ts";
import { Histogram, secondsBounds } from "../util/metrics.ts";

/**
 * Upper bounds, in seconds, of the delivery histogram: a live frame is handed over within the publish
 * that carries it (microseconds for a few subscribers, tens of milliseconds for a fan-out to ten
 * thousand), a frame held behind a replay or a snapshot when the client has read them (up to seconds).
 */
export const deliverySecondsBounds: readonly number[] = [0.00001, 0.00005, 0.0001, 0.00025, ...secondsBounds];

/**
 * Times each change from its publication ({@linkcode DeliveryTimer.begin}, when the broker takes it) to
 * the hand-over of its frame to a subscriber's stream, into one histogram shared by every subscriber.
 *
 * The publish path pays for it only when some subscription is open: one clock read as it starts, and one
 * more as it ends if a live frame was handed over. Live frames are counted during the fan-out (an
 * increment each, no allocation, no clock read) and all observed at the fan-out's end with its whole
 * duration: an upper bound for the first subscribers, exact for the last. A frame held back (behind a
 * replay or a snapshot) carries its publication time in the record that holds it anyway, and is observed
 * when it is handed over.
 */
export class DeliveryTimer {
  /** Seconds from publication to hand-over, one observation per frame handed to a stream. */
  readonly seconds = new Histogram(deliverySecondsBounds);
  readonly #clock: Clock;
  /** When the change being published was taken (monotonic ms); read by subscribers that hold it. */
  #publishedMs = 0;
  /** Live frames handed over since {@linkcode DeliveryTimer.begin}. */
  #liveCount = 0;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** When the change being published was taken, in monotonic ms: a held frame keeps it. */
  get publishedMs(): number {
    return this.#publishedMs;
  }

  /** The current monotonic time, for a caller that hands several held frames over at once. */
  nowMs(): number {
    return this.#clock.monotonicMs();
  }

  /** A publish with subscribers starts: its change is timed from now. */
  begin(): void {
    this.#publishedMs = this.#clock.monotonicMs();
    this.#liveCount = 0;
  }

  /** A live frame of the change being published was handed to a stream. */
  handedOver(): void {
    this.#liveCount += 1;
  }

  /** The publish ends: its live frames are observed with the fan-out's duration. */
  end(): void {
    const count = this.#liveCount;
    if (count === 0) return;
    this.#liveCount = 0;
    const elapsedMs = this.#clock.monotonicMs() - this.#publishedMs;
    assert(elapsedMs >= 0, "the monotonic clock does not go back");
    this.seconds.observeMany(elapsedMs / 1000, count);
    assert(this.#liveCount === 0);
  }

  /**
   * A held frame was handed over `elapsedMs` after its publication (the caller reads the clock once for all
   * the frames it hands over together).
   */
  handedOverHeld(elapsedMs: number): void {
    assert(elapsedMs >= 0, "a frame is handed over after it was published");
    this.seconds.observe(elapsedMs / 1000);
  }
}
