// Goal: the SSE frames are byte-exact to SPEC §4 and carry the store's json verbatim.
// Method: encode events and entries directly and compare the decoded text.
import assert from "node:assert/strict";
import {
  connectedFrame,
  encodeEntryFrame,
  encodeResyncFrame,
  keepaliveFrame,
  keyFrameText,
  tableFrameText,
} from "../../../src/sse/event_format.ts";
import { AssertionError } from "../../../src/util/assert.ts";
import type { ChangeEvent } from "../../../src/store/types.ts";
import { entryOf, tombstoneJson } from "./sse_helpers.ts";

const decoder = new TextDecoder();
const text = (bytes: Uint8Array) => decoder.decode(bytes);

// Odd spacing and key order prove the json is inserted, never parsed and re-stringified.
const oddJson = '{"value": {"b":1 , "a":[2]},"version":7,"timestamp":9,"owner":"alice"}';

function event(overrides: Partial<ChangeEvent> = {}): ChangeEvent {
  return { kind: "Updated", table: "t", key: "k", version: 7, sequence: 42, json: oddJson, ...overrides };
}

Deno.test("keyFrameText() writes an Updated frame with the json verbatim", () => {
  assert.equal(keyFrameText(event()), `id: 7\ndata: {"event":"Updated","value":${oddJson}}\n\n`);
});

Deno.test("keyFrameText() writes a Deleted frame with the tombstone json", () => {
  const json = tombstoneJson("k", 8);
  assert.equal(
    keyFrameText(event({ kind: "Deleted", version: 8, json })),
    'id: 8\ndata: {"event":"Deleted","value":{"key":"k","version":8,"timestamp":1700000000008}}\n\n',
  );
});

Deno.test("tableFrameText() uses the given id, not the sequence, and escapes the key as JSON", () => {
  const key = 'a "quoted" \\ key é';
  assert.equal(
    tableFrameText(event({ key }), 42),
    `id: 42\ndata: {"event":"Updated","key":${JSON.stringify(key)},"value":${oddJson}}\n\n`,
  );
  assert.equal(
    tableFrameText(event({ kind: "Deleted", sequence: 0 }), 1_700_000_000_000_001),
    `id: 1700000000000001\ndata: {"event":"Deleted","key":"k","value":${oddJson}}\n\n`,
  );
});

Deno.test("encodeEntryFrame() writes Updated for a live entry and Deleted for a tombstone", () => {
  const live = entryOf({ key: "k", version: 3, value: { n: 1 } });
  assert.equal(text(encodeEntryFrame(live)), `id: 3\ndata: {"event":"Updated","value":${live.json}}\n\n`);
  const tombstone = entryOf({ key: "k", version: 4, deleted: true });
  assert.equal(
    text(encodeEntryFrame(tombstone)),
    `id: 4\ndata: {"event":"Deleted","value":${tombstone.json}}\n\n`,
  );
});

Deno.test("encodeResyncFrame() tells the client to re-read the table", () => {
  assert.equal(text(encodeResyncFrame(12)), 'id: 12\ndata: {"event":"Resync"}\n\n');
});

Deno.test("connectedFrame and keepaliveFrame are SSE comments", () => {
  assert.equal(text(connectedFrame), ": connected\n\n");
  assert.equal(text(keepaliveFrame), ": keepalive\n\n");
});

Deno.test("keyFrameText() rejects json with a line break, which would split the data line", () => {
  assert.throws(() => keyFrameText(event({ json: '{"value":\n1}' })), AssertionError);
  assert.throws(() => tableFrameText(event({ json: '{"value":\r1}' }), 1), AssertionError);
  assert.throws(() => keyFrameText(event({ json: "" })), AssertionError);
});

Deno.test("keyFrameText() rejects an id that is not a positive safe integer", () => {
  assert.throws(() => keyFrameText(event({ version: 0 })), AssertionError);
  assert.throws(() => keyFrameText(event({ version: 1.5 })), AssertionError);
  assert.throws(() => tableFrameText(event(), Number.MAX_SAFE_INTEGER + 1), AssertionError);
  assert.throws(() => tableFrameText(event(), 0), AssertionError);
  assert.throws(() => encodeResyncFrame(0), AssertionError);
});

Deno.test("keyFrameText() rejects an unknown kind", () => {
  const bad = { ...event(), kind: "Renamed" } as unknown as ChangeEvent;
  assert.throws(() => keyFrameText(bad), AssertionError);
});
