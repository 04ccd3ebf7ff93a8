import { assert } from "../util/assert.ts";
import { type FrameRecords, recordEndAt } from "./frame.ts";
import { hashKeyBytes, KeyTable } from "./key_table.ts";
import { type Page, type PagesView, RecordPages, type RecordSpan } from "./record_pages.ts";
import type { StoredEntry } from "./types.ts";
import {
  entryAt,
  type EntryHead,
  expiryOpBit,
  headAt,
  isDeleteOpCode,
  isStateOpCode,
  keyAt,
  keyFieldAt,
  type KeyState,
  lifetimeAt,
  opCodeOf,
  stateAt,
  tableNameAt,
  versionAt,
} from "./wal_record.ts";

/**
 * One table of the index: key -> address of the key's current record (a live value or a tombstone).
 * Deletes keep a tombstone; only a purge removes a key, and a table left without keys is removed with it.
 */
interface TableState {
  readonly keys: KeyTable;
  liveCount: number;
  /**
   * Every key in code-unit order, built at the first listing (a restart decodes no key before it):
   * then `addedKeys` are merged in and `purgedKeys` filtered out at each listing. A key is in
   * `sortedKeys` or `addedKeys` at most once, purged or not; both stay empty while `sortedKeys` is unbuilt.
   */
  sortedKeys: string[] | undefined;
  addedKeys: string[];
  readonly purgedKeys: Set<string>;
}

/** Every record of the index at one moment, for a state file written while the index changes. */
/** Told of a live record with a lifetime as a file is indexed: its key, version and expiry. */
export type LifetimeListener = (
  table: string,
  key: string,
  lifetime: { version: number; expiresAt: number },
) => void;

export interface IndexCut {
  /** Address of each key's record, tombstones included. */
  readonly addresses: Float64Array;
  readonly pages: PagesView;
}

/**
 * Entries decoded by `get`/`getLive` that are kept, by record address: a read of a hot key then skips
 * decoding its record (about a fifth of a GET's JavaScript time). Bounded by count and by the code units of
 * their JSON (about 2 bytes each); when full, it starts over.
 */
const decodedEntriesMax = 4_096;
const decodedCharsMax = 2 << 20;
/** A larger entry is decoded at each read, never kept. */
const decodedEntryCharsMax = 16 << 10;
const purgeOpCode = opCodeOf("purge");
const promiseOpCode = opCodeOf("promise");

/**
 * The visible state of a store: every key's current record, durable writes only. The records stay in
 * their binary form (the WAL record layout) in {@linkcode RecordPages}, as read from the files or as the
 * WAL wrote them; a key maps to the address of its record in a {@linkcode KeyTable} per table, and an
 * `Entry` is decoded when asked for. So the index of a million keys is two typed arrays, not a million
 * objects and strings: recovery allocates little beyond the frames it reads, decodes no key, and the
 * garbage collector has little to trace or copy.
 */
export class VisibleIndex {
  readonly #tables = new Map<string, TableState>();
  readonly #onLifetime: LifetimeListener | undefined;
  #pages = new RecordPages();
  /** Entries decoded by address; valid while `#pages.dropCount` equals `#decodedDropCount`. */
  #decoded = new Map<number, StoredEntry>();
  #decodedChars = 0;
  #decodedDropCount = 0;
  /** The last frame queued by `queueFrame`; it settles after every frame queued before it. */
  #queued: Promise<void> = Promise.resolve();

  /**
   * @param options.onLifetime is called for each live record with a lifetime that a frame read from a file
   * indexes (a later record of the key may supersede it), while the frame's bytes are in memory anyway.
   */
  constructor(options: { onLifetime?: LifetimeListener } = {}) {
    this.#onLifetime = options.onLifetime;
  }

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
    this.#forgetDecoded();
    this.#decodedDropCount = 0;
  }

  /** True when the table holds a key, live or a tombstone. */
  hasTable(table: string): boolean {
    return this.#tables.has(table);
  }

  #addressOf(table: string, key: string): number | undefined {
    const keys = this.#tables.get(table)?.keys;
    if (keys === undefined) return undefined;
    const slot = keys.findString(key);
    return slot < 0 ? undefined : keys.addressAt(slot);
  }

  /** The version and expiry of a key whose current record is a live state with a lifetime, else undefined. */
  lifetimeOf(table: string, key: string): { version: number; expiresAt: number } | undefined {
    const address = this.#addressOf(table, key);
    if (address === undefined || this.#pages.opAt(address) < expiryOpBit) return undefined;
    return lifetimeAt(this.#pages.recordAt(address));
  }

  /** The entry of a key, a tombstone included. */
  get(table: string, key: string): StoredEntry | undefined {
    const address = this.#addressOf(table, key);
    return address === undefined ? undefined : this.#entryAt(address);
  }

  /** The live entry of a key; undefined for a tombstone. */
  getLive(table: string, key: string): StoredEntry | undefined {
    const address = this.#addressOf(table, key);
    if (address === undefined) return undefined;
    return isDeleteOpCode(this.#pages.opAt(address)) ? undefined : this.#entryAt(address);
  }

  /** The entry of the record at `address`, decoded once while its page is held (see `dropCount`). */
  #entryAt(address: number): StoredEntry {
    if (this.#decodedDropCount !== this.#pages.dropCount) {
      this.#forgetDecoded();
      this.#decodedDropCount = this.#pages.dropCount;
    }
    const kept = this.#decoded.get(address);
    if (kept !== undefined) return kept;
    const entry = entryAt(this.#pages.recordAt(address));
    if (entry.json.length > decodedEntryCharsMax) return entry;
    if (this.#decoded.size >= decodedEntriesMax || this.#decodedChars + entry.json.length > decodedCharsMax) {
      this.#forgetDecoded();
    }
    this.#decoded.set(address, entry);
    this.#decodedChars += entry.json.length;
    return entry;
  }

  #forgetDecoded(): void {
    this.#decoded.clear();
    this.#decodedChars = 0;
  }

  /** Version, owner and kind of a key's record (a tombstone's too), without decoding its value. */
  headOf(table: string, key: string): EntryHead | undefined {
    const address = this.#addressOf(table, key);
    return address === undefined ? undefined : headAt(this.#pages.recordAt(address));
  }

  /** The version of a key's record (a tombstone's too), read without decoding the entry. */
  versionOf(table: string, key: string): number | undefined {
    const address = this.#addressOf(table, key);
    return address === undefined ? undefined : versionAt(this.#pages.recordAt(address));
  }

  /**
   * Indexes the first `entryCount` records of a frame read from a file, each checked before (see
   * `checkRecordAt`), in order: a put or delete replaces the key's current record (the last record of a
   * key wins, as it did when it was written), a purge removes the key, a promise is skipped (the store
   * keeps promises). Records after them (a checkpoint end) are not indexed. The frame's bytes become a
   * page as they are, without a copy.
   */
  loadFrame(frame: FrameRecords, entryCount: number): void {
    assert(entryCount <= frame.count);
    if (entryCount === 0) return;
    const { bytes } = frame;
    const page = this.#pages.adopt(bytes, frame.deflated);
    let table = "";
    let state: TableState | undefined;
    let offset = 0;
    for (let index = 0; index < entryCount; index += 1) {
      const start = offset + 4;
      const keyField = keyFieldAt(bytes, start);
      const name = tableNameAt(bytes, start, keyField); // interned: one string per run of a table
      if (bytes[start] === purgeOpCode) {
        this.remove(name, keyAt(bytes, keyField));
        state = undefined; // the table may have gone with its last key
      } else if (bytes[start] !== promiseOpCode) {
        if (state === undefined || name !== table) {
          table = name;
          state = this.#tableFor(table);
        }
        this.#loadRecord(state, page, offset);
        if (bytes[start]! >= expiryOpBit) {
          this.#loadedLifetime(name, { bytes, start, end: recordEndAt(bytes, offset) });
        }
      }
      offset = recordEndAt(bytes, offset);
    }
    this.#pages.seal(page);
  }

  /**
   * Indexes the put or delete record whose length prefix is at `offset` of a page being adopted: it
   * replaces the key's current record. Replay needs no conflict rule: the WAL logs only states that were
   * applied, in the order they were, and a state file holds each key once. WAL records a newer
   * `storage.db` already holds (a crash between its rename and the WAL truncation) are replayed up to
   * the key's last one, which is the state `storage.db` holds.
   */
  #loadRecord(state: TableState, page: Page, offset: number): void {
    const { bytes } = page;
    const start = offset + 4;
    const keyField = keyFieldAt(bytes, start);
    const keyEnd = recordEndAt(bytes, keyField);
    const hash = hashKeyBytes(bytes, keyField + 4, keyEnd);
    state.keys.reserve();
    const slot = state.keys.findBytes(hash, bytes, keyField + 4, keyEnd);
    const deleted = isDeleteOpCode(bytes[start]!);
    const address = this.#pages.addressIn(page, offset);
    if (slot < 0) {
      state.keys.insertAt(-1 - slot, hash, address);
      if (state.sortedKeys !== undefined) trackAddedKey(state, keyAt(bytes, keyField));
      this.#added(state, deleted);
    } else {
      const current = state.keys.addressAt(slot);
      state.keys.replaceAt(slot, address);
      this.#replaced(state, current, deleted);
    }
    this.#pages.retain(address);
  }

  /** Tells the listener of a record with the expiry bit that a file holds, when it is a live state. */
  #loadedLifetime(table: string, span: RecordSpan): void {
    const lifetime = lifetimeAt(span);
    if (lifetime === undefined || this.#onLifetime === undefined) return; // an expiry tombstone
    this.#onLifetime(table, keyAt(span.bytes, keyFieldAt(span.bytes, span.start)), lifetime);
  }

  /**
   * Queues {@linkcode VisibleIndex.loadFrame} to run in a microtask, after the frames queued before it. A
   * file reader that calls this for each frame and then awaits the next read gets the frame indexed
   * while that read and its decryption run on other threads, instead of before it issues them.
   * {@linkcode VisibleIndex.loadQueued} waits for every queued frame.
   */
  queueFrame(frame: FrameRecords, entryCount: number): void {
    const queued = this.#queued.then(() => this.loadFrame(frame, entryCount));
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
   * it wins). Its bytes are copied into a page. Returns the version of the record it replaced (a
   * tombstone's too), 0 for a new key.
   */
  applyRecord(options: { table: string; key: string; encoded: Uint8Array; deleted: boolean }): number {
    const { table, key, encoded, deleted } = options;
    const state = this.#tableFor(table);
    const keyField = keyFieldAt(encoded, 0);
    const keyEnd = recordEndAt(encoded, keyField);
    const hash = hashKeyBytes(encoded, keyField + 4, keyEnd);
    state.keys.reserve();
    const slot = state.keys.findBytes(hash, encoded, keyField + 4, keyEnd);
    const address = this.#pages.append(encoded);
    let replacedVersion = 0;
    if (slot < 0) {
      state.keys.insertAt(-1 - slot, hash, address);
      if (state.sortedKeys !== undefined) trackAddedKey(state, key);
      this.#added(state, deleted);
    } else {
      const previous = state.keys.addressAt(slot);
      replacedVersion = versionAt(this.#pages.recordAt(previous));
      state.keys.replaceAt(slot, address);
      this.#replaced(state, previous, deleted);
    }
    this.#pages.retain(address);
    return replacedVersion;
  }

  /** Bookkeeping of a key just added to `state.keys`. */
  #added(state: TableState, deleted: boolean): void {
    if (!deleted) state.liveCount += 1;
    assert(state.liveCount <= state.keys.count);
  }

  /** Bookkeeping of a key whose record at `previous` was just replaced. */
  #replaced(state: TableState, previous: number, deleted: boolean): void {
    if (!isDeleteOpCode(this.#pages.opAt(previous))) state.liveCount -= 1;
    this.#pages.release(previous);
    if (!deleted) state.liveCount += 1;
    assert(state.liveCount >= 0);
    assert(state.liveCount <= state.keys.count);
  }

  /** Removes a key (a purge); a table left empty goes too. Returns whether it was there. */
  remove(table: string, key: string): boolean {
    const state = this.#tables.get(table);
    return state !== undefined && this.#removeKey(table, state, key);
  }

  #removeKey(table: string, state: TableState, key: string): boolean {
    const slot = state.keys.findString(key);
    if (slot < 0) return false;
    const previous = state.keys.addressAt(slot);
    if (!isDeleteOpCode(this.#pages.opAt(previous))) state.liveCount -= 1;
    this.#pages.release(previous);
    state.keys.deleteAt(slot);
    if (state.sortedKeys !== undefined) state.purgedKeys.add(key);
    if (state.keys.count === 0) this.#tables.delete(table);
    assert(state.liveCount >= 0);
    assert(state.liveCount <= state.keys.count);
    return true;
  }

  /**
   * Moves the live records of sparse pages (less than half live) to the write page, so that pages
   * nobody points into are dropped. Call after a batch of changes; it does not change what any key reads.
   */
  compact(): void {
    for (const page of this.#pages.takeSparse()) this.#compactPage(page);
  }

  /**
   * Every key of every table with its entry, tombstones included, in no particular order, decoded
   * lazily. It walks the keys present when it started; each is read in its state at the step that
   * yields it, and skipped when purged by then. Keys added meanwhile are not seen.
   */
  *scan(): Iterable<{ table: string; key: string; entry: StoredEntry }> {
    for (const { table, span } of this.#walk()) {
      yield { table, key: keyAt(span.bytes, keyFieldAt(span.bytes, span.start)), entry: entryAt(span) };
    }
  }

  /**
   * Every key of every table with its state (version, timestamp, tombstone, content hash), as
   * {@linkcode scan} walks them, without decoding values: what anti-entropy compares.
   */
  *scanStates(): Iterable<{ table: string; key: string; state: KeyState }> {
    for (const { table, span } of this.#walk()) {
      yield { table, key: keyAt(span.bytes, keyFieldAt(span.bytes, span.start)), state: stateAt(span) };
    }
  }

  /**
   * Every key of every table, tombstones included, as {@linkcode scan} walks them, without decoding
   * their entries: what a pass that only places keys needs.
   */
  *scanKeys(): Iterable<{ table: string; key: string }> {
    for (const { table, span } of this.#walk()) {
      yield { table, key: keyAt(span.bytes, keyFieldAt(span.bytes, span.start)) };
    }
  }

  /** The walk of {@linkcode scan}: each key's current record, read at the step that yields it. */
  *#walk(): Iterable<{ table: string; span: RecordSpan }> {
    // The table's slots move as keys come and go, so the walk follows a copy of the addresses, read
    // through a view of the pages as they were (the records there stay readable whatever changes).
    const tables = [...this.#tables].map(([table, state]) => {
      const addresses = new Float64Array(state.keys.count);
      state.keys.copyAddresses(addresses, 0);
      return { table, addresses };
    });
    const pages = this.#pages.view();
    for (const { table, addresses } of tables) {
      for (const address of addresses) {
        const keys = this.#tables.get(table)?.keys;
        if (keys === undefined) continue; // purged with its last key
        const { bytes, start } = pages.recordAt(address);
        const keyField = keyFieldAt(bytes, start);
        const keyEnd = recordEndAt(bytes, keyField);
        const slot = keys.findBytes(hashKeyBytes(bytes, keyField + 4, keyEnd), bytes, keyField + 4, keyEnd);
        if (slot < 0) continue;
        yield { table, span: this.#pages.recordAt(keys.addressAt(slot)) };
      }
    }
  }

  /**
   * Live entries of a table in ascending code-unit order of their keys, after `after` (exclusive), at
   * most `limit`, read lazily from the current state.
   */
  *entries(
    table: string,
    options: { after?: string; limit: number; liveAtMs?: number },
  ): Iterable<[string, StoredEntry]> {
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
      const slot = state.keys.findString(key);
      if (slot < 0) continue;
      const span = this.#pages.recordAt(state.keys.addressAt(slot));
      const code = span.bytes[span.start]!;
      if (isDeleteOpCode(code)) continue;
      if (code >= expiryOpBit && options.liveAtMs !== undefined && expiredAt(span, options.liveAtMs)) {
        continue;
      }
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
    let count = 0;
    for (const state of this.#tables.values()) count += state.keys.count;
    const addresses = new Float64Array(count);
    let filled = 0;
    for (const state of this.#tables.values()) filled = state.keys.copyAddresses(addresses, filled);
    assert(filled === count);
    return { addresses, pages: this.#pages.view() };
  }

  #tableFor(table: string): TableState {
    let state = this.#tables.get(table);
    if (state === undefined) {
      state = {
        keys: new KeyTable(this.#pages),
        liveCount: 0,
        sortedKeys: undefined,
        addedKeys: [],
        purgedKeys: new Set(),
      };
      this.#tables.set(table, state);
    }
    return state;
  }

  #compactPage(page: Page): void {
    for (const { address, span } of this.#pages.records(page)) {
      const { bytes, start } = span;
      if (!isStateOpCode(bytes[start]!)) continue;
      const keyField = keyFieldAt(bytes, start);
      const keys = this.#tables.get(tableNameAt(bytes, start, keyField))?.keys;
      if (keys === undefined) continue;
      const keyEnd = recordEndAt(bytes, keyField);
      const slot = keys.findBytes(hashKeyBytes(bytes, keyField + 4, keyEnd), bytes, keyField + 4, keyEnd);
      if (slot < 0 || keys.addressAt(slot) !== address) continue;
      const moved = this.#pages.append(bytes.subarray(start, span.end));
      this.#pages.retain(moved);
      keys.replaceAt(slot, moved);
      this.#pages.release(address);
    }
  }

  #sortedKeys(state: TableState): string[] {
    if (state.sortedKeys === undefined) {
      const addresses = new Float64Array(state.keys.count);
      state.keys.copyAddresses(addresses, 0);
      const keys: string[] = [];
      for (const address of addresses) {
        const { bytes, start } = this.#pages.recordAt(address);
        keys.push(keyAt(bytes, keyFieldAt(bytes, start)));
      }
      state.sortedKeys = keys.sort();
      assert(state.addedKeys.length === 0 && state.purgedKeys.size === 0);
    }
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
    assert(state.sortedKeys.length === state.keys.count);
    return state.sortedKeys;
  }
}

/** Keeps the sorted listing of a table, once built, aware of a key just added. */
function trackAddedKey(state: TableState, key: string): void {
  assert(state.sortedKeys !== undefined);
  // A key purged since the last listing is still in the key arrays: it only stops being purged.
  if (!state.purgedKeys.delete(key)) state.addedKeys.push(key);
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

/** True when the record at `span` is a live state whose lifetime ended by `nowMs`. */
function expiredAt(span: RecordSpan, nowMs: number): boolean {
  const lifetime = lifetimeAt(span);
  return lifetime !== undefined && lifetime.expiresAt <= nowMs;
}
