// Goal: the SSE frames are byte-exact to SPEC §4 and carry the store's json verbatim.
// Method: encode events and entries directly and compare the decoded text.
import assert from "node:assert/strict";
import {
  changeFrames,
  encodeEntryFrame,
  encodeKeyResyncFrame,
  encodeReadyFrame,
  encodeResyncFrame,
  encodeSnapshotFrame,
  keepaliveFrame,
  resyncThenFrame,
} from "../../../src/sse/event_format.ts";
import { AssertionError } from "../../../src/util/assert.ts";
import type { ChangeEvent } from "../../../src/store/types.ts";
import { entryOf, tombstoneJson } from "./sse_helpers.ts";

const decoder = new TextDecoder();
const text = (bytes: Uint8Array) => decoder.decode(bytes);
const encoder = new TextEncoder();

/** The key frame's text, after checking the bytes it was counted as are the bytes it encodes to. */
function keyFrameText(change: ChangeEvent, tableId = 1): string {
  const frame = changeFrames(change, tableId).key;
  const counted = frame.byteLength;
  assert.equal(counted, frame.bytes.length);
  return text(frame.bytes);
}

function tableFrameText(change: ChangeEvent, tableId: number): string {
  const frame = changeFrames(change, tableId).table;
  const counted = frame.byteLength;
  assert.equal(counted, frame.bytes.length);
  return text(frame.bytes);
}

// Odd spacing and key order prove the json is inserted, never parsed and re-stringified.
const oddJson = '{"value": {"b":1 , "a":[2]},"version":7,"timestamp":9,"owner":"alice"}';

function event(overrides: Partial<ChangeEvent> = {}): ChangeEvent {
  const base = { kind: "Updated", table: "t", key: "k", version: 7, sequence: 42, json: oddJson } as const;
  return { ...base, source: "local", ...overrides };
}

Deno.test("changeFrames() writes an Updated key frame with the json verbatim", () => {
  assert.equal(keyFrameText(event()), `id: 7\ndata: {"event":"Updated","value":${oddJson}}\n\n`);
});

Deno.test("changeFrames() writes a Deleted key frame with the tombstone json", () => {
  const json = tombstoneJson("k", 8);
  assert.equal(
    keyFrameText(event({ kind: "Deleted", version: 8, json })),
    'id: 8\ndata: {"event":"Deleted","value":{"key":"k","version":8,"timestamp":1700000000008}}\n\n',
  );
});

Deno.test(
  "changeFrames() gives the table frame the given id, not the sequence, and escapes the key as JSON",
  () => {
    const key = 'a "quoted" \\ key é';
    assert.equal(
      tableFrameText(event({ key }), 42),
      `id: 42\ndata: {"event":"Updated","table":"t","key":${JSON.stringify(key)},"value":${oddJson}}\n\n`,
    );
    assert.equal(
      tableFrameText(event({ kind: "Deleted", sequence: 0 }), 1_700_000_000_000_001),
      `id: 1700000000000001\ndata: {"event":"Deleted","table":"t","key":"k","value":${oddJson}}\n\n`,
    );
  },
);

Deno.test("changeFrames() counts the UTF-8 bytes of json and key that are not ASCII", () => {
  const json = '{"value":"é😀 \\ud83d","version":7,"timestamp":9,"owner":"ö"}';
  const frames = changeFrames(event({ key: "ключ 🔑", json }), 9);
  for (const frame of [frames.key, frames.table]) {
    const counted = frame.byteLength;
    assert.equal(counted, encoder.encode(text(frame.bytes)).length);
    assert.equal(counted, frame.bytes.length);
  }
  assert.ok(frames.table.byteLength > frames.key.byteLength);
});

Deno.test("changeFrames() encodes a frame once, at its first read, then keeps the bytes", () => {
  const frame = changeFrames(event(), 3).key;
  const bytes = frame.bytes;
  assert.equal(frame.bytes, bytes);
  assert.equal(text(bytes), `id: 7\ndata: {"event":"Updated","value":${oddJson}}\n\n`);
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

Deno.test(
  "encodeKeyResyncFrame() names table and key as JSON strings on one data line, without an id",
  () => {
    assert.equal(
      text(encodeKeyResyncFrame({ table: "t", key: "k" })),
      'data: {"event":"Resync","table":"t","key":"k"}\n\n',
    );
    const key = 'a "quoted" \\ key\nwith a line break, é and 🔑';
    const bytes = encodeKeyResyncFrame({ table: "tâble", key });
    const decoded = text(bytes);
    assert.equal(decoded, `data: {"event":"Resync","table":"tâble","key":${JSON.stringify(key)}}\n\n`);
    assert.equal(decoded.indexOf("\n"), decoded.length - 2, "one line, then the blank line that ends it");
    assert.deepEqual(JSON.parse(decoded.slice("data: ".length)), { event: "Resync", table: "tâble", key });
    assert.equal(bytes.length, encoder.encode(decoded).length);
  },
);

Deno.test(
  "resyncThenFrame() joins a key's Resync and a change's frame into one frame with the change's id",
  () => {
    const resync = encodeKeyResyncFrame({ table: "t", key: "k" });
    const change = changeFrames(event(), 42).table;
    const joined = resyncThenFrame(resync, change);
    assert.equal(joined.id, 42);
    assert.equal(joined.byteLength, resync.length + change.byteLength);
    assert.equal(joined.bytes.length, joined.byteLength);
    assert.equal(
      text(joined.bytes),
      `data: {"event":"Resync","table":"t","key":"k"}\n\n` +
        `id: 42\ndata: {"event":"Updated","table":"t","key":"k","value":${oddJson}}\n\n`,
    );
    assert.throws(() => resyncThenFrame(new Uint8Array(0), change), AssertionError);
  },
);

Deno.test("keepaliveFrame is an SSE comment", () => {
  assert.equal(text(keepaliveFrame), ": keepalive\n\n");
});

Deno.test(
  "encodeReadyFrame() writes the named ready block of a position, with data so that its id counts",
  () => {
    assert.equal(text(encodeReadyFrame(0)), 'event: ready\nid: 0\ndata: {"event":"Ready"}\n\n');
    assert.equal(text(encodeReadyFrame(7)), 'event: ready\nid: 7\ndata: {"event":"Ready"}\n\n');
    const largest = Number.MAX_SAFE_INTEGER;
    assert.equal(
      text(encodeReadyFrame(largest)),
      `event: ready\nid: ${largest}\ndata: {"event":"Ready"}\n\n`,
    );
    assert.equal(
      encodeReadyFrame(0),
      encodeReadyFrame(0),
      "position 0, the most frequent, is one shared block",
    );
  },
);

Deno.test("encodeReadyFrame() rejects a position that is not a safe integer >= 0", () => {
  assert.throws(() => encodeReadyFrame(-1), AssertionError);
  assert.throws(() => encodeReadyFrame(1.5), AssertionError);
  assert.throws(() => encodeReadyFrame(Number.MAX_SAFE_INTEGER + 1), AssertionError);
});

Deno.test("changeFrames() rejects json with a line break, which would split the data line", () => {
  assert.throws(() => keyFrameText(event({ json: '{"value":\n1}' })), AssertionError);
  assert.throws(() => tableFrameText(event({ json: '{"value":\r1}' }), 1), AssertionError);
  assert.throws(() => keyFrameText(event({ json: "" })), AssertionError);
});

Deno.test("changeFrames() rejects an id that is not a positive safe integer", () => {
  assert.throws(() => keyFrameText(event({ version: 0 })), AssertionError);
  assert.throws(() => keyFrameText(event({ version: 1.5 })), AssertionError);
  assert.throws(() => tableFrameText(event(), Number.MAX_SAFE_INTEGER + 1), AssertionError);
  assert.throws(() => tableFrameText(event(), 0), AssertionError);
  assert.throws(() => encodeResyncFrame(0), AssertionError);
});

Deno.test("changeFrames() rejects an unknown kind", () => {
  const bad = { ...event(), kind: "Renamed" } as unknown as ChangeEvent;
  assert.throws(() => keyFrameText(bad), AssertionError);
});

Deno.test(
  "event frames of an expired key's tombstone say reason expired at the top, on every kind of stream",
  () => {
    const json = '{"key":"k","version":8,"timestamp":1,"reason":"expired"}';
    const frames = changeFrames({ kind: "Deleted", table: "t", key: "k", version: 8, json }, 42);
    assert.equal(
      text(frames.key.bytes),
      `id: 8\ndata: {"event":"Deleted","reason":"expired","value":${json}}\n\n`,
    );
    assert.equal(frames.key.byteLength, frames.key.bytes.length);
    assert.equal(
      text(frames.table.bytes),
      `id: 42\ndata: {"event":"Deleted","reason":"expired","table":"t","key":"k","value":${json}}\n\n`,
    );
    assert.equal(frames.table.byteLength, frames.table.bytes.length);
    const plain = changeFrames({
      kind: "Deleted",
      table: "t",
      key: "k",
      version: 8,
      json: '{"key":"k","version":8,"timestamp":1}',
    }, 42);
    assert.ok(!text(plain.key.bytes).includes("reason"), "an ordinary delete has no reason");
    assert.ok(
      text(encodeSnapshotFrame({ kind: "Deleted", table: "t", key: "k", json })).includes(
        '"reason":"expired"',
      ),
    );
  },
);
