import type { Limits } from "../config/limits.ts";
import { assert } from "../util/assert.ts";
import type { Clock } from "../util/clock.ts";
import { RateLimitedError } from "./errors.ts";

/** Who is trying to log in, and from where. */
export interface LoginAttempt {
  user: string;
  /** The client address as the HTTP layer sees it. */
  client: string;
}

interface Counter {
  /** Monotonic time of the first failure of this window. */
  windowStartMs: number;
  failureCount: number;
}

/** An attempt counted in advance by {@linkcode LoginLimiter.begin}; hand it back on success. */
export interface LoginTicket {
  readonly attempt: LoginAttempt;
  readonly clientCounter: Counter;
}

/**
 * Counts failed logins per user and per client address in fixed windows.
 *
 * A window opens at the first failure of its key and lasts `limits.loginWindowMs`; within it at most
 * `limits.loginFailuresMax` failures are allowed, and further attempts are refused until the window ends.
 * An attempt on an existing user is counted as a failure *before* its (slow) hash is checked and refunded
 * on success, so a burst of concurrent guesses cannot slip past the limit while hashes run.
 *
 * Both kinds of counter share one map bounded to `limits.loginCountersMax` entries. Windows open in
 * monotonic time order and a re-opened key moves to the end, so the map's insertion order is window
 * order: expired entries are dropped from the front, and when full the oldest window is forgotten.
 * Forgetting under a flood of distinct keys is the price of a bounded map.
 */
export class LoginLimiter {
  readonly #limits: Limits;
  readonly #clock: Clock;
  readonly #counters = new Map<string, Counter>();
  #lastWindowStartMs = -Infinity;

  constructor(options: { limits: Limits; clock: Clock }) {
    assert(options.limits.loginFailuresMax >= 1, "loginFailuresMax must be at least 1");
    assert(options.limits.loginWindowMs >= 1, "loginWindowMs must be at least 1");
    assert(options.limits.loginCountersMax >= 2, "loginCountersMax must hold a user and an address");
    this.#limits = options.limits;
    this.#clock = options.clock;
  }

  /** Counters currently kept (users plus addresses); never more than `limits.loginCountersMax`. */
  get counterCount(): number {
    return this.#counters.size;
  }

  /**
   * Refuses the attempt when its user or its address has used up its failures in the current window.
   *
   * @throws {RateLimitedError} with `Retry-After` = whole seconds until the later of the two windows ends.
   */
  assertAllowed(attempt: LoginAttempt): void {
    this.#expireOldest();
    const userWait = this.#waitMs(userKey(attempt.user));
    const clientWait = this.#waitMs(clientKey(attempt.client));
    if (userWait === 0 && clientWait === 0) return;
    const retryAfterSecs = Math.max(1, Math.ceil(Math.max(userWait, clientWait) / 1000));
    const who = userWait >= clientWait ? "for this user" : "from this address";
    const { loginFailuresMax, loginWindowMs } = this.#limits;
    throw new RateLimitedError(
      `Too many failed logins ${who}: the limit is ${loginFailuresMax} (loginFailuresMax) ` +
        `per ${loginWindowMs} ms (loginWindowMs); retry in ${retryAfterSecs} s`,
      { retryAfterSecs },
    );
  }

  /**
   * Checks the attempt, then counts it as a failure of its user and its address until
   * {@linkcode LoginLimiter.succeed} refunds it.
   *
   * @throws {RateLimitedError} as {@linkcode LoginLimiter.assertAllowed}.
   */
  begin(attempt: LoginAttempt): LoginTicket {
    this.assertAllowed(attempt);
    this.#countFailure(userKey(attempt.user));
    const clientCounter = this.#countFailure(clientKey(attempt.client));
    return { attempt, clientCounter };
  }

  /** The secret was right: the user's counter is reset; the address keeps its earlier failures. */
  succeed(ticket: LoginTicket): void {
    this.#counters.delete(userKey(ticket.attempt.user));
    const key = clientKey(ticket.attempt.client);
    // Refund only the window the attempt was counted in; a window opened since then never counted it.
    if (this.#counters.get(key) !== ticket.clientCounter) return;
    assert(ticket.clientCounter.failureCount >= 1, "a counted attempt must still be counted");
    ticket.clientCounter.failureCount -= 1;
    if (ticket.clientCounter.failureCount === 0) this.#counters.delete(key);
  }

  #waitMs(key: string): number {
    const counter = this.#live(key);
    if (counter === undefined || counter.failureCount < this.#limits.loginFailuresMax) return 0;
    const waitMs = counter.windowStartMs + this.#limits.loginWindowMs - this.#clock.monotonicMs();
    assert(waitMs > 0, "a live window must have time left");
    return waitMs;
  }

  #countFailure(key: string): Counter {
    const existing = this.#live(key);
    if (existing !== undefined) {
      existing.failureCount += 1;
      assert(existing.failureCount <= this.#limits.loginFailuresMax, "failures are checked before counting");
      return existing;
    }
    const nowMs = this.#clock.monotonicMs();
    assert(nowMs >= this.#lastWindowStartMs, "windows must open in time order");
    this.#counters.delete(key);
    while (this.#counters.size >= this.#limits.loginCountersMax) {
      const oldestKey = this.#counters.keys().next().value;
      assert(oldestKey !== undefined);
      this.#counters.delete(oldestKey);
    }
    const counter = { windowStartMs: nowMs, failureCount: 1 };
    this.#counters.set(key, counter);
    this.#lastWindowStartMs = nowMs;
    assert(this.#counters.size <= this.#limits.loginCountersMax);
    return counter;
  }

  /** The key's counter if its window is still open. */
  #live(key: string): Counter | undefined {
    const counter = this.#counters.get(key);
    if (counter === undefined) return undefined;
    if (this.#clock.monotonicMs() < counter.windowStartMs + this.#limits.loginWindowMs) return counter;
    this.#counters.delete(key);
    return undefined;
  }

  /** Drops expired windows from the front of the map; amortized O(1) per counted failure. */
  #expireOldest(): void {
    const nowMs = this.#clock.monotonicMs();
    for (const [key, counter] of this.#counters) {
      if (nowMs < counter.windowStartMs + this.#limits.loginWindowMs) return;
      this.#counters.delete(key);
    }
  }
}

function userKey(user: string): string {
  return `user:${user}`;
}

function clientKey(client: string): string {
  return `client:${client}`;
}
