import { assert } from "../util/assert.ts";
import type { PagesView, RecordSpan } from "./record_pages.ts";
import { fieldLengthAt, keyFieldAt } from "./wal_record.ts";

/**
 * Slots of a new table. A power of two: a slot is found by masking a hash.
 */
const capacityMin = 16;
/** A table grows (doubles) before more than 3/4 of its slots are taken. */
const loadNumerator = 3;
const loadDenominator = 4;

/**
 * Seed of the key hash, random per process, so that which keys collide cannot be chosen from outside
 * (keys come from clients) and differs from one run to the next.
 */
const hashSeed = crypto.getRandomValues(new Uint32Array(1))[0]!;
const encoder = new TextEncoder();

function mixByte(hash: number, byte: number): number {
  const mixed = Math.imul(hash ^ byte, 0x5bd1e995);
  return mixed ^ (mixed >>> 15);
}

function finishHash(hash: number, length: number): number {
  const mixed = Math.imul(hash ^ length ^ (hash >>> 13), 0x85ebca6b);
  return (mixed ^ (mixed >>> 16)) | 0;
}

/** Hash of the UTF-8 key in `bytes[start, end)`; equal to {@linkcode hashKeyString} of the same key. */
export function hashKeyBytes(bytes: Uint8Array, start: number, end: number): number {
  let hash = hashSeed;
  for (let index = start; index < end; index += 1) hash = mixByte(hash, bytes[index]!);
  return finishHash(hash, end - start);
}

/** Hash of a key given as a string: the hash of its UTF-8 bytes. */
export function hashKeyString(key: string): number {
  let hash = hashSeed;
  for (let index = 0; index < key.length; index += 1) {
    const code = key.charCodeAt(index);
    if (code >= 0x80) {
      const bytes = encoder.encode(key);
      return hashKeyBytes(bytes, 0, bytes.length);
    }
    hash = mixByte(hash, code);
  }
  return finishHash(hash, key.length);
}

/** True when the record `span` holds the key `bytes[start, end)`. */
function holdsKey(span: RecordSpan, bytes: Uint8Array, start: number, end: number): boolean {
  const keyField = keyFieldAt(span.bytes, span.start);
  const length = end - start;
  if (fieldLengthAt(span.bytes, keyField) !== length) return false;
  const keyStart = keyField + 4;
  for (let index = 0; index < length; index += 1) {
    if (bytes[start + index] !== span.bytes[keyStart + index]) return false;
  }
  return true;
}

/**
 * The keys of one table: an open-addressing hash table (linear probing) from each key to the address
 * of its record in the record pages. It holds one typed array and no strings: a key is compared
 * with the key bytes of the record its slot points at. Indexing a million records read from a file
 * costs a fraction of a `Map` of a million strings, and leaves the garbage collector nothing to trace.
 */
export class KeyTable {
  /** Where the records are: a key is read from its record. */
  readonly #pages: PagesView;
  /**
   * Two numbers per slot, side by side so that a probe reads one cache line: the key's hash (as u32),
   * then its record's address + 1 (0 marks a free slot). 32-bit while every address fits (4 GiB of
   * record pages), 64-bit from the first that does not: half the memory to touch while indexing.
   */
  #slots: Uint32Array | Float64Array = new Uint32Array(2 * capacityMin);
  #count = 0;

  constructor(pages: PagesView) {
    this.#pages = pages;
  }

  /** Keys held. */
  get count(): number {
    return this.#count;
  }

  /**
   * The slot of the key in `bytes[start, end)`, whose hash is `hash`, or `-1 - slot` of the free slot
   * where {@linkcode KeyTable.insertAt} puts it. Positional parameters like `decodeRecordHead`'s: it
   * runs once per record read at open, where an options object per call costs.
   */
  findBytes(hash: number, bytes: Uint8Array, start: number, end: number): number {
    const slots = this.#slots;
    const mask = (slots.length >>> 1) - 1;
    const stamp = hash >>> 0;
    // Bounded: the table always has free slots (its load stays under 3/4).
    for (let slot = stamp & mask;; slot = (slot + 1) & mask) {
      const stored = slots[2 * slot + 1]!;
      if (stored === 0) return -1 - slot;
      if (slots[2 * slot] === stamp && holdsKey(this.#pages.recordAt(stored - 1), bytes, start, end)) {
        return slot;
      }
    }
  }

  /** The slot of `key`, or a negative number when it is absent. */
  findString(key: string): number {
    let bytes: Uint8Array | undefined;
    for (let index = 0; index < key.length && bytes === undefined; index += 1) {
      if (key.charCodeAt(index) >= 0x80) bytes = encoder.encode(key);
    }
    if (bytes !== undefined) {
      // Keys are well-formed Unicode; a lone surrogate would encode as U+FFFD and find another key.
      if (!key.isWellFormed()) return -1;
      return this.findBytes(hashKeyBytes(bytes, 0, bytes.length), bytes, 0, bytes.length);
    }
    return this.#findAscii(key);
  }

  #findAscii(key: string): number {
    const stamp = hashKeyString(key) >>> 0;
    const slots = this.#slots;
    const mask = (slots.length >>> 1) - 1;
    // Bounded: the table always has free slots (its load stays under 3/4).
    for (let slot = stamp & mask;; slot = (slot + 1) & mask) {
      const stored = slots[2 * slot + 1]!;
      if (stored === 0) return -1 - slot;
      if (slots[2 * slot] !== stamp) continue;
      const { bytes, start } = this.#pages.recordAt(stored - 1);
      const keyField = keyFieldAt(bytes, start);
      if (fieldLengthAt(bytes, keyField) !== key.length) continue;
      let same = true;
      for (let index = 0; same && index < key.length; index += 1) {
        same = bytes[keyField + 4 + index] === key.charCodeAt(index);
      }
      if (same) return slot;
    }
  }

  /** The record address in a slot that `findBytes` or `findString` found. */
  addressAt(slot: number): number {
    const stored = this.#slots[2 * slot + 1]!;
    assert(stored !== 0, "a found slot is taken");
    return stored - 1;
  }

  /** Points a found slot's key at another record of the same key. */
  replaceAt(slot: number, address: number): void {
    assert(this.#slots[2 * slot + 1]! !== 0, "a found slot is taken");
    this.#store(slot, address);
  }

  #store(slot: number, address: number): void {
    assert(Number.isSafeInteger(address) && address >= 0);
    if (address + 1 > 0xffff_ffff && this.#slots instanceof Uint32Array) {
      this.#slots = Float64Array.from(this.#slots);
    }
    this.#slots[2 * slot + 1] = address + 1;
  }

  /**
   * Grows the table, when needed, so that one more key fits. Call it before the `findBytes` whose free
   * slot `insertAt` fills: growing moves every key.
   */
  reserve(): void {
    const old = this.#slots;
    const capacity = old.length >>> 1;
    if ((this.#count + 1) * loadDenominator <= capacity * loadNumerator) return;
    const slots = old instanceof Uint32Array
      ? new Uint32Array(old.length * 2)
      : new Float64Array(old.length * 2);
    const mask = capacity * 2 - 1;
    for (let index = 0; index < old.length; index += 2) {
      const stored = old[index + 1]!;
      if (stored === 0) continue;
      let slot = old[index]! & mask;
      // Bounded: the table has free slots.
      while (slots[2 * slot + 1] !== 0) slot = (slot + 1) & mask;
      slots[2 * slot] = old[index]!;
      slots[2 * slot + 1] = stored;
    }
    this.#slots = slots;
  }

  /**
   * Adds a key that `findBytes` did not find, in the free slot it named (`-1 - found`), with the hash
   * of its bytes and its record's address; `reserve` made room before that search.
   */
  insertAt(free: number, hash: number, address: number): void {
    assert(this.#slots[2 * free + 1] === 0, "the slot is free");
    assert(
      (this.#count + 1) * loadDenominator <= (this.#slots.length >>> 1) * loadNumerator,
      "reserve() made room",
    );
    this.#slots[2 * free] = hash >>> 0;
    this.#store(free, address);
    this.#count += 1;
  }

  /** Removes the key in a found slot, moving back the keys probed past it so that every key stays found. */
  deleteAt(slot: number): void {
    const slots = this.#slots;
    assert(slots[2 * slot + 1] !== 0, "a found slot is taken");
    const mask = (slots.length >>> 1) - 1;
    let hole = slot;
    // Bounded: the table has free slots, and the walk stops at the first.
    for (let next = (hole + 1) & mask; slots[2 * next + 1] !== 0; next = (next + 1) & mask) {
      const home = slots[2 * next]! & mask;
      // The key at `next` may move back to the hole when the hole lies between its home and it.
      if (((next - home) & mask) >= ((next - hole) & mask)) {
        slots[2 * hole] = slots[2 * next]!;
        slots[2 * hole + 1] = slots[2 * next + 1]!;
        hole = next;
      }
    }
    slots[2 * hole + 1] = 0;
    this.#count -= 1;
    assert(this.#count >= 0);
  }

  /** Appends the address of every key's record to `target` from `at`; returns the index after the last. */
  copyAddresses(target: Float64Array, at: number): number {
    const slots = this.#slots;
    let index = at;
    for (let slot = 1; slot < slots.length; slot += 2) {
      const stored = slots[slot]!;
      if (stored !== 0) {
        target[index] = stored - 1;
        index += 1;
      }
    }
    assert(index - at === this.#count);
    return index;
  }
}
