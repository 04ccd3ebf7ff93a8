import { InvalidRequestError, KvError, PayloadTooLargeError, RequestTimeoutError } from "../util/errors.ts";
import { scanJson } from "../util/json.ts";
import { decodeUtf8Strict, readBounded } from "../util/bytes.ts";
import { releaseBodyDeadline } from "../server/mod.ts";

/** Limits of reading one request body. */
export interface BodyLimits {
  /** Largest body read; a larger one is refused while it is being read. */
  bytesMax: number;
  /**
   * Longest the whole body may take to arrive, from the moment the handler asks for it: later, it is
   * refused with 408. Without it the server bounds the body: a connection whose body has not arrived
   * within the request timeout is closed (a timer per body cost 7% of a PUT; the server's sweep nothing).
   */
  timeoutMs?: number;
}

/**
 * Reads a request body as UTF-8 text within `limits` (see {@linkcode readBodyBytes}).
 *
 * @throws {PayloadTooLargeError} when the declared or actual size is over `bytesMax`.
 * @throws {RequestTimeoutError} when the body did not arrive whole within `timeoutMs`.
 * @throws {InvalidRequestError} when the body is not UTF-8, or the connection ended before it arrived.
 */
export async function readBodyText(request: Request, limits: BodyLimits): Promise<string> {
  const bytes = await readBodyBytes(request, limits);
  try {
    return decodeUtf8Strict(bytes);
  } catch (error) {
    throw new InvalidRequestError("request body is not valid UTF-8", { cause: error });
  }
}

/**
 * Reads a request body, refusing it while reading as soon as it passes `bytesMax`, so an oversized body is
 * never buffered whole, and giving up on a body that has not arrived within `timeoutMs` (a client that sends
 * its headers and then trickles or stalls holds a connection and memory).
 *
 * @throws {PayloadTooLargeError} when the declared or actual size is over `bytesMax`.
 * @throws {RequestTimeoutError} when the body did not arrive whole within `timeoutMs`.
 * @throws {InvalidRequestError} when the connection ended before the body arrived.
 */
export async function readBodyBytes(request: Request, limits: BodyLimits): Promise<Uint8Array> {
  // With a deadline of its own the body is bounded here, and the server's (shorter) one must not apply.
  if (limits.timeoutMs !== undefined) releaseBodyDeadline(request);
  try {
    return await readBodyBytesBounded(request, limits);
  } finally {
    releaseBodyDeadline(request);
  }
}

async function readBodyBytesBounded(request: Request, limits: BodyLimits): Promise<Uint8Array> {
  const { bytesMax, timeoutMs } = limits;
  const declared = request.headers.get("content-length");
  if (declared !== null && Number(declared) > bytesMax) {
    throw new PayloadTooLargeError(`request body is ${declared} bytes, the limit is ${bytesMax}`);
  }
  if (declared !== null) {
    // HTTP/1.1 framing holds a body with a Content-Length to exactly that many bytes, so reading it whole
    // is bounded; Deno takes a body read whole in one step instead of chunk by chunk. `request.body` is
    // not touched: it would build a ReadableStream first (~2% of a PUT).
    return await readWithin(request.bytes(), timeoutMs);
  }
  if (request.body === null) return new Uint8Array(0);
  const read = await readWithin(readBounded(request.body, bytesMax), timeoutMs);
  if (read.over) {
    throw new PayloadTooLargeError(`request body is over ${bytesMax} bytes (read ${read.bytes} so far)`);
  }
  return read.bytes;
}

/**
 * `read`, or a {@linkcode RequestTimeoutError} once `timeoutMs` passed (when given); a read that fails
 * because the connection broke is the client's doing: an {@linkcode InvalidRequestError}, never a 500.
 */
async function readWithin<T>(read: Promise<T>, timeoutMs: number | undefined): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    if (timeoutMs === undefined) return await read;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        // The abandoned read settles when the connection is closed; nothing waits for it any more.
        read.catch(() => {});
        reject(new RequestTimeoutError(`the request body did not arrive whole within ${timeoutMs} ms`));
      }, timeoutMs);
    });
    return await Promise.race([read, expired]);
  } catch (error) {
    if (error instanceof KvError) throw error;
    throw new InvalidRequestError("the request body could not be read: the connection ended before it did", {
      cause: error,
    });
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Reads and parses a JSON body once, checking size while reading and nesting depth before parsing.
 *
 * @throws {PayloadTooLargeError} over `bytesMax`.
 * @throws {InvalidRequestError} when empty, not JSON, nested deeper than `depthMax`, or holding a number
 * that a double cannot carry (SPEC §8: it would become ±Infinity, stored as `null`, or 0).
 */
export async function readJsonBody(
  request: Request,
  limits: BodyLimits & { depthMax: number },
): Promise<unknown> {
  const text = await readBodyText(request, limits);
  if (text.trim() === "") throw new InvalidRequestError("request body is empty; expected JSON");
  const { depth, inexactNumber } = scanJson(text);
  if (depth > limits.depthMax) {
    throw new InvalidRequestError(`JSON nesting depth is ${depth}, the limit is ${limits.depthMax}`);
  }
  if (inexactNumber !== undefined) {
    throw new InvalidRequestError(
      `the JSON number at character ${inexactNumber.index} ${inexactNumberProblems[inexactNumber.kind]}; ` +
        "numbers must fit a 64-bit float, and nothing is stored changed",
    );
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new InvalidRequestError("request body is not valid JSON", { cause: error });
  }
}

const inexactNumberProblems = {
  overflow: "is too large: its magnitude is over 1.7976931348623157e308, so it would become Infinity",
  underflow: "is too small: it is not 0 but its magnitude is under 5e-324, so it would become 0",
} as const;
