/**
 * A small TCP proxy on loopback for network fault tests between real node processes: it forwards to one
 * target, and can cut (close every connection and refuse new ones), heal, and delay every chunk. With a
 * `filter` it forwards only the connections a predicate admits, judged by the connecting side's port (which
 * `SocketOwners` maps to the process that opened it), so a test can cut some clients and not others.
 */

/** Decides whether a connection from 127.0.0.1:`clientPort` is forwarded. */
export type ConnectionFilter = (clientPort: number) => boolean | Promise<boolean>;

interface Forwarded {
  inbound: Deno.Conn;
  outbound: Deno.Conn;
  clientPort: number;
}

/** A proxy from 127.0.0.1:`port` to a target port. */
export class TcpProxy implements AsyncDisposable {
  readonly port: number;
  readonly #listener: Deno.Listener;
  readonly #targetPort: number;
  readonly #connections = new Set<Forwarded>();
  #cut = false;
  /** Added to every forwarded chunk, both ways. */
  delayMs = 0;
  /**
   * When set, a new connection is forwarded only if this admits it (else it is closed at once); existing
   * connections are judged by {@linkcode TcpProxy.closeWhere}. `heal()` clears it.
   */
  filter: ConnectionFilter | undefined = undefined;
  #accepting: Promise<void>;

  private constructor(listener: Deno.Listener, targetPort: number) {
    this.#listener = listener;
    this.port = (listener.addr as Deno.NetAddr).port;
    this.#targetPort = targetPort;
    this.#accepting = this.#accept();
  }

  /** Starts a proxy to `127.0.0.1:targetPort` on a free port. */
  static start(targetPort: number): TcpProxy {
    return new TcpProxy(Deno.listen({ hostname: "127.0.0.1", port: 0 }), targetPort);
  }

  /** Closes every open connection and refuses new ones until `heal()`. */
  cut(): void {
    this.#cut = true;
    for (const forwarded of this.#connections) closePair(forwarded);
    this.#connections.clear();
  }

  /** Lets connections through again: no cut, no filter, no delay. */
  heal(): void {
    this.#cut = false;
    this.filter = undefined;
    this.delayMs = 0;
  }

  /** Closes the open connections whose client port `drop` selects; returns how many. */
  async closeWhere(drop: ConnectionFilter): Promise<number> {
    const open = [...this.#connections];
    const verdicts = await Promise.all(open.map((forwarded) => drop(forwarded.clientPort)));
    let closed = 0;
    open.forEach((forwarded, index) => {
      if (!verdicts[index]) return;
      this.#connections.delete(forwarded);
      closePair(forwarded);
      closed += 1;
    });
    return closed;
  }

  async #accept(): Promise<void> {
    for await (const inbound of this.#listener) {
      if (this.#cut) {
        closeQuietly(inbound);
        continue;
      }
      void this.#admit(inbound);
    }
  }

  async #admit(inbound: Deno.Conn): Promise<void> {
    const clientPort = (inbound.remoteAddr as Deno.NetAddr).port;
    const filter = this.filter;
    const admitted = filter === undefined || await Promise.resolve(filter(clientPort)).catch(() => false);
    if (!admitted || this.#cut) {
      closeQuietly(inbound);
      return;
    }
    await this.#forward(inbound, clientPort);
  }

  async #forward(inbound: Deno.Conn, clientPort: number): Promise<void> {
    let outbound: Deno.Conn;
    try {
      outbound = await Deno.connect({ hostname: "127.0.0.1", port: this.#targetPort });
    } catch {
      closeQuietly(inbound);
      return;
    }
    const forwarded = { inbound, outbound, clientPort };
    this.#connections.add(forwarded);
    await Promise.allSettled([this.#pipe(inbound, outbound), this.#pipe(outbound, inbound)]);
    this.#connections.delete(forwarded);
    closePair(forwarded);
  }

  async #pipe(source: Deno.Conn, target: Deno.Conn): Promise<void> {
    const buffer = new Uint8Array(64 * 1024);
    // Ends when either side closes (or the proxy cuts it).
    for (;;) {
      const read = await source.read(buffer);
      if (read === null || this.#cut) break;
      if (this.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.delayMs));
      let written = 0;
      while (written < read) written += await target.write(buffer.subarray(written, read));
    }
    closeQuietly(target);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.cut();
    this.#listener.close();
    await this.#accepting.catch(() => {});
  }
}

function closePair(forwarded: Forwarded): void {
  closeQuietly(forwarded.inbound);
  closeQuietly(forwarded.outbound);
}

function closeQuietly(connection: Deno.Conn): void {
  try {
    connection.close();
  } catch {
    // already closed
  }
}
