// Goal: LoginLimiter keeps at most loginFailuresMax failures per key and window, refunds successes,
// forgets expired windows and never keeps more than loginCountersMax counters.
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

Deno.test("LoginLimiter keeps loginCountersMax counters at max and evicts the oldest at max + 1", () => {
  const { limiter, clock } = makeLimiter({ loginFailuresMax: 1, loginCountersMax: 4 });
  limiter.begin({ user: "u1", client: "c1" });
  clock.advance(10);
  limiter.begin({ user: "u2", client: "c2" });
  assert.equal(limiter.counterCount, 4);
  assert.ok(isLimited(limiter, { user: "u1", client: "other" }), "at max nothing is evicted");
  assert.ok(isLimited(limiter, { user: "other", client: "c1" }));
  clock.advance(10);
  limiter.begin({ user: "u3", client: "c3" });
  assert.equal(limiter.counterCount, 4);
  assert.ok(!isLimited(limiter, { user: "u1", client: "c1" }), "the oldest window was forgotten");
  assert.ok(isLimited(limiter, { user: "u2", client: "other" }));
  assert.ok(isLimited(limiter, { user: "u3", client: "other" }));
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
  const { limiter, clock } = makeLimiter({ loginFailuresMax: 1, loginWindowMs: 10_000 });
  limiter.begin({ user: "u1", client: "c1" });
  clock.advance(2_500);
  limiter.begin({ user: "u2", client: "c2" });
  assert.throws(() => limiter.assertAllowed({ user: "u1", client: "c2" }), (error: unknown) => {
    assert.ok(error instanceof RateLimitedError);
    assert.equal(error.retryAfterSecs, 10);
    assert.equal(error.headers["Retry-After"], "10");
    assert.match(error.message, /from this address/);
    return true;
  });
  clock.advance(7_000);
  assert.throws(() => limiter.assertAllowed({ user: "u1", client: "c9" }), { retryAfterSecs: 1 });
});

Deno.test("LoginLimiter.succeed() refunds the address and resets the user", () => {
  const { limiter } = makeLimiter({ loginFailuresMax: 2 });
  limiter.begin({ user: "u1", client: "c1" });
  const ticket = limiter.begin({ user: "u1", client: "c1" });
  assert.ok(isLimited(limiter, { user: "u1", client: "c2" }));
  assert.ok(isLimited(limiter, { user: "u2", client: "c1" }));
  limiter.succeed(ticket);
  assert.ok(!isLimited(limiter, { user: "u1", client: "c2" }), "the user's counter was reset");
  limiter.begin({ user: "u2", client: "c1" }); // the address still holds its first failure
  assert.ok(isLimited(limiter, { user: "u3", client: "c1" }));
});

Deno.test("LoginLimiter.succeed() does not refund a window opened after the attempt", () => {
  const { limiter, clock } = makeLimiter({ loginFailuresMax: 2, loginWindowMs: 1_000 });
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
});
