/**
 * A raw-TCP event-stream reader for the live-state scenarios (`live.ts`): one HTTP/1.1 GET on its own
 * connection (`Deno.connect`, not `fetch`: a thousand streams from one process, `shared/perf`), the
 * chunked body decoded exactly (a snapshot of 100,000 records must be counted, not scanned loosely as
 * `sse_client.ts` does), and each complete frame handed to a callback with the time its read returned.
 *
 * ```ts
 * const stream = await EventStream.open({
 *   url: "http://127.0.0.1:6660",
 *   path: "/t/subscribe?snapshot=true",
 *   timeoutMs: 10_000,
 *   onFrame: (frame) => console.log(parseFrame(frame).data),
 * });
 * stream.close();
 * ```
 *
 * @module
 */

/** One frame's fields; `data` is the joined `data:` lines, "" when there are none. */
export interface Frame {
  id: number | undefined;
  event: string | undefined;
  data: string;
}

/** The fields of one frame (its text without the closing blank line); comments are ignored. */
export function parseFrame(text: string): Frame {
  let id: number | undefined;
  let event: string | undefined;
  const data: string[] = [];
  for (const line of text.split("\n")) {
    if (line.startsWith("data: ")) data.push(line.slice(6));
    else if (line.startsWith("id: ")) id = Number(line.slice(4));
    else if (line.startsWith("event: ")) event = line.slice(7);
  }
  return { id, event, data: data.join("\n") };
}

/** The `"event":"..."` member of a frame's data, or undefined. */
export function eventNameOf(frame: Frame): string | undefined {
  return /^\{"event":"([A-Za-z]+)"/.exec(frame.data)?.[1];
}

const carriageReturn = 13;
const lineFeed = 10;

/** Decodes an HTTP/1.1 chunked body piece by piece (chunk extensions and trailers ignored). */
export class ChunkDecoder {
  #state: "size" | "data" | "dataEnd" | "done" = "size";
  #sizeLine = "";
  #remaining = 0;

  /** True once the last (zero-size) chunk was read. */
  get done(): boolean {
    return this.#state === "done";
  }

  /** The body bytes held in `bytes` (views into it, in order). */
  push(bytes: Uint8Array): Uint8Array[] {
    const pieces: Uint8Array[] = [];
    let index = 0;
    // Each pass consumes at least one byte, or ends the loop.
    while (index < bytes.length && this.#state !== "done") {
      if (this.#state === "data") {
        const end = Math.min(bytes.length, index + this.#remaining);
        pieces.push(bytes.subarray(index, end));
        this.#remaining -= end - index;
        index = end;
        if (this.#remaining === 0) this.#state = "dataEnd";
      } else if (this.#state === "dataEnd") {
        // The CRLF after a chunk's data: skip up to its line feed.
        if (bytes[index] === lineFeed) this.#state = "size";
        index += 1;
      } else {
        index = this.#readSizeLine(bytes, index);
      }
    }
    return pieces;
  }

  #readSizeLine(bytes: Uint8Array, start: number): number {
    let index = start;
    while (index < bytes.length && bytes[index] !== lineFeed) {
      if (bytes[index] !== carriageReturn) this.#sizeLine += String.fromCharCode(bytes[index]!);
      index += 1;
    }
    if (index === bytes.length) return index;
    const size = parseInt(this.#sizeLine.split(";")[0]!.trim(), 16);
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new Error(`bad chunk size line "${this.#sizeLine.slice(0, 40)}"`);
    }
    this.#sizeLine = "";
    this.#remaining = size;
    this.#state = size === 0 ? "done" : "data";
    return index + 1;
  }
}

/** Options of {@linkcode EventStream.open}. */
export interface EventStreamOptions {
  /** `http://127.0.0.1:PORT` */
  url: string;
  /** Path and query of the GET. */
  path: string;
  /** Extra request headers (`Last-Event-ID`). */
  headers?: Record<string, string>;
  /** Connecting and receiving the response head must take at most this long. */
  timeoutMs: number;
  /** Bytes read at once. @default 16384 */
  readBytes?: number;
  /** Called with each complete frame (without its blank line) and `performance.now()` of its read. */
  onFrame: (frame: string, receivedMs: number) => void;
}

const headEnd = "\r\n\r\n";

/** One open event stream; see the module doc. */
export class EventStream {
  readonly #connection: Deno.TcpConn;
  readonly #options: EventStreamOptions;
  readonly #head = Promise.withResolvers<void>();
  #closed = false;
  /** Resolves when the server ended the stream, it broke, or {@linkcode close} was called. */
  readonly ended: Promise<void>;

  private constructor(connection: Deno.TcpConn, options: EventStreamOptions) {
    this.#connection = connection;
    this.#options = options;
    this.ended = this.#read().finally(() => {
      this.#head.reject(new Error(`${options.path}: the stream ended before its response head`));
    });
    this.#head.promise.catch(() => {});
  }

  /**
   * Connects, sends the GET and waits for a `200` response head; frames then reach `onFrame`.
   *
   * @throws {Error} on another status, or when `timeoutMs` passes first (the connection is closed).
   */
  static async open(options: EventStreamOptions): Promise<EventStream> {
    const url = new URL(options.url);
    const connecting = Deno.connect({ hostname: url.hostname, port: Number(url.port) });
    const connection = await withTimeout(connecting, options.timeoutMs, `connecting to ${url.host}`, {
      onLate: (late) => late.close(),
    });
    const headers = Object.entries(options.headers ?? {}).map(([name, value]) => `${name}: ${value}\r\n`);
    const request = `GET ${options.path} HTTP/1.1\r\nHost: ${url.host}\r\n` +
      `Accept: text/event-stream\r\n${headers.join("")}\r\n`;
    const stream = new EventStream(connection, options);
    try {
      await withTimeout(connection.write(new TextEncoder().encode(request)), options.timeoutMs, "sending");
      await withTimeout(stream.#head.promise, options.timeoutMs, `the response head of ${options.path}`);
      return stream;
    } catch (error) {
      stream.close();
      throw error;
    }
  }

  /** Closes the connection; safe to call more than once. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#connection.close();
    } catch {
      // Closed by the server already.
    }
  }

  async #read(): Promise<void> {
    const buffer = new Uint8Array(this.#options.readBytes ?? 16_384);
    const decoder = new TextDecoder();
    const chunks = new ChunkDecoder();
    let head = "";
    let headDone = false;
    let chunked = false;
    let carry = "";
    try {
      // Ends when the server closes the stream, the body ends, or the connection is closed here.
      for (;;) {
        const read = await this.#connection.read(buffer);
        if (read === null) return;
        const receivedMs = performance.now();
        let body = buffer.subarray(0, read);
        if (!headDone) {
          head += latin1(body);
          const end = head.indexOf(headEnd);
          if (end < 0) continue;
          const status = head.slice(0, head.indexOf("\r\n"));
          if (!/^HTTP\/1\.1 200 /.test(status)) {
            this.#head.reject(new Error(`${this.#options.path} answered "${status}"`));
            return;
          }
          headDone = true;
          chunked = /\r\ntransfer-encoding: *chunked\r\n/i.test(head.slice(0, end + 2));
          body = body.subarray(body.length - (head.length - end - headEnd.length));
          this.#head.resolve();
        }
        const pieces = chunked ? chunks.push(body) : [body];
        for (const piece of pieces) carry += decoder.decode(piece, { stream: true });
        carry = this.#emitFrames(carry, receivedMs);
        if (chunks.done) return;
      }
    } catch (error) {
      if (!this.#closed) this.#head.reject(error);
    } finally {
      this.close();
    }
  }

  /** Hands each complete frame of `text` to `onFrame`; returns the incomplete rest. */
  #emitFrames(text: string, receivedMs: number): string {
    let start = 0;
    // Each pass emits one frame.
    for (;;) {
      const end = text.indexOf("\n\n", start);
      if (end < 0) break;
      this.#options.onFrame(text.slice(start, end), receivedMs);
      start = end + 2;
    }
    return start === 0 ? text : text.slice(start);
  }
}

function latin1(bytes: Uint8Array): string {
  let text = "";
  for (const byte of bytes) text += String.fromCharCode(byte);
  return text;
}

/**
 * `promise`, or a rejection naming `what` after `timeoutMs`; `onLate` gets a value that arrives after
 * the deadline (to close it).
 */
export async function withTimeout<T>(
  promise: Promise<T>,
  timeoutMs: number,
  what: string,
  options: { onLate?: (value: T) => void } = {},
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let late = false;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      late = true;
      reject(new Error(`${what} took longer than ${timeoutMs} ms`));
    }, timeoutMs);
  });
  promise.then((value) => {
    if (late) options.onLate?.(value);
  }, () => {});
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}
