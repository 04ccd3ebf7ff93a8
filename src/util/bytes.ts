/**
 * Reads a byte stream whole, but never more than `bytesMax`: past the limit it cancels the stream and
 * returns `{ over: true, bytes }` (the bytes read so far), so an oversized body is never buffered whole.
 */
export async function readBounded(
  stream: ReadableStream<Uint8Array>,
  bytesMax: number,
): Promise<{ over: false; bytes: Uint8Array } | { over: true; bytes: number }> {
  const chunks: Uint8Array[] = [];
  let length = 0;
  const reader = stream.getReader();
  for (;;) { // ends at the stream's end or at the limit
    const { done, value } = await reader.read();
    if (done) break;
    length += value.byteLength;
    if (length > bytesMax) {
      await reader.cancel().catch(() => {});
      return { over: true, bytes: length };
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return { over: false, bytes: chunks[0]! };
  const joined = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    joined.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return { over: false, bytes: joined };
}
