import { assert } from "../util/assert.ts";
import { RecordDecodeError } from "./wal_record.ts";

/** One change as the change log holds it: what a broker published, with the sequence it gave it. */
export interface LoggedChange {
  readonly type: "change";
  /** The publishing node's change sequence: grows by at least 1 per record, across restarts. */
  readonly seq: number;
  readonly kind: "Updated" | "Deleted";
  readonly table: string;
  readonly key: string;
  readonly version: number;
  /** The published json of the state (`Entry.json`). */
  readonly json: string;
  /** Versions of the key were skipped before this one: a table stream showed the key's Resync first. */
  readonly resyncBefore: boolean;
}

/**
 * A marker: `gap` says changes up to `seq` may have been published and not logged (a crash lost the
 * log's unwritten tail, or a write failed); `closed` says the log was closed cleanly after the record before.
 */
export interface LogMarker {
  readonly type: "gap" | "closed";
  readonly seq: number;
}

/** A record of the change log. */
export type LogRecord = LoggedChange | LogMarker;

const kindCodes = { Updated: "U", Deleted: "D" } as const;
const markerCodes = { gap: "G", closed: "C" } as const;

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/**
 * Encodes a record as UTF-8 text: a code letter (`U`, `D`, `G`, `C`), a flag digit (`1`: resync before),
 * a JSON array `[seq,version,table,key]`, a line break and the state's json (changes only). The json goes
 * in verbatim, so a record costs one stringify of the four short fields and one encode.
 */
export function encodeLogRecord(record: LogRecord): Uint8Array {
  assert(Number.isSafeInteger(record.seq), "a log record's sequence is a safe integer");
  assert(record.seq >= 1, "a log record's sequence is at least 1");
  if (record.type !== "change") {
    return encoder.encode(`${markerCodes[record.type]}0[${record.seq},0,"",""]\n`);
  }
  assert(Number.isSafeInteger(record.version) && record.version >= 1, "a change has a version");
  assert(record.json.length > 0, "a change has its state's json");
  const head = JSON.stringify([record.seq, record.version, record.table, record.key]);
  return encoder.encode(`${kindCodes[record.kind]}${record.resyncBefore ? 1 : 0}${head}\n${record.json}`);
}

/**
 * Decodes a record of {@linkcode encodeLogRecord}.
 *
 * @throws {RecordDecodeError} when the bytes are not one.
 */
export function decodeLogRecord(bytes: Uint8Array): LogRecord {
  let text: string;
  try {
    text = decoder.decode(bytes);
  } catch (error) {
    throw new RecordDecodeError("change record is not UTF-8", { cause: error });
  }
  const newline = text.indexOf("\n");
  if (newline < 2) throw new RecordDecodeError("change record has no head");
  const head = parseHead(text.slice(2, newline));
  const code = text[0];
  if (code === "G" || code === "C") return { type: code === "G" ? "gap" : "closed", seq: head.seq };
  if (code !== "U" && code !== "D") throw new RecordDecodeError(`unknown change record code ${code}`);
  const json = text.slice(newline + 1);
  if (json.length === 0 || head.version < 1) throw new RecordDecodeError("change record has no state");
  const { seq, version, table, key } = head;
  const kind = code === "U" ? "Updated" : "Deleted";
  return { type: "change", seq, kind, table, key, version, json, resyncBefore: text[1] === "1" };
}

function parseHead(text: string): { seq: number; version: number; table: string; key: string } {
  let head: unknown;
  try {
    head = JSON.parse(text);
  } catch (error) {
    throw new RecordDecodeError("change record head is not JSON", { cause: error });
  }
  if (!Array.isArray(head) || head.length !== 4) {
    throw new RecordDecodeError("change record head is not 4 fields");
  }
  const [seq, version, table, key] = head as unknown[];
  if (!Number.isSafeInteger(seq) || (seq as number) < 1) throw new RecordDecodeError("bad change sequence");
  if (!Number.isSafeInteger(version) || (version as number) < 0) throw new RecordDecodeError("bad version");
  if (typeof table !== "string" || typeof key !== "string") throw new RecordDecodeError("bad change names");
  return { seq: seq as number, version: version as number, table, key };
}

/**
 * 32-bit FNV-1a of a (table, key) pair, the change log's index column for key resumes: the table's length
 * first, so that no two pairs join to the same text. Equal hashes are checked against the names.
 */
export function topicHashOf(table: string, key: string): number {
  let hash = 0x811c9dc5;
  hash = Math.imul(hash ^ (table.length & 0xffff), 0x01000193);
  for (let index = 0; index < table.length; index += 1) {
    hash = Math.imul(hash ^ table.charCodeAt(index), 0x01000193);
  }
  for (let index = 0; index < key.length; index += 1) {
    hash = Math.imul(hash ^ key.charCodeAt(index), 0x01000193);
  }
  return hash | 0;
}
