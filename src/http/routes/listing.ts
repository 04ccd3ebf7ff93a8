import { markStreaming } from "../../server/mod.ts";

const encoder = new TextEncoder();
/** Entries serialized per chunk of the streamed answer. */
const chunkEntryCount = 512;

type Listed = { key: string; json: string };

/**
 * Streams a table listing as one JSON document, a chunk at a time, so a million-key table never becomes
 * one string: `store` is `{"key":VersionedValue,...}`, `keys` is `["key",...]`. `first` is the iterator's
 * first result, read by the caller so an unknown table is answered 404 before the stream starts.
 */
export function streamListing(
  source: { first: IteratorResult<Listed>; iterator: AsyncIterator<Listed> },
  shape: "store" | "keys",
): Response {
  const { iterator } = source;
  let pending: IteratorResult<Listed> | undefined = source.first;
  let first = true;
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const parts: string[] = [first ? (shape === "store" ? "{" : "[") : ""];
      let finished = false;
      for (let count = 0; count < chunkEntryCount; count += 1) {
        const next: IteratorResult<Listed> = pending ?? await iterator.next();
        pending = undefined;
        if (next.done === true) {
          finished = true;
          parts.push(shape === "store" ? "}" : "]");
          break;
        }
        const separator = first ? "" : ",";
        first = false;
        const name = JSON.stringify(next.value.key);
        parts.push(shape === "store" ? `${separator}${name}:${next.value.json}` : `${separator}${name}`);
      }
      controller.enqueue(encoder.encode(parts.join("")));
      if (finished) controller.close();
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
