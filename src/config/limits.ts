import { assert } from "../util/assert.ts";

/**
 * Every bound of a node, in one place (SPEC §7). Each may be changed by a flag or env var
 * (`config/schema.ts`); these are the defaults and their reasons.
 */
export interface Limits {
  /** Largest request body read; larger bodies get 413 while being read. @default 1 MiB */
  requestBytesMax: number;
  /** Deepest nesting of `[`/`{` in a value. @default 64 */
  valueDepthMax: number;
  /** Longest table or key name in UTF-8 bytes. @default 256 */
  nameBytesMax: number;
  /** Most keys in one `POST /{table}/keys`. @default 1000 */
  batchKeysMax: number;
  /** Largest `?limit` of a listing page. @default 100,000 */
  listCountMax: number;
  /** Lifetime of a user token. @default 24 h */
  tokenLifetimeSecs: number;
  /** Failed logins allowed per user from one client address (the pair) in one window. @default 10 */
  loginFailuresMax: number;
  /**
   * Failed logins allowed from one client address across all users in one window; over it the address
   * is refused for every user. 10× `loginFailuresMax`: users behind one NAT each get their own 10 before
   * their shared address is locked, while one address still cannot guess more than 100 secrets a
   * minute. @default 100
   */
  loginAddressFailuresMax: number;
  /** The failed-login window. @default 60 s */
  loginWindowMs: number;
  /** Most login-failure counters kept; the oldest are forgotten beyond it. @default 100,000 */
  loginCountersMax: number;
  /** Most SSE subscribers of one node; lowered at start to fit the file-descriptor limit. @default 20,000 */
  subscribersMax: number;
  /**
   * Most open connections; lowered at start to the file-descriptor limit less a reserve (see
   * `src/server/capacity.ts`), so the default lets the limit decide. @default 1,000,000
   */
  connectionsMax: number;
  /**
   * Longest a connection may go without a request in progress (a request head not finished, or idle
   * between requests), and longest a request body may take to arrive after its head; then the connection
   * is closed. Slow clients hold a descriptor each: this bounds how long. @default 10 s
   */
  requestTimeoutMs: number;
  /** Events queued for one subscriber before it is disconnected as too slow. @default 512 */
  sseQueueDepthMax: number;
  /** Events remembered per key for `Last-Event-ID` replay. @default 64 */
  sseHistoryDepth: number;
  /** Keys (and tables) with a remembered history; least recently changed go first. @default 10,000 */
  sseHistoryKeysMax: number;
  /**
   * Memory all histories' frames together may take, each counted as its bytes plus 256 bytes of objects
   * around it; least recently changed histories go first. A frame is its value's JSON plus about 60
   * bytes, so with 1 KiB values the default holds about 12,000 frames (one change of each of the
   * `sseHistoryKeysMax` keys, or 64 changes of each of 190 keys) in a tenth of a 150 MB node; the
   * former default, 64 MiB without the overhead, could grow past 200 MB with small values. @default 16 MiB
   */
  sseHistoryBytesMax: number;
  /** Interval of `: keepalive` comments. SPEC §4 requires at most 15 s. @default 15 s */
  sseKeepaliveMs: number;
  /**
   * Bytes of the change log on disk (`<data-dir>/changes/`), the window a stream resumes from with
   * `Last-Event-ID` (SPEC §4b). A change takes its JSON plus about 60 bytes: the default holds the 100,000
   * newest changes of values up to ~600 bytes. @default 64 MiB
   */
  changeRetentionBytes: number;
  /** Changes older than this leave the change log (SPEC §4b: 10 minutes). @default 600,000 */
  changeRetentionMs: number;
  /** Changes the change log holds at most (SPEC §4b). @default 100,000 */
  changeRetentionRecordsMax: number;
  /** Records in one WAL batch (one write, one encryption, one sync). @default 4096 */
  walBatchRecordsMax: number;
  /** WAL size that triggers a checkpoint into `storage.db` and a WAL truncation. @default 64 MiB */
  walCheckpointBytes: number;
  /** Longest a graceful shutdown may take before the node exits anyway. @default 10 s */
  shutdownMsMax: number;
  /**
   * Longest lifetime a write may give a key (`ttl_secs`, SPEC §2). Ten years: longer than any session or
   * cache entry, and `timestamp + ttlSecsMax * 1000` stays far inside the safe integers.
   * @default 315,360,000 s
   */
  ttlSecsMax: number;
}

/** The default limits. */
export const defaultLimits: Readonly<Limits> = Object.freeze({
  requestBytesMax: 1 << 20,
  valueDepthMax: 64,
  nameBytesMax: 256,
  batchKeysMax: 1_000,
  listCountMax: 100_000,
  tokenLifetimeSecs: 24 * 60 * 60,
  loginFailuresMax: 10,
  loginAddressFailuresMax: 100,
  loginWindowMs: 60_000,
  loginCountersMax: 100_000,
  subscribersMax: 20_000,
  connectionsMax: 1_000_000,
  requestTimeoutMs: 10_000,
  sseQueueDepthMax: 512,
  sseHistoryDepth: 64,
  sseHistoryKeysMax: 10_000,
  sseHistoryBytesMax: 16 << 20,
  sseKeepaliveMs: 15_000,
  changeRetentionBytes: 64 << 20,
  changeRetentionMs: 600_000,
  changeRetentionRecordsMax: 100_000,
  walBatchRecordsMax: 4_096,
  walCheckpointBytes: 64 << 20,
  shutdownMsMax: 10_000,
  ttlSecsMax: 10 * 365 * 24 * 60 * 60,
});

/**
 * Bytes of a WAL record besides its value and names, at most: 37 fixed bytes (op, sequence, version,
 * timestamp, three string lengths), the largest ballot (12 + 300) and an expiry (8). `store/mod.ts` lays the
 * record out, and the store asserts that its own sum is this one.
 */
export const recordOverheadBytesMax = 37 + 12 + 300 + 8;

/** Checks the relations between limits; called at load and on every configured set. */
export function assertLimits(limits: Limits): void {
  assert(limits.requestBytesMax >= 64, "requestBytesMax must allow a minimal body");
  assert(limits.nameBytesMax >= 1);
  assert(limits.valueDepthMax >= 1);
  assert(limits.sseKeepaliveMs <= 15_000, "an event stream sends a keepalive at least every 15 s");
  assert(limits.sseHistoryDepth >= 1);
  assert(limits.requestTimeoutMs >= 100, "a request timeout under 100 ms would cut off ordinary clients");
  assert(limits.loginFailuresMax >= 1);
  assert(limits.loginAddressFailuresMax >= 1);
  // The WAL may grow past its checkpoint threshold by one whole record (a value, its table, key and owner).
  assert(
    limits.walCheckpointBytes > limits.requestBytesMax + 3 * limits.nameBytesMax + recordOverheadBytesMax,
  );
  assert(limits.ttlSecsMax >= 1, "a lifetime of one second must be allowed");
  assert(limits.ttlSecsMax * 1000 < 2 ** 52, "an expiry stays a safe integer for any timestamp to 2^52 ms");
}

assertLimits(defaultLimits);
