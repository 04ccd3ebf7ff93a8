import { assert } from "../util/assert.ts";

/** A key whose state has a lifetime, as the expiry queue hands it out (see `Store.takeExpired`). */
export interface ExpiringKey {
  readonly table: string;
  readonly key: string;
  /** The version of the state whose lifetime ends. */
  readonly version: number;
  /** When that lifetime ends, ms since the epoch. */
  readonly expiresAtMs: number;
  /** How often the key was put back for later (`ExpiryQueue.requeue`): 0 the first time it is due. */
  readonly deferrals: number;
}

/** One entry: an `ExpiringKey` with its due time and its place in the heap. */
interface Slot {
  table: string;
  key: string;
  version: number;
  expiresAtMs: number;
  deferrals: number;
  /** When it is handed out: `expiresAtMs`, or later once deferred. */
  dueAtMs: number;
  /** Its index in the heap array. */
  index: number;
}

/**
 * The keys whose state has a lifetime, one entry per key, by due time (src/store/DESIGN.md, "Expiry
 * support"): a binary min-heap over an array, with a map from key to entry so that a key's newer lifetime
 * moves its entry instead of adding one. Entries are not removed when a key loses its lifetime (a write
 * without one, a delete, a purge): the caller drops them when they come due, so the queue holds at most
 * one entry per key that had a lifetime since its entry was last handed out.
 */
export class ExpiryQueue {
  readonly #heap: Slot[] = [];
  readonly #slots = new Map<string, Map<string, Slot>>();

  /** Entries queued. */
  get size(): number {
    return this.#heap.length;
  }

  /** The earliest due time queued, or undefined when the queue is empty. */
  get nextDueMs(): number | undefined {
    return this.#heap[0]?.dueAtMs;
  }

  /**
   * Records that the key's newest state, `version`, ends its lifetime at `expiresAtMs`: its entry (there is
   * at most one) is moved, or one is added, due then.
   */
  set(options: { table: string; key: string; version: number; expiresAtMs: number }): void {
    const { table, key, version, expiresAtMs } = options;
    assert(Number.isSafeInteger(version) && version >= 1, "a lifetime belongs to a version");
    assert(Number.isSafeInteger(expiresAtMs) && expiresAtMs > 0, "a lifetime ends at a positive time");
    const slot = this.#slots.get(table)?.get(key);
    if (slot === undefined) {
      this.#insert({ table, key, version, expiresAtMs, deferrals: 0, dueAtMs: expiresAtMs, index: -1 });
      return;
    }
    const earlier = expiresAtMs < slot.dueAtMs;
    slot.version = version;
    slot.expiresAtMs = expiresAtMs;
    slot.deferrals = 0;
    slot.dueAtMs = expiresAtMs;
    if (earlier) this.#siftUp(slot.index);
    else this.#siftDown(slot.index);
    assert(this.#heap[slot.index] === slot, "a moved entry keeps its place in the heap");
  }

  /** Takes the entries due at `nowMs`, earliest first, at most `countMax`; they leave the queue. */
  takeDue(nowMs: number, countMax: number): ExpiringKey[] {
    assert(Number.isSafeInteger(countMax) && countMax >= 0);
    const taken: ExpiringKey[] = [];
    // Bounded by countMax.
    while (taken.length < countMax) {
      const first = this.#heap[0];
      if (first === undefined || first.dueAtMs > nowMs) break;
      this.#removeAt(0);
      const { table, key, version, expiresAtMs, deferrals } = first;
      taken.push({ table, key, version, expiresAtMs, deferrals });
    }
    assert(taken.length <= countMax);
    return taken;
  }

  /**
   * Puts a taken entry back, due at `dueAtMs` with one more deferral, unless its key got an entry again
   * meanwhile (a newer lifetime supersedes it). Returns whether it was put back.
   */
  requeue(item: ExpiringKey, dueAtMs: number): boolean {
    assert(Number.isSafeInteger(dueAtMs) && dueAtMs > 0, "a due time is a positive time");
    if (this.#slots.get(item.table)?.has(item.key) === true) return false;
    const { table, key, version, expiresAtMs } = item;
    this.#insert({ table, key, version, expiresAtMs, deferrals: item.deferrals + 1, dueAtMs, index: -1 });
    assert(this.#slots.get(table)?.get(key)?.dueAtMs === dueAtMs, "the key is queued again, due then");
    return true;
  }

  /** Forgets every entry (a recovery attempt starting over). */
  clear(): void {
    this.#heap.length = 0;
    this.#slots.clear();
  }

  #insert(slot: Slot): void {
    let byKey = this.#slots.get(slot.table);
    if (byKey === undefined) this.#slots.set(slot.table, byKey = new Map());
    assert(!byKey.has(slot.key), "one entry per key");
    byKey.set(slot.key, slot);
    slot.index = this.#heap.length;
    this.#heap.push(slot);
    this.#siftUp(slot.index);
    assert(this.#heap[slot.index] === slot, "an inserted entry knows its place in the heap");
  }

  #removeAt(index: number): void {
    const slot = this.#heap[index]!;
    const last = this.#heap.pop()!;
    if (last !== slot) {
      this.#heap[index] = last;
      last.index = index;
      this.#siftDown(index);
      this.#siftUp(last.index);
    }
    const byKey = this.#slots.get(slot.table)!;
    assert(byKey.get(slot.key) === slot, "the map and the heap hold the same entry");
    byKey.delete(slot.key);
    if (byKey.size === 0) this.#slots.delete(slot.table);
    assert(index >= this.#heap.length || this.#heap[index]!.index === index, "the heap stays indexed");
  }

  #siftUp(start: number): void {
    const heap = this.#heap;
    const slot = heap[start]!;
    let index = start;
    // Bounded: each step halves the index.
    while (index > 0) {
      const parentIndex = (index - 1) >> 1;
      const parent = heap[parentIndex]!;
      if (parent.dueAtMs <= slot.dueAtMs) break;
      heap[index] = parent;
      parent.index = index;
      index = parentIndex;
    }
    heap[index] = slot;
    slot.index = index;
  }

  #siftDown(start: number): void {
    const heap = this.#heap;
    const slot = heap[start]!;
    let index = start;
    // Bounded: each step doubles the index.
    for (;;) {
      const left = 2 * index + 1;
      if (left >= heap.length) break;
      const right = left + 1;
      const child = right < heap.length && heap[right]!.dueAtMs < heap[left]!.dueAtMs ? right : left;
      if (heap[child]!.dueAtMs >= slot.dueAtMs) break;
      heap[index] = heap[child]!;
      heap[index]!.index = index;
      index = child;
    }
    heap[index] = slot;
    slot.index = index;
  }
}
