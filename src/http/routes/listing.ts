import type { Entry } from "../deps.ts";

const encoder = new TextEncoder();
/** Entries serialized per chunk of the streamed answer. */
const chunkEntryCount = 512;

/**
 * Streams a table listing as one JSON document, a chunk at a time, so a million-key table never becomes
 * one string: `store` is `{"key":VersionedValue,...}`, `keys` is `["key",...]`.
 */
export function streamListing(entries: Iterable<[string, Entry]>, shape: "store" | "keys"): Response {
  const iterator = entries[Symbol.iterator]();
  let first = true;
  let finished = false;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (finished) return;
      const parts: string[] = [first ? (shape === "store" ? "{" : "[") : ""];
      for (let count = 0; count < chunkEntryCount; count += 1) {
        const next = iterator.next();
        if (next.done === true) {
          finished = true;
          parts.push(shape === "store" ? "}" : "]");
          break;
        }
        const [key, entry] = next.value;
        const separator = first ? "" : ",";
        first = false;
        parts.push(
          shape === "store"
            ? `${separator}${JSON.stringify(key)}:${entry.json}`
            : `${separator}${JSON.stringify(key)}`,
        );
      }
      controller.enqueue(encoder.encode(parts.join("")));
      if (finished) controller.close();
    },
    cancel() {
      finished = true;
      iterator.return?.();
    },
  });
  return new Response(stream, { status: 200, headers: { "content-type": "application/json" } });
}
