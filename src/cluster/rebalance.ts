import { type Clock, sleep, systemClock } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";
import type { LocalStore } from "./local_store.ts";
import { type Placement, sameList } from "./placement.ts";

/** Keys settled at once while rebalancing (their rounds share the peers' batches). */
export const rebalanceBatchKeys = 256;

/** Rounds over the keys that failed to settle (views still converging, a replica down) before giving up. */
export const settleAttemptsMax = 5;

/** What rebalancing needs of replication. */
export interface KeyPusher {
  /** Ships the keys' current state to `peer`; true when every key was acknowledged. */
  pushKeys(peer: string, keys: ReadonlyArray<{ table: string; key: string }>): Promise<boolean>;
  /** The identity round of a key on every replica set it had across the change; true when it succeeded. */
  settle(table: string, key: string): Promise<boolean>;
  /** Every key held here is settled up to `next`. */
  passDone(next: Placement): void;
}

/**
 * Settles a membership change for the keys held here (cluster DESIGN.md, "Membership changes"): every local
 * key whose replica set changed gets an identity round on a quorum of its old and its new replica set,
 * which is how its new replicas learn it; a key this node no longer replicates is purged once its round
 * succeeded. Reads and writes go on meanwhile. Passes never overlap: a change during a pass queues one more.
 */
export class Rebalancer {
  readonly #store: LocalStore;
  readonly #pusher: KeyPusher;
  readonly #logger: Logger;
  readonly #retryDelayMs: number;
  readonly #clock: Clock;
  #running: Promise<void> | undefined;
  #pending: { previous: Placement; next: Placement } | undefined;
  movedCount = 0;
  purgedCount = 0;
  /**
   * Whether keys this node no longer replicates are purged after the hand-off. Off while leaving: a node
   * stopped with SIGTERM is often restarted, and its data dir should come back with its keys.
   */
  purgeEnabled = true;

  /**
   * `retryDelayMs` (default 250) is the pause before the second pass over keys that failed to settle; the
   * n-th retry waits n times as long, on `clock` (default `systemClock`).
   */
  constructor(
    options: { store: LocalStore; pusher: KeyPusher; logger: Logger; retryDelayMs?: number; clock?: Clock },
  ) {
    this.#store = options.store;
    this.#pusher = options.pusher;
    this.#logger = options.logger;
    this.#retryDelayMs = options.retryDelayMs ?? 250;
    this.#clock = options.clock ?? systemClock;
  }

  /** Called on every placement change; starts a pass when the ring itself changed. */
  onPlacementChange(previous: Placement, next: Placement): void {
    if (sameRing(previous, next)) return;
    const base = this.#pending?.previous ?? previous;
    this.#pending = { previous: base, next };
    if (this.#running === undefined) this.#running = this.#loop();
  }

  /** Resolves when no pass is running or queued. */
  async idle(): Promise<void> {
    while (this.#running !== undefined) await this.#running;
  }

  async #loop(): Promise<void> {
    try {
      // Bounded: each iteration consumes the queued change; a new one can only queue one more.
      while (this.#pending !== undefined) {
        const { previous, next } = this.#pending;
        this.#pending = undefined;
        await this.pass(previous, next);
      }
    } catch (error) {
      this.#logger.error("rebalancing pass failed; anti-entropy will finish it", { error: String(error) });
    } finally {
      this.#running = undefined;
    }
  }

  /** One pass from `previous` to `next` placement. */
  async pass(previous: Placement, next: Placement): Promise<void> {
    // Every member left (a whole cluster stopped at once): there is no one to hand a key to.
    if (next.ringIds.length === 0) return;
    let changed: Array<{ table: string; key: string; staying: boolean }> = [];
    for (const { table, key } of this.#store.scanKeys()) {
      const replicas = next.replicasOf(table, key);
      if (sameList(replicas, previous.replicasOf(table, key))) continue;
      changed.push({ table, key, staying: replicas.includes(next.self) });
    }
    const total = changed.length;
    for (let attempt = 0; attempt < settleAttemptsMax && changed.length > 0; attempt += 1) {
      if (attempt > 0) await sleep(this.#clock, this.#retryDelayMs * attempt);
      changed = await this.#settleAll(changed);
    }
    if (changed.length === 0) this.#pusher.passDone(next);
    else this.#logger.warn("keys not settled after a membership change", { keys: changed.length });
    if (total > 0) this.#logger.info("rebalanced", { moved: this.movedCount, purged: this.purgedCount });
  }

  /** Settles every key, a batch at a time; purges those this node left; returns those that failed. */
  async #settleAll(
    keys: ReadonlyArray<{ table: string; key: string; staying: boolean }>,
  ): Promise<Array<{ table: string; key: string; staying: boolean }>> {
    const failed: Array<{ table: string; key: string; staying: boolean }> = [];
    for (let start = 0; start < keys.length; start += rebalanceBatchKeys) {
      const batch = keys.slice(start, start + rebalanceBatchKeys);
      const outcomes = await Promise.all(batch.map(({ table, key }) => this.#pusher.settle(table, key)));
      for (const [index, settled] of outcomes.entries()) {
        const item = batch[index]!;
        if (!settled) {
          failed.push(item);
          continue;
        }
        this.movedCount += 1;
        if (!item.staying && this.purgeEnabled) {
          await this.#store.purge(item.table, item.key);
          this.purgedCount += 1;
        }
      }
    }
    return failed;
  }
}

function sameRing(previous: Placement, next: Placement): boolean {
  return sameList(previous.ringIds, next.ringIds);
}
