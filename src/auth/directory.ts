import { assert } from "../util/assert.ts";
import type { UserRecord } from "./passwords.ts";

/** Where users are kept; {@linkcode ReplicatedUsers} is the node's, over its store and cluster. */
export interface UserDirectory {
  /** This node's durable record of the user, or `undefined` when it holds none (yet). */
  get(user: string): UserRecord | undefined;
  /**
   * The user's record from this node or, when it holds none, from the other members. Waits up to `waitMs`
   * for a record another request is writing (pending here, or on its way from another node) to become
   * readable. `undefined` when none is found in that time.
   */
  find(user: string, options: { waitMs: number }): Promise<UserRecord | undefined>;
  /**
   * Creates the user durably with a conditional write. Resolves `"exists"` when the user exists or another
   * request's creation of it is still pending; {@linkcode UserDirectory.find} then finds its record.
   */
  create(user: string, record: UserRecord): Promise<"created" | "exists">;
}

/** What the node offers for keeping users; `main.ts` adapts the store and the cluster to it. */
export interface UserStorage {
  /** This node's durable record of the user (pending writes are not seen). */
  read(user: string): UserRecord | undefined;
  /** A record another member holds, asked over the network; `undefined` when none has one or answered. */
  readElsewhere(user: string): Promise<UserRecord | undefined>;
  /** The conditional write (`ifVersion: 0`); `"exists"` on a version conflict. */
  create(user: string, record: UserRecord): Promise<"created" | "exists">;
  /** Calls `listener` with the user's name each time a user record becomes durable on this node. */
  onDurable(listener: (user: string) => void): void;
}

/**
 * The users of a node: durable records in its store, replicated to every member by the cluster.
 *
 * A conditional create that loses meets the winner's write while it may still be pending (the store checks
 * conditions against pending writes, reads see durable ones) or, in a cluster, before it reached this
 * node. `find` closes that gap: it waits, bounded, for the record to become durable here, and asks the
 * other members in the meantime and once more at the end.
 */
export class ReplicatedUsers implements UserDirectory {
  readonly #storage: UserStorage;
  /** Wake-ups of `find` calls waiting for a user's record, by user; emptied as each call ends. */
  readonly #waiters = new Map<string, Set<() => void>>();

  constructor(storage: UserStorage) {
    this.#storage = storage;
    storage.onDurable((user) => {
      for (const wake of this.#waiters.get(user) ?? []) wake();
    });
  }

  /** `find` calls waiting now, for tests. */
  get waiterCount(): number {
    let count = 0;
    for (const waiters of this.#waiters.values()) count += waiters.size;
    return count;
  }

  get(user: string): UserRecord | undefined {
    return this.#storage.read(user);
  }

  create(user: string, record: UserRecord): Promise<"created" | "exists"> {
    return this.#storage.create(user, record);
  }

  async find(user: string, options: { waitMs: number }): Promise<UserRecord | undefined> {
    assert(Number.isFinite(options.waitMs), "waitMs must be finite");
    assert(options.waitMs >= 0, "waitMs must not be negative");
    const local = this.#storage.read(user);
    if (local !== undefined) return local;
    if (options.waitMs === 0) return await this.#storage.readElsewhere(user);
    const found = Promise.withResolvers<UserRecord | undefined>();
    const wake = () => {
      const record = this.#storage.read(user);
      if (record !== undefined) found.resolve(record);
    };
    this.#addWaiter(user, wake);
    const timer = setTimeout(() => {
      // The last chance: this node never got it, but another member may hold it by now.
      found.resolve(this.#storage.read(user) ?? this.#storage.readElsewhere(user).catch(() => undefined));
    }, options.waitMs);
    this.#storage.readElsewhere(user).then((record) => {
      if (record !== undefined) found.resolve(record);
    }, () => {});
    try {
      return await found.promise;
    } finally {
      clearTimeout(timer);
      this.#removeWaiter(user, wake);
    }
  }

  #addWaiter(user: string, wake: () => void): void {
    let waiters = this.#waiters.get(user);
    if (waiters === undefined) this.#waiters.set(user, waiters = new Set());
    waiters.add(wake);
    assert(waiters.has(wake));
  }

  #removeWaiter(user: string, wake: () => void): void {
    const waiters = this.#waiters.get(user);
    assert(waiters !== undefined, "a waiting user has a set of waiters");
    assert(waiters.delete(wake), "a waiter is removed once");
    if (waiters.size === 0) this.#waiters.delete(user);
  }
}
