import { assert } from "./assert.ts";

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

const nonAscii = /[\u0080-\uffff]/;
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });
const looseUtf8 = new TextDecoder("utf-8");
/** Up to this many bytes, `decodeUtf8Strict` looks for ASCII by hand first; beyond, the native check wins. */
const asciiScanBytesMax = 4096;

/**
 * Decodes UTF-8, throwing a `TypeError` on invalid bytes. A short ASCII text (the usual JSON body) is found
 * by hand and decoded without the fatal decoder, which costs about three times as much for the same result.
 */
export function decodeUtf8Strict(bytes: Uint8Array): string {
  if (bytes.length > asciiScanBytesMax) return strictUtf8.decode(bytes);
  for (let index = 0; index < bytes.length; index += 1) {
    if (bytes[index]! >= 0x80) return strictUtf8.decode(bytes);
  }
  return looseUtf8.decode(bytes);
}

/** Bytes of `text` in UTF-8 (a lone surrogate counts as U+FFFD, 3 bytes, as `TextEncoder` writes it). */
export function utf8Length(text: string): number {
  // Most texts are ASCII: the native scan answers them about four times faster than the loop below.
  if (!nonAscii.test(text)) return text.length;
  let bytes = text.length;
  for (let index = 0; index < text.length; index += 1) {
    const code = text.charCodeAt(index);
    if (code < 0x80) continue;
    if (code < 0x800) {
      bytes += 1;
    } else if ((code & 0xfc00) === 0xd800 && (text.charCodeAt(index + 1) & 0xfc00) === 0xdc00) {
      bytes += 2; // a surrogate pair: 2 code units, 4 bytes
      index += 1;
    } else {
      bytes += 2;
    }
  }
  return bytes;
}

/** `parts` joined into one new array. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  let total = 0;
  for (const part of parts) total += part.length;
  const joined = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    joined.set(part, offset);
    offset += part.length;
  }
  assert(offset === total);
  return joined;
}
