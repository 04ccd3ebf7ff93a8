import { assert } from "../util/assert.ts";
import { RecordDecodeError } from "./errors.ts";

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

const decoder = new TextDecoder("utf-8", { fatal: true });

/**
 * A record as text, to be encoded as UTF-8 straight into a batch: a code letter (`U`, `D`, `G`, `C`), a flag
 * digit (`1`: resync before), `<seq>,<version>,<table length>,<key length>` (lengths in UTF-16 code units),
 * a line break, then the table, the key and the state's json verbatim. Names and json go in unescaped, so a
 * record costs one string concatenation and no stringify.
 */
export function logRecordText(record: LogRecord): string {
  assert(Number.isSafeInteger(record.seq), "a log record's sequence is a safe integer");
  assert(record.seq >= 1, "a log record's sequence is at least 1");
  if (record.type !== "change") return `${markerCodes[record.type]}0${record.seq},0,0,0\n`;
  assert(Number.isSafeInteger(record.version) && record.version >= 1, "a change has a version");
  assert(record.json.length > 0, "a change has its state's json");
  const { table, key } = record;
  return `${kindCodes[record.kind]}${
    record.resyncBefore ? 1 : 0
  }${record.seq},${record.version},${table.length},${key.length}\n${table}${key}${record.json}`;
}

/**
 * Decodes a record of {@linkcode logRecordText}.
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
  const head = text.slice(2, newline).split(",").map(Number);
  if (head.length !== 4 || !head.every((field) => Number.isSafeInteger(field) && field >= 0)) {
    throw new RecordDecodeError("change record head is not four counts");
  }
  const [seq, version, tableLength, keyLength] = head as [number, number, number, number];
  if (seq < 1) throw new RecordDecodeError("bad change sequence");
  const code = text[0];
  if (code === "G" || code === "C") return { type: code === "G" ? "gap" : "closed", seq };
  if (code !== "U" && code !== "D") throw new RecordDecodeError(`unknown change record code ${code}`);
  const tableStart = newline + 1;
  const jsonStart = tableStart + tableLength + keyLength;
  if (version < 1 || jsonStart >= text.length) throw new RecordDecodeError("change record has no state");
  const table = text.slice(tableStart, tableStart + tableLength);
  const key = text.slice(tableStart + tableLength, jsonStart);
  const kind = code === "U" ? "Updated" : "Deleted";
  return {
    type: "change",
    seq,
    kind,
    table,
    key,
    version,
    json: text.slice(jsonStart),
    resyncBefore: text[1] === "1",
  };
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
