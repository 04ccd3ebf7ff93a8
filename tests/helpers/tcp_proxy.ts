/**
 * A small TCP proxy on loopback for network fault tests between real node processes: it forwards to one
 * target, and can cut (close every connection and refuse new ones), heal, and delay every chunk.
 */

/** A proxy from 127.0.0.1:`port` to a target port. */
export class TcpProxy implements AsyncDisposable {
  readonly port: number;
  readonly #listener: Deno.Listener;
  readonly #targetPort: number;
  readonly #connections = new Set<Deno.Conn>();
  #cut = false;
  /** Added to every forwarded chunk, both ways. */
  delayMs = 0;
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
    for (const connection of this.#connections) closeQuietly(connection);
    this.#connections.clear();
  }

  /** Lets connections through again. */
  heal(): void {
    this.#cut = false;
    this.delayMs = 0;
  }

  async #accept(): Promise<void> {
    for await (const inbound of this.#listener) {
      if (this.#cut) {
        closeQuietly(inbound);
        continue;
      }
      void this.#forward(inbound);
    }
  }

  async #forward(inbound: Deno.Conn): Promise<void> {
    let outbound: Deno.Conn;
    try {
      outbound = await Deno.connect({ hostname: "127.0.0.1", port: this.#targetPort });
    } catch {
      closeQuietly(inbound);
      return;
    }
    this.#connections.add(inbound);
    this.#connections.add(outbound);
    await Promise.allSettled([this.#pipe(inbound, outbound), this.#pipe(outbound, inbound)]);
    for (const connection of [inbound, outbound]) {
      this.#connections.delete(connection);
      closeQuietly(connection);
    }
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

function closeQuietly(connection: Deno.Conn): void {
  try {
    connection.close();
  } catch {
    // already closed
  }
}
