import { assert } from "../util/assert.ts";
import type { Logger } from "../util/log.ts";
import { type Libc, openLibc } from "./fd_limit.ts";
import { type Peer, shutdownPeers } from "./sockets.ts";

/** A request handler, with the shape of a `Deno.serve` handler. */
export type Handler = (request: Request, info: Deno.ServeHandlerInfo) => Response | Promise<Response>;

/** Options of {@linkcode Server.listen}. */
export interface ServerOptions {
  hostname: string;
  /** `0` picks a free port; {@linkcode Server.port} has the real one. */
  port: number;
  /** PEM certificate chain and key: serve https (HTTP/2 or HTTP/1.1, chosen by ALPN). */
  tls?: { cert: string; key: string };
  /**
   * Most connections open at once. One more is answered `503` and closed: each connection holds a file
   * descriptor, and a process out of descriptors can open neither its files nor its peers' connections.
   */
  connectionsMax: number;
  /**
   * Longest a connection may go with no request in progress: a new connection that has not sent a whole
   * request head, or a kept-alive one that sends nothing, is closed after it (slowloris, idle sockets).
   */
  requestTimeoutMs: number;
  logger: Logger;
  handler: Handler;
  /** The process's descriptor limit: a search for a stalled TLS socket reads descriptors below it. */
  descriptorsMax: number;
  /**
   * Headers of the answers the server gives itself (503 over the cap, 408 for a late body), as the app's
   * answers carry them: the CORS headers of any origin by default.
   */
  answerHeaders: Readonly<Record<string, string>>;
}

/** Counters of a {@linkcode Server}. */
export interface ServerStats {
  /** Connections served since start. */
  accepted: number;
  /** Connections answered 503 and closed because `connectionsMax` were open. */
  refused: number;
  /** Accepts that failed (out of file descriptors, or another transient error). */
  acceptFailures: number;
  /** Connections closed for sending no request within `requestTimeoutMs`. */
  timedOut: number;
}

/** `Deno.serve`'s machinery for one connection, reached through Deno's internals (see the module doc). */
type ServeOnConnection = (
  connection: Deno.Conn,
  signal: AbortSignal | undefined,
  handler: Handler,
  onError: (error: unknown) => Response,
  onListen: () => void,
) => ConnectionServer;

/** What `serveHttpOnConnection` returns: the served connection's end, and its graceful close. */
interface ConnectionServer {
  readonly finished: Promise<void>;
  shutdown(): Promise<void>;
}

/**
 * One open connection and what the idle sweep needs of it. It holds no AbortController: one per
 * connection weighed about 4.5 KB (45 MB for 10,000 event streams); an idle connection is closed with
 * `shutdown()` instead, and a stalled body is answered 408 (see {@linkcode PendingBody}).
 */
interface Connection {
  /** Requests whose response has not finished. */
  inflight: number;
  /** The sweep tick at which `inflight` last dropped to 0 (or the connection opened). */
  idleSinceTick: number;
  /** Set once the connection is being closed, so it is closed once. */
  closing: boolean;
  /** Set right after the connection is handed to Deno's machinery. */
  server: ConnectionServer | undefined;
}

/**
 * Responses whose body streams for long (event streams, listings): their connection is busy until the
 * stream ends, which its registration says, or else until Deno has sent the whole body.
 */
const streamingResponses = new WeakMap<Response, ((listener: () => void) => void) | undefined>();

/**
 * A request whose body may still be on its way: its server, since when, and how to answer it 408 if the
 * body does not arrive in time. Answered while its body is unread, the connection is then closed by Deno's
 * HTTP machinery (a connection cannot be reused past an unread body).
 */
interface PendingBody {
  readonly server: Server;
  readonly sinceTick: number;
  readonly timeOut: () => void;
}

/**
 * Requests of every server whose body has not been received yet (PUT, POST, PATCH in flight): few at any
 * moment, so each sweep looks at them all. A map entry costs a request far less than a timer would (a
 * `setTimeout` and a `Promise.race` per body measured 7% of a PUT).
 */
const pendingBodies = new Map<Request, PendingBody>();

/**
 * Tells the server to stop watching `request`'s body: it has been read whole (or failed), or the handler
 * bounds its arrival itself. Until then, a body that has not arrived within the request timeout closes its
 * connection; from then on the request is the handler's, however long it takes.
 */
export function releaseBodyDeadline(request: Request): void {
  pendingBodies.delete(request);
}

/**
 * Marks a response whose body streams (an event stream, a streamed listing) so its connection counts as
 * busy until the stream ends, rather than from the moment the handler returns. `onEnd` registers a
 * listener for that end; without it the server waits for Deno to have sent the whole body, which keeps
 * about 7 KB per response until then (70 MB for 10,000 event streams), so long-lived streams give one.
 * Returns the response.
 */
export function markStreaming(response: Response, onEnd?: (listener: () => void) => void): Response {
  streamingResponses.set(response, onEnd);
  return response;
}

/** Sweeps per request timeout: a connection is closed between 1 and 1.25 timeouts after it went idle. */
const sweepsPerTimeout = 4;
/** Longest pause between accepts after a failed one (EMFILE and the like); doubles from 10 ms. */
const acceptBackoffMsMax = 1_000;
/** The answer to a connection over the cap, written before anything is read from it. */
function encodeBusyResponse(headers: Readonly<Record<string, string>>): Uint8Array {
  const body = JSON.stringify({
    type: "https://dynarust.dev/errors/unavailable",
    title: "Service Unavailable",
    status: 503,
    detail:
      "this node has as many connections open as it takes (DYNA_CONNECTIONS_MAX, or its descriptor limit)",
    code: "unavailable",
  });
  const extra = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join("");
  const head = "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n" +
    `retry-after: 1\r\nconnection: close\r\n${extra}content-length: ${body.length}\r\n\r\n`;
  const bytes = new TextEncoder().encode(head + body);
  assert(bytes.length < 1024, "the busy answer fits any socket buffer");
  return bytes;
}

/** The internal `serveHttpOnConnection` of Deno 2.9.6 (deno.json pins the version). */
function serveOnConnection(): ServeOnConnection {
  const symbol = Object.getOwnPropertySymbols(Deno).find((candidate) =>
    candidate.description === "Deno.internal"
  );
  const internals = symbol === undefined ? undefined : (Deno as unknown as Record<symbol, unknown>)[symbol];
  const serve = (internals as { serveHttpOnConnection?: unknown } | undefined)?.serveHttpOnConnection;
  if (typeof serve !== "function") {
    throw new Error(`Deno ${Deno.version.deno} has no serveHttpOnConnection: run dynarust on Deno 2.9.6`);
  }
  return serve as ServeOnConnection;
}

/**
 * An HTTP server that owns its accept loop, so that a failed accept (out of file descriptors) is survived,
 * open connections are capped, and connections that send nothing are closed. Each connection is served by
 * `Deno.serve`'s own HTTP machinery.
 */
export class Server {
  /** The port listened on (the real one when `0` was asked for). */
  readonly port: number;
  readonly stats: ServerStats = { accepted: 0, refused: 0, acceptFailures: 0, timedOut: 0 };
  readonly #options: ServerOptions;
  readonly #listener: Deno.Listener;
  readonly #serveOn: ServeOnConnection;
  readonly #connections = new Set<Connection>();
  readonly #sweepTimer: ReturnType<typeof setInterval>;
  readonly #accepting: Promise<void>;
  #tick = 0;
  #closing = false;
  /** TLS connections still in their handshake, with since when and their peer: counted against the cap. */
  readonly #handshakes = new Map<Deno.TlsConn, { sinceTick: number; peer: Peer }>();
  /** The C library, to cut stalled TLS handshakes; undefined without TLS or without FFI. */
  readonly #libc: Libc | undefined;
  readonly #busyResponse: Uint8Array;

  private constructor(options: ServerOptions, listener: Deno.Listener) {
    this.#options = options;
    this.#listener = listener;
    this.#serveOn = serveOnConnection();
    this.#busyResponse = encodeBusyResponse(options.answerHeaders);
    const libc = options.tls === undefined ? undefined : openLibc();
    if (typeof libc === "string") {
      options.logger.warn(
        `TLS handshakes that stall cannot be cut (${libc}); the connection cap still holds`,
      );
    }
    this.#libc = typeof libc === "string" ? undefined : libc;
    this.port = (listener.addr as Deno.NetAddr).port;
    const sweepMs = Math.max(10, Math.floor(options.requestTimeoutMs / sweepsPerTimeout));
    this.#sweepTimer = setInterval(() => this.#sweep(), sweepMs);
    this.#accepting = this.#acceptLoop();
  }

  /**
   * Listens on `hostname:port` and serves every connection with `handler`.
   *
   * @throws {Deno.errors.AddrInUse} or {Deno.errors.PermissionDenied} when the address cannot be bound.
   */
  static listen(options: ServerOptions): Server {
    assert(Number.isSafeInteger(options.connectionsMax));
    assert(options.connectionsMax >= 1);
    assert(Number.isSafeInteger(options.requestTimeoutMs));
    assert(options.requestTimeoutMs >= 1);
    const address = { hostname: options.hostname, port: options.port, transport: "tcp" as const };
    const listener = options.tls === undefined
      ? Deno.listen(address)
      : Deno.listenTls({ ...address, ...options.tls, alpnProtocols: ["h2", "http/1.1"] });
    return new Server(options, listener);
  }

  /** Connections open now (served, or in their TLS handshake). */
  get connectionCount(): number {
    return this.#connections.size + this.#handshakes.size;
  }

  /** Stops accepting, lets every connection finish what it is answering, and resolves once all closed. */
  async shutdown(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    clearInterval(this.#sweepTimer);
    this.#listener.close();
    this.#libc?.close();
    await this.#accepting;
    const servers = [...this.#connections].flatMap((state) =>
      state.server === undefined ? [] : [state.server]
    );
    await Promise.all(servers.map((server) => server.shutdown().catch(() => {})));
    await Promise.all(servers.map((server) => server.finished.catch(() => {})));
  }

  async #acceptLoop(): Promise<void> {
    let backoffMs = 0;
    // An event loop: it ends when the listener is closed.
    while (true) {
      if (this.#options.tls !== undefined) await this.#roomForTls();
      let connection: Deno.Conn;
      try {
        connection = await this.#listener.accept();
        backoffMs = 0;
      } catch (error) {
        if (this.#closing || error instanceof Deno.errors.BadResource) return;
        backoffMs = Math.min(acceptBackoffMsMax, Math.max(10, backoffMs * 2));
        this.#acceptFailed(error, backoffMs);
        await new Promise((resolve) => setTimeout(resolve, backoffMs));
        continue;
      }
      if (this.#options.tls !== undefined) {
        // `#roomForTls` made room before this accept: a TLS connection is never refused once accepted.
        this.#handshakeThenServe(connection as Deno.TlsConn).catch((error) => {
          this.#options.logger.error("serving a TLS connection failed", { error: String(error) });
        });
      } else if (this.#connections.size >= this.#options.connectionsMax) this.#refuse(connection);
      else this.#serve(connection);
    }
  }

  #acceptFailed(error: unknown, backoffMs: number): void {
    this.stats.acceptFailures += 1;
    // One line per failure would flood the log exactly when the node is short of everything.
    if (this.stats.acceptFailures === 1 || backoffMs === acceptBackoffMsMax) {
      this.#options.logger.warn("accepting a connection failed; pausing accepts", {
        error: String(error),
        pause_ms: backoffMs,
        open_connections: this.#connections.size,
        failures: this.stats.acceptFailures,
      });
    }
  }

  /** Answers a plain-HTTP connection over the cap with a 503 and closes it. */
  #refuse(connection: Deno.Conn): void {
    this.stats.refused += 1;
    const close = () => closeQuietly(connection);
    connection.write(this.#busyResponse).then(close, close);
  }

  /**
   * Waits until a TLS connection may be accepted: below the cap. A TLS connection cannot be refused once
   * accepted (see {@linkcode Server.#handshakeThenServe}), so past the cap the node stops accepting and the
   * excess waits in the kernel's backlog, then is refused by the kernel. Polled: the wait ends within 50 ms
   * of a connection closing.
   */
  async #roomForTls(): Promise<void> {
    // Bounded by the connections open: each ends by its timeout or its client.
    while (!this.#closing && this.#connections.size + this.#handshakes.size >= this.#options.connectionsMax) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /**
   * Serves a TLS connection once its handshake is done, counting it against the cap meanwhile; a handshake
   * not done within the request timeout is cut by the sweep. Deno 2.9.6 cannot drop a socket in the middle
   * of a TLS handshake: `close()` leaves the descriptor open until the peer sends or leaves (checked by
   * hand: the socket stays ESTABLISHED, even closed right after `accept()`), and `Deno.serve` keeps a silent
   * TLS client forever too. So the sweep shuts the socket down through libc ({@linkcode shutdownPeers}),
   * which ends the handshake; without libc (no FFI) such a client holds its slot until it leaves.
   */
  async #handshakeThenServe(connection: Deno.TlsConn): Promise<void> {
    const { hostname, port } = connection.remoteAddr;
    this.#handshakes.set(connection, { sinceTick: this.#tick, peer: { hostname, port } });
    let done: boolean;
    try {
      done = await connection.handshake().then(() => true, () => false);
    } finally {
      this.#handshakes.delete(connection);
    }
    if (done && !this.#closing) return this.#serve(connection);
    closeQuietly(connection);
  }

  #serve(connection: Deno.Conn): void {
    this.stats.accepted += 1;
    const state: Connection = { inflight: 0, idleSinceTick: this.#tick, closing: false, server: undefined };
    const handler: Handler = (request, info) => {
      state.inflight += 1;
      let released = false;
      const release = () => {
        if (released) return; // a request answered 408 is released again when its handler ends
        released = true;
        pendingBodies.delete(request);
        state.inflight -= 1;
        if (state.inflight === 0) state.idleSinceTick = this.#tick;
      };
      const method = request.method;
      if (method === "PUT" || method === "POST" || method === "PATCH") {
        return this.#serveWithBody(request, info, release);
      }
      const response = this.#options.handler(request, info);
      if (!(response instanceof Promise)) return this.#settle(response, info, release);
      return response.then((settled) => this.#settle(settled, info, release), (error) => {
        release();
        throw error;
      });
    };
    const server = this.#serveOn(connection, undefined, handler, (error) => {
      this.#options.logger.error("unexpected error while serving a request", { error: String(error) });
      return new Response(null, { status: 500 });
    }, () => {});
    state.server = server;
    this.#connections.add(state);
    assert(this.#connections.size <= this.#options.connectionsMax);
    const forget = () => this.#connections.delete(state);
    // A rejection is a peer that reset its connection: nothing to answer any more.
    server.finished.then(forget, forget);
  }

  /**
   * Serves a request that carries a body, racing the handler against the sweep: a body that has not arrived
   * within the request timeout is answered 408 (and its connection closed) while the handler still waits.
   */
  #serveWithBody(request: Request, info: Deno.ServeHandlerInfo, release: () => void): Promise<Response> {
    const answer = Promise.withResolvers<Response>();
    const timeOut = () => answer.resolve(requestTimeoutResponse(this.#options));
    pendingBodies.set(request, { server: this, sinceTick: this.#tick, timeOut });
    Promise.resolve(this.#options.handler(request, info)).then(answer.resolve, answer.reject);
    return answer.promise.then((settled) => this.#settle(settled, info, release), (error) => {
      release();
      throw error;
    });
  }

  /** Releases the connection once the response is sent: at once, or when a streamed body ends. */
  #settle(response: Response, info: Deno.ServeHandlerInfo, release: () => void): Response {
    if (!streamingResponses.has(response)) release();
    else {
      const onEnd = streamingResponses.get(response);
      if (onEnd === undefined) info.completed.then(release, release);
      else onEnd(release);
    }
    return response;
  }

  /**
   * Closes every connection that has had no request in progress for `requestTimeoutMs`, and every one with
   * a request whose body has not arrived within it.
   */
  #sweep(): void {
    this.#tick += 1;
    for (const state of this.#connections) {
      if (state.inflight > 0 || this.#tick - state.idleSinceTick <= sweepsPerTimeout) continue;
      this.#close(state);
    }
    for (const [request, pending] of pendingBodies) {
      if (pending.server !== this || this.#tick - pending.sinceTick <= sweepsPerTimeout) continue;
      pendingBodies.delete(request);
      this.stats.timedOut += 1;
      pending.timeOut();
    }
    this.#cutStalledHandshakes();
  }

  /** Shuts down the sockets of TLS handshakes older than the request timeout (see `#handshakeThenServe`). */
  #cutStalledHandshakes(): void {
    if (this.#libc === undefined || this.#handshakes.size === 0) return;
    const peers: Peer[] = [];
    for (const { sinceTick, peer } of this.#handshakes.values()) {
      if (this.#tick - sinceTick > sweepsPerTimeout) peers.push(peer);
    }
    if (peers.length === 0) return;
    const fdMax = this.#options.descriptorsMax;
    this.stats.timedOut += shutdownPeers(this.#libc, { localPort: this.port, peers, fdMax });
  }

  /** Closes an idle connection: a graceful shutdown closes at once one with no request in progress. */
  #close(state: Connection): void {
    if (state.closing || state.server === undefined) return;
    state.closing = true;
    this.stats.timedOut += 1;
    state.server.shutdown().catch(() => {
      // The peer went away first.
    });
    assert(state.closing);
  }
}

/** Closes a connection the peer may have closed already. */
function closeQuietly(connection: Deno.Conn): void {
  try {
    connection.close();
  } catch {
    // Already closed by the peer.
  }
}

/** The 408 of a request whose body did not arrive within the request timeout. */
function requestTimeoutResponse(
  options: { requestTimeoutMs: number; answerHeaders: Readonly<Record<string, string>> },
): Response {
  const body = JSON.stringify({
    type: "https://dynarust.dev/errors/request_timeout",
    title: "Request Timeout",
    status: 408,
    detail:
      `the request body did not arrive whole within ${options.requestTimeoutMs} ms (DYNA_REQUEST_TIMEOUT_MS)`,
    code: "request_timeout",
  });
  const headers = { ...options.answerHeaders, "content-type": "application/problem+json" };
  return new Response(body, { status: 408, headers });
}
