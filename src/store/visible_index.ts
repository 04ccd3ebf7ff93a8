import { assert } from "../util/assert.ts";
import { type Page, type PagesView, RecordPages, type RecordSpan } from "./record_pages.ts";
import { compareReplicaEntries, replicaOfEntry } from "./replica.ts";
import type { Entry } from "./types.ts";
import {
  entryAt,
  type EntryHead,
  headAt,
  opCodeOf,
  type PurgeRecord,
  type RecordHead,
  tableAndKeyAt,
  versionAt,
} from "./wal_record.ts";

/**
 * One table of the index: key -> address of the key's current record (a live value or a tombstone).
 * Deletes keep a tombstone; only a purge removes a key, and a table left without keys is removed with it.
 */
interface TableState {
  readonly addresses: Map<string, number>;
  liveCount: number;
  /**
   * Every key in code-unit order, built on demand: `addedKeys` are merged in and `purgedKeys` filtered out
   * at the next listing. A key is in `sortedKeys` or `addedKeys` at most once, purged or not.
   */
  sortedKeys: string[];
  addedKeys: string[];
  readonly purgedKeys: Set<string>;
}

/** Every record of the index at one moment, for a state file written while the index changes. */
export interface IndexCut {
  /** Address of each key's record, tombstones included. */
  readonly addresses: readonly number[];
  readonly pages: PagesView;
}

const deleteOpCode = opCodeOf("delete");

/**
 * The visible state of a store: every key's current record, durable writes only. The records stay in
 * their binary form (the WAL record layout) in {@linkcode RecordPages}, as read from the files or as the
 * WAL wrote them; a key maps to the address of its record, and an `Entry` is decoded when asked for. So
 * the index of a million keys is a million small integers in one `Map` per table, not a million objects
 * and strings: recovery allocates little beyond the frames it reads, and the garbage collector has
 * little to trace or copy.
 */
export class VisibleIndex {
  readonly #tables = new Map<string, TableState>();
  #pages = new RecordPages();
  /** The last frame queued by `queueFrame`; it settles after every frame queued before it. */
  #queued: Promise<void> = Promise.resolve();

  /** Tables holding at least one key. */
  get tableCount(): number {
    return this.#tables.size;
  }

  /** Bytes of the pages holding records, and of the records keys point at. */
  get pageStats(): { pageBytes: number; liveBytes: number } {
    return { pageBytes: this.#pages.pageBytes, liveBytes: this.#pages.liveBytes };
  }

  /** Forgets everything (a recovery attempt starting over). */
  clear(): void {
    this.#tables.clear();
    this.#pages = new RecordPages();
  }

  /** True when the table holds a key, live or a tombstone. */
  hasTable(table: string): boolean {
    return this.#tables.has(table);
  }

  /** The entry of a key, a tombstone included. */
  get(table: string, key: string): Entry | undefined {
    const address = this.#tables.get(table)?.addresses.get(key);
    return address === undefined ? undefined : entryAt(this.#pages.recordAt(address));
  }

  /** The live entry of a key; undefined for a tombstone, which is not decoded. */
  getLive(table: string, key: string): Entry | undefined {
    const address = this.#tables.get(table)?.addresses.get(key);
    if (address === undefined) return undefined;
    const span = this.#pages.recordAt(address);
    return span.bytes[span.start] === deleteOpCode ? undefined : entryAt(span);
  }

  /** Version, owner and kind of a key's record (a tombstone's too), without decoding its value. */
  headOf(table: string, key: string): EntryHead | undefined {
    const address = this.#tables.get(table)?.addresses.get(key);
    return address === undefined ? undefined : headAt(this.#pages.recordAt(address));
  }

  /** The version of a key's record (a tombstone's too), read without decoding the entry. */
  versionOf(table: string, key: string): number | undefined {
    const address = this.#tables.get(table)?.addresses.get(key);
    return address === undefined ? undefined : versionAt(this.#pages.recordAt(address));
  }

  /**
   * Indexes the records of one frame read from a file, in order: a put or delete when it wins against
   * the key's current record by the replica conflict rule, a purge by removing the key. `heads[i]`
   * describes `records[i]`; records after the heads (a checkpoint end) are not indexed. The frame's
   * bytes become a page as they are, without a copy, when the records lie back to back in one buffer.
   */
  loadFrame(records: readonly Uint8Array[], heads: ReadonlyArray<RecordHead | PurgeRecord>): void {
    assert(heads.length <= records.length);
    if (heads.length === 0) return;
    const page = this.#adoptFrame(records);
    for (let index = 0; index < heads.length; index += 1) {
      const head = heads[index]!;
      if (head.op === "purge") {
        this.remove(head.table, head.key);
        continue;
      }
      const record = records[index]!;
      const state = this.#tableFor(head.table);
      const current = state.addresses.get(head.key);
      if (current !== undefined && !this.#wins({ bytes: record, start: 0, end: record.length }, current)) {
        continue;
      }
      const address = page === undefined ? this.#pages.append(record) : this.#pages.addressOf(page, record);
      this.#set(state, { key: head.key, address, deleted: head.op === "delete", previous: current });
    }
    if (page !== undefined) this.#pages.seal(page);
  }

  /**
   * Queues {@linkcode VisibleIndex.loadFrame} to run in a microtask, after the frames queued before it. A
   * file reader that calls this for each frame and then awaits the next read gets the frame indexed
   * while that read and its decryption run on other threads, instead of before it issues them.
   * {@linkcode VisibleIndex.loadQueued} waits for every queued frame.
   */
  queueFrame(records: readonly Uint8Array[], heads: ReadonlyArray<RecordHead | PurgeRecord>): void {
    const queued = this.#queued.then(() => this.loadFrame(records, heads));
    queued.catch(() => {}); // observed by loadQueued
    this.#queued = queued;
  }

  /** Waits until every frame queued by `queueFrame` is indexed; throws the first error one of them threw. */
  async loadQueued(): Promise<void> {
    const queued = this.#queued;
    this.#queued = Promise.resolve();
    await queued;
  }

  /**
   * Makes an encoded put or delete record the key's current one (a durable write; the caller checked
   * it wins). Its bytes are copied into a page.
   */
  applyRecord(options: { table: string; key: string; encoded: Uint8Array; deleted: boolean }): void {
    const { table, key, encoded } = options;
    const state = this.#tableFor(table);
    const previous = state.addresses.get(key);
    const address = this.#pages.append(encoded);
    this.#set(state, { key, address, deleted: options.deleted, previous });
  }

  /** Removes a key (a purge); a table left empty goes too. Returns whether it was there. */
  remove(table: string, key: string): boolean {
    const state = this.#tables.get(table);
    const previous = state?.addresses.get(key);
    if (state === undefined || previous === undefined) return false;
    if (this.#pages.opAt(previous) !== deleteOpCode) state.liveCount -= 1;
    this.#pages.release(previous);
    state.addresses.delete(key);
    state.purgedKeys.add(key);
    if (state.addresses.size === 0) this.#tables.delete(table);
    assert(state.liveCount >= 0);
    assert(state.liveCount <= state.addresses.size);
    return true;
  }

  /**
   * Moves the live records of sparse pages (less than half live) to the write page, so that pages
   * nobody points into are dropped. Call after a batch of changes; it does not change what any key reads.
   */
  compact(): void {
    for (const page of this.#pages.takeSparse()) this.#compactPage(page);
  }

  /** Every key of every table with its entry, tombstones included, decoded lazily, in no particular order. */
  *scan(): Iterable<{ table: string; key: string; entry: Entry }> {
    for (const [table, state] of this.#tables) {
      for (const [key, address] of state.addresses) {
        yield { table, key, entry: entryAt(this.#pages.recordAt(address)) };
      }
    }
  }

  /**
   * Live entries of a table in ascending code-unit order of their keys, after `after` (exclusive), at
   * most `limit`, read lazily from the current state.
   */
  *entries(table: string, options: { after?: string; limit: number }): Iterable<[string, Entry]> {
    assert(Number.isSafeInteger(options.limit));
    assert(options.limit >= 0);
    const state = this.#tables.get(table);
    if (state === undefined) return;
    const keys = this.#sortedKeys(state);
    let index = options.after === undefined ? 0 : firstIndexAfter(keys, options.after);
    let count = 0;
    for (; index < keys.length && count < options.limit; index += 1) {
      const key = keys[index]!;
      // Read at each step: the table may have changed while the caller held the iterator.
      const address = state.addresses.get(key);
      if (address === undefined) continue;
      const span = this.#pages.recordAt(address);
      if (span.bytes[span.start] === deleteOpCode) continue;
      count += 1;
      yield [key, entryAt(span)];
    }
  }

  /** Live keys per table. */
  tableCounts(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const [table, state] of this.#tables) counts.set(table, state.liveCount);
    return counts;
  }

  /** Every record of the index now; reading it later sees these records whatever changes meanwhile. */
  cut(): IndexCut {
    const addresses: number[] = [];
    for (const state of this.#tables.values()) {
      for (const address of state.addresses.values()) addresses.push(address);
    }
    return { addresses, pages: this.#pages.view() };
  }

  #tableFor(table: string): TableState {
    let state = this.#tables.get(table);
    if (state === undefined) {
      state = { addresses: new Map(), liveCount: 0, sortedKeys: [], addedKeys: [], purgedKeys: new Set() };
      this.#tables.set(table, state);
    }
    return state;
  }

  #set(
    state: TableState,
    change: { key: string; address: number; deleted: boolean; previous: number | undefined },
  ): void {
    const { key, address, previous } = change;
    if (previous === undefined) {
      // A key purged since the last listing is still in the key arrays: it only stops being purged.
      if (!state.purgedKeys.delete(key)) state.addedKeys.push(key);
    } else {
      if (this.#pages.opAt(previous) !== deleteOpCode) state.liveCount -= 1;
      this.#pages.release(previous);
    }
    if (!change.deleted) state.liveCount += 1;
    this.#pages.retain(address);
    state.addresses.set(key, address);
    assert(state.liveCount >= 0);
    assert(state.liveCount <= state.addresses.size);
  }

  /** True when `record` wins against the record at `current`: the higher version, else the full rule. */
  #wins(record: RecordSpan, current: number): boolean {
    const currentSpan = this.#pages.recordAt(current);
    const version = versionAt(record);
    const currentVersion = versionAt(currentSpan);
    if (version !== currentVersion) return version > currentVersion;
    return compareReplicaEntries(replicaOfEntry(entryAt(record)), replicaOfEntry(entryAt(currentSpan))) > 0;
  }

  /**
   * The frame's records as one adopted page when they lie back to back in one buffer (as a frame's
   * plaintext holds them); otherwise undefined, and each indexed record is copied into a page.
   */
  #adoptFrame(records: readonly Uint8Array[]): Page | undefined {
    const first = records[0]!;
    const last = records[records.length - 1]!;
    if (first.byteOffset < 4) return undefined;
    let expected = first.byteOffset;
    for (const record of records) {
      if (record.buffer !== first.buffer || record.byteOffset !== expected) return undefined;
      expected = record.byteOffset + record.length + 4;
    }
    const start = first.byteOffset - 4;
    const bytes = new Uint8Array(first.buffer, start, last.byteOffset + last.length - start);
    return this.#pages.adopt(bytes);
  }

  #compactPage(page: Page): void {
    for (const { address, span } of this.#pages.records(page)) {
      const op = span.bytes[span.start]!;
      if (op !== deleteOpCode && op !== opCodeOf("put")) continue;
      const { table, key } = tableAndKeyAt(span);
      const state = this.#tables.get(table);
      if (state === undefined || state.addresses.get(key) !== address) continue;
      const moved = this.#pages.append(span.bytes.subarray(span.start, span.end));
      this.#pages.retain(moved);
      state.addresses.set(key, moved);
      this.#pages.release(address);
    }
  }

  #sortedKeys(state: TableState): string[] {
    if (state.purgedKeys.size > 0) {
      // New arrays, so a listing in progress keeps its own (and skips keys it no longer finds).
      const purged = state.purgedKeys;
      state.sortedKeys = state.sortedKeys.filter((key) => !purged.has(key));
      state.addedKeys = state.addedKeys.filter((key) => !purged.has(key));
      purged.clear();
    }
    if (state.addedKeys.length > 0) {
      // A new array, so a listing in progress keeps its own. Timsort merges the sorted run and the additions.
      state.sortedKeys = state.sortedKeys.concat(state.addedKeys).sort();
      state.addedKeys = [];
    }
    assert(state.sortedKeys.length === state.addresses.size);
    return state.sortedKeys;
  }
}

/** Index of the first key greater than `after` in a sorted array (binary search, code-unit order). */
function firstIndexAfter(keys: readonly string[], after: string): number {
  let low = 0;
  let high = keys.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (keys[middle]! <= after) low = middle + 1;
    else high = middle;
  }
  return low;
}
