import { assert } from "../util/assert.ts";
import type { Entry } from "./types.ts";

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

/** The last record of `storage.db` and of a snapshot: the store's sequence and the entry count before it. */
export interface CheckpointEndRecord {
  readonly op: "checkpointEnd";
  readonly sequence: number;
  readonly entryCount: number;
  readonly timestamp: number;
}

/** One record of a WAL batch or a state file; the binary layout is specified in `mod.ts`. */
export type WalRecord = PutRecord | DeleteRecord | PurgeRecord | CheckpointEndRecord;

const opCodes = { put: 1, delete: 2, checkpointEnd: 3, purge: 4 } as const;
const opNames = [undefined, "put", "delete", "checkpointEnd", "purge"] as const;

/** Bytes of the fixed part of a record: op, sequence, version, timestamp, three string lengths. */
export const recordFixedBytes = 1 + 8 * 3 + 4 * 3;

/** A record's bytes do not follow the layout. The caller names the file and offset. */
export class RecordDecodeError extends Error {
  override name = "RecordDecodeError";
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });
const twoPow32 = 2 ** 32;

function setUint64(view: DataView, offset: number, value: number): void {
  assert(Number.isSafeInteger(value), "u64 field must be a safe integer");
  assert(value >= 0, "u64 field must not be negative");
  view.setUint32(offset, Math.floor(value / twoPow32));
  view.setUint32(offset + 4, value >>> 0);
}

function getUint64(view: DataView, offset: number): number {
  const high = view.getUint32(offset);
  if (high >= 2 ** 21) throw new RecordDecodeError(`u64 at record byte ${offset} is not a safe integer`);
  return high * twoPow32 + view.getUint32(offset + 4);
}

/** Bytes of `text` in UTF-8 (a lone surrogate counts as U+FFFD, 3 bytes, as `TextEncoder` writes it). */
function utf8Length(text: string): number {
  let bytes = text.length;
  for (let index = 0; index < text.length; index += 1) {
    const code = text.charCodeAt(index);
    if (code < 0x80) continue;
    if (code < 0x800) {
      bytes += 1;
    } else if ((code & 0xfc00) === 0xd800 && (text.charCodeAt(index + 1) & 0xfc00) === 0xdc00) {
      bytes += 2; // a surrogate pair: 2 code units, 4 bytes
      index += 1;
    } else {
      bytes += 2;
    }
  }
  return bytes;
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

/** Encodes one record (without its length prefix) into one exactly sized buffer. */
export function encodeRecord(record: WalRecord): Uint8Array {
  const hasKey = record.op !== "checkpointEnd";
  const hasOwner = record.op === "put" || record.op === "delete";
  const strings = [hasKey ? record.table : "", hasKey ? record.key : "", hasOwner ? record.owner : ""];
  const value = record.op === "put" ? record.valueJson : "";
  const count = record.op === "checkpointEnd" ? record.entryCount : hasOwner ? record.version : 0;
  let size = recordFixedBytes + utf8Length(value);
  for (const text of strings) size += utf8Length(text);
  const bytes = new Uint8Array(size);
  const view = new DataView(bytes.buffer);
  view.setUint8(0, opCodes[record.op]);
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
  try {
    return decoder.decode(bytes.subarray(start, end));
  } catch (error) {
    throw new RecordDecodeError("string is not valid UTF-8", { cause: error });
  }
}

function readString(view: DataView, bytes: Uint8Array, offset: number): { text: string; end: number } {
  if (offset + 4 > bytes.length) throw new RecordDecodeError("record ends inside a string length");
  const length = view.getUint32(offset);
  const end = offset + 4 + length;
  if (end > bytes.length) throw new RecordDecodeError("record ends inside a string");
  return { text: readUtf8(bytes, offset + 4, end), end };
}

/**
 * Decodes one record.
 *
 * @throws {RecordDecodeError} when the bytes do not follow the layout.
 */
export function decodeRecord(bytes: Uint8Array): WalRecord {
  if (bytes.length < recordFixedBytes) {
    throw new RecordDecodeError(`record of ${bytes.length} bytes is too short`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const op = opNames[view.getUint8(0)];
  if (op === undefined) throw new RecordDecodeError(`unknown record op ${view.getUint8(0)}`);
  const sequence = getUint64(view, 1);
  const version = getUint64(view, 9);
  const timestamp = getUint64(view, 17);
  const table = readString(view, bytes, 25);
  const key = readString(view, bytes, table.end);
  const owner = readString(view, bytes, key.end);
  if (op === "checkpointEnd") {
    if (owner.end !== bytes.length) throw new RecordDecodeError("checkpointEnd record has trailing bytes");
    return { op, sequence, entryCount: version, timestamp };
  }
  if (op === "purge") {
    if (version !== 0) throw new RecordDecodeError("purge record has a version");
    if (owner.end !== key.end + 4) throw new RecordDecodeError("purge record has an owner");
    if (owner.end !== bytes.length) throw new RecordDecodeError("purge record has trailing bytes");
    return { op, sequence, timestamp, table: table.text, key: key.text };
  }
  if (version < 1) throw new RecordDecodeError("entry record has version 0");
  const common = { sequence, version, timestamp, table: table.text, key: key.text, owner: owner.text };
  if (op === "delete") {
    if (owner.end !== bytes.length) throw new RecordDecodeError("delete record has trailing bytes");
    return { op, ...common };
  }
  if (owner.end === bytes.length) throw new RecordDecodeError("put record has no value");
  return { op, ...common, valueJson: readUtf8(bytes, owner.end, bytes.length) };
}

/** `Entry.json` of a live value: the VersionedValue, built by concatenation around the value's JSON. */
export function liveEntryJson(
  options: { valueJson: string; version: number; timestamp: number; owner: string },
): string {
  const owner = JSON.stringify(options.owner);
  return `{"value":${options.valueJson},"version":${options.version},` +
    `"timestamp":${options.timestamp},"owner":${owner}}`;
}

/** `Entry.json` of a tombstone: the value of a `Deleted` event. */
export function tombstoneEntryJson(options: { key: string; version: number; timestamp: number }): string {
  return `{"key":${
    JSON.stringify(options.key)
  },"version":${options.version},"timestamp":${options.timestamp}}`;
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
export function entryOf(record: PutRecord | DeleteRecord): Entry {
  assert(Number.isSafeInteger(record.version));
  assert(record.version >= 1);
  if (record.op === "delete") {
    return {
      version: record.version,
      timestamp: record.timestamp,
      owner: record.owner,
      deleted: true,
      json: tombstoneEntryJson(record),
    };
  }
  return {
    version: record.version,
    timestamp: record.timestamp,
    owner: record.owner,
    deleted: false,
    json: liveEntryJson(record),
  };
}

/** The record that rewrites `entry` into `storage.db` or a snapshot. */
export function recordOfEntry(
  target: { table: string; key: string; entry: Entry },
): PutRecord | DeleteRecord {
  const { table, key, entry } = target;
  const common = {
    sequence: 0,
    version: entry.version,
    timestamp: entry.timestamp,
    table,
    key,
    owner: entry.owner,
  };
  if (entry.deleted) return { op: "delete", ...common };
  return { op: "put", ...common, valueJson: valueJsonOf(entry) };
}
