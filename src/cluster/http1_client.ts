import { assert } from "../util/assert.ts";
import { concatBytes } from "../util/bytes.ts";
import type { Clock } from "../util/clock.ts";

/**
 * A minimal HTTP/1.1 client for node-to-node requests: `POST` with a body whose bytes are known, over
 * kept-alive connections, one request at a time on each. `fetch` cost a coordinator ~190 µs of CPU per
 * request of a 70-item paxos batch (Request, Headers, AbortSignal, streams and the Rust client around
 * them); this costs ~80 µs (both measured against the same `Deno.serve` peer).
 *
 * Only what a peer's `Deno.serve` answers is read: a status line, headers, and a body framed by
 * `Content-Length` or `Transfer-Encoding: chunked`. Anything else is an unusable reply.
 */

/** Why a request failed, as the transport classifies it. */
export type Http1Failure = "unreachable" | "interrupted" | "timeout" | "malformed" | "too_large";

/** A failed request. `unreachable`: no connection was made, so the peer never saw the request. */
export class Http1Error extends Error {
  readonly failure: Http1Failure;
  /** For "interrupted": the connection ended before any byte of the reply was read. */
  readonly beforeReply: boolean;
  /** The reply's status, when its status line was read. */
  readonly status: number | undefined;

  constructor(
    failure: Http1Failure,
    detail: string,
    options: { cause?: unknown; beforeReply?: boolean; status?: number } = {},
  ) {
    super(detail, options.cause === undefined ? undefined : { cause: options.cause });
    this.failure = failure;
    this.beforeReply = options.beforeReply === true;
    this.status = options.status;
  }
}

/** A reply: its status, its headers (names in lower case) and its body. */
export interface Http1Reply {
  status: number;
  headers: Map<string, string>;
  body: Uint8Array;
}

/** Longest status line and headers read. */
const headBytesMax = 16 * 1024;
/** A kept-alive connection idle for longer is closed rather than reused: its peer may have closed it. */
const idleReuseMsMax = 4_000;
/** Idle connections kept per peer address. */
const idlePerAddressMax = 4;
/** The first read buffer of a connection; it grows to hold a reply. */
const readBufferBytes = 16 * 1024;

const encoder = new TextEncoder();
const latin1 = new TextDecoder("latin1");

/** One connection and what it read beyond the last reply. */
class Connection {
  readonly conn: Deno.TcpConn | Deno.TlsConn;
  buffer = new Uint8Array(readBufferBytes);
  /** Bytes of `buffer` read and not yet consumed. */
  length = 0;
  idleSinceMs = 0;
  /** Bytes of the current reply read so far (0 until its first byte). */
  replyBytesRead = 0;

  constructor(conn: Deno.TcpConn | Deno.TlsConn) {
    this.conn = conn;
  }

  close(): void {
    try {
      this.conn.close();
    } catch {
      // closed already
    }
  }

  /** Reads more bytes into the buffer (growing it when full); false at the end of the stream. */
  async fill(bytesMax: number): Promise<boolean> {
    if (this.length === this.buffer.length) {
      const limit = bytesMax + headBytesMax;
      if (this.buffer.length >= limit) {
        throw new Http1Error("too_large", `the reply is over ${bytesMax} bytes`);
      }
      const grown = new Uint8Array(Math.min(this.buffer.length * 2, limit));
      grown.set(this.buffer.subarray(0, this.length));
      this.buffer = grown;
    }
    const read = await this.conn.read(this.buffer.subarray(this.length));
    if (read === null) return false;
    assert(read > 0);
    this.length += read;
    this.replyBytesRead += read;
    return true;
  }

  /** Drops the first `count` bytes of the buffer. */
  consume(count: number): void {
    assert(count <= this.length);
    this.buffer.copyWithin(0, count, this.length);
    this.length -= count;
  }
}

/** Kept-alive connections to peers, by address. */
export class Http1Client {
  readonly #idle = new Map<string, Connection[]>();
  readonly #caCerts: string[] | undefined;
  readonly #tls: boolean;
  readonly #clock: Clock;
  #closed = false;

  constructor(options: { tls: boolean; caCerts?: string[]; clock: Clock }) {
    this.#tls = options.tls;
    this.#clock = options.clock;
    this.#caCerts = options.caCerts;
  }

  /** Closes every idle connection; requests in flight close theirs when they end. */
  close(): void {
    this.#closed = true;
    for (const connections of this.#idle.values()) for (const connection of connections) connection.close();
    this.#idle.clear();
  }

  /**
   * Sends `POST path` to `address` (`host:port`) and reads the reply whole.
   *
   * @throws {Http1Error}
   */
  async post(
    request: {
      address: string;
      path: string;
      headers: Record<string, string>;
      body: Uint8Array;
      timeoutMs: number;
      bytesMax: number;
    },
  ): Promise<Http1Reply> {
    assert(request.timeoutMs > 0);
    assert(request.bytesMax > 0);
    assert(request.path.startsWith("/") && !/\s/.test(request.path), "a path without spaces");
    const deadline = this.#clock.monotonicMs() + request.timeoutMs;
    const message = requestBytes(request);
    const idle = this.#takeIdle(request.address);
    if (idle !== undefined) {
      try {
        return await this.#exchange(idle, request, message, deadline);
      } catch (error) {
        // A kept-alive connection the peer closed while it sat idle (a restart, say) ends before any reply
        // byte; so does one whose peer died running the request. Sent again, same bytes, on a new
        // connection. A peer that ran the first refuses the copy (a replayed sequence, or signed before it
        // started), so it never runs twice; but any answer other than a success, or none, leaves the first
        // attempt unknown: interrupted, never unreachable nor refused.
        if (!(error instanceof Http1Error) || error.failure !== "interrupted" || !error.beforeReply) {
          throw error;
        }
        let retried: Http1Reply;
        try {
          retried = await this.#exchangeFresh(request, message, deadline);
        } catch (retryError) {
          if (retryError instanceof Http1Error && retryError.failure === "timeout") throw retryError;
          throw new Http1Error("interrupted", "the connection failed after the request was sent", {
            cause: retryError,
          });
        }
        if (retried.status >= 200 && retried.status <= 299) return retried;
        throw new Http1Error("interrupted", `the request was sent again and answered ${retried.status}`, {
          status: retried.status,
        });
      }
    }
    return await this.#exchangeFresh(request, message, deadline);
  }

  /** `#exchange` on a new connection. */
  async #exchangeFresh(
    request: { address: string; timeoutMs: number; bytesMax: number },
    message: Uint8Array,
    deadline: number,
  ): Promise<Http1Reply> {
    return await this.#exchange(await this.#connect(request.address, deadline), request, message, deadline);
  }

  /** One request and its reply on `connection`, which is kept for reuse after a usable reply. */
  async #exchange(
    connection: Connection,
    request: { address: string; timeoutMs: number; bytesMax: number },
    message: Uint8Array,
    deadline: number,
  ): Promise<Http1Reply> {
    const remainingMs = deadline - this.#clock.monotonicMs();
    if (remainingMs <= 0) {
      connection.close();
      throw new Http1Error("timeout", `${request.timeoutMs} ms`);
    }
    connection.replyBytesRead = 0;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      connection.close();
    }, remainingMs);
    let reusable = false;
    try {
      let offset = 0;
      while (offset < message.length) offset += await connection.conn.write(message.subarray(offset));
      const reply = await readReply(connection, request.bytesMax);
      reusable = reply.keepAlive;
      return { status: reply.status, headers: reply.headers, body: reply.body };
    } catch (error) {
      if (timedOut) throw new Http1Error("timeout", `${request.timeoutMs} ms`, { cause: error });
      if (error instanceof Http1Error) throw error;
      throw new Http1Error("interrupted", "the connection failed after the request was sent", {
        cause: error,
        beforeReply: connection.replyBytesRead === 0,
      });
    } finally {
      clearTimeout(timer);
      if (reusable && !timedOut) this.#release(request.address, connection);
      else connection.close();
    }
  }

  /** The most recently used idle connection to `address` not idle for too long; older ones are closed. */
  #takeIdle(address: string): Connection | undefined {
    const idle = this.#idle.get(address);
    const nowMs = this.#clock.monotonicMs();
    if (idle === undefined) return undefined;
    while (idle.length > 0) {
      const connection = idle.pop()!;
      if (nowMs - connection.idleSinceMs <= idleReuseMsMax) return connection;
      connection.close();
    }
    this.#idle.delete(address);
    return undefined;
  }

  /** A new connection to `address`, by `deadline`. @throws {Http1Error} "unreachable" or "timeout" */
  async #connect(address: string, deadline: number): Promise<Connection> {
    const separator = address.lastIndexOf(":");
    assert(separator > 0, "an address is host:port");
    const hostname = address.slice(0, separator).replace(/^\[(.*)\]$/, "$1");
    const port = Number(address.slice(separator + 1));
    assert(Number.isSafeInteger(port) && port > 0 && port < 65536, "an address has a port");
    const remainingMs = Math.max(0, deadline - this.#clock.monotonicMs());
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Http1Error("timeout", `connecting took over ${remainingMs} ms`)),
        remainingMs,
      );
    });
    const connecting = this.#tls
      ? Deno.connectTls({
        hostname,
        port,
        ...(this.#caCerts === undefined ? {} : { caCerts: this.#caCerts }),
      })
      : Deno.connect({ hostname, port });
    try {
      const conn = await Promise.race([connecting, timeout]);
      // The TLS handshake here, so that a certificate refused is "unreachable" too: nothing was sent.
      if ("handshake" in conn) await Promise.race([conn.handshake(), timeout]);
      else conn.setNoDelay(true);
      return new Connection(conn);
    } catch (error) {
      connecting.then((conn) => conn.close(), () => {});
      if (error instanceof Http1Error) throw error;
      throw new Http1Error("unreachable", `cannot connect to ${address}`, { cause: error });
    } finally {
      clearTimeout(timer);
    }
  }

  #release(address: string, connection: Connection): void {
    if (this.#closed) {
      connection.close();
      return;
    }
    let idle = this.#idle.get(address);
    if (idle === undefined) {
      idle = [];
      this.#idle.set(address, idle);
    }
    if (idle.length >= idlePerAddressMax || connection.length > 0) {
      connection.close();
      return;
    }
    // A large reply grew the buffer: an idle connection holds the usual size again.
    if (connection.buffer.length > readBufferBytes) connection.buffer = new Uint8Array(readBufferBytes);
    connection.idleSinceMs = this.#clock.monotonicMs();
    idle.push(connection);
  }
}

/** The request's head and body in one buffer: written at once (two writes can wait on a delayed ACK). */
function requestBytes(
  request: { address: string; path: string; headers: Record<string, string>; body: Uint8Array },
): Uint8Array {
  let head = `POST ${request.path} HTTP/1.1\r\nhost: ${request.address}\r\n`;
  head += `content-length: ${request.body.length}\r\n`;
  for (const name in request.headers) {
    const value = request.headers[name]!;
    assert(!/[\r\n:]/.test(name) && !/[\r\n]/.test(value), "header fields hold no line breaks");
    head += `${name}: ${value}\r\n`;
  }
  return concatBytes([encoder.encode(head + "\r\n"), request.body]);
}

/** Index just past the blank line ending the head in `bytes[0, length)`, or -1. */
function headEnd(bytes: Uint8Array, length: number): number {
  for (let index = 3; index < length; index += 1) {
    if (
      bytes[index] === 10 && bytes[index - 1] === 13 && bytes[index - 2] === 10 && bytes[index - 3] === 13
    ) {
      return index + 1;
    }
  }
  return -1;
}

async function readReply(
  connection: Connection,
  bytesMax: number,
): Promise<{ status: number; headers: Map<string, string>; body: Uint8Array; keepAlive: boolean }> {
  let end = headEnd(connection.buffer, connection.length);
  while (end < 0) {
    if (connection.length > headBytesMax) throw new Http1Error("malformed", "the reply's head is too long");
    if (!(await connection.fill(bytesMax))) {
      throw new Http1Error("interrupted", "the connection closed before a reply", {
        beforeReply: connection.replyBytesRead === 0,
      });
    }
    end = headEnd(connection.buffer, connection.length);
  }
  if (end > headBytesMax) throw new Http1Error("malformed", "the reply's head is too long");
  const lines = latin1.decode(connection.buffer.subarray(0, end - 4)).split("\r\n");
  const statusMatch = /^HTTP\/1\.[01] ([0-9]{3})(?: .*)?$/.exec(lines[0]!);
  if (statusMatch === null) throw new Http1Error("malformed", "the reply's status line is malformed");
  const status = Number(statusMatch[1]);
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    if (colon <= 0) throw new Http1Error("malformed", "a reply header is malformed");
    headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  connection.consume(end);
  try {
    return await readBody(connection, { status, headers, bytesMax });
  } catch (error) {
    if (!(error instanceof Http1Error) || error.status !== undefined) throw error;
    throw new Http1Error(error.failure, error.message, { cause: error.cause, status });
  }
}

async function readBody(
  connection: Connection,
  reply: { status: number; headers: Map<string, string>; bytesMax: number },
): Promise<{ status: number; headers: Map<string, string>; body: Uint8Array; keepAlive: boolean }> {
  const { status, headers, bytesMax } = reply;
  const keepAlive = headers.get("connection")?.toLowerCase() !== "close";
  const lengthText = headers.get("content-length");
  if (headers.get("transfer-encoding")?.toLowerCase() === "chunked") {
    return { status, headers, body: await readChunked(connection, bytesMax), keepAlive };
  }
  if (lengthText === undefined || !/^[0-9]{1,12}$/.test(lengthText)) {
    throw new Http1Error("malformed", "the reply has no usable content-length");
  }
  const length = Number(lengthText);
  if (length > bytesMax) {
    throw new Http1Error("too_large", `the reply is ${length} bytes, limit is ${bytesMax}`);
  }
  while (connection.length < length) {
    if (!(await connection.fill(bytesMax))) throw new Http1Error("interrupted", "the reply was cut short");
  }
  const body = connection.buffer.slice(0, length);
  connection.consume(length);
  return { status, headers, body, keepAlive };
}

async function readChunked(connection: Connection, bytesMax: number): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    let lineEnd = lineEndOf(connection);
    while (lineEnd < 0) {
      if (connection.length > 1024) throw new Http1Error("malformed", "a chunk size line is too long");
      if (!(await connection.fill(bytesMax))) throw new Http1Error("interrupted", "the reply was cut short");
      lineEnd = lineEndOf(connection);
    }
    const sizeText = latin1.decode(connection.buffer.subarray(0, lineEnd)).split(";")[0]!.trim();
    if (!/^[0-9a-fA-F]{1,8}$/.test(sizeText)) throw new Http1Error("malformed", "a chunk size is malformed");
    const size = parseInt(sizeText, 16);
    connection.consume(lineEnd + 2);
    total += size;
    if (total > bytesMax) throw new Http1Error("too_large", `the reply is over ${bytesMax} bytes`);
    while (connection.length < size + 2) {
      if (!(await connection.fill(bytesMax))) throw new Http1Error("interrupted", "the reply was cut short");
    }
    if (size === 0) {
      // No trailers from our peers: the last chunk is followed by its CRLF.
      connection.consume(2);
      break;
    }
    parts.push(connection.buffer.slice(0, size));
    connection.consume(size + 2);
  }
  return concatBytes(parts);
}

function lineEndOf(connection: Connection): number {
  for (let index = 1; index < connection.length; index += 1) {
    if (connection.buffer[index] === 10 && connection.buffer[index - 1] === 13) return index - 1;
  }
  return -1;
}
