import { assert, AssertionError } from "../util/assert.ts";
import type { Clock, TimerHandle } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";
import type { ExpiringKey, LocalStore } from "./local_store.ts";

/** Keys taken off the expiry queue per batch; the sweeper yields to the event loop between batches. */
export const expiryBatchMax = 256;
/** Expiries in flight at once: each is a store write or a Paxos round. */
export const expiryInFlightMax = 256;
/** Longest the sweeper sleeps between two looks at the queue (a key queued meanwhile may be due sooner). */
export const expiryIdleMsMax = 1_000;
/** First pause before an expiry that failed (no quorum) is tried again; doubled per failure. */
export const expiryRetryMs = 1_000;
/** Longest pause before an expiry that keeps failing is tried again. */
export const expiryRetryMsMax = 30_000;
/** Failures logged at most once per this interval (a partition fails every expiry of a minority side). */
const failureLogIntervalMs = 10_000;

/** Options of {@linkcode Expirer}. */
export interface ExpirerOptions {
  store: Pick<LocalStore, "takeExpired" | "deferExpiry" | "nextExpiryMs">;
  clock: Clock;
  logger: Logger;
  /**
   * How long this node waits before it proposes the expiry of a due key that was never put back: 0 at
   * once; more when another replica is expected to do it first; undefined to drop the key (this node no
   * longer replicates it). A key put back is proposed when due again, whatever this says.
   */
  delayOf: (item: ExpiringKey) => number | undefined;
  /** Expires the key's version: true when that made the tombstone, false when there was nothing to do. */
  expire: (item: ExpiringKey) => Promise<boolean>;
}

/** What the sweeper did since it started, for `/stats`. */
export interface ExpirerStats {
  /** Expiries proposed (or, alone, attempted on the store). */
  proposed: number;
  /** Of those, the ones that made the tombstone. */
  expired: number;
  /** Refused: another node expired the key, a write replaced it, or it was not due by this clock. */
  refused: number;
  /** Failed (no quorum, a disk error): put back and tried again later. */
  failed: number;
  /** Keys put back once for another replica to expire first. */
  deferred: number;
  inFlight: number;
}

/**
 * The sweeper of keys that expire (DESIGN.md, "Expiry (TTL)", who expires a key): takes the due keys of
 * this node's expiry queue in batches of at most {@linkcode expiryBatchMax}, with at most
 * {@linkcode expiryInFlightMax} expiries in flight, yielding to the event loop between batches, so that any
 * number of keys due at once never stalls the node. A key whose usual proposer is another replica is put
 * back for a grace delay first; one whose expiry fails is put back with a doubling pause. Safety does not
 * depend on any of this: an expiry is a conditional change, decided once whoever proposes it.
 */
export class Expirer {
  readonly #options: ExpirerOptions;
  #running = false;
  #timer: TimerHandle | undefined;
  /** The timer runs at once (a batch is waiting): completions need not set it again. */
  #timerImmediate = false;
  #inFlight = 0;
  #failuresUnlogged = 0;
  #lastFailureLogMs = Number.NEGATIVE_INFINITY;
  readonly #stats = { proposed: 0, expired: 0, refused: 0, failed: 0, deferred: 0 };

  constructor(options: ExpirerOptions) {
    this.#options = options;
  }

  /** Counters since the start. */
  get stats(): ExpirerStats {
    return { ...this.#stats, inFlight: this.#inFlight };
  }

  /** Starts sweeping: at once, then whenever keys come due. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#schedule(0);
  }

  /** Stops sweeping; expiries in flight finish on their own. */
  stop(): void {
    this.#running = false;
    this.#options.clock.clearTimer(this.#timer);
    this.#timer = undefined;
    this.#timerImmediate = false;
  }

  /**
   * One batch, in the caller's turn: takes the keys due now (at most a batch, and no more than the free
   * in-flight slots), puts back those another replica should expire first, and starts the others' expiries.
   * Returns how many keys it took off the queue.
   */
  sweep(): number {
    const free = expiryInFlightMax - this.#inFlight;
    assert(free >= 0, "in-flight expiries stay within their bound");
    if (free === 0) return 0;
    const { store, clock } = this.#options;
    const nowMs = clock.nowMs();
    const items = store.takeExpired(nowMs, Math.min(expiryBatchMax, free));
    assert(items.length <= free, "a batch fits the free slots");
    for (const item of items) {
      const delayMs = this.#options.delayOf(item);
      if (delayMs === undefined) continue; // no longer this node's key: its replicas expire it
      if (delayMs > 0 && item.deferrals === 0) {
        if (store.deferExpiry(item, nowMs + delayMs)) this.#stats.deferred += 1;
        continue;
      }
      this.#run(item);
    }
    return items.length;
  }

  #run(item: ExpiringKey): void {
    assert(item.version >= 1, "an expiry names a version");
    this.#inFlight += 1;
    assert(this.#inFlight <= expiryInFlightMax, "in-flight expiries stay within their bound");
    this.#stats.proposed += 1;
    let expiring: Promise<boolean>;
    try {
      expiring = this.#options.expire(item);
    } catch (error) {
      expiring = Promise.reject(error);
    }
    expiring.then(
      (expired) => {
        if (expired) this.#stats.expired += 1;
        else this.#stats.refused += 1;
      },
      (error: unknown) => this.#failed(item, error),
    ).finally(() => {
      this.#inFlight -= 1;
      assert(this.#inFlight >= 0);
      if (this.#running && !this.#timerImmediate) this.#schedule(0);
    });
  }

  /** An expiry that failed goes back in the queue, due after a pause that doubles per failure. */
  #failed(item: ExpiringKey, error: unknown): void {
    this.#stats.failed += 1;
    const pauseMs = Math.min(expiryRetryMsMax, expiryRetryMs * 2 ** Math.min(item.deferrals, 16));
    assert(pauseMs >= expiryRetryMs && pauseMs <= expiryRetryMsMax, "a retry waits within its bounds");
    this.#options.store.deferExpiry(item, this.#options.clock.nowMs() + pauseMs);
    this.#failuresUnlogged += 1;
    const nowMs = this.#options.clock.monotonicMs();
    const programmer = error instanceof AssertionError;
    if (!programmer && nowMs - this.#lastFailureLogMs < failureLogIntervalMs) return;
    this.#lastFailureLogMs = nowMs;
    const fields = { failures: this.#failuresUnlogged, table: item.table, error: String(error) };
    if (programmer) {
      this.#options.logger.error("an expiry broke an invariant; it is tried again later", fields);
    } else this.#options.logger.warn("expiries failed; each is tried again later", fields);
    this.#failuresUnlogged = 0;
  }

  #schedule(delayMs: number): void {
    this.#options.clock.clearTimer(this.#timer);
    this.#timerImmediate = delayMs === 0;
    this.#timer = this.#options.clock.setTimer(delayMs, () => this.#tick());
  }

  /** A timer's turn: one batch, then the next turn (at once while keys are due and slots are free). */
  #tick(): void {
    this.#timer = undefined;
    this.#timerImmediate = false;
    if (!this.#running) return;
    try {
      this.sweep();
    } catch (error) {
      // A store call failed (it is closing, or broken: the store guard reported that). Look again later.
      this.#options.logger.error("the expiry sweep failed", { error: String(error) });
      this.#schedule(expiryIdleMsMax);
      return;
    }
    if (this.#inFlight >= expiryInFlightMax) return; // a completion schedules the next batch
    const next = this.#options.store.nextExpiryMs();
    const nowMs = this.#options.clock.nowMs();
    const untilNextMs = next === undefined ? expiryIdleMsMax : Math.max(0, next - nowMs);
    this.#schedule(Math.min(untilNextMs, expiryIdleMsMax));
  }
}
