import type { ChangeEvent, Entry } from "../store/types.ts";
import { assert } from "../util/assert.ts";

const encoder = new TextEncoder();

/** The first bytes of every stream, so headers and a first byte flow at once. Shared: never mutate. */
export const connectedFrame: Uint8Array = encoder.encode(": connected\n\n");

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

/**
 * The key-stream frame of a change: `id: <version>` and `{"event":..,"value":<json>}`, with
 * `event.json` inserted verbatim.
 */
export function keyFrameText(event: ChangeEvent): string {
  assertEventId(event.version);
  assertKind(event.kind);
  assertSingleLine(event.json);
  return `id: ${event.version}\ndata: {"event":"${event.kind}","value":${event.json}}\n\n`;
}

/**
 * The table-stream frame of a change: `id: <id>` and `{"event":..,"key":<string>,"value":<json>}`.
 *
 * @param id The broker's own table-stream id, not `event.sequence` (a forwarded change has none here).
 */
export function tableFrameText(event: ChangeEvent, id: number): string {
  assertEventId(id);
  assertKind(event.kind);
  assertSingleLine(event.json);
  const key = JSON.stringify(event.key);
  return `id: ${id}\ndata: {"event":"${event.kind}","key":${key},"value":${event.json}}\n\n`;
}

/** The key-stream frame of a key's current state: `Updated`, or `Deleted` for a tombstone. */
export function encodeEntryFrame(entry: Entry): Uint8Array {
  assertEventId(entry.version);
  assertSingleLine(entry.json);
  const kind = entry.deleted ? "Deleted" : "Updated";
  return encoder.encode(`id: ${entry.version}\ndata: {"event":"${kind}","value":${entry.json}}\n\n`);
}

/** The table-stream frame telling a client its gap is older than the history: re-read `/{table}/store`. */
export function encodeResyncFrame(id: number): Uint8Array {
  assertEventId(id);
  return encoder.encode(`id: ${id}\ndata: {"event":"Resync"}\n\n`);
}
