import { assert } from "../util/assert.ts";
import { keyIdOf } from "./placement.ts";

/** Hints kept for replicas that missed a write, across all peers; beyond it anti-entropy catches up. */
export const hintsMax = 100_000;

/**
 * Hints (DESIGN.md, "Catching up"): per peer, the keys it missed a committed state of (it was down, cut
 * off or slow). Delivered as a push of the key's current state when the peer is alive again; the receiver
 * applies it by the accept rule, so a hint is never more than a delayed accept. In memory: a node that
 * crashes loses its hints, and anti-entropy covers them.
 */
export class Hints {
  readonly #byPeer = new Map<string, Set<string>>();
  #count = 0;
  dropped = 0;

  /** Hints held. */
  get count(): number {
    return this.#count;
  }

  /** The peers hints are held for. */
  peers(): string[] {
    return [...this.#byPeer.keys()];
  }

  add(peer: string, table: string, key: string): void {
    let keys = this.#byPeer.get(peer);
    if (keys === undefined) {
      keys = new Set();
      this.#byPeer.set(peer, keys);
    }
    const hint = keyIdOf(table, key);
    if (keys.has(hint)) return;
    if (this.#count >= hintsMax) {
      this.dropped += 1; // anti-entropy delivers it instead
      return;
    }
    keys.add(hint);
    this.#count += 1;
    assert(this.#count <= hintsMax);
  }

  /** Removes and returns the keys hinted for `peer`. */
  take(peer: string): Array<{ table: string; key: string }> {
    const keys = this.#byPeer.get(peer);
    if (keys === undefined) return [];
    this.#byPeer.delete(peer);
    this.#count -= keys.size;
    assert(this.#count >= 0);
    return [...keys].map((hint) => {
      const [table, key] = hint.split("\u0000") as [string, string];
      return { table, key };
    });
  }
}
