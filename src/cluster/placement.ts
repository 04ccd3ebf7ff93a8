import { assert } from "../util/assert.ts";
import { Ring } from "./ring.ts";
import type { ClusterConfig } from "./types.ts";

/** The reserved table of users: every node holds every user, so a login is answered locally anywhere. */
export const usersTable = "_users";

/**
 * Where keys live, for one view of the membership: the ring over the members that hold data and the set
 * of members that answer now. Rebuilt (never mutated) whenever the membership changes.
 */
export class Placement {
  readonly self: string;
  readonly ringIds: readonly string[];
  readonly #live: ReadonlySet<string>;
  /** `#live`, sorted: asked for on every write. */
  readonly #liveIds: readonly string[];
  readonly #ring: Ring;
  readonly #replicationFactor: number;

  constructor(options: {
    self: string;
    ringIds: readonly string[];
    liveIds: readonly string[];
    config: Pick<ClusterConfig, "replicationFactor" | "virtualNodeCount">;
  }) {
    assert(options.config.replicationFactor >= 1);
    this.self = options.self;
    // The membership lists this node in the ring until it leaves; then its keys go to the others.
    this.ringIds = options.ringIds;
    this.#live = new Set([...options.liveIds, options.self]);
    this.#liveIds = Object.freeze([...this.#live].sort());
    this.#ring = new Ring({ memberIds: this.ringIds, virtualNodeCount: options.config.virtualNodeCount });
    this.#replicationFactor = options.config.replicationFactor;
  }

  /** The replicas of a key, in preference order: `replicationFactor` members (all for users). */
  replicasOf(table: string, key: string): readonly string[] {
    if (this.ringIds.length === 1) return this.ringIds; // a single node: no hash to compute
    const count = table === usersTable ? this.ringIds.length : this.#replicationFactor;
    return this.#ring.replicasOf(table, key, count);
  }

  /** True when every ring member holds every key (the cluster is no larger than the replication factor). */
  get fullyReplicated(): boolean {
    return this.ringIds.length <= this.#replicationFactor;
  }

  /** True when this node is the only member, in the ring and among the live: every key is its alone. */
  get alone(): boolean {
    return this.#live.size === 1 && this.ringIds.length === 1 && this.ringIds[0] === this.self;
  }

  /** Whether `id` answers now (alive or suspect), in this view. */
  isLive(id: string): boolean {
    return this.#live.has(id);
  }

  /** The live members of the view, self included, sorted. */
  liveIds(): readonly string[] {
    return this.#liveIds;
  }
}

/** The same members in the same order: two replica sets, or two rings' member lists. */
export function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((id, index) => b[index] === id);
}

/** One string naming a key across tables (a map key): table and key never hold U+0000 (SPEC §2). */
export function keyIdOf(table: string, key: string): string {
  return `${table}\u0000${key}`;
}
