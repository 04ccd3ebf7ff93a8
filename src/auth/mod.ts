/**
 * Users and their tokens: registration and login with a slow salted hash, HS256 user tokens valid only
 * for users that exist, and a limit on failed logins per user and client address together and per
 * address across users (SPEC §3 row 1, §7, §8).
 *
 * The module owns the hashing, the token format and the limiter. It knows nothing of HTTP, of the
 * store or of the disk: users are kept through a {@linkcode UserDirectory} ({@linkcode ReplicatedUsers}
 * over the {@linkcode UserStorage} that `main.ts` adapts from the store and the cluster), and time comes
 * from the injected `Clock`.
 *
 * @example
 * ```ts
 * import { defaultLimits } from "../config/limits.ts";
 * import { systemClock } from "../util/clock.ts";
 *
 * declare const jwtSecret: string; // JWT_SECRET: at least 32 bytes
 * declare const storage: UserStorage; // main.ts: adapted from the store and the cluster
 *
 * const users = new ReplicatedUsers(storage);
 * const auth = new Auth({ secret: jwtSecret, limits: defaultLimits, clock: systemClock, users });
 * const { created, token } = await auth.authenticate("alice", "correct horse", "203.0.113.7");
 * const user = await auth.verify(token); // "alice"
 * ```
 *
 * @module
 */
import type { Limits } from "../config/limits.ts";
import { assert } from "../util/assert.ts";
import type { Clock } from "../util/clock.ts";
import type { UserDirectory } from "./directory.ts";
import { TokenInvalidError, UserNotReadableError, WrongSecretError } from "./errors.ts";
import { HashSlots } from "./hash_slots.ts";
import { LoginLimiter } from "./login_limiter.ts";
import { hashSecret, pbkdf2IterationsMin, verifySecret } from "./passwords.ts";
import { reasonMessages, signToken, type TokenKey, type VerifiedToken, verifyTokenClaims } from "./tokens.ts";

export { ReplicatedUsers, type UserDirectory, type UserStorage } from "./directory.ts";
export {
  RateLimitedError,
  TokenInvalidError,
  type TokenInvalidReason,
  UserNotReadableError,
  WrongSecretError,
} from "./errors.ts";
export { pbkdf2IterationsMin, type UserRecord } from "./passwords.ts";

/** Options of {@linkcode Auth}. */
export interface AuthOptions {
  /** `JWT_SECRET`, at least 32 bytes of UTF-8. */
  secret: string;
  limits: Limits;
  clock: Clock;
  users: UserDirectory;
  /** PBKDF2-SHA-256 iterations for new users. @default 600_000 */
  iterations?: number;
  /** Allows `iterations` below 600,000 so unit tests run fast. Never set outside tests. @default false */
  allowWeakHashForTests?: boolean;
  /** Verified tokens remembered, so a repeated token costs no HMAC. @default 10_000 */
  verifiedTokensMax?: number;
  /**
   * Longest a registration that lost to a concurrent one waits for the winner's record to become readable
   * before it answers 503. The winner's write is durable on every live member within a replication round
   * trip; 5 s covers a slow disk or a retried peer. @default 5_000
   */
  userWaitMs?: number;
  /**
   * Password hashes run at once; more wait in line (see {@linkcode HashSlots}). The cores of the machine
   * keep the event loop served while a burst of logins hashes. @default 2
   */
  hashConcurrencyMax?: number;
  /** Hashes that may wait for a slot; beyond it a login or registration gets 503. @default 1_000 */
  hashQueueMax?: number;
}

/** The outcome of {@linkcode Auth.authenticate}. */
export interface Authenticated {
  /** Whether the call registered a new user (201) rather than logging in (200). */
  created: boolean;
  /** An HS256 JWT for the user. */
  token: string;
}

/** Most verified tokens remembered by default (about 300 bytes each). */
export const verifiedTokensMaxDefault = 10_000;

/** How long a losing registration waits for the winner's record by default. */
export const userWaitMsDefault = 5_000;

/** Registers users, logs them in and verifies their tokens. */
export class Auth {
  readonly #tokenKey: TokenKey;
  readonly #limits: Limits;
  readonly #users: UserDirectory;
  readonly #iterations: number;
  readonly #limiter: LoginLimiter;
  /**
   * Tokens already verified, so a client sending the same token on every request costs one map lookup, not
   * one HMAC. Bounded to `verifiedTokensMax`; the oldest go first. `exp` is still checked on every hit.
   */
  readonly #verified = new Map<string, VerifiedToken>();
  readonly #verifiedTokensMax: number;
  readonly #userWaitMs: number;
  readonly #hashSlots: HashSlots;

  constructor(options: AuthOptions) {
    const key = new TextEncoder().encode(options.secret);
    assert(key.length >= 32, "JWT_SECRET must be at least 32 bytes");
    const iterations = options.iterations ?? pbkdf2IterationsMin;
    assert(Number.isSafeInteger(iterations), "iterations must be an integer");
    assert(iterations >= 1, "iterations must be positive");
    if (options.allowWeakHashForTests !== true) {
      assert(iterations >= pbkdf2IterationsMin, `iterations must be at least ${pbkdf2IterationsMin}`);
    }
    this.#tokenKey = { key, clock: options.clock };
    this.#limits = options.limits;
    this.#users = options.users;
    this.#iterations = iterations;
    this.#limiter = new LoginLimiter({ limits: options.limits, clock: options.clock });
    this.#verifiedTokensMax = options.verifiedTokensMax ?? verifiedTokensMaxDefault;
    assert(this.#verifiedTokensMax >= 1, "verifiedTokensMax must be positive");
    this.#userWaitMs = options.userWaitMs ?? userWaitMsDefault;
    assert(this.#userWaitMs >= 0, "userWaitMs must not be negative");
    this.#hashSlots = new HashSlots({
      concurrencyMax: options.hashConcurrencyMax ?? 2,
      queueMax: options.hashQueueMax ?? 1_000,
    });
  }

  /** How many verified tokens are remembered now. */
  get verifiedTokenCount(): number {
    return this.#verified.size;
  }

  /**
   * SPEC §3 row 1: a new user is registered (`created: true`); an existing user with the right secret
   * gets a fresh token (`created: false`). The name and body are validated by the HTTP layer. Of
   * concurrent registrations of one name, one creates it and the others log in against its record.
   *
   * @param client the client address, for the failure limits.
   * @throws {RateLimitedError} before any hashing, when this user from this address, or this address,
   * is over its failures.
   * @throws {WrongSecretError} when the user exists and the secret does not match.
   * @throws {UserNotReadableError} when a concurrent registration won but its record did not become
   * readable within `userWaitMs`.
   */
  async authenticate(user: string, secret: string, client: string): Promise<Authenticated> {
    assert(typeof user === "string", "user must be a string");
    assert(typeof secret === "string", "secret must be a string");
    assert(typeof client === "string", "client must be a string");
    assert(user.length > 0, "user must not be empty");
    const attempt = { user, client };
    this.#limiter.assertAllowed(attempt);
    let record = this.#users.get(user);
    if (record === undefined) {
      // A new user costs one hash, as a login does, so timing does not tell whether a user exists.
      const iterations = this.#iterations;
      const created = await this.#hashSlots.run(() => hashSecret(secret, { iterations }));
      const outcome = await this.#users.create(user, created);
      if (outcome === "created") return { created: true, token: await this.#sign(user) };
      // Another request created it first; its write may still be pending, here or on another node.
      record = await this.#users.find(user, { waitMs: this.#userWaitMs });
      if (record === undefined) throw new UserNotReadableError(user, { waitMs: this.#userWaitMs });
    }
    const ticket = this.#limiter.begin(attempt);
    if (!(await this.#hashSlots.run(() => verifySecret(secret, record)))) throw new WrongSecretError();
    this.#limiter.succeed(ticket);
    return { created: false, token: await this.#sign(user) };
  }

  /**
   * Verifies a user token and returns the user name (`sub`): at once for a token verified before and not
   * expired (every request of a client but its first), else once its signature is checked and its user
   * found, here or on another member. Answering a known token synchronously spares a write two promises
   * and their turns of the microtask queue. Only tokens of existing users are remembered; users are never
   * deleted, so a remembered token stays valid until it expires.
   *
   * @throws {TokenInvalidError} (as a rejected promise) when the token is malformed, forged, of another
   * algorithm or expired, or names a user that does not exist (reason `user_unknown`).
   */
  verify(token: string): string | Promise<string> {
    assert(typeof token === "string", "token must be a string");
    const known = this.#verified.get(token);
    if (known !== undefined && this.#tokenKey.clock.nowMs() < known.expiresAtMs) return known.user;
    return this.#verifySignature(token);
  }

  async #verifySignature(token: string): Promise<string> {
    this.#verified.delete(token);
    const verified = await verifyTokenClaims(this.#tokenKey, token);
    // `find` reads this node's record first and asks the other members only when it has none.
    if (await this.#users.find(verified.user, { waitMs: 0 }) === undefined) {
      throw new TokenInvalidError("user_unknown", `Cannot verify token: ${reasonMessages.user_unknown}`);
    }
    if (this.#verified.size >= this.#verifiedTokensMax) {
      this.#verified.delete(this.#verified.keys().next().value!);
    }
    this.#verified.set(token, verified);
    assert(this.#verified.size <= this.#verifiedTokensMax);
    return verified.user;
  }

  async #sign(user: string): Promise<string> {
    return await signToken(this.#tokenKey, { user, lifetimeSecs: this.#limits.tokenLifetimeSecs });
  }
}
