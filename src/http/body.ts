import { InvalidRequestError, PayloadTooLargeError } from "../util/errors.ts";
import { jsonDepth } from "../util/json.ts";

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Reads a request body as UTF-8 text, refusing it while reading as soon as it passes `bytesMax`, so an
 * oversized body is never buffered whole.
 *
 * @throws {PayloadTooLargeError} when the declared or actual size is over `bytesMax`.
 * @throws {InvalidRequestError} when the body is not UTF-8.
 */
export async function readBodyText(request: Request, bytesMax: number): Promise<string> {
  const declared = request.headers.get("content-length");
  if (declared !== null && Number(declared) > bytesMax) {
    throw new PayloadTooLargeError(`request body is ${declared} bytes, the limit is ${bytesMax}`);
  }
  if (request.body === null) return "";
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  const reader = request.body.getReader();
  for (;;) { // ends at the body's end or at the limit
    const { done, value } = await reader.read();
    if (done) break;
    bytes += value.byteLength;
    if (bytes > bytesMax) {
      await reader.cancel().catch(() => {});
      throw new PayloadTooLargeError(`request body is over ${bytesMax} bytes (read ${bytes} so far)`);
    }
    chunks.push(value);
  }
  const whole = chunks.length === 1 ? chunks[0]! : concat(chunks, bytes);
  try {
    return utf8.decode(whole);
  } catch (error) {
    throw new InvalidRequestError("request body is not valid UTF-8", { cause: error });
  }
}

function concat(chunks: Uint8Array[], bytes: number): Uint8Array {
  const whole = new Uint8Array(bytes);
  let offset = 0;
  for (const chunk of chunks) {
    whole.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return whole;
}

/**
 * Reads and parses a JSON body once, checking size while reading and nesting depth before parsing.
 *
 * @throws {PayloadTooLargeError} over `bytesMax`.
 * @throws {InvalidRequestError} when empty, not JSON, or nested deeper than `depthMax`.
 */
export async function readJsonBody(
  request: Request,
  limits: { bytesMax: number; depthMax: number },
): Promise<unknown> {
  const text = await readBodyText(request, limits.bytesMax);
  if (text.trim() === "") throw new InvalidRequestError("request body is empty; expected JSON");
  const depth = jsonDepth(text);
  if (depth > limits.depthMax) {
    throw new InvalidRequestError(`JSON nesting depth is ${depth}, the limit is ${limits.depthMax}`);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new InvalidRequestError("request body is not valid JSON", { cause: error });
  }
}
