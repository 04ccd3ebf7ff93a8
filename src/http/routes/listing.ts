import { type Filter, recordOfJson } from "../../filter/mod.ts";
import { markStreaming } from "../../server/mod.ts";
import { assert } from "../../util/assert.ts";

const encoder = new TextEncoder();
/** Entries serialized per chunk of the streamed answer. */
const chunkEntryCount = 512;
/**
 * Records a filtered listing looks at per chunk, matching or not (each is one `JSON.parse`): a filter that
 * matches nothing in a large table answers a chunk of white space this often, so each chunk is short
 * work, other requests run between chunks, and a slow reader stops the scan (backpressure).
 */
export const chunkScanCountMax = 2_048;

type Listed = { key: string; json: string };

/** What a listing answers. */
export interface ListingOptions {
  shape: "store" | "keys";
  /** Only the records it matches are answered; the others are scanned past. */
  filter?: Filter;
  /**
   * Most records answered. With a filter it counts matches (a SQL `LIMIT` after `WHERE`), and the scan
   * stops there; without one the source is expected to stop by itself. @default no limit
   */
  limit?: number;
}

/** Where a listing stands between chunks. */
interface ListingState {
  pending: IteratorResult<Listed> | undefined;
  opened: boolean;
  answeredCount: number;
}

/**
 * Streams a table listing as one JSON document, a chunk at a time, so a million-key table never becomes
 * one string: `store` is `{"key":VersionedValue,...}`, `keys` is `["key",...]`. `first` is the iterator's
 * first result, read by the caller so an unknown table is answered 404 before the stream starts. A
 * filtered listing may hold white space between entries: a chunk in which no record matched.
 */
export function streamListing(
  source: { first: IteratorResult<Listed>; iterator: AsyncIterator<Listed> },
  options: ListingOptions,
): Response {
  const { iterator } = source;
  const state: ListingState = { pending: source.first, opened: false, answeredCount: 0 };
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const chunk = await nextChunk(iterator, state, options);
      controller.enqueue(encoder.encode(chunk.text));
      if (chunk.finished) {
        controller.close();
        // Stopped at the limit, before the source ended: release its cursors (pages of peers).
        if (chunk.cut) await iterator.return?.();
      }
    },
    async cancel() {
      await iterator.return?.();
    },
  });
  // A listing of a large table streams for long: its connection stays busy until the body ends.
  return markStreaming(
    new Response(stream, { status: 200, headers: { "content-type": "application/json" } }),
  );
}

/**
 * The next chunk of the document: at most {@linkcode chunkEntryCount} entries and
 * {@linkcode chunkScanCountMax} records scanned. Never empty, so the stream asks for the next one.
 */
async function nextChunk(
  iterator: AsyncIterator<Listed>,
  state: ListingState,
  options: ListingOptions,
): Promise<{ text: string; finished: boolean; cut: boolean }> {
  const { shape, filter } = options;
  const limit = options.limit ?? Number.MAX_SAFE_INTEGER;
  const close = shape === "store" ? "}" : "]";
  const parts: string[] = [];
  if (!state.opened) parts.push(shape === "store" ? "{" : "[");
  let answered = 0;
  for (let scanned = 0; scanned < chunkScanCountMax && answered < chunkEntryCount; scanned += 1) {
    if (state.answeredCount >= limit) {
      parts.push(close);
      return { text: parts.join(""), finished: true, cut: true };
    }
    const next: IteratorResult<Listed> = state.pending ?? await iterator.next();
    state.pending = undefined;
    if (next.done === true) {
      parts.push(close);
      return { text: parts.join(""), finished: true, cut: false };
    }
    const { key, json } = next.value;
    if (filter !== undefined && !filter.matches(recordOfJson(key, json))) continue;
    const separator = state.answeredCount === 0 ? "" : ",";
    const name = JSON.stringify(key);
    parts.push(shape === "store" ? `${separator}${name}:${json}` : `${separator}${name}`);
    answered += 1;
    state.answeredCount += 1;
  }
  state.opened = true;
  assert(answered > 0 || filter !== undefined, "an unfiltered chunk answers an entry or ends");
  // JSON allows white space between tokens: a chunk with nothing to say is one space.
  return { text: parts.length === 0 ? " " : parts.join(""), finished: false, cut: false };
}
