// Goal: Http1Client, the node-to-node HTTP/1.1 client, reads every reply a peer can give (Content-Length,
// chunked, Connection: close), reuses kept-alive connections, and classifies each failure by what the peer
// may have seen: "unreachable" only when nothing was sent; "interrupted" when a connection broke after the
// request went out (even when a fresh connection then fails to connect); "timeout"; "malformed" and
// "too_large" for replies it cannot use.
// Method: a scripted TCP server on 127.0.0.1:0 inside the test that reads each request and answers with
// exactly the bytes a case needs, counting connections and requests; one case against a real Deno.serve.
import assert from "node:assert/strict";
import { Http1Client, Http1Error } from "../../../src/cluster/http1_client.ts";
import { ManualClock, systemClock } from "../../../src/util/clock.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

interface Received {
  head: string;
  body: string;
  /** Index of the connection it came on, from 0. */
  connection: number;
}

/** What the script does with one request: the bytes to answer, and whether to close the connection after. */
type Script = (request: Received, count: number) => { reply?: string | Uint8Array; close?: boolean };

/** Reads requests (a head, then a body of its Content-Length) off one connection, keeping what follows. */
class RequestReader {
  #buffer = new Uint8Array(0);

  constructor(private readonly conn: Deno.Conn) {}

  /** The next request's head and body; undefined once the connection ends before a whole one. */
  async next(): Promise<{ head: string; body: string } | undefined> {
    let end = decoder.decode(this.#buffer).indexOf("\r\n\r\n");
    while (end < 0) {
      if (!(await this.#readMore())) return undefined;
      end = decoder.decode(this.#buffer).indexOf("\r\n\r\n");
    }
    const head = decoder.decode(this.#buffer.subarray(0, end));
    const length = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? "0");
    while (this.#buffer.length < end + 4 + length) if (!(await this.#readMore())) return undefined;
    const body = decoder.decode(this.#buffer.subarray(end + 4, end + 4 + length));
    this.#buffer = this.#buffer.slice(end + 4 + length);
    return { head, body };
  }

  async #readMore(): Promise<boolean> {
    const chunk = new Uint8Array(64 * 1024);
    const read = await this.conn.read(chunk).catch(() => null);
    if (read === null) return false;
    const grown = new Uint8Array(this.#buffer.length + read);
    grown.set(this.#buffer);
    grown.set(chunk.subarray(0, read), this.#buffer.length);
    this.#buffer = grown;
    return true;
  }
}

/** A TCP server that answers each request as `script` says. */
function scriptedServer(script: Script) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const received: Received[] = [];
  const open = new Set<Deno.Conn>();
  let connections = 0;
  const serveConnection = async (conn: Deno.Conn, index: number) => {
    open.add(conn);
    const reader = new RequestReader(conn);
    try {
      for (;;) {
        const next = await reader.next();
        if (next === undefined) return;
        const request = { ...next, connection: index };
        received.push(request);
        const action = script(request, received.length);
        if (action.reply !== undefined) {
          const bytes = typeof action.reply === "string" ? encoder.encode(action.reply) : action.reply;
          let offset = 0;
          while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));
        }
        if (action.close === true) return;
      }
    } catch {
      // the client went away
    } finally {
      open.delete(conn);
      try {
        conn.close();
      } catch {
        // closed already
      }
    }
  };
  const accepting = (async () => {
    for await (const conn of listener) void serveConnection(conn, connections++);
  })().catch(() => {});
  return {
    address: `127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    received,
    get connections() {
      return connections;
    },
    /** Closes every open connection, as a restarting peer would. */
    dropConnections() {
      for (const conn of open) conn.close();
      open.clear();
    },
    async close() {
      try {
        listener.close();
      } catch {
        // closed already
      }
      this.dropConnections();
      await accepting;
    },
  };
}

function ok(body: string, extra = ""): string {
  return `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${
    encoder.encode(body).length
  }\r\n${extra}\r\n${body}`;
}

function post(
  client: Http1Client,
  address: string,
  body: string,
  options: { timeoutMs?: number; bytesMax?: number } = {},
) {
  return client.post({
    address,
    path: "/_internal/test",
    headers: { "x-dyna-node": "127.0.0.1:1" },
    body: encoder.encode(body),
    timeoutMs: options.timeoutMs ?? 2_000,
    bytesMax: options.bytesMax ?? 1 << 20,
  });
}

function failsWith(failure: string, status?: number): (error: unknown) => boolean {
  return (error) => {
    assert.ok(error instanceof Http1Error, String(error));
    assert.equal(error.failure, failure, error.message);
    assert.equal(error.status, status);
    return true;
  };
}

Deno.test(
  "Http1Client reuses one kept-alive connection and reads Content-Length and chunked replies",
  async () => {
    const server = scriptedServer((request, count) => {
      if (count === 2) {
        const reply = `{"echo":${request.body}}`;
        return {
          reply: `HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\n${reply.slice(0, 5)}\r\n${
            (reply.length - 5).toString(16)
          }\r\n${reply.slice(5)}\r\n0\r\n\r\n`,
        };
      }
      return { reply: ok(`{"echo":${request.body}}`) };
    });
    const client = new Http1Client({ tls: false, clock: systemClock });
    try {
      for (const n of [1, 2, 3]) {
        const reply = await post(client, server.address, `{"n":${n}}`);
        assert.equal(reply.status, 200);
        assert.deepEqual(JSON.parse(decoder.decode(reply.body)), { echo: { n } });
      }
      assert.equal(server.connections, 1, "three requests, one connection");
      assert.match(server.received[0]!.head, /^POST \/_internal\/test HTTP\/1\.1\r\n/);
      assert.match(server.received[0]!.head, /\r\nx-dyna-node: 127\.0\.0\.1:1(\r\n|$)/);
      assert.match(server.received[0]!.head, new RegExp(`\r\nhost: ${server.address}(\r\n|$)`));
    } finally {
      client.close();
      await server.close();
    }
  },
);

Deno.test(
  "Http1Client opens a new connection after Connection: close, after a peer dropped an idle one, and " +
    "after a long idle",
  async () => {
    const server = scriptedServer((request) => {
      const close = request.body === '"close"';
      return { reply: ok(request.body, close ? "connection: close\r\n" : ""), close };
    });
    const clock = new ManualClock();
    const client = new Http1Client({ tls: false, clock });
    try {
      await post(client, server.address, '"close"');
      await post(client, server.address, '"a"');
      assert.equal(server.connections, 2, "the closed connection was not reused");
      // The peer closes the idle connection (a restart): the request goes out again on a new one, once.
      server.dropConnections();
      assert.equal(decoder.decode((await post(client, server.address, '"b"')).body), '"b"');
      assert.equal(server.connections, 3);
      assert.deepEqual(server.received.map((request) => request.body), ['"close"', '"a"', '"b"']);
      // Idle for longer than the reuse window: closed, not tried.
      clock.advance(60_000);
      await post(client, server.address, '"c"');
      assert.equal(server.connections, 4);
    } finally {
      client.close();
      await server.close();
    }
  },
);

Deno.test("Http1Client: a request the peer may have run is interrupted, never unreachable", async () => {
  // The peer reads the request and dies before answering, on a kept-alive connection: the retry on a new
  // connection cannot connect, and that does not prove the first attempt was not run.
  let die = false;
  const server = scriptedServer((request) => (die ? { close: true } : { reply: ok(request.body) }));
  const client = new Http1Client({ tls: false, clock: systemClock });
  try {
    await post(client, server.address, '"warm"');
    die = true;
    const dying = post(client, server.address, '"lost"');
    await assert.rejects(dying, failsWith("interrupted"));
    // A peer that read it, closed, and refuses the copy sent again (as a replay): still interrupted.
    die = false;
    let refuse = 0;
    const refusing = scriptedServer((request) => {
      if (request.body === '"run"' && refuse++ === 0) return { close: true };
      if (request.body === '"run"') {
        return { reply: "HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n" };
      }
      return { reply: ok(request.body) };
    });
    try {
      await post(client, refusing.address, '"warm"');
      await assert.rejects(post(client, refusing.address, '"run"'), failsWith("interrupted", 401));
      assert.equal(refusing.received.filter((request) => request.body === '"run"').length, 2);
    } finally {
      await refusing.close();
    }
    die = true;
    // On a fresh connection (none idle now), a peer that closes after reading is interrupted too.
    await assert.rejects(post(client, server.address, '"again"'), failsWith("interrupted"));
    assert.ok(server.received.some((request) => request.body === '"lost"'), "the peer did read it");
    await server.close();
    await assert.rejects(post(client, server.address, '"none"'), failsWith("unreachable"));
  } finally {
    client.close();
    await server.close();
  }
});

Deno.test("Http1Client: cut short, malformed, oversized and slow replies", async () => {
  const server = scriptedServer((request) => {
    switch (request.body) {
      case '"short"':
        return { reply: "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{}", close: true };
      case '"garbage"':
        return { reply: "SSH-2.0-OpenSSH\r\n\r\n", close: true };
      case '"long-head"':
        return { reply: `HTTP/1.1 200 OK\r\nx-pad: ${"p".repeat(20_000)}\r\n\r\n`, close: true };
      case '"no-length"':
        return { reply: "HTTP/1.1 200 OK\r\n\r\n{}", close: true };
      case '"huge"':
        return { reply: `HTTP/1.1 200 OK\r\ncontent-length: ${(1 << 20) + 1}\r\n\r\n`, close: true };
      case '"huge-chunked"':
        return {
          reply: `HTTP/1.1 503 Unavailable\r\ntransfer-encoding: chunked\r\n\r\n${
            ((1 << 20) + 1).toString(16)
          }\r\n`,
          close: true,
        };
      case '"bad-chunk"':
        return { reply: "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", close: true };
      case '"slow"':
        return {}; // never answers
      default:
        return { reply: ok(request.body) };
    }
  });
  const client = new Http1Client({ tls: false, clock: systemClock });
  try {
    await assert.rejects(post(client, server.address, '"short"'), failsWith("interrupted", 200));
    await assert.rejects(post(client, server.address, '"garbage"'), failsWith("malformed"));
    await assert.rejects(post(client, server.address, '"long-head"'), failsWith("malformed"));
    await assert.rejects(post(client, server.address, '"no-length"'), failsWith("malformed", 200));
    await assert.rejects(post(client, server.address, '"huge"'), failsWith("too_large", 200));
    await assert.rejects(post(client, server.address, '"huge-chunked"'), failsWith("too_large", 503));
    await assert.rejects(post(client, server.address, '"bad-chunk"'), failsWith("malformed", 200));
    const started = performance.now();
    await assert.rejects(post(client, server.address, '"slow"', { timeoutMs: 100 }), failsWith("timeout"));
    assert.ok(performance.now() - started < 1_500, "the timeout bounds the request");
    // None of that poisons the next request.
    assert.equal(decoder.decode((await post(client, server.address, '"fine"')).body), '"fine"');
  } finally {
    client.close();
    await server.close();
  }
});

Deno.test("Http1Client against Deno.serve: large bodies both ways on one connection", async () => {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (request) => {
    const text = await request.text();
    return new Response(text + text, { headers: { "content-type": "text/plain" } });
  });
  const client = new Http1Client({ tls: false, clock: systemClock });
  try {
    for (const size of [0, 1, 70_000, 1_000_000]) {
      const body = "é".repeat(size);
      const reply = await post(client, `127.0.0.1:${server.addr.port}`, body, { bytesMax: 8 << 20 });
      assert.equal(reply.status, 200);
      assert.equal(decoder.decode(reply.body), body + body, `a body of ${size} characters`);
    }
  } finally {
    client.close();
    await server.shutdown();
  }
});
