import type { ChangeEvent, Entry } from "../store/types.ts";
import { assert } from "../util/assert.ts";
import { utf8Length } from "../util/bytes.ts";
import { type Frame, frameOf } from "./history.ts";

const encoder = new TextEncoder();

/** `event: ready`, `id: `, the line breaks and the data of a ready block: all but the id's digits. */
const readyFixedBytes = 'event: ready\nid: \ndata: {"event":"Ready"}\n\n'.length;

/** The ready block of position 0 (a key that never existed), the most frequent: one shared instance. */
const readyFrameZero: Uint8Array = encoder.encode('event: ready\nid: 0\ndata: {"event":"Ready"}\n\n');

/**
 * The first block of every stream (SPEC §4b): `event: ready`, `id: <position>`, `data: {"event":"Ready"}`.
 * Named, it reaches no `onmessage` handler; carrying data, it is dispatched, so every EventSource records
 * its id and sends it back as `Last-Event-ID` on a reconnect, even one before any change. It is also the
 * stream's first byte, so headers and a first chunk flow at once. The block of position 0 is shared:
 * never mutate it.
 *
 * @param position The id after which every change follows on this stream: a version for a key stream,
 * the broker's table-stream id for a table stream; 0 when nothing has happened yet.
 */
export function encodeReadyFrame(position: number): Uint8Array {
  assert(Number.isSafeInteger(position), "a stream position must be a safe integer");
  assert(position >= 0, "a stream position must be at least 0");
  if (position === 0) return readyFrameZero;
  const bytes = encoder.encode(`event: ready\nid: ${position}\ndata: {"event":"Ready"}\n\n`);
  assert(bytes.length === readyFixedBytes + digitCount(position), "a ready block is ASCII of known size");
  return bytes;
}

/** The keepalive comment (SPEC §4), one instance for every stream. Shared: never mutate. */
export const keepaliveFrame: Uint8Array = encoder.encode(": keepalive\n\n");

function assertEventId(id: number): void {
  assert(Number.isSafeInteger(id), "event id must be a safe integer");
  assert(id >= 1, "event id must be at least 1");
}

/** An SSE `data:` line ends at a line break, so a JSON text with a raw one would corrupt the stream. */
function assertSingleLine(json: string): void {
  assert(json.length > 0, "event json must not be empty");
  assert(!json.includes("\n") && !json.includes("\r"), "event json must be a single line");
}

function assertKind(kind: string): void {
  assert(kind === "Updated" || kind === "Deleted", `unknown event kind ${kind}`);
}

const notPrintableAscii = /[^\x20-\x7e]/;

/** Decimal digits of a positive safe integer, without building its string. */
function digitCount(id: number): number {
  let digits = 1;
  for (let power = 10; id >= power; power *= 10) digits += 1; // at most 16 passes for a safe integer
  return digits;
}

/** `id: ` and the line breaks and punctuation around `data:`, which every change frame has. */
const frameFixedBytes = 'id: \ndata: {"value":}\n\n'.length;

/** How the store's tombstone of an expired key ends (issue 20 item 6: TTL). */
const expiredSuffix = ',"reason":"expired"}';

/**
 * `"event":"<kind>",` and, for the tombstone of a key that expired, `"reason":"expired",` (SPEC §2): the
 * start of every change frame's data, so a client tells an expiry from a delete without reading the value.
 */
function eventHeadOf(kind: ChangeEvent["kind"], json: string): string {
  assertKind(kind);
  if (kind === "Updated") return updatedHead;
  return json.endsWith(expiredSuffix) ? expiredHead : deletedHead;
}

const updatedHead = '"event":"Updated",';
const deletedHead = '"event":"Deleted",';
const expiredHead = '"event":"Deleted","reason":"expired",';

/** A name JSON.stringify leaves as it is between its quotes: printable ASCII but `"` and `\`. */
const plainJsonName = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

/** UTF-8 bytes of `JSON.stringify(name)`, without building it for the usual plain name. */
function jsonNameBytes(name: string): number {
  return plainJsonName.test(name) ? name.length + 2 : utf8Length(JSON.stringify(name));
}
/** What a table-stream frame adds to a key-stream one besides the names: `"table":,"key":,`. */
const tableFrameNamesBytes = '"table":,"key":,'.length;

/**
 * One frame of a change, kept as its parts until a subscriber needs its bytes: most frames are only
 * remembered for a replay that never comes, and held this way a remembered frame is one small object
 * (sharing the change's json with the other stream's frame) for the garbage collector to trace, not a
 * tree of joined strings. The text is built and encoded at the first read of `bytes`, then kept.
 */
class ChangeFrame implements Frame {
  readonly id: number;
  readonly byteLength: number;
  /** `"event":..,` (and `"reason":"expired",`). */
  #head: string;
  /** The names a table-stream frame carries, as `"table":<json>,"key":<json>,` once encoded. */
  #names: { table: string; key: string } | undefined;
  #json: string;
  #bytes: Uint8Array | undefined = undefined;

  constructor(options: {
    id: number;
    kind: ChangeEvent["kind"];
    names: { table: string; key: string } | undefined;
    json: string;
    jsonBytes: number;
  }) {
    const { id, kind, names, json } = options;
    this.id = id;
    this.#head = eventHeadOf(kind, json);
    this.#names = names;
    this.#json = json;
    // Counted now (histories bound their bytes), built at the first send: most frames are never sent.
    const namesBytes = names === undefined
      ? 0
      : tableFrameNamesBytes + jsonNameBytes(names.table) + jsonNameBytes(names.key);
    this.byteLength = frameFixedBytes + digitCount(id) + this.#head.length + namesBytes + options.jsonBytes;
  }

  get bytes(): Uint8Array {
    if (this.#bytes === undefined) {
      const names = this.#names === undefined ? "" : namesJsonOf(this.#names);
      this.#bytes = encoder.encode(`id: ${this.id}\ndata: {${this.#head}${names}"value":${this.#json}}\n\n`);
      this.#head = "";
      this.#names = undefined;
      this.#json = "";
      assert(this.#bytes.length === this.byteLength, "a frame encodes to the bytes it was counted as");
    }
    return this.#bytes;
  }
}

/**
 * The two frames of one change, encoded at their first send (see `ChangeFrame`):
 *
 * - key stream: `id: <version>` and `{"event":..,"value":<json>}`;
 * - table stream: `id: <tableId>` and `{"event":..,"key":<string>,"value":<json>}`.
 *
 * `event.json` is inserted verbatim in both; its UTF-8 length is counted once for the two.
 *
 * @param tableId The broker's own table-stream id, not `event.sequence` (a forwarded change has none here).
 */
export function changeFrames(
  event: Pick<ChangeEvent, "kind" | "table" | "key" | "version" | "json">,
  tableId: number,
): { key: Frame; table: Frame } {
  assertEventId(event.version);
  assertEventId(tableId);
  assertKind(event.kind);
  const { kind, json } = event;
  // One native scan answers both questions for the usual json, printable ASCII (JSON.stringify escapes
  // control characters): it is a single line, and its UTF-8 length is its length.
  const printableAscii = json.length > 0 && !notPrintableAscii.test(json);
  if (!printableAscii) assertSingleLine(json);
  const jsonBytes = printableAscii ? json.length : utf8Length(json);
  return {
    key: new ChangeFrame({ id: event.version, kind, names: undefined, json, jsonBytes }),
    table: new ChangeFrame({
      id: tableId,
      kind,
      names: { table: event.table, key: event.key },
      json,
      jsonBytes,
    }),
  };
}

/** `"table":<json>,"key":<json>,`: what names a change on a table or multiplexed stream. */
function namesJsonOf(names: { table: string; key: string }): string {
  const text = `"table":${JSON.stringify(names.table)},"key":${JSON.stringify(names.key)},`;
  assert(text.length >= tableFrameNamesBytes, "names are JSON strings");
  assertSingleLine(text);
  return text;
}

/** The key-stream frame of a key's current state: `Updated`, or `Deleted` for a tombstone. */
export function encodeEntryFrame(entry: Entry): Uint8Array {
  assertEventId(entry.version);
  assertSingleLine(entry.json);
  const kind = entry.deleted ? "Deleted" : "Updated";
  return encoder.encode(
    `id: ${entry.version}\ndata: {${eventHeadOf(kind, entry.json)}"value":${entry.json}}\n\n`,
  );
}

/**
 * The table-stream frame telling a client its gap is older than the history: re-read `/{table}/store`.
 * Not to be confused with a key's Resync ({@linkcode encodeKeyResyncFrame}), which names its key.
 */
export function encodeResyncFrame(id: number): Uint8Array {
  assertEventId(id);
  return encoder.encode(`id: ${id}\ndata: {"event":"Resync"}\n\n`);
}

/** `data: {"event":"Resync","table":,"key":}` and its line breaks: all of a key's Resync but the names. */
const keyResyncFixedBytes = 'data: {"event":"Resync","table":,"key":}\n\n'.length;

/**
 * The Resync of one key (SPEC §4b "No silent gaps"): the one line
 * `data: {"event":"Resync","table":<string>,"key":<string>}` and a blank line, with no `id:` and no
 * `event:` line. It comes right before the frame of a change of the key when versions of the key were
 * skipped before that change: versions this stream never showed and this node cannot produce (it missed
 * them, or forgot them). The frame after it carries the key's state at the new version.
 *
 * Unnamed, it reaches `onmessage` like a change. Having no `id:` line, it leaves an EventSource's last
 * event id where it was (an event's `lastEventId` is then the last id received): the last version the
 * client really has (key stream) or the last table id it was sent (table stream). A client cut between
 * the Resync and the frame after it resumes from that id and is told of the jump again.
 *
 * Table and key are JSON strings, so quotes, backslashes and line breaks in them stay inside the one
 * `data:` line.
 */
export function encodeKeyResyncFrame(names: { table: string; key: string }): Uint8Array {
  const tableJson = JSON.stringify(names.table);
  const keyJson = JSON.stringify(names.key);
  assertSingleLine(tableJson);
  assertSingleLine(keyJson);
  const bytes = encoder.encode(`data: {"event":"Resync","table":${tableJson},"key":${keyJson}}\n\n`);
  assert(
    bytes.length === keyResyncFixedBytes + utf8Length(tableJson) + utf8Length(keyJson),
    "a key's Resync encodes to the bytes its parts count",
  );
  return bytes;
}

/**
 * One frame made of a key's Resync (see {@linkcode encodeKeyResyncFrame}) followed by `frame`, with
 * `frame`'s id: a table stream's frame of a change that skipped versions of its key. Being one frame,
 * it is queued as one chunk and remembered as one entry of the table's history, so a `Last-Event-ID`
 * replay shows the Resync exactly where a live subscriber saw it.
 */
export function resyncThenFrame(resync: Uint8Array, frame: Frame): Frame {
  assert(resync.length > keyResyncFixedBytes, "a key's Resync names its table and key");
  const frameBytes = frame.bytes;
  assert(frameBytes.length === frame.byteLength, "a frame encodes to the bytes it was counted as");
  const bytes = new Uint8Array(resync.length + frameBytes.length);
  bytes.set(resync, 0);
  bytes.set(frameBytes, resync.length);
  return frameOf(frame.id, bytes);
}

/** `{"event":"Synced"}` of a key stream (no id: its position is the version sent before it). */
export const keySyncedFrame: Uint8Array = encoder.encode('data: {"event":"Synced"}\n\n');

/** `{"event":"Synced"}` of a table or multiplexed stream, with the id from which live changes follow. */
export function encodeSyncedFrame(id: number): Uint8Array {
  assertEventId(id);
  const bytes = encoder.encode(`id: ${id}\ndata: {"event":"Synced"}\n\n`);
  assert(bytes.length === 'id: \ndata: {"event":"Synced"}\n\n'.length + digitCount(id));
  return bytes;
}

/** A table `Resync` without an id: "drop what you have, the state follows" before a snapshot. */
export const snapshotResyncFrame: Uint8Array = encoder.encode('data: {"event":"Resync"}\n\n');

/**
 * A record of a table snapshot, or a live change merged into one: the table frame without an id line, so
 * a client cut during the snapshot still resumes from the position before it (`0`) and gets it again.
 */
export function encodeSnapshotFrame(
  record: Pick<ChangeEvent, "kind" | "table" | "key" | "json">,
): Uint8Array {
  const text = snapshotFrameText(record);
  const bytes = encoder.encode(text);
  assert(bytes.length >= text.length, "a snapshot frame holds its record");
  return bytes;
}

/** The text of {@linkcode encodeSnapshotFrame}: a snapshot page joins its records' texts, encoded once. */
export function snapshotFrameText(record: Pick<ChangeEvent, "kind" | "table" | "key" | "json">): string {
  assertSingleLine(record.json);
  const head = eventHeadOf(record.kind, record.json);
  const text = `data: {${head}${namesJsonOf(record)}"value":${record.json}}\n\n`;
  assert(text.length > record.json.length, "a snapshot frame holds its record");
  return text;
}

/**
 * `{"event":"Left","table":..,"key":..,"version":..}` (SPEC §4b): a record that matched a stream's filter
 * stopped matching at `version`. With `id` on a live or replayed stream; without it inside a snapshot.
 */
export function encodeLeftFrame(
  change: { table: string; key: string; version: number },
  id: number | undefined,
): Uint8Array {
  assertEventId(change.version);
  if (id !== undefined) assertEventId(id);
  const names = namesJsonOf(change);
  const head = id === undefined ? "" : `id: ${id}\n`;
  const bytes = encoder.encode(`${head}data: {"event":"Left",${names}"version":${change.version}}\n\n`);
  assert(bytes.length > names.length, "a Left frame names its key");
  return bytes;
}
