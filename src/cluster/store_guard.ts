import { AssertionError } from "../util/assert.ts";
import type { EntryView, KeyState, LocalStore, ReplicaEntry } from "./local_store.ts";

/**
 * `store.getEntry` behind the guard without a closure per call: a GET of a key on a node holding every key
 * comes here.
 */
function guardedGetEntry(
  store: LocalStore,
  check: (error: unknown) => void,
): (table: string, key: string) => EntryView | undefined {
  return (table, key) => {
    try {
      return store.getEntry(table, key);
    } catch (error) {
      check(error);
      throw error;
    }
  };
}

/**
 * The store behind a guard that tells `onBroken` of every `AssertionError` a store call throws (or
 * rejects with), then lets it go on as before. A broken invariant inside the store (its index, WAL,
 * checkpoint) puts its own state in doubt: `main.ts` stops the node then, and recovery starts again from
 * the disk (STYLE B3). One thrown anywhere else (a request handler, a peer's message, a stream) fails
 * only that request, with a logged 500.
 */
export function guardStore(store: LocalStore, onBroken: (error: AssertionError) => void): LocalStore {
  const check = (error: unknown) => {
    if (error instanceof AssertionError) onBroken(error);
  };
  const guard = <T>(run: () => T): T => {
    try {
      return run();
    } catch (error) {
      check(error);
      throw error;
    }
  };
  const guardAsync = <T>(run: () => Promise<T>): Promise<T> => {
    let promise: Promise<T>;
    try {
      promise = run();
    } catch (error) {
      check(error);
      return Promise.reject(error);
    }
    return promise.catch((error: unknown) => {
      check(error);
      throw error;
    });
  };
  /** A call that throws in its turn when it refuses, and rejects only when its durable step fails. */
  const guardQueued = <T>(run: () => Promise<T>): Promise<T> =>
    guard(run).catch((error: unknown) => {
      check(error);
      throw error;
    });
  function* guardIterable<T>(iterable: () => Iterable<T>): Iterable<T> {
    const iterator = guard(() => iterable()[Symbol.iterator]());
    // Ends when the store's iterator does; each step is one store call.
    for (;;) {
      const step = guard(() => iterator.next());
      if (step.done === true) return;
      yield step.value;
    }
  }
  return {
    holds: (table, key) => guard(() => store.holds(table, key)),
    getEntry: guardedGetEntry(store, check),
    put: (table, key, value, options) => guardAsync(() => store.put(table, key, value, options)),
    patch: (table, key, patch, options) => guardAsync(() => store.patch(table, key, patch, options)),
    delete: (table, key, options) => guardAsync(() => store.delete(table, key, options)),
    // Queued in the caller's turn: its condition is judged against the state it sees then.
    expire: (table, key, options) => guardQueued(() => store.expire(table, key, options)),
    takeExpired: (nowMs, countMax) => guard(() => store.takeExpired(nowMs, countMax)),
    deferExpiry: (item, dueAtMs) => guard(() => store.deferExpiry(item, dueAtMs)),
    nextExpiryMs: () => guard(() => store.nextExpiryMs()),
    expiredVersionOf: (table, key, nowMs) => guard(() => store.expiredVersionOf(table, key, nowMs)),
    headOf: (table, key) => guard(() => store.headOf(table, key)),
    acceptorOf: (table, key) => guard(() => store.acceptorOf(table, key)),
    ballotsOf: (table, key) => guard(() => store.ballotsOf(table, key)),
    // Queued in the caller's turn (the acceptor's rule depends on it): a refusal is thrown in that turn too.
    promise: (table, key, ballot) => guardQueued(() => store.promise(table, key, ballot)),
    accept: (table, key, ballot, entry, options) =>
      guardQueued(() => store.accept(table, key, ballot, entry, options)),
    viewOf: (table, key, entry) => guard(() => store.viewOf(table, key, entry)),
    applyReplicas: (items) => guardAsync(() => store.applyReplicas(items)),
    replicaOf: (table, key): ReplicaEntry | undefined => guard(() => store.replicaOf(table, key)),
    scanStates: (): Iterable<{ table: string; key: string; state: KeyState }> =>
      guardIterable(() => store.scanStates()),
    scanKeys: () => guardIterable(() => store.scanKeys()),
    purge: (table, key) => guardAsync(() => store.purge(table, key)),
    hasTable: (table) => guard(() => store.hasTable(table)),
    entries: (table, options) => guardIterable(() => store.entries(table, options)),
  };
}
