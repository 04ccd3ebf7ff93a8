import { assert } from "../util/assert.ts";
import { RecordDecodeError } from "./errors.ts";
import type { RecordSpan } from "./record_pages.ts";
import { type Ballot, ballotNodeBytesMax, type Entry, type StoredEntry, zeroBallot } from "./types.ts";
import { utf8Length } from "../util/bytes.ts";
import { crc32 } from "../util/crc32.ts";

/** A write of a live value. */
export interface PutRecord {
  readonly op: "put";
  /** Store-wide commit sequence; 0 inside `storage.db` and snapshots, which keep only the last one. */
  readonly sequence: number;
  readonly version: number;
  readonly timestamp: number;
  readonly table: string;
  readonly key: string;
  readonly owner: string;
  /** The value, serialized once at write time. */
  readonly valueJson: string;
  /** The ballot the state was accepted at; absent (or zero) for a plain local write. */
  readonly ballot?: Ballot;
  /** When the state's lifetime ends, ms since the epoch; absent (or 0) for a state without one. */
  readonly expiresAt?: number;
}

/** A delete: the key becomes a tombstone that keeps its version. */
export interface DeleteRecord {
  readonly op: "delete";
  readonly sequence: number;
  readonly version: number;
  readonly timestamp: number;
  readonly table: string;
  readonly key: string;
  readonly owner: string;
  /** The ballot the tombstone was accepted at; absent (or zero) for a plain local delete. */
  readonly ballot?: Ballot;
  /** Set on an expiry tombstone: the lifetime it ended (ms since the epoch); absent for a delete. */
  readonly expiresAt?: number;
}

/**
 * Drops a key from this node without a tombstone (the key moved to other nodes). Not a change: its
 * sequence is the one of the last change before it, and it only appears in the WAL.
 */
export interface PurgeRecord {
  readonly op: "purge";
  readonly sequence: number;
  readonly timestamp: number;
  readonly table: string;
  readonly key: string;
}

/**
 * A Paxos promise of a key (its acceptor will accept nothing below `ballot`). Not a change: like a purge
 * it carries the sequence of the last change before it. `storage.db` and snapshots hold the outstanding ones.
 */
export interface PromiseRecord {
  readonly op: "promise";
  readonly sequence: number;
  readonly timestamp: number;
  readonly table: string;
  readonly key: string;
  /** Never the zero ballot. */
  readonly ballot: Ballot;
}

/** The last record of `storage.db` and of a snapshot: the store's sequence and the record count before it. */
export interface CheckpointEndRecord {
  readonly op: "checkpointEnd";
  readonly sequence: number;
  readonly entryCount: number;
  readonly timestamp: number;
}

/** One record of a WAL batch or a state file; the binary layout is specified in `mod.ts`. */
export type WalRecord = PutRecord | DeleteRecord | PurgeRecord | CheckpointEndRecord | PromiseRecord;

/**
 * The op code of each kind of record. A put or delete accepted at a non-zero ballot takes its own code
 * (5, 6) with the ballot appended; at the zero ballot it keeps the layout of 1 and 2, byte for byte.
 */
const opCodes = {
  put: 1,
  delete: 2,
  checkpointEnd: 3,
  purge: 4,
  putWithBallot: 5,
  deleteWithBallot: 6,
  promise: 7,
} as const;
/**
 * Set on the op code of a put or delete (with or without a ballot) whose record ends with `u64 expires_at`:
 * a state with a lifetime, or an expiry tombstone (see `mod.ts`, "Expiry").
 */
export const expiryOpBit = 0x80;
/** Bytes of the expiry at the end of a record whose op has {@linkcode expiryOpBit}. */
export const expiryBytes = 8;
/**
 * The kind of record of each op code: a put or delete with or without a ballot or an expiry is a put or a
 * delete. Codes not listed are unknown.
 */
const opNames: ReadonlyArray<WalRecord["op"] | undefined> = (() => {
  const names: Array<WalRecord["op"] | undefined> = [
    undefined,
    "put",
    "delete",
    "checkpointEnd",
    "purge",
    "put",
    "delete",
    "promise",
  ];
  for (const code of [opCodes.put, opCodes.delete, opCodes.putWithBallot, opCodes.deleteWithBallot]) {
    names[code | expiryOpBit] = names[code];
  }
  return names;
})();
/** The op codes of records that end with a ballot (before their expiry, when they have one). */
const ballotOpCodes: ReadonlySet<number> = new Set([
  opCodes.putWithBallot,
  opCodes.deleteWithBallot,
  opCodes.promise,
  opCodes.putWithBallot | expiryOpBit,
  opCodes.deleteWithBallot | expiryOpBit,
]);

/** Bytes of the fixed part of a record: op, sequence, version, timestamp, three string lengths. */
export const recordFixedBytes = 1 + 8 * 3 + 4 * 3;
/** Bytes of a ballot's fixed part at the end of a record: its u64 counter and the u32 length of its node. */
export const ballotFixedBytes = 8 + 4;
/** Largest ballot at the end of a record; every record's size limit counts it. */
export const ballotBytesMax = ballotFixedBytes + ballotNodeBytesMax;

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });
const looseDecoder = new TextDecoder("utf-8");
const twoPow32 = 2 ** 32;

function setUint64(view: DataView, offset: number, value: number): void {
  assert(Number.isSafeInteger(value), "u64 field must be a safe integer");
  assert(value >= 0, "u64 field must not be negative");
  view.setUint32(offset, Math.floor(value / twoPow32));
  view.setUint32(offset + 4, value >>> 0);
}

/** Writes `text` as UTF-8 at `offset`; ASCII by hand (the common case), the rest through `encodeInto`. */
function writeUtf8(text: string, bytes: Uint8Array, offset: number): number {
  let at = offset;
  for (let index = 0; index < text.length; index += 1) {
    const code = text.charCodeAt(index);
    if (code >= 0x80) return at + encoder.encodeInto(text.slice(index), bytes.subarray(at)).written - offset;
    bytes[at] = code;
    at += 1;
  }
  return at - offset;
}

/** True for the zero ballot, however it is spelled. */
export function isZeroBallot(ballot: Ballot): boolean {
  return ballot.counter === 0 && ballot.node === "";
}

/** The ballot a record ends with, or undefined when it has none (a zero ballot is never written). */
function ballotToWrite(record: WalRecord): Ballot | undefined {
  if (record.op === "promise") {
    assert(!isZeroBallot(record.ballot), "a promise is never of the zero ballot");
    return record.ballot;
  }
  if (record.op !== "put" && record.op !== "delete") return undefined;
  return record.ballot === undefined || isZeroBallot(record.ballot) ? undefined : record.ballot;
}

/** The op code of `record`: a put or delete with a ballot takes its own. */
function opCodeOfRecord(record: WalRecord, ballot: Ballot | undefined): number {
  if (ballot === undefined) return opCodes[record.op];
  if (record.op === "put") return opCodes.putWithBallot;
  if (record.op === "delete") return opCodes.deleteWithBallot;
  assert(record.op === "promise");
  return opCodes.promise;
}

/** The expiry a record ends with, or 0 when it has none (only a put or delete may have one). */
function expiryToWrite(record: WalRecord): number {
  if (record.op !== "put" && record.op !== "delete") return 0;
  const expiresAt = record.expiresAt ?? 0;
  assert(Number.isSafeInteger(expiresAt), "an expiry is a safe integer");
  assert(expiresAt >= 0, "an expiry is not negative");
  return expiresAt;
}

/**
 * Encodes one record (without its length prefix) into one exactly sized buffer; a record with a ballot
 * ends with it: u64 counter, the node's UTF-8, then its u32 length.
 */
export function encodeRecord(record: WalRecord): Uint8Array {
  const hasKey = record.op !== "checkpointEnd";
  const hasOwner = record.op === "put" || record.op === "delete";
  const strings = [hasKey ? record.table : "", hasKey ? record.key : "", hasOwner ? record.owner : ""];
  const value = record.op === "put" ? record.valueJson : "";
  const count = record.op === "checkpointEnd" ? record.entryCount : hasOwner ? record.version : 0;
  const ballot = ballotToWrite(record);
  const nodeBytes = ballot === undefined ? 0 : utf8Length(ballot.node);
  assert(nodeBytes <= ballotNodeBytesMax, "a ballot's node id fits its limit");
  const expiresAt = expiryToWrite(record);
  let size = recordFixedBytes + utf8Length(value) + (ballot === undefined ? 0 : ballotFixedBytes + nodeBytes);
  if (expiresAt !== 0) size += expiryBytes;
  for (const text of strings) size += utf8Length(text);
  const bytes = new Uint8Array(size);
  const view = new DataView(bytes.buffer);
  view.setUint8(0, opCodeOfRecord(record, ballot) | (expiresAt === 0 ? 0 : expiryOpBit));
  setUint64(view, 1, record.sequence);
  setUint64(view, 9, count);
  setUint64(view, 17, record.timestamp);
  let offset = 25;
  for (const text of strings) {
    const written = writeUtf8(text, bytes, offset + 4);
    view.setUint32(offset, written);
    offset += 4 + written;
  }
  offset += writeUtf8(value, bytes, offset);
  if (ballot !== undefined) {
    setUint64(view, offset, ballot.counter);
    offset += 8 + writeUtf8(ballot.node, bytes, offset + 8);
    view.setUint32(offset, nodeBytes);
    offset += 4;
  }
  if (expiresAt !== 0) {
    setUint64(view, offset, expiresAt);
    offset += expiryBytes;
  }
  assert(offset === bytes.length, "record size mismatch");
  return bytes;
}

/**
 * Writes the commit sequence into an encoded put, delete or purge record: the one field assigned when the
 * write is queued, after the record was encoded and its size checked.
 */
export function setRecordSequence(bytes: Uint8Array, sequence: number): void {
  assert(bytes.length >= recordFixedBytes);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  assert(view.getUint8(0) !== opCodes.checkpointEnd, "a checkpoint end has no commit sequence");
  setUint64(view, 1, sequence);
}

/** Decodes UTF-8; short ASCII strings (names) without `TextDecoder`, which is slower for them. */
function readUtf8(bytes: Uint8Array, start: number, end: number): string {
  let ascii = end - start <= 64;
  for (let index = start; ascii && index < end; index += 1) ascii = bytes[index]! < 0x80;
  if (ascii) return String.fromCharCode.apply(null, bytes.subarray(start, end) as unknown as number[]);
  return decodeCheckedUtf8(bytes.subarray(start, end));
}

function decodeUtf8(bytes: Uint8Array): string {
  try {
    return decoder.decode(bytes);
  } catch (error) {
    throw new RecordDecodeError("string is not valid UTF-8", { cause: error });
  }
}

/** The buffer `asciiWords` views, as 32-bit words: the last one checked, a frame read at open. */
let asciiBuffer: ArrayBufferLike | undefined;
let asciiWords: Int32Array<ArrayBufferLike> = new Int32Array(0);
/** Ranges shorter than this are checked byte by byte. */
const asciiWordRangeBytesMin = 32;

/**
 * True when every byte of `bytes[start, end)` is below 0x80 (one pass: the common case is all ASCII).
 * Long ranges are read 4 bytes at a time through a view of their whole buffer, which an open's values
 * share frame by frame: 2-3x faster over the state of a restart.
 */
function isAscii(bytes: Uint8Array, start: number, end: number): boolean {
  let union = 0;
  if (end - start < asciiWordRangeBytesMin) {
    for (let index = start; index < end; index += 1) union |= bytes[index]!;
    return union < 0x80;
  }
  if (bytes.buffer !== asciiBuffer) {
    asciiBuffer = bytes.buffer;
    asciiWords = new Int32Array(bytes.buffer, 0, bytes.buffer.byteLength >>> 2);
  }
  // Bytes before the first whole word, the words, then the bytes after the last.
  const wordStart = (bytes.byteOffset + start + 3) >>> 2;
  const wordEnd = (bytes.byteOffset + end) >>> 2;
  const middleStart = wordStart * 4 - bytes.byteOffset;
  const middleEnd = wordEnd * 4 - bytes.byteOffset;
  for (let index = start; index < middleStart; index += 1) union |= bytes[index]!;
  for (let word = wordStart; word < wordEnd; word += 1) union |= asciiWords[word]!;
  for (let index = middleEnd; index < end; index += 1) union |= bytes[index]!;
  return (union & 0x8080_8080) === 0;
}

/**
 * Decodes UTF-8 that must be valid. ASCII takes the non-fatal decoder, several times faster than the
 * fatal one (which Deno runs through its generic path) and exact for ASCII; the rest is validated.
 */
function decodeCheckedUtf8(bytes: Uint8Array): string {
  return isAscii(bytes, 0, bytes.length) ? looseDecoder.decode(bytes) : decodeUtf8(bytes);
}

/** Where a record's table field starts: after the op byte and the three u64 (sequence, count, timestamp). */
const tableFieldOffset = 25;

function u32At(bytes: Uint8Array, offset: number): number {
  return ((bytes[offset]! << 24) | (bytes[offset + 1]! << 16) | (bytes[offset + 2]! << 8) |
    bytes[offset + 3]!) >>> 0;
}

/** A u64 field; a small one stays a small integer (a heap number only above 2^31). */
function u64At(bytes: Uint8Array, offset: number, start: number): number {
  const high = u32At(bytes, offset);
  if (high >= 2 ** 21) {
    throw new RecordDecodeError(`u64 at record byte ${offset - start} is not a safe integer`);
  }
  const low = u32At(bytes, offset + 4);
  return high === 0 ? low : high * twoPow32 + low;
}

/** Where the parts of a record lie (offsets into the bytes it was read from), its layout checked. */
interface RecordLayout {
  readonly op: WalRecord["op"];
  readonly sequence: number;
  /** The version; for op 3 the record count; for ops 4 and 7 zero. */
  readonly count: number;
  readonly timestamp: number;
  /** Where the table's length prefix starts; the key's and the owner's follow. */
  readonly tableStart: number;
  readonly keyStart: number;
  readonly ownerStart: number;
  /** The end of the owner, where a put's value starts. */
  readonly valueStart: number;
  /**
   * Where the value ends: where the ballot starts in a record with one (ops 5-7), else `stateEnd`.
   */
  readonly valueEnd: number;
  /** The ballot's counter; 0 in a record without a ballot. */
  readonly ballotCounter: number;
  /** Where the record ends without its expiry: the record's end when it has none. */
  readonly stateEnd: number;
  /** The expiry (ms since the epoch) of a record whose op has the expiry bit; 0 otherwise. */
  readonly expiresAt: number;
}

function stringEnd(bytes: Uint8Array, offset: number, end: number): number {
  if (offset + 4 > end) throw new RecordDecodeError("record ends inside a string length");
  const stringEnd = offset + 4 + u32At(bytes, offset);
  if (stringEnd > end) throw new RecordDecodeError("record ends inside a string");
  return stringEnd;
}

/**
 * Where the ballot at the end of the record `bytes[?, end)` starts, its value (or owner) ending at
 * `valueStart`: the node's u32 length is the last field, so the ballot is found from the end.
 */
function ballotStartOf(bytes: Uint8Array, valueStart: number, end: number): number {
  if (end - valueStart < ballotFixedBytes) throw new RecordDecodeError("record ends inside its ballot");
  const nodeBytes = u32At(bytes, end - 4);
  if (nodeBytes > ballotNodeBytesMax) {
    throw new RecordDecodeError(`ballot node of ${nodeBytes} bytes, limit is ${ballotNodeBytesMax}`);
  }
  if (nodeBytes > end - valueStart - ballotFixedBytes) {
    throw new RecordDecodeError("ballot node runs into the fields before it");
  }
  return end - ballotFixedBytes - nodeBytes;
}

/**
 * Checks the layout of the record in `bytes[start, end)` and finds its parts.
 *
 * @throws {RecordDecodeError} when the bytes do not follow the layout.
 */
function readLayout(bytes: Uint8Array, start: number, end: number): RecordLayout {
  if (end - start < recordFixedBytes) {
    throw new RecordDecodeError(`record of ${end - start} bytes is too short`);
  }
  const code = bytes[start]!;
  const op = opNames[code];
  if (op === undefined) throw new RecordDecodeError(`unknown record op ${code}`);
  const { stateEnd, expiresAt } = expiryOf(bytes, { start, end, code });
  const sequence = u64At(bytes, start + 1, start);
  const count = u64At(bytes, start + 9, start);
  const timestamp = u64At(bytes, start + 17, start);
  const tableStart = start + tableFieldOffset;
  const keyStart = stringEnd(bytes, tableStart, stateEnd);
  const ownerStart = stringEnd(bytes, keyStart, stateEnd);
  const valueStart = stringEnd(bytes, ownerStart, stateEnd);
  let valueEnd = stateEnd;
  let ballotCounter = 0;
  if (ballotOpCodes.has(code)) {
    valueEnd = ballotStartOf(bytes, valueStart, stateEnd);
    ballotCounter = u64At(bytes, valueEnd, start);
    if (ballotCounter === 0 && valueEnd + ballotFixedBytes === stateEnd) {
      throw new RecordDecodeError(`record op ${code} holds the zero ballot`);
    }
  }
  const layout = {
    op,
    sequence,
    count,
    timestamp,
    tableStart,
    keyStart,
    ownerStart,
    valueStart,
    valueEnd,
    ballotCounter,
    stateEnd,
    expiresAt,
  };
  checkLayout(layout, stateEnd);
  return layout;
}

/**
 * Where the record in `bytes[start, end)` of op `code` ends without its expiry, and the expiry (0 when its
 * op has no expiry bit).
 *
 * @throws {RecordDecodeError} when the expiry does not fit or is 0.
 */
function expiryOf(
  bytes: Uint8Array,
  record: { start: number; end: number; code: number },
): { stateEnd: number; expiresAt: number } {
  const { start, end, code } = record;
  if ((code & expiryOpBit) === 0) return { stateEnd: end, expiresAt: 0 };
  if (end - start < recordFixedBytes + expiryBytes) {
    throw new RecordDecodeError(`record of ${end - start} bytes is too short for its expiry`);
  }
  const expiresAt = u64At(bytes, end - expiryBytes, start);
  if (expiresAt === 0) throw new RecordDecodeError(`record op ${code} holds an expiry of 0`);
  return { stateEnd: end - expiryBytes, expiresAt };
}

function checkLayout(layout: RecordLayout, end: number): void {
  const { op, count, valueStart, valueEnd } = layout;
  if (op === "checkpointEnd") {
    if (valueStart !== end) throw new RecordDecodeError("checkpointEnd record has trailing bytes");
    return;
  }
  if (op === "purge" || op === "promise") {
    if (count !== 0) throw new RecordDecodeError(`${op} record has a version`);
    if (valueStart !== layout.ownerStart + 4) throw new RecordDecodeError(`${op} record has an owner`);
    if (valueStart !== valueEnd) throw new RecordDecodeError(`${op} record has trailing bytes`);
    return;
  }
  if (count < 1) throw new RecordDecodeError("entry record has version 0");
  if (op === "delete" && valueStart !== valueEnd) {
    throw new RecordDecodeError("delete record has trailing bytes");
  }
  if (op === "put" && valueStart === valueEnd) throw new RecordDecodeError("put record has no value");
}

/** The ballot of a record whose layout was read: the zero ballot when it has none. */
function ballotOfLayout(bytes: Uint8Array, layout: RecordLayout): Ballot {
  const end = layout.stateEnd;
  if (layout.valueEnd === end) return zeroBallot;
  const node = nodeNames.readRange(bytes, layout.valueEnd + 8, end - 4);
  return ballotOf(layout.ballotCounter, node);
}

/** The last ballot decoded: a run of records of one proposer shares one object. */
let lastBallot: Ballot = zeroBallot;

function ballotOf(counter: number, node: string): Ballot {
  if (lastBallot.counter !== counter || lastBallot.node !== node) {
    lastBallot = Object.freeze({ counter, node });
  }
  return lastBallot;
}

/** The string of the length-prefixed field at `offset`, whose end `readLayout` checked. */
function fieldText(bytes: Uint8Array, offset: number, end: number): string {
  return readUtf8(bytes, offset + 4, end);
}

/**
 * Decodes one record.
 *
 * @throws {RecordDecodeError} when the bytes do not follow the layout.
 */
export function decodeRecord(bytes: Uint8Array): WalRecord {
  const end = bytes.length;
  const layout = readLayout(bytes, 0, end);
  const { op, sequence, count, timestamp, keyStart, ownerStart, valueStart } = layout;
  if (op === "checkpointEnd") return { op, sequence, entryCount: count, timestamp };
  const table = fieldText(bytes, layout.tableStart, keyStart);
  const key = fieldText(bytes, keyStart, ownerStart);
  if (op === "purge") return { op, sequence, timestamp, table, key };
  const ballot = ballotOfLayout(bytes, layout);
  if (op === "promise") return { op, sequence, timestamp, table, key, ballot };
  const owner = fieldText(bytes, ownerStart, valueStart);
  const common = {
    sequence,
    version: count,
    timestamp,
    table,
    key,
    owner,
    ...ballotField(ballot),
    ...(layout.expiresAt === 0 ? {} : { expiresAt: layout.expiresAt }),
  };
  if (op === "delete") return { op, ...common };
  return { op, ...common, valueJson: readUtf8(bytes, valueStart, layout.valueEnd) };
}

/** `{ ballot }` for a non-zero ballot, else nothing: records and replicas leave the zero ballot out. */
export function ballotField(ballot: Ballot): { ballot?: Ballot } {
  return isZeroBallot(ballot) ? {} : { ballot };
}

/**
 * What indexing needs of a put or delete, its whole record checked (layout and UTF-8), its value not
 * decoded: the value is read from the record's bytes when a reader asks for it.
 */
export interface RecordHead {
  readonly op: "put" | "delete";
  readonly sequence: number;
  readonly version: number;
  readonly table: string;
  readonly key: string;
}

/**
 * Names seen often (tables and owners), one string each instead of one per record or read: a million
 * records of one user share one owner string. Cleared when full, so it stays bounded whatever the data.
 */
const internedNames = new Map<string, string>();
const internedNamesMax = 4096;

function intern(name: string): string {
  const known = internedNames.get(name);
  if (known !== undefined) return known;
  if (internedNames.size >= internedNamesMax) internedNames.clear();
  internedNames.set(name, name);
  return name;
}

/**
 * The last name read from one kind of field, with its bytes: a run of records of one table or one owner
 * decodes and looks it up once.
 */
class NameCache {
  #bytes = new Uint8Array(0);
  #name = "";

  /** The interned text of the length-prefixed field at `offset`, ending at `end`. */
  read(bytes: Uint8Array, offset: number, end: number): string {
    return this.readRange(bytes, offset + 4, end);
  }

  /** The interned text of `bytes[start, end)`. */
  readRange(bytes: Uint8Array, start: number, end: number): string {
    const length = end - start;
    const cached = this.#bytes;
    if (length === cached.length) {
      let same = true;
      for (let index = 0; same && index < length; index += 1) same = bytes[start + index] === cached[index];
      if (same) return this.#name;
    }
    const name = intern(readUtf8(bytes, start, end));
    this.#bytes = bytes.slice(start, end);
    this.#name = name;
    return name;
  }
}

const tableNames = new NameCache();
const ownerNames = new NameCache();
/** Node ids of ballots: a few proposers write most records. */
const nodeNames = new NameCache();

/**
 * Decodes what indexing needs of the record in `bytes[start, end)` and checks the rest of it: the owner
 * and the value are valid UTF-8 (the value without being decoded when it is ASCII), so that reading the
 * entry later cannot fail.
 *
 * @throws {RecordDecodeError} when the bytes do not follow the layout.
 */
export function decodeRecordHead(
  bytes: Uint8Array,
  start: number,
  end: number,
): RecordHead | PurgeRecord | CheckpointEndRecord | PromiseRecord {
  const layout = readLayout(bytes, start, end);
  const { op, sequence, count, timestamp, keyStart, ownerStart, valueStart, valueEnd } = layout;
  if (op === "checkpointEnd") return { op, sequence, entryCount: count, timestamp };
  const table = tableNames.read(bytes, layout.tableStart, keyStart);
  const key = fieldText(bytes, keyStart, ownerStart);
  if (op === "purge") return { op, sequence, timestamp, table, key };
  const ballot = ballotOfLayout(bytes, layout); // checks the node's UTF-8
  if (op === "promise") return { op, sequence, timestamp, table, key, ballot };
  ownerNames.read(bytes, ownerStart, valueStart);
  if (op === "put" && !isAscii(bytes, valueStart, valueEnd)) decodeUtf8(bytes.subarray(valueStart, valueEnd));
  return { op, sequence, version: count, table, key };
}

/** Checks that `bytes[start, end)` is valid UTF-8 (a key), without decoding it when it is ASCII. */
function checkUtf8(bytes: Uint8Array, start: number, end: number): void {
  if (!isAscii(bytes, start, end)) decodeUtf8(bytes.subarray(start, end));
}

/**
 * Checks the record in `bytes[start, end)` as {@linkcode decodeRecordHead} does (layout, and UTF-8 of
 * its names and value), without building anything for it: a file's records are checked once at open,
 * then indexed from their bytes.
 *
 * @returns the record's op code (see {@linkcode opCodeOf}).
 * @throws {RecordDecodeError} when the bytes do not follow the layout.
 */
export function checkRecordAt(bytes: Uint8Array, start: number, end: number): number {
  const layout = readLayout(bytes, start, end);
  const { op, keyStart, ownerStart, valueStart, valueEnd, stateEnd } = layout;
  const code = bytes[start]!;
  if (op === "checkpointEnd") return code;
  tableNames.read(bytes, layout.tableStart, keyStart);
  checkUtf8(bytes, keyStart + 4, ownerStart);
  if (op === "purge") return code;
  if (valueEnd !== stateEnd) checkUtf8(bytes, valueEnd + 8, stateEnd - 4); // the ballot's node
  if (op === "promise") return code;
  ownerNames.read(bytes, ownerStart, valueStart);
  if (op === "put") checkUtf8(bytes, valueStart, valueEnd);
  return code;
}

/** The commit sequence of a record {@linkcode checkRecordAt} checked. */
export function sequenceAt(bytes: Uint8Array, start: number): number {
  return u64At(bytes, start + 1, start);
}

/**
 * The table of the put, delete or purge record at `bytes[start]`, checked before; its key's u32 length
 * is at `keyField` (see `keyFieldAt`), where the table ends.
 */
export function tableNameAt(bytes: Uint8Array, start: number, keyField: number): string {
  return tableNames.read(bytes, start + tableFieldOffset, keyField);
}

/** Offset of the key's u32 length in the record starting at `start` (after op, 3 u64 and the table). */
export function keyFieldAt(bytes: Uint8Array, start: number): number {
  const tableField = start + tableFieldOffset;
  return tableField + 4 + u32At(bytes, tableField);
}

/** The byte length of the string field (a u32 length, then the bytes) at `field`. */
export function fieldLengthAt(bytes: Uint8Array, field: number): number {
  return u32At(bytes, field);
}

/** The key of the put, delete or purge record at `bytes[start]`, checked before. */
export function keyAt(bytes: Uint8Array, keyField: number): string {
  return fieldText(bytes, keyField, keyField + 4 + u32At(bytes, keyField));
}

/** `,"owner":<JSON string>}`, the end of a live `Entry.json`, per interned owner; bounded the same way. */
const ownerTails = new Map<string, string>();

function ownerTailOf(owner: string): string {
  const known = ownerTails.get(owner);
  if (known !== undefined) return known;
  if (ownerTails.size >= internedNamesMax) ownerTails.clear();
  const tail = `,"owner":${JSON.stringify(owner)}}`;
  ownerTails.set(owner, tail);
  return tail;
}

/** The end of a live `Entry.json` after its timestamp: the owner, then the expiry when it has one. */
function liveTailOf(owner: string, expiresAt: number): string {
  if (expiresAt === 0) return ownerTailOf(owner);
  assert(Number.isSafeInteger(expiresAt) && expiresAt > 0, "an expiry is a positive safe integer");
  return `,"owner":${JSON.stringify(owner)},"expires_at":${expiresAt}}`;
}

const livePrefix = encoder.encode('{"value":');
/** Reused to assemble one live `Entry.json`; a larger one is allocated for the occasional big value. */
const liveScratch = new Uint8Array(64 * 1024);

/**
 * A live `Entry.json` decoded in one piece from `{"value":`, the value's bytes and the metadata: one
 * flat string, where concatenating strings would keep a rope of nine parts alive as long as the entry.
 * The value's bytes were checked when the record was written or read from a file.
 */
function liveJsonOf(value: RecordSpan, metadata: string): string {
  const valueBytes = value.end - value.start;
  const sizeMax = livePrefix.length + valueBytes + metadata.length * 3;
  const scratch = sizeMax <= liveScratch.length ? liveScratch : new Uint8Array(sizeMax);
  scratch.set(livePrefix, 0);
  scratch.set(value.bytes.subarray(value.start, value.end), livePrefix.length);
  const metadataStart = livePrefix.length + valueBytes;
  const end = metadataStart + writeUtf8(metadata, scratch, metadataStart);
  assert(end <= sizeMax);
  return looseDecoder.decode(scratch.subarray(0, end));
}

/** What anti-entropy compares of a key without decoding its entry; see {@linkcode stateAt}. */
export interface KeyState {
  version: number;
  timestamp: number;
  deleted: boolean;
  /** The ballot the state was accepted at. */
  ballot: Ballot;
  /**
   * CRC-32 of the record without its commit sequence (which is this node's own): op, version, timestamp,
   * names, owner, value and ballot. Replicas encode one state at one ballot to the same bytes, so equal
   * states hash equally, and one value at two ballots does not.
   */
  contentHash: number;
}

/** The state of the put or delete record at `span`, read without decoding its strings but a ballot's node. */
export function stateAt(span: RecordSpan): KeyState {
  const { bytes, start, end } = span;
  const layout = readLayout(bytes, start, end);
  const { op, count: version, timestamp } = layout;
  assert(op === "put" || op === "delete", "only a put or delete record holds a key's state");
  const afterSequence = start + 1 + 8;
  return {
    version,
    timestamp,
    deleted: op === "delete",
    ballot: ballotOfLayout(bytes, layout),
    contentHash: crc32(bytes.subarray(afterSequence, end), crc32(bytes.subarray(start, start + 1))),
  };
}

/** The ballot of the put, delete or promise record at `span`: the zero ballot for a record without one. */
export function ballotAt(span: RecordSpan): Ballot {
  const { bytes, start, end } = span;
  const layout = readLayout(bytes, start, end);
  assert(layout.op !== "checkpointEnd" && layout.op !== "purge", "only a state or a promise has a ballot");
  return ballotOfLayout(bytes, layout);
}

/**
 * The index entry of the put or delete record in `span`, whose bytes were checked when it was encoded
 * or read from a file ({@linkcode decodeRecordHead}). `Entry.json` is one flat string.
 */
export function entryAt(span: RecordSpan): StoredEntry {
  const { bytes, start, end } = span;
  const layout = readLayout(bytes, start, end);
  const { op, count: version, timestamp, keyStart, ownerStart, valueStart } = layout;
  assert(op === "put" || op === "delete", "only a put or delete record makes an entry");
  const owner = ownerNames.read(bytes, ownerStart, valueStart);
  const ballot = ballotOfLayout(bytes, layout);
  const { expiresAt } = layout;
  if (op === "delete") {
    const key = fieldText(bytes, keyStart, ownerStart);
    const json = tombstoneEntryJson({ key, version, timestamp, expiresAt });
    return { version, timestamp, owner, deleted: true, ballot, expiresAt, json };
  }
  const metadata = `,"version":${version},"timestamp":${timestamp}${liveTailOf(owner, expiresAt)}`;
  const json = liveJsonOf({ bytes, start: valueStart, end: layout.valueEnd }, metadata);
  return { version, timestamp, owner, deleted: false, ballot, expiresAt, json };
}

/** What a write's checks need of a key's state: no value, no JSON. */
export interface EntryHead {
  readonly version: number;
  readonly timestamp: number;
  readonly owner: string;
  readonly deleted: boolean;
  readonly ballot: Ballot;
  /** See `Entry.expiresAt`: 0 for a state without a lifetime. */
  readonly expiresAt: number;
}

/**
 * The version, owner, kind and ballot of the put or delete record in `span`, without decoding its value:
 * a write's owner, version and ballot checks need no more.
 */
export function headAt(span: RecordSpan): EntryHead {
  const { bytes, start, end } = span;
  const layout = readLayout(bytes, start, end);
  assert(layout.op === "put" || layout.op === "delete", "only a put or delete record has a head");
  const owner = ownerNames.read(bytes, layout.ownerStart, layout.valueStart);
  const ballot = ballotOfLayout(bytes, layout);
  return {
    version: layout.count,
    timestamp: layout.timestamp,
    owner,
    deleted: layout.op === "delete",
    ballot,
    expiresAt: layout.expiresAt,
  };
}

/**
 * The version and expiry of the put or delete record in `span` when it is a live state with a lifetime,
 * else undefined; read without decoding its strings (the expiry sits at the record's end).
 */
export function lifetimeAt(span: RecordSpan): { version: number; expiresAt: number } | undefined {
  const { bytes, start, end } = span;
  const code = bytes[start]!;
  if ((code & expiryOpBit) === 0 || isDeleteOpCode(code)) return undefined;
  const expiresAt = u64At(bytes, end - expiryBytes, start);
  assert(expiresAt > 0, "a record's expiry is positive");
  return { version: u64At(bytes, start + 9, start), expiresAt };
}

/** The version of the put or delete record in `span`, read without decoding anything else. */
export function versionAt(span: RecordSpan): number {
  return u64At(span.bytes, span.start + 9, span.start);
}

/** The table and key of the put, delete or purge record in `span`. */
export function tableAndKeyAt(span: RecordSpan): { table: string; key: string } {
  const layout = readLayout(span.bytes, span.start, span.end);
  assert(layout.op !== "checkpointEnd", "a checkpoint end names no key");
  return {
    table: tableNames.read(span.bytes, layout.tableStart, layout.keyStart),
    key: fieldText(span.bytes, layout.keyStart, layout.ownerStart),
  };
}

/** The first byte of a record of `op` (`put` and `delete` without a ballot; see `putWithBallot`). */
export function opCodeOf(op: keyof typeof opCodes): number {
  return opCodes[op];
}

/** True for the op code of a tombstone: a delete with or without a ballot or an expiry. */
export function isDeleteOpCode(code: number): boolean {
  const base = code & ~expiryOpBit;
  return base === opCodes.delete || base === opCodes.deleteWithBallot;
}

/** True for the op code of a key's state: a put or a delete, with or without a ballot or an expiry. */
export function isStateOpCode(code: number): boolean {
  const base = code & ~expiryOpBit;
  return base === opCodes.put || base === opCodes.delete || base === opCodes.putWithBallot ||
    base === opCodes.deleteWithBallot;
}

/** True for the op code of a put or delete that carries a ballot (an accepted state). */
export function isBallotStateOpCode(code: number): boolean {
  const base = code & ~expiryOpBit;
  return base === opCodes.putWithBallot || base === opCodes.deleteWithBallot;
}

/** The index entry of an encoded put or delete record (the write path). */
export function entryOfEncoded(bytes: Uint8Array): StoredEntry {
  return entryAt({ bytes, start: 0, end: bytes.length });
}

/**
 * `Entry.json` of a live value: the VersionedValue, built by concatenation around the value's JSON, with
 * `"expires_at"` last when the state has a lifetime (`expiresAt` not 0).
 */
export function liveEntryJson(
  options: { valueJson: string; version: number; timestamp: number; owner: string; expiresAt?: number },
): string {
  return `{"value":${options.valueJson},"version":${options.version},` +
    `"timestamp":${options.timestamp}${liveTailOf(options.owner, options.expiresAt ?? 0)}`;
}

/** The end of an expiry tombstone's `Entry.json`: always last, so an event's frame can find it. */
export const expiredTombstoneTail = ',"reason":"expired"}';

/**
 * `Entry.json` of a tombstone: the value of a `Deleted` event; an expiry's (`expiresAt` not 0) ends with
 * {@linkcode expiredTombstoneTail}.
 */
export function tombstoneEntryJson(
  options: { key: string; version: number; timestamp: number; expiresAt?: number },
): string {
  const head = `{"key":${JSON.stringify(options.key)},"version":${options.version},` +
    `"timestamp":${options.timestamp}`;
  const expiresAt = options.expiresAt ?? 0;
  return expiresAt === 0 ? `${head}}` : head + expiredTombstoneTail;
}

const valueJsonStart = '{"value":'.length;

/** The value's JSON inside a live `Entry.json`, without parsing it. */
export function valueJsonOf(entry: Entry): string {
  assert(!entry.deleted, "a tombstone has no value");
  // The owner is JSON-quoted, so the last `,"version":` with a bare quote is the metadata's.
  const end = entry.json.lastIndexOf(',"version":');
  assert(end > valueJsonStart);
  return entry.json.slice(valueJsonStart, end);
}

/** The index entry a put or delete record produces. */
export function entryOf(record: PutRecord | DeleteRecord): StoredEntry {
  assert(Number.isSafeInteger(record.version));
  assert(record.version >= 1);
  const ballot = record.ballot === undefined || isZeroBallot(record.ballot) ? zeroBallot : record.ballot;
  const expiresAt = record.expiresAt ?? 0;
  assert(Number.isSafeInteger(expiresAt) && expiresAt >= 0, "an expiry is a safe integer");
  if (record.op === "delete") {
    return {
      version: record.version,
      timestamp: record.timestamp,
      owner: record.owner,
      deleted: true,
      ballot,
      expiresAt,
      json: tombstoneEntryJson(record),
    };
  }
  return {
    version: record.version,
    timestamp: record.timestamp,
    owner: record.owner,
    deleted: false,
    ballot,
    expiresAt,
    json: liveEntryJson(record),
  };
}
