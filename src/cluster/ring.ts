import { assert } from "../util/assert.ts";

/** FNV-1a 32-bit offset basis and prime. */
const fnvOffsetBasis = 0x811c9dc5;
const fnvPrime = 0x01000193;

/** FNV-1a, 32 bits, over `bytes`. */
export function fnv1a32(bytes: Uint8Array): number {
  let hash = fnvOffsetBasis;
  for (const byte of bytes) {
    hash ^= byte;
    hash = Math.imul(hash, fnvPrime);
  }
  return hash >>> 0;
}

/** MurmurHash3's 32-bit finalizer: spreads FNV's weak low-bit avalanche over all 32 bits. */
export function fmix32(value: number): number {
  let hash = value >>> 0;
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35);
  hash ^= hash >>> 16;
  return hash >>> 0;
}

/**
 * FNV-1a, 32 bits, over the UTF-8 bytes of `text` exactly as `TextEncoder` gives them (a lone surrogate is
 * U+FFFD), without encoding it: every write looks up its key's replicas several times on each node, and the
 * encoder's array was most of that lookup's cost.
 */
export function fnv1a32Utf8(text: string): number {
  return fnvUtf8(fnvOffsetBasis, text) >>> 0;
}

/** One byte into an FNV-1a state. */
function fnvByte(hash: number, value: number): number {
  return Math.imul(hash ^ value, fnvPrime);
}

/** The FNV-1a state `hash` continued over the UTF-8 bytes of `text` (see {@linkcode fnv1a32Utf8}). */
function fnvUtf8(hash: number, text: string): number {
  for (let index = 0; index < text.length; index += 1) {
    let code = text.charCodeAt(index);
    if (code < 0x80) {
      hash = fnvByte(hash, code);
      continue;
    }
    if (code < 0x800) {
      hash = fnvByte(fnvByte(hash, 0xc0 | (code >> 6)), 0x80 | (code & 0x3f));
      continue;
    }
    if (code >= 0xd800 && code <= 0xdfff) {
      const next = index + 1 < text.length ? text.charCodeAt(index + 1) : 0;
      if (code <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
        code = 0x10000 + ((code - 0xd800) << 10) + (next - 0xdc00);
        index += 1;
        hash = fnvByte(fnvByte(hash, 0xf0 | (code >> 18)), 0x80 | ((code >> 12) & 0x3f));
        hash = fnvByte(fnvByte(hash, 0x80 | ((code >> 6) & 0x3f)), 0x80 | (code & 0x3f));
        continue;
      }
      code = 0xfffd; // a lone surrogate, as TextEncoder replaces it
    }
    hash = fnvByte(fnvByte(hash, 0xe0 | (code >> 12)), 0x80 | ((code >> 6) & 0x3f));
    hash = fnvByte(hash, 0x80 | (code & 0x3f));
  }
  return hash;
}

/** `fmix32(fnv1a32(utf8(text)))`: the ring's one hash function. */
export function hashText(text: string): number {
  return fmix32(fnv1a32Utf8(text));
}

/**
 * The ring position of a key: `fmix32(fnv1a32(utf8(table + "\u0000" + key)))`, an unsigned 32-bit
 * integer. It is part of the cluster's protocol: every node, of every version, must compute the same
 * value, so it never changes (a change would move every key). NUL cannot occur in a name, so distinct
 * (table, key) pairs give distinct inputs.
 */
export function keyHash(table: string, key: string): number {
  // The hash of the joined text, without joining it: each part's bytes in turn, NUL (one byte) between them.
  // Names are well-formed (no lone surrogate meets the NUL), so the parts' bytes are the joined text's.
  return fmix32(fnvUtf8(fnvByte(fnvUtf8(fnvOffsetBasis, table), 0), key) >>> 0);
}

/** Options of {@linkcode Ring}. */
export interface RingOptions {
  /** The members in the ring (order does not matter); see `Membership.ringIds()`. */
  memberIds: readonly string[];
  /** Points per member: `hashText(`${memberId}#${index}`)` for index 0..count-1. */
  virtualNodeCount: number;
}

/**
 * A consistent-hash ring. A key's replicas are the first distinct members clockwise from its
 * {@linkcode keyHash}; adding or removing one member of n moves about 1/n of the keys.
 * Immutable: build a new ring when the members change.
 */
export class Ring {
  readonly #memberIds: readonly string[];
  /** Sorted positions of every virtual node. */
  readonly #positions: Uint32Array;
  /** `#owners[i]` is the index in `#memberIds` of the member at `#positions[i]`. */
  readonly #owners: Uint32Array;
  /**
   * Per replica count asked, the replicas of the keys that fall before each position, made on first use: a
   * key's replicas are a function of its position alone, and every write asks for them several times.
   */
  readonly #replicasAt = new Map<number, Array<readonly string[] | undefined>>();

  constructor(options: RingOptions) {
    assert(Number.isSafeInteger(options.virtualNodeCount));
    assert(options.virtualNodeCount >= 1);
    const memberIds = [...new Set(options.memberIds)].sort();
    assert(memberIds.length === options.memberIds.length, "ring member ids must be distinct");
    const points: Array<{ position: number; owner: number }> = [];
    memberIds.forEach((memberId, owner) => {
      for (let index = 0; index < options.virtualNodeCount; index += 1) {
        points.push({ position: hashText(`${memberId}#${index}`), owner });
      }
    });
    // Ties (rare) are broken by member id order, so every node builds the same ring.
    points.sort((left, right) => left.position - right.position || left.owner - right.owner);
    this.#memberIds = memberIds;
    this.#positions = Uint32Array.from(points, (point) => point.position);
    this.#owners = Uint32Array.from(points, (point) => point.owner);
    assert(this.#positions.length === memberIds.length * options.virtualNodeCount);
  }

  /** The members of the ring, sorted. */
  memberIds(): readonly string[] {
    return this.#memberIds;
  }

  /**
   * The `count` distinct members that hold `(table, key)`, in preference order (the first is the
   * coordinator). `count` is capped at the number of members; an empty ring gives []. The list is shared by
   * every key at that point of the ring, and frozen.
   */
  replicasOf(table: string, key: string, count: number): readonly string[] {
    assert(Number.isSafeInteger(count));
    assert(count >= 0);
    const wanted = Math.min(count, this.#memberIds.length);
    if (wanted === 0) return noReplicas;
    const start = lowerBound(this.#positions, keyHash(table, key));
    let lists = this.#replicasAt.get(wanted);
    if (lists === undefined) {
      lists = new Array(this.#positions.length);
      this.#replicasAt.set(wanted, lists);
    }
    const replicas = lists[start] ?? (lists[start] = this.#replicasFrom(start, wanted));
    assert(replicas.length === wanted, "a key has as many replicas as asked, up to the members");
    return replicas;
  }

  /** The first `wanted` distinct members clockwise from position `start`. */
  #replicasFrom(start: number, wanted: number): readonly string[] {
    const replicas: string[] = [];
    // Bounded: one pass around the ring at most. `wanted` is a replication factor (a few), so looking
    // through the replicas found so far costs less than a Set of them.
    for (let step = 0; step < this.#positions.length && replicas.length < wanted; step += 1) {
      const id = this.#memberIds[this.#owners[(start + step) % this.#positions.length]!]!;
      if (!replicas.includes(id)) replicas.push(id);
    }
    assert(replicas.length === wanted);
    return Object.freeze(replicas);
  }
}

const noReplicas: readonly string[] = Object.freeze([]);

/** The index of the first position ≥ `hash`, or 0 when there is none (the ring wraps). */
function lowerBound(positions: Uint32Array, hash: number): number {
  let low = 0;
  let high = positions.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (positions[middle]! < hash) low = middle + 1;
    else high = middle;
  }
  return low === positions.length ? 0 : low;
}
