import type { Clock } from "../util/clock.ts";
import { InvalidRequestError } from "../util/errors.ts";
import type { Logger } from "../util/log.ts";
import type { LocalStore } from "./local_store.ts";
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
  #timer: ReturnType<typeof setTimeout> | undefined;
  #running = false;
  roundCount = 0;
  pushedCount = 0;

  constructor(options: AntiEntropyOptions) {
    this.#options = options;
  }

  /** Starts the rounds. */
  start(): void {
    this.#schedule();
  }

  /** Stops the rounds. */
  stop(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#running = false;
  }

  #schedule(): void {
    this.#running = true;
    this.#timer = setTimeout(async () => {
      try {
        await this.round();
      } catch (error) {
        this.#options.logger.debug("anti-entropy round failed", { error: String(error) });
      }
      if (this.#running) this.#schedule();
    }, this.#options.intervalMs);
  }

  /** One round with one random live peer. */
  async round(): Promise<void> {
    const placement = this.#options.placement();
    const peers = placement.liveIds().filter((id) => id !== placement.self);
    if (peers.length === 0) return;
    const random = this.#options.random ?? Math.random;
    await this.syncWith(peers[Math.floor(random() * peers.length)]!);
  }

  /** Compares digests with `peer` and repairs the buckets that differ, in both directions. */
  async syncWith(peer: string): Promise<void> {
    const { transport, timeoutMs } = this.#options;
    this.roundCount += 1;
    const buckets = this.#digest(peer);
    const { differing } = DigestReply.parse(
      await transport.request(peer, "digest", { buckets }, { timeoutMs }),
    );
    for (const bucket of differing) {
      const summaries = this.#summaries(peer, bucket);
      if (summaries === undefined) continue;
      const reply = SyncReply.parse(
        await transport.request(peer, "sync", { bucket, summaries }, { timeoutMs }),
      );
      await this.#pushDiffering(peer, summaries, reply.summaries);
    }
  }

  /** Handlers of the `digest` and `sync` kinds. */
  handlers(): Record<string, (body: unknown, sender: string) => Promise<unknown>> {
    return {
      digest: (body, sender) => Promise.resolve(this.#handleDigest(body, sender)),
      sync: (body, sender) => this.#handleSync(body, sender),
    };
  }

  #handleDigest(body: unknown, sender: string): unknown {
    const parsed = DigestRequest.safeParse(body);
    if (!parsed.success) throw new InvalidRequestError("malformed digest");
    const mine = this.#digest(sender);
    const differing: number[] = [];
    for (let index = 0; index < digestBucketCount; index += 1) {
      if (mine[index] !== parsed.data.buckets[index]) differing.push(index);
    }
    return { differing };
  }

  #handleSync(body: unknown, sender: string): Promise<unknown> {
    const parsed = SyncRequest.safeParse(body);
    if (!parsed.success) throw new InvalidRequestError("malformed sync");
    const mine = this.#summaries(sender, parsed.data.bucket) ?? [];
    // The answer goes back at once; this side's pushes travel through replication in the background.
    void this.#pushDiffering(sender, mine, parsed.data.summaries).catch(() => {});
    return Promise.resolve({ summaries: mine.length <= syncSummariesMax ? mine : [] });
  }

  /** Pushes to `peer` every key of `mine` that `theirs` lacks or holds in another state. */
  async #pushDiffering(
    peer: string,
    mine: readonly KeySummary[],
    theirs: readonly KeySummary[],
  ): Promise<void> {
    const known = new Map(theirs.map((summary) => [`${summary.table}\u0000${summary.key}`, summary]));
    const keys = mine.filter((summary) => {
      const other = known.get(`${summary.table}\u0000${summary.key}`);
      return other === undefined || other.version !== summary.version ||
        other.timestamp !== summary.timestamp ||
        other.deleted !== summary.deleted;
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

  #digest(peer: string): string[] {
    const placement = this.#options.placement();
    const sums = new Uint32Array(digestBucketCount);
    const xors = new Uint32Array(digestBucketCount);
    for (const { table, key, entry } of this.#options.store.scan()) {
      if (!this.#shared(placement, peer, table, key)) continue;
      const bucket = keyHash(table, key) % digestBucketCount;
      const hash = keyHash(
        table,
        `${key}\u0000${entry.version}\u0000${entry.timestamp}\u0000${entry.deleted}`,
      );
      sums[bucket] = (sums[bucket]! + hash) >>> 0;
      xors[bucket] = (xors[bucket]! ^ hash) >>> 0;
    }
    return Array.from(sums, (sum, index) => `${sum}.${xors[index]}`);
  }

  /** This node's summaries of one bucket shared with `peer`; undefined when over `syncSummariesMax`. */
  #summaries(peer: string, bucket: number): KeySummary[] | undefined {
    const placement = this.#options.placement();
    const summaries: KeySummary[] = [];
    for (const { table, key, entry } of this.#options.store.scan()) {
      if (keyHash(table, key) % digestBucketCount !== bucket) continue;
      if (!this.#shared(placement, peer, table, key)) continue;
      if (summaries.length === syncSummariesMax) {
        this.#options.logger.warn("anti-entropy bucket too large to repair this round", { peer, bucket });
        return undefined;
      }
      summaries.push({
        table,
        key,
        version: entry.version,
        timestamp: entry.timestamp,
        deleted: entry.deleted,
      });
    }
    return summaries;
  }
}
