import type { Logger } from "../util/log.ts";
import type { LocalStore } from "./local_store.ts";
import type { Placement } from "./placement.ts";

/** Keys shipped per push while rebalancing. */
export const rebalanceBatchKeys = 256;

/** What rebalancing needs of replication. */
export interface KeyPusher {
  /** Ships the keys' current state to `peer`; true when every key was acknowledged. */
  pushKeys(peer: string, keys: ReadonlyArray<{ table: string; key: string }>): Promise<boolean>;
}

/**
 * Moves keys to their new replicas when the ring changes: for every local key, ships it to each live
 * replica that was not one before; a key this node no longer replicates is purged here once every live
 * new replica acknowledged it. Reads and writes go on meanwhile (a write during the move reaches the
 * new replicas through normal replication). Passes never overlap: a change during a pass queues one more.
 */
export class Rebalancer {
  readonly #store: LocalStore;
  readonly #pusher: KeyPusher;
  readonly #logger: Logger;
  #running: Promise<void> | undefined;
  #pending: { previous: Placement; next: Placement } | undefined;
  movedCount = 0;
  purgedCount = 0;
  /**
   * Whether keys this node no longer replicates are purged after the hand-off. Off while leaving: a node
   * stopped with SIGTERM is often restarted, and its data dir should come back with its keys.
   */
  purgeEnabled = true;

  constructor(options: { store: LocalStore; pusher: KeyPusher; logger: Logger }) {
    this.#store = options.store;
    this.#pusher = options.pusher;
    this.#logger = options.logger;
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
    const outgoing = new Map<string, Array<{ table: string; key: string }>>();
    const leaving: Array<{ table: string; key: string; targets: string[] }> = [];
    for (const { table, key } of this.#store.scanKeys()) {
      const replicas = next.replicasOf(table, key);
      const before = new Set(previous.replicasOf(table, key));
      const staying = replicas.includes(next.self);
      const targets = replicas.filter((id) =>
        id !== next.self && next.isLive(id) && (!staying || !before.has(id))
      );
      for (const target of targets) {
        let keys = outgoing.get(target);
        if (keys === undefined) outgoing.set(target, keys = []);
        keys.push({ table, key });
      }
      if (!staying) leaving.push({ table, key, targets });
    }
    const failed = await this.#pushAll(outgoing);
    if (this.purgeEnabled) await this.#purge(leaving, failed);
    if (outgoing.size > 0 || leaving.length > 0) {
      this.#logger.info("rebalanced", { moved: this.movedCount, purged: this.purgedCount });
    }
  }

  /** Pushes every batch; returns the peers that failed to acknowledge everything. */
  async #pushAll(outgoing: Map<string, Array<{ table: string; key: string }>>): Promise<Set<string>> {
    const failed = new Set<string>();
    await Promise.all([...outgoing].map(async ([peer, keys]) => {
      for (let start = 0; start < keys.length; start += rebalanceBatchKeys) {
        const batch = keys.slice(start, start + rebalanceBatchKeys);
        if (await this.#pusher.pushKeys(peer, batch)) {
          this.movedCount += batch.length;
        } else {
          failed.add(peer);
          return;
        }
      }
    }));
    return failed;
  }

  async #purge(
    leaving: Array<{ table: string; key: string; targets: string[] }>,
    failed: Set<string>,
  ): Promise<void> {
    for (const { table, key, targets } of leaving) {
      if (targets.length === 0 || targets.some((target) => failed.has(target))) continue;
      await this.#store.purge(table, key);
      this.purgedCount += 1;
    }
  }
}

function sameRing(previous: Placement, next: Placement): boolean {
  if (previous.ringIds.length !== next.ringIds.length) return false;
  return previous.ringIds.every((id, index) => next.ringIds[index] === id);
}
