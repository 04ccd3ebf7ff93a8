import { assert } from "../util/assert.ts";
import { type Clock, raceDeadline, type TimerHandle } from "../util/clock.ts";
import { InvalidRequestError } from "../util/errors.ts";
import type { Logger } from "../util/log.ts";
import type { KeyState, LocalStore } from "./local_store.ts";
import type { Placement } from "./placement.ts";
import type { KeyPusher } from "./rebalance.ts";
import {
  digestBucketCount,
  DigestReply,
  DigestRequest,
  type KeySummary,
  SyncReply,
  SyncRequest,
  syncSummariesMax,
} from "./replication_wire.ts";
import { keyHash } from "./ring.ts";
import type { Transport } from "./transport.ts";

/** Keys a digest scan visits between two turns of the event loop given to other work. */
const scanSliceKeys = 2_000;

/** Options of {@linkcode AntiEntropy}. */
export interface AntiEntropyOptions {
  store: LocalStore;
  transport: Transport;
  pusher: KeyPusher;
  placement: () => Placement;
  clock: Clock;
  logger: Logger;
  intervalMs: number;
  timeoutMs: number;
  random?: () => number;
}

/**
 * Periodic anti-entropy between replicas: each round this node and one random live peer compare 256
 * bucket digests of the keys they both replicate; for each bucket that differs they swap key summaries
 * (table, key, version, timestamp, deleted) and each pushes the peer the keys whose summary differs or is
 * missing there, through normal replication, where the store applies what wins by the conflict rule.
 * Repairs what hints missed: a coordinator that crashed with hints in memory, a partition, an old disk.
 */
export class AntiEntropy {
  readonly #options: AntiEntropyOptions;
  #timer: TimerHandle | undefined;
  #running = false;
  /** Bumped by every start() and stop(), so a round still in flight from an old chain does not reschedule. */
  #timerChain = 0;
  roundCount = 0;
  pushedCount = 0;

  constructor(options: AntiEntropyOptions) {
    this.#options = options;
  }

  /** Starts a round `intervalMs` after the last one ended (one timer chain) until {@linkcode stop}. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#timerChain += 1;
    this.#schedule(this.#timerChain);
  }

  /** Stops the rounds: no timer is left armed; a round in flight finishes and schedules no other. */
  stop(): void {
    this.#running = false;
    this.#timerChain += 1;
    this.#options.clock.clearTimer(this.#timer);
    this.#timer = undefined;
  }

  #schedule(chain: number): void {
    assert(this.#timer === undefined, "one anti-entropy timer at a time");
    this.#timer = this.#options.clock.setTimer(
      this.#options.intervalMs,
      () => void this.#runScheduledRound(chain),
    );
  }

  /** Runs one round from the timer and schedules the next while this chain runs; failures are logged. */
  async #runScheduledRound(chain: number): Promise<void> {
    this.#timer = undefined;
    try {
      await this.round();
    } catch (error) {
      this.#options.logger.debug("anti-entropy round failed", { error: String(error) });
    }
    if (this.#running && chain === this.#timerChain) this.#schedule(chain);
  }

  /** One round with one random live peer. */
  async round(): Promise<void> {
    const placement = this.#options.placement();
    const peers = placement.liveIds().filter((id) => id !== placement.self);
    if (peers.length === 0) return;
    const random = this.#options.random ?? Math.random;
    await this.syncWith(peers[Math.floor(random() * peers.length)]!);
  }

  /**
   * Catches this node up with every live peer once (used right after joining, before serving): resolves
   * when each peer has pushed what this node lacks, or after `deadlineMs`.
   */
  async catchUp(deadlineMs: number): Promise<void> {
    const placement = this.#options.placement();
    const peers = placement.liveIds().filter((id) => id !== placement.self);
    const rounds = Promise.allSettled(peers.map((peer) => this.syncWith(peer)));
    await raceDeadline(rounds, { clock: this.#options.clock, deadlineMs });
  }

  /** Compares digests with `peer` and repairs the buckets that differ, in both directions. */
  async syncWith(peer: string): Promise<void> {
    const { transport, timeoutMs } = this.#options;
    this.roundCount += 1;
    const buckets = await this.#digest(peer);
    const { differing } = DigestReply.parse(
      await transport.request(peer, "digest", { buckets }, { timeoutMs }),
    );
    if (differing.length === 0) return;
    const mine = await this.#summaries(peer, new Set(differing));
    for (const group of groupBuckets(mine)) {
      const reply = SyncReply.parse(await transport.request(peer, "sync", { buckets: group }, { timeoutMs }));
      await this.#pushDiffering(peer, group, reply.buckets);
    }
  }

  /** Handlers of the `digest` and `sync` kinds. */
  handlers(): Record<string, (body: unknown, sender: string) => Promise<unknown>> {
    return {
      digest: (body, sender) => this.#handleDigest(body, sender),
      sync: (body, sender) => this.#handleSync(body, sender),
    };
  }

  async #handleDigest(body: unknown, sender: string): Promise<unknown> {
    const parsed = DigestRequest.safeParse(body);
    if (!parsed.success) throw new InvalidRequestError("malformed digest");
    const mine = await this.#digest(sender);
    const differing: number[] = [];
    for (let index = 0; index < digestBucketCount; index += 1) {
      if (mine[index] !== parsed.data.buckets[index]) differing.push(index);
    }
    return { differing };
  }

  async #handleSync(body: unknown, sender: string): Promise<unknown> {
    const parsed = SyncRequest.safeParse(body);
    if (!parsed.success) throw new InvalidRequestError("malformed sync");
    const mine = await this.#summaries(sender, new Set(parsed.data.buckets.map((entry) => entry.bucket)));
    // The answer waits for this side's pushes, so a node catching up knows it has them when sync returns.
    await this.#pushDiffering(sender, mine, parsed.data.buckets).catch(() => {});
    return { buckets: mine };
  }

  /** Pushes to `peer` every key of `mine` that `theirs` lacks or holds in another state. */
  async #pushDiffering(peer: string, mine: readonly Bucket[], theirs: readonly Bucket[]): Promise<void> {
    const known = new Map<string, KeySummary>();
    for (const bucket of theirs) {
      for (const summary of bucket.summaries) known.set(`${summary.table}\u0000${summary.key}`, summary);
    }
    const keys = mine.flatMap((bucket) => bucket.summaries).filter((summary) => {
      const other = known.get(`${summary.table}\u0000${summary.key}`);
      return other === undefined || other.contentHash !== summary.contentHash;
    }).map(({ table, key }) => ({ table, key }));
    if (keys.length === 0) return;
    this.pushedCount += keys.length;
    await this.#options.pusher.pushKeys(peer, keys);
  }

  /** Whether both this node and `peer` should hold the key. */
  #shared(placement: Placement, peer: string, table: string, key: string): boolean {
    const replicas = placement.replicasOf(table, key);
    return replicas.includes(peer) && replicas.includes(placement.self);
  }

  /**
   * The digest of the keys shared with `peer`: a sum and an xor of content hashes per bucket. Long scans
   * give way to other work every `scanSliceKeys` keys, so a round never holds the event loop for long.
   */
  async #digest(peer: string): Promise<string[]> {
    const sums = new Uint32Array(digestBucketCount);
    const xors = new Uint32Array(digestBucketCount);
    await this.#forEachShared(peer, (table, key, state) => {
      const bucket = keyHash(table, key) % digestBucketCount;
      sums[bucket] = (sums[bucket]! + state.contentHash) >>> 0;
      xors[bucket] = (xors[bucket]! ^ state.contentHash) >>> 0;
    });
    return Array.from(sums, (sum, index) => `${sum}.${xors[index]}`);
  }

  /** This node's summaries of the given buckets for keys shared with `peer`, in one scan of the store. */
  async #summaries(peer: string, buckets: ReadonlySet<number>): Promise<Bucket[]> {
    const byBucket = new Map<number, KeySummary[]>([...buckets].map((bucket) => [bucket, []]));
    await this.#forEachShared(peer, (table, key, state) => {
      const summaries = byBucket.get(keyHash(table, key) % digestBucketCount);
      if (summaries === undefined) return;
      const { version, timestamp, deleted, contentHash } = state;
      summaries.push({ table, key, version, timestamp, deleted, contentHash });
    });
    const result: Bucket[] = [];
    for (const [bucket, summaries] of byBucket) {
      if (summaries.length <= syncSummariesMax) result.push({ bucket, summaries });
      else this.#options.logger.warn("anti-entropy bucket too large to repair this round", { peer, bucket });
    }
    return result;
  }

  /** Calls `visit` for each key both this node and `peer` should hold, yielding between slices. */
  async #forEachShared(
    peer: string,
    visit: (table: string, key: string, state: KeyState) => void,
  ): Promise<void> {
    const placement = this.#options.placement();
    // When every member holds every key, no key needs placing.
    const everyKey = placement.fullyReplicated && placement.ringIds.includes(peer) &&
      placement.ringIds.includes(placement.self);
    let sinceYield = 0;
    for (const { table, key, state } of this.#options.store.scanStates()) {
      if (everyKey || this.#shared(placement, peer, table, key)) visit(table, key, state);
      if (++sinceYield === scanSliceKeys) {
        sinceYield = 0;
        // A turn of the event loop, not a wait on time: it must run on a test's manual clock too.
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
    }
  }
}

/** Key summaries of one digest bucket. */
interface Bucket {
  bucket: number;
  summaries: KeySummary[];
}

/** Splits buckets into `sync` requests of at most `syncSummariesMax` summaries each. */
function groupBuckets(buckets: readonly Bucket[]): Bucket[][] {
  const groups: Bucket[][] = [];
  let group: Bucket[] = [];
  let count = 0;
  for (const bucket of buckets) {
    if (group.length > 0 && count + bucket.summaries.length > syncSummariesMax) {
      groups.push(group);
      group = [];
      count = 0;
    }
    group.push(bucket);
    count += bucket.summaries.length;
  }
  if (group.length > 0) groups.push(group);
  return groups;
}
