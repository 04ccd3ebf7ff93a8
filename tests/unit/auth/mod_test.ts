// Goal: Auth registers, logs in and limits failed logins as SPEC §3 row 1 and §7 say.
// Method: an in-memory UserDirectory, a ManualClock, and 1000 PBKDF2 iterations except where the
// default itself is under test.
import assert from "node:assert/strict";
import {
  Auth,
  RateLimitedError,
  TokenInvalidError,
  UserNotReadableError,
  WrongSecretError,
} from "../../../src/auth/mod.ts";
import { signToken } from "../../../src/auth/tokens.ts";
import { AssertionError } from "../../../src/util/assert.ts";
import { ManualClock } from "../../../src/util/clock.ts";
import { waitFor } from "../../helpers/wait_for.ts";
import { MemoryUsers, testLimits, testSecret } from "./memory_users.ts";

function makeAuth(
  options: {
    users?: MemoryUsers;
    clock?: ManualClock;
    verifiedTokensMax?: number;
    userWaitMs?: number;
    limits?: Parameters<typeof testLimits>[0];
  } = {},
) {
  const users = options.users ?? new MemoryUsers();
  const clock = options.clock ?? new ManualClock();
  const auth = new Auth({
    secret: testSecret,
    limits: testLimits(options.limits),
    clock,
    users: users.directory(),
    iterations: 1000,
    allowWeakHashForTests: true,
    ...(options.verifiedTokensMax === undefined ? {} : { verifiedTokensMax: options.verifiedTokensMax }),
    ...(options.userWaitMs === undefined ? {} : { userWaitMs: options.userWaitMs }),
  });
  return { auth, users, clock };
}

async function assertWrongSecret(promise: Promise<unknown>): Promise<void> {
  await assert.rejects(promise, WrongSecretError);
}

async function assertRateLimited(
  promise: Promise<unknown>,
  retryAfterSecs: number,
  limit = /for this user from this address: the limit is 10 \(loginFailuresMax\) per 60000 ms/,
): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof RateLimitedError);
    assert.equal(error.code, "rate_limited");
    assert.deepEqual(error.headers, { "Retry-After": String(retryAfterSecs) });
    assert.match(error.message, limit);
    return true;
  });
}

Deno.test("Auth.authenticate() registers a new user, then logs it in with the right secret", async () => {
  const { auth, users } = makeAuth();
  const first = await auth.authenticate("alice", "s3cret-alice", "10.0.0.1");
  assert.equal(first.created, true);
  assert.equal(await auth.verify(first.token), "alice");
  const record = users.records.get("alice");
  assert.ok(record !== undefined);
  assert.equal(record.iterations, 1000);
  assert.equal(Uint8Array.fromBase64(record.salt).length, 16);
  assert.equal(Uint8Array.fromBase64(record.hash).length, 32);
  assert.ok(!JSON.stringify(record).includes("s3cret-alice"));

  const second = await auth.authenticate("alice", "s3cret-alice", "10.0.0.2");
  assert.equal(second.created, false);
  assert.equal(await auth.verify(second.token), "alice");
  assert.equal(users.createCount, 1);
});

Deno.test("Auth.authenticate() rejects a wrong secret with WrongSecretError, not echoing it", async () => {
  const { auth } = makeAuth();
  await auth.authenticate("alice", "right-secret", "10.0.0.1");
  await assert.rejects(auth.authenticate("alice", "wrong-secret", "10.0.0.1"), (error: unknown) => {
    assert.ok(error instanceof WrongSecretError);
    assert.equal(error.code, "wrong_secret");
    assert.ok(!error.message.includes("wrong-secret"));
    assert.ok(!error.message.includes("right-secret"));
    return true;
  });
});

Deno.test(
  "Auth.authenticate() refuses the 11th failure of a user from one address, and only there",
  async () => {
    const { auth, users, clock } = makeAuth();
    await auth.authenticate("alice", "right", "registrar");
    await auth.authenticate("bob", "bob-secret", "registrar");
    await assertWrongSecret(auth.authenticate("alice", "wrong", "attacker"));
    clock.advance(20_000);
    for (let index = 1; index < 10; index += 1) {
      await assertWrongSecret(auth.authenticate("alice", "wrong", "attacker")); // the 10th is still checked
    }
    const readCountBefore = users.readCount;
    await assertRateLimited(auth.authenticate("alice", "right", "attacker"), 40);
    assert.equal(users.readCount, readCountBefore, "refused before the user is even looked up");
    // The owner from another address, and another user behind the attacker's address, are not refused.
    assert.equal((await auth.authenticate("alice", "right", "home")).created, false);
    assert.equal((await auth.authenticate("bob", "bob-secret", "attacker")).created, false);
    clock.advance(39_999);
    await assertRateLimited(auth.authenticate("alice", "right", "attacker"), 1);
    clock.advance(1);
    assert.equal((await auth.authenticate("alice", "right", "attacker")).created, false);
  },
);

Deno.test("Auth.authenticate() refuses an address for every user over loginAddressFailuresMax", async () => {
  const { auth } = makeAuth({ limits: { loginAddressFailuresMax: 25 } });
  for (let index = 0; index <= 3; index += 1) {
    await auth.authenticate(`user-${index}`, "right", "registrar"); // registering is not a failure
  }
  for (let index = 0; index < 25; index += 1) {
    // 8 or fewer per user: only the address's ceiling can trigger.
    await assertWrongSecret(auth.authenticate(`user-${index % 3}`, "wrong", "nat"));
  }
  const acrossUsers = /from this address, across users: the limit is 25 \(loginAddressFailuresMax\)/;
  await assertRateLimited(auth.authenticate("user-3", "right", "nat"), 60, acrossUsers);
  await assertRateLimited(auth.authenticate("someone-new", "right", "nat"), 60, acrossUsers);
  assert.equal((await auth.authenticate("user-3", "right", "other-address")).created, false);
});

Deno.test("Auth.authenticate() success forgets the pair's failures but not the address's", async () => {
  const { auth } = makeAuth({ limits: { loginAddressFailuresMax: 15 } });
  await auth.authenticate("alice", "alice-secret", "registrar");
  await auth.authenticate("bob", "bob-secret", "registrar");
  for (let index = 0; index < 9; index += 1) {
    await assertWrongSecret(auth.authenticate("alice", "wrong", "shared"));
  }
  await auth.authenticate("alice", "alice-secret", "shared");
  // Without the reset, alice's 10th failure from "shared" would be her last allowed.
  await assertWrongSecret(auth.authenticate("alice", "wrong", "shared"));
  await assertWrongSecret(auth.authenticate("alice", "wrong", "shared"));
  for (let index = 0; index < 4; index += 1) {
    await assertWrongSecret(auth.authenticate("bob", "wrong", "shared")); // the address's 12th to 15th
  }
  await assertRateLimited(
    auth.authenticate("bob", "bob-secret", "shared"),
    60,
    /from this address, across users: the limit is 15/,
  );
});

Deno.test(
  "Auth.authenticate() races two registrations with one secret: one creates, one logs in",
  async () => {
    const { auth, users } = makeAuth();
    const results = await Promise.all([
      auth.authenticate("carol", "same", "10.0.0.1"),
      auth.authenticate("carol", "same", "10.0.0.2"),
    ]);
    assert.deepEqual(results.map((result) => result.created).sort(), [false, true]);
    assert.equal(users.createCount, 2, "both raced to create");
    for (const result of results) assert.equal(await auth.verify(result.token), "carol");
  },
);

Deno.test(
  "Auth.authenticate() races two registrations with two secrets: one gets WrongSecretError",
  async () => {
    const { auth, users } = makeAuth();
    const settled = await Promise.allSettled([
      auth.authenticate("dave", "first", "10.0.0.1"),
      auth.authenticate("dave", "second", "10.0.0.2"),
    ]);
    const fulfilled = settled.filter((outcome) => outcome.status === "fulfilled");
    const rejected = settled.filter((outcome) => outcome.status === "rejected");
    assert.equal(fulfilled.length, 1);
    assert.equal(rejected.length, 1);
    assert.equal(fulfilled[0]!.value.created, true);
    assert.ok(rejected[0]!.reason instanceof WrongSecretError);
    assert.equal(users.records.size, 1);
    const winner = settled[0]!.status === "fulfilled" ? "first" : "second";
    const login = await auth.authenticate("dave", winner, "10.0.0.3");
    assert.equal(login.created, false);
  },
);

Deno.test("Auth uses 600,000 PBKDF2 iterations by default", async () => {
  const users = new MemoryUsers();
  const auth = new Auth({
    secret: testSecret,
    limits: testLimits(),
    clock: new ManualClock(),
    users: users.directory(),
  });
  const result = await auth.authenticate("erin", "erin-secret", "10.0.0.1");
  assert.equal(result.created, true);
  assert.equal(users.records.get("erin")?.iterations, 600_000);
});

Deno.test("Auth constructor asserts a strong hash and a 32-byte secret", () => {
  const base = { limits: testLimits(), clock: new ManualClock(), users: new MemoryUsers().directory() };
  assert.throws(() => new Auth({ ...base, secret: testSecret, iterations: 599_999 }), AssertionError);
  assert.throws(() => new Auth({ ...base, secret: "x".repeat(31) }), AssertionError);
  new Auth({ ...base, secret: "x".repeat(32) });
  new Auth({ ...base, secret: testSecret, iterations: 1000, allowWeakHashForTests: true });
});

Deno.test("Auth.verify() accepts a token until its lifetime ends", async () => {
  const { auth, clock } = makeAuth();
  const { token } = await auth.authenticate("frank", "frank-secret", "10.0.0.1");
  clock.advance(testLimits().tokenLifetimeSecs * 1000 - 1000);
  assert.equal(await auth.verify(token), "frank");
  clock.advance(1000);
  await assert.rejects(async () => await auth.verify(token), {
    name: "TokenInvalidError",
    code: "token_invalid",
    reason: "expired",
  });
});

Deno.test("Auth.verify() answers a token it verified before at once, and checks a new one", async () => {
  const { auth } = makeAuth();
  const { token } = await auth.authenticate("gina", "gina-secret", "10.0.0.1");
  const first = auth.verify(token);
  assert.equal(await first, "gina");
  assert.equal(auth.verify(token), "gina", "known: a string, no promise");
  const forged = `${token.slice(0, -2)}xx`;
  const checked = auth.verify(forged);
  assert.ok(checked instanceof Promise, "unknown: its signature is checked first");
  await assert.rejects(checked, { code: "token_invalid" });
});

Deno.test("Auth.authenticate() counts a burst of concurrent guesses before their hashes finish", async () => {
  const { auth } = makeAuth();
  await auth.authenticate("grace", "right", "registrar");
  const settleOrder: string[] = [];
  await Promise.all(
    Array.from({ length: 25 }, () =>
      auth.authenticate("grace", "wrong", "attacker").then(
        () => settleOrder.push("ok"),
        (error: unknown) => settleOrder.push(error instanceof Error ? error.name : "other"),
      )),
  );
  // The 15 over the limit are refused at once, without hashing, while the first 10 still hash.
  assert.deepEqual(settleOrder, [
    ...Array.from({ length: 15 }, () => "RateLimitedError"),
    ...Array.from({ length: 10 }, () => "WrongSecretError"),
  ]);
});

Deno.test("Auth.verify() remembers at most verifiedTokensMax tokens and never a forged one", async () => {
  const { auth, clock } = makeAuth({ verifiedTokensMax: 2 });
  const tokens: string[] = [];
  for (const user of ["u1", "u2", "u3"]) {
    tokens.push((await auth.authenticate(user, "secret", "10.0.0.9")).token);
    clock.advance(1000); // distinct iat, so distinct tokens
  }
  assert.equal(await auth.verify(tokens[0]!), "u1");
  assert.equal(await auth.verify(tokens[1]!), "u2");
  assert.equal(auth.verifiedTokenCount, 2, "at max");
  assert.equal(await auth.verify(tokens[2]!), "u3");
  assert.equal(auth.verifiedTokenCount, 2, "max + 1 evicts the oldest");
  assert.equal(await auth.verify(tokens[0]!), "u1", "an evicted token is verified again");
  const [head, , signature] = tokens[0]!.split(".");
  const forged = `${head}.${
    btoa(JSON.stringify({ sub: "root", exp: 9_999_999_999 })).replace(/=+$/, "")
  }.${signature}`;
  for (let attempt = 0; attempt < 2; attempt += 1) {
    await assert.rejects(async () => await auth.verify(forged), { code: "token_invalid" });
  }
});

Deno.test(
  "Auth.authenticate() logs a losing registration in against the winner's record once it is durable",
  async () => {
    const { auth, users } = makeAuth();
    users.holdWrites();
    const secrets = ["same", "same", "other"];
    const attempts = secrets.map((secret, index) => auth.authenticate("hana", secret, `10.0.0.${index}`));
    // Every create ran: one is pending (invisible to reads), two met it and wait for it.
    await waitFor(() => users.createCount === 3, { timeoutMs: 5_000, what: "three creates" });
    assert.equal(users.pendingCount, 1);
    assert.equal(users.records.size, 0);
    users.releaseWrites();
    const settled = await Promise.allSettled(attempts);
    const winnerIndex = settled.findIndex((outcome) =>
      outcome.status === "fulfilled" && outcome.value.created
    );
    assert.ok(winnerIndex >= 0, "one registration created the user");
    settled.forEach((outcome, index) => {
      if (index === winnerIndex) return;
      if (secrets[index] === secrets[winnerIndex]) {
        assert.ok(outcome.status === "fulfilled" && !outcome.value.created, "logged in, not created");
      } else {
        assert.ok(outcome.status === "rejected" && outcome.reason instanceof WrongSecretError);
      }
    });
  },
);

Deno.test(
  "Auth.authenticate() answers UserNotReadableError (503) when the winner's record stays pending",
  async () => {
    const { auth, users } = makeAuth({ userWaitMs: 20 });
    users.holdWrites();
    const attempts = ["10.0.0.1", "10.0.0.2"].map((client) =>
      auth.authenticate("ivan", "same", client).then(
        (result) => ({ result, error: undefined }),
        (error: unknown) => ({ result: undefined, error }),
      )
    );
    // The winner's write is held pending, so the first to settle is the loser, after its wait.
    const { error } = await Promise.race(attempts);
    assert.ok(error instanceof UserNotReadableError, String(error));
    assert.equal(error.code, "unavailable");
    assert.equal(error.headers["Retry-After"], "1");
    assert.match(error.message, /within 20 ms/);
    assert.ok(users.elsewhereCount >= 2, "the other members were asked, at the start and at the end");
    users.releaseWrites();
    const created = (await Promise.all(attempts)).filter((attempt) => attempt.result?.created === true);
    assert.equal(created.length, 1);
  },
);

Deno.test(
  "Auth.verify() refuses a well-signed token of a user that does not exist, and remembers no refusal",
  async () => {
    const { auth, users, clock } = makeAuth();
    const tokenKey = { key: new TextEncoder().encode(testSecret), clock };
    const forged = await signToken(tokenKey, { user: "mallory", lifetimeSecs: 3600 });
    for (let attempt = 0; attempt < 2; attempt += 1) {
      await assert.rejects(async () => await auth.verify(forged), (error: unknown) => {
        assert.ok(error instanceof TokenInvalidError);
        assert.equal(error.reason, "user_unknown");
        assert.equal(error.message, "Cannot verify token: its user (sub) does not exist");
        return true;
      });
    }
    assert.equal(users.elsewhereCount, 2, "each refusal asked the other members again");
    assert.equal(auth.verifiedTokenCount, 0);
    await auth.authenticate("mallory", "secret", "10.0.0.1");
    assert.equal(await auth.verify(forged), "mallory", "once the user exists, the signature is what counts");
  },
);

Deno.test("Auth.verify() accepts the token of a user that so far only another member holds", async () => {
  const { auth, users, clock } = makeAuth();
  const elsewhere = new MemoryUsers();
  const { token } = await makeAuth({ users: elsewhere, clock }).auth.authenticate("judy", "pw", "10.0.0.1");
  users.elsewhere.set("judy", elsewhere.records.get("judy")!);
  assert.equal(await auth.verify(token), "judy");
  assert.equal(users.elsewhereCount, 1);
  assert.equal(auth.verify(token), "judy", "remembered: no second look-up");
  assert.equal(users.elsewhereCount, 1);
});
