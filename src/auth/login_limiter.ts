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
  readonly addressCounter: Counter;
}

/**
 * Counts failed logins in fixed windows, so wrong secrets throttle the guesser, not the owner (SPEC §8):
 *
 * - per user *and* client address together: at most `limits.loginFailuresMax` failures a window; more
 *   attempts at that user from that address are refused until the window ends. The same user from
 *   another address, and other users from this address, are not affected.
 * - per client address across all users: at most `limits.loginAddressFailuresMax` failures a window
 *   (10× the first by default); over it, the address is refused for every user.
 *
 * A correct secret from an address that has not failed is therefore never refused. A window opens at
 * the first failure of its key and lasts `limits.loginWindowMs`. An attempt on an existing user is
 * counted as a failure *before* its (slow) hash is checked and refunded on success, so a burst of
 * concurrent guesses cannot slip past the limit while hashes run; a success also forgets the failures
 * of its user from its address.
 *
 * Both kinds of counter share one map bounded to `limits.loginCountersMax` entries. Windows open in
 * monotonic time order and a re-opened key moves to the end, so the map's insertion order is window
 * order: expired entries are dropped from the front, and when full the oldest window is forgotten.
 * Forgetting under a flood of distinct keys is the price of a bounded map; one address opens at most
 * `loginAddressFailuresMax` pair counters a window.
 */
export class LoginLimiter {
  readonly #limits: Limits;
  readonly #clock: Clock;
  readonly #counters = new Map<string, Counter>();
  #lastWindowStartMs = -Infinity;

  constructor(options: { limits: Limits; clock: Clock }) {
    assert(options.limits.loginFailuresMax >= 1, "loginFailuresMax must be at least 1");
    assert(options.limits.loginAddressFailuresMax >= 1, "loginAddressFailuresMax must be at least 1");
    assert(options.limits.loginWindowMs >= 1, "loginWindowMs must be at least 1");
    assert(options.limits.loginCountersMax >= 2, "loginCountersMax must hold a pair and an address");
    this.#limits = options.limits;
    this.#clock = options.clock;
  }

  /** Counters currently kept (user-address pairs plus addresses); never more than `loginCountersMax`. */
  get counterCount(): number {
    return this.#counters.size;
  }

  /**
   * Refuses the attempt when this user from this address, or this address across users, has used up
   * its failures in the current window.
   *
   * @throws {RateLimitedError} with `Retry-After` = whole seconds until the later of the windows that
   * refuse it ends.
   */
  assertAllowed(attempt: LoginAttempt): void {
    this.#expireOldest();
    const { loginFailuresMax, loginAddressFailuresMax, loginWindowMs } = this.#limits;
    const pairWait = this.#waitMs(pairKey(attempt), loginFailuresMax);
    const addressWait = this.#waitMs(addressKey(attempt.client), loginAddressFailuresMax);
    if (pairWait === 0 && addressWait === 0) return;
    const retryAfterSecs = Math.max(1, Math.ceil(Math.max(pairWait, addressWait) / 1000));
    const reason = addressWait >= pairWait
      ? `from this address, across users: the limit is ${loginAddressFailuresMax} (loginAddressFailuresMax)`
      : `for this user from this address: the limit is ${loginFailuresMax} (loginFailuresMax)`;
    const window = `per ${loginWindowMs} ms (loginWindowMs)`;
    throw new RateLimitedError(`Too many failed logins ${reason} ${window}; retry in ${retryAfterSecs} s`, {
      retryAfterSecs,
    });
  }

  /**
   * Checks the attempt, then counts it as a failure of its user-address pair and of its address until
   * {@linkcode LoginLimiter.succeed} refunds it.
   *
   * @throws {RateLimitedError} as {@linkcode LoginLimiter.assertAllowed}.
   */
  begin(attempt: LoginAttempt): LoginTicket {
    this.assertAllowed(attempt);
    this.#countFailure(pairKey(attempt), this.#limits.loginFailuresMax);
    const addressCounter = this.#countFailure(
      addressKey(attempt.client),
      this.#limits.loginAddressFailuresMax,
    );
    return { attempt, addressCounter };
  }

  /** The secret was right: the pair's failures are forgotten; the address keeps its earlier failures. */
  succeed(ticket: LoginTicket): void {
    this.#counters.delete(pairKey(ticket.attempt));
    const key = addressKey(ticket.attempt.client);
    // Refund only the window the attempt was counted in; a window opened since then never counted it.
    if (this.#counters.get(key) !== ticket.addressCounter) return;
    assert(ticket.addressCounter.failureCount >= 1, "a counted attempt must still be counted");
    ticket.addressCounter.failureCount -= 1;
    if (ticket.addressCounter.failureCount === 0) this.#counters.delete(key);
  }

  #waitMs(key: string, failuresMax: number): number {
    const counter = this.#live(key);
    if (counter === undefined || counter.failureCount < failuresMax) return 0;
    const waitMs = counter.windowStartMs + this.#limits.loginWindowMs - this.#clock.monotonicMs();
    assert(waitMs > 0, "a live window must have time left");
    return waitMs;
  }

  #countFailure(key: string, failuresMax: number): Counter {
    const existing = this.#live(key);
    if (existing !== undefined) {
      existing.failureCount += 1;
      assert(existing.failureCount <= failuresMax, "failures are checked before counting");
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

/** A user-address pair's key. Names hold no control character (the HTTP layer refuses them). */
function pairKey(attempt: LoginAttempt): string {
  return `pair:${attempt.client}\u0000${attempt.user}`;
}

function addressKey(client: string): string {
  return `address:${client}`;
}
