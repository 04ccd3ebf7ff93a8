// Goal: LoginLimiter throttles the guesser, not the owner (SPEC §8): at most loginFailuresMax failures
// per user and address together and loginAddressFailuresMax per address across users, in each window;
// it refunds successes, forgets expired windows and never keeps more than loginCountersMax counters.
// Method: a ManualClock and small limits.
import assert from "node:assert/strict";
import { RateLimitedError } from "../../../src/auth/errors.ts";
import { LoginLimiter } from "../../../src/auth/login_limiter.ts";
import { AssertionError } from "../../../src/util/assert.ts";
import { ManualClock } from "../../../src/util/clock.ts";
import { testLimits } from "./memory_users.ts";

function makeLimiter(overrides: Parameters<typeof testLimits>[0]) {
  const clock = new ManualClock();
  return { clock, limiter: new LoginLimiter({ limits: testLimits(overrides), clock }) };
}

function isLimited(limiter: LoginLimiter, attempt: { user: string; client: string }): boolean {
  try {
    limiter.assertAllowed(attempt);
    return false;
  } catch (error) {
    assert.ok(error instanceof RateLimitedError);
    return true;
  }
}

Deno.test("LoginLimiter refuses a user from an address at loginFailuresMax failures, and nobody else", () => {
  const { limiter, clock } = makeLimiter({ loginFailuresMax: 10, loginAddressFailuresMax: 100 });
  for (let index = 0; index < 9; index += 1) limiter.begin({ user: "alice", client: "attacker" });
  assert.ok(!isLimited(limiter, { user: "alice", client: "attacker" }), "at max - 1 failures: allowed");
  limiter.begin({ user: "alice", client: "attacker" });
  clock.advance(1_500);
  assert.throws(() => limiter.assertAllowed({ user: "alice", client: "attacker" }), (error: unknown) => {
    assert.ok(error instanceof RateLimitedError);
    assert.equal(error.retryAfterSecs, 59);
    assert.match(
      error.message,
      /for this user from this address: the limit is 10 \(loginFailuresMax\) per 60000 ms/,
    );
    return true;
  });
  assert.ok(!isLimited(limiter, { user: "alice", client: "home" }), "the owner from elsewhere");
  assert.ok(!isLimited(limiter, { user: "bob", client: "attacker" }), "another user behind the address");
});

Deno.test("LoginLimiter refuses an address for every user at loginAddressFailuresMax failures", () => {
  const { limiter } = makeLimiter({ loginFailuresMax: 3, loginAddressFailuresMax: 7 });
  for (let index = 0; index < 6; index += 1) limiter.begin({ user: `user-${index % 3}`, client: "nat" });
  assert.ok(!isLimited(limiter, { user: "user-0", client: "nat" }), "at max - 1: each pair has 2 of 3");
  assert.ok(!isLimited(limiter, { user: "newcomer", client: "nat" }));
  limiter.begin({ user: "user-3", client: "nat" });
  assert.throws(() => limiter.assertAllowed({ user: "newcomer", client: "nat" }), (error: unknown) => {
    assert.ok(error instanceof RateLimitedError);
    assert.match(
      error.message,
      /from this address, across users: the limit is 7 \(loginAddressFailuresMax\) per 60000 ms/,
    );
    return true;
  });
  assert.ok(!isLimited(limiter, { user: "newcomer", client: "elsewhere" }));
});

Deno.test("LoginLimiter keeps loginCountersMax counters at max and evicts the oldest at max + 1", () => {
  const { limiter, clock } = makeLimiter({
    loginFailuresMax: 1,
    loginAddressFailuresMax: 1,
    loginCountersMax: 4,
  });
  limiter.begin({ user: "u1", client: "c1" });
  clock.advance(10);
  limiter.begin({ user: "u2", client: "c2" });
  assert.equal(limiter.counterCount, 4);
  assert.ok(isLimited(limiter, { user: "u1", client: "c1" }), "at max nothing is evicted");
  assert.ok(isLimited(limiter, { user: "other", client: "c1" }));
  clock.advance(10);
  limiter.begin({ user: "u3", client: "c3" });
  assert.equal(limiter.counterCount, 4);
  assert.ok(!isLimited(limiter, { user: "u1", client: "c1" }), "the oldest window was forgotten");
  assert.ok(isLimited(limiter, { user: "u2", client: "c2" }));
  assert.ok(isLimited(limiter, { user: "u3", client: "c3" }));
});

Deno.test("LoginLimiter forgets windows once they end", () => {
  const { limiter, clock } = makeLimiter({ loginFailuresMax: 2, loginWindowMs: 1_000 });
  limiter.begin({ user: "u1", client: "c1" });
  clock.advance(500);
  limiter.begin({ user: "u2", client: "c2" });
  assert.equal(limiter.counterCount, 4);
  clock.advance(500);
  assert.ok(!isLimited(limiter, { user: "u2", client: "c2" }));
  assert.equal(limiter.counterCount, 2, "the first window expired and was dropped");
  clock.advance(500);
  assert.ok(!isLimited(limiter, { user: "x", client: "y" }));
  assert.equal(limiter.counterCount, 0);
});

Deno.test("LoginLimiter.assertAllowed() reports the longer wait as Retry-After, rounded up", () => {
  const { limiter, clock } = makeLimiter({
    loginFailuresMax: 1,
    loginAddressFailuresMax: 2,
    loginWindowMs: 10_000,
  });
  limiter.begin({ user: "u2", client: "c1" });
  clock.advance(2_500);
  limiter.begin({ user: "u1", client: "c1" });
  assert.throws(() => limiter.assertAllowed({ user: "u1", client: "c1" }), (error: unknown) => {
    assert.ok(error instanceof RateLimitedError);
    assert.equal(error.retryAfterSecs, 10, "the pair's window ends in 10 s, the address's in 7.5 s");
    assert.equal(error.headers["Retry-After"], "10");
    assert.match(error.message, /for this user from this address/);
    return true;
  });
  assert.throws(() => limiter.assertAllowed({ user: "u9", client: "c1" }), (error: unknown) => {
    assert.ok(error instanceof RateLimitedError);
    assert.equal(error.retryAfterSecs, 8, "7.5 s rounded up");
    assert.match(error.message, /from this address, across users/);
    return true;
  });
  clock.advance(7_500);
  assert.ok(!isLimited(limiter, { user: "u9", client: "c1" }), "the address's window ended");
  assert.throws(() => limiter.assertAllowed({ user: "u1", client: "c1" }), { retryAfterSecs: 3 });
});

Deno.test("LoginLimiter.succeed() refunds the address and forgets the pair's failures", () => {
  const { limiter } = makeLimiter({ loginFailuresMax: 2, loginAddressFailuresMax: 3 });
  limiter.begin({ user: "u1", client: "c1" });
  const ticket = limiter.begin({ user: "u1", client: "c1" });
  assert.ok(isLimited(limiter, { user: "u1", client: "c1" }));
  limiter.succeed(ticket);
  assert.ok(!isLimited(limiter, { user: "u1", client: "c1" }), "the pair's counter was reset");
  limiter.begin({ user: "u2", client: "c1" });
  assert.ok(!isLimited(limiter, { user: "u3", client: "c1" }), "the address holds 2 of 3: one was refunded");
  limiter.begin({ user: "u3", client: "c1" });
  assert.ok(isLimited(limiter, { user: "u4", client: "c1" }), "the address keeps its earlier failures");
});

Deno.test("LoginLimiter.succeed() does not refund a window opened after the attempt", () => {
  const { limiter, clock } = makeLimiter({ loginAddressFailuresMax: 2, loginWindowMs: 1_000 });
  const ticket = limiter.begin({ user: "u1", client: "c1" });
  clock.advance(1_000);
  limiter.begin({ user: "u2", client: "c1" });
  limiter.begin({ user: "u3", client: "c1" });
  limiter.succeed(ticket);
  assert.ok(isLimited(limiter, { user: "u4", client: "c1" }), "the new window keeps both failures");
});

Deno.test("LoginLimiter asserts limits it cannot work with", () => {
  const clock = new ManualClock();
  assert.throws(
    () => new LoginLimiter({ limits: testLimits({ loginCountersMax: 1 }), clock }),
    AssertionError,
  );
  assert.throws(
    () => new LoginLimiter({ limits: testLimits({ loginFailuresMax: 0 }), clock }),
    AssertionError,
  );
  assert.throws(
    () => new LoginLimiter({ limits: testLimits({ loginAddressFailuresMax: 0 }), clock }),
    AssertionError,
  );
});
