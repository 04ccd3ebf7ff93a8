// Goal: HttpTransport signs requests that InternalHandler accepts, and classifies each failure: a wrong
// secret is "refused", a slow peer "timeout", a closed port "unreachable", a bad or huge reply
// "invalid_reply".
// Method: a real Deno.serve on 127.0.0.1:0 inside the test (our own transport over loopback) whose
// routes hand requests to an InternalHandler, as the HTTP layer does.
import assert from "node:assert/strict";
import {
  HttpTransport,
  InternalHandler,
  internalMessageBytesMax,
  PeerRequestError,
  RequestSigner,
} from "../../../src/cluster/mod.ts";
import { systemClock } from "../../../src/util/clock.ts";
import { KvError } from "../../../src/util/errors.ts";
import { statusByCode } from "../../../src/http/error_map.ts";

const secret = "http-transport-secret-0123456789abcd";
const self = "127.0.0.1:7001";

/** A body without content-length that streams past internalMessageBytesMax, 64 KiB at a time. */
function endlessBody(): ReadableStream<Uint8Array> {
  let sentBytes = 0;
  return new ReadableStream({
    pull(controller) {
      if (sentBytes > 2 * internalMessageBytesMax) return controller.close();
      controller.enqueue(new Uint8Array(64 << 10).fill(0x20));
      sentBytes += 64 << 10;
    },
  });
}

/** A server whose InternalHandler is made once its port (so its id) is known. */
function startServer(
  makeHandler: (self: string) => InternalHandler,
): { server: Deno.HttpServer<Deno.NetAddr>; handler: InternalHandler } {
  const made: { handler?: InternalHandler } = {};
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (request) => {
    const kind = new URL(request.url).pathname.replace(/^\/_internal\//, "");
    if (kind === "not-json") return new Response("<html>", { status: 200 });
    if (kind === "endless") return new Response(endlessBody());
    try {
      return Response.json(await made.handler!.handle(kind, request.headers, await request.text()));
    } catch (error) {
      if (!(error instanceof KvError)) throw error;
      return Response.json({ code: error.code }, {
        status: statusByCode[error.code],
        headers: error.headers,
      });
    }
  });
  const handler = made.handler = makeHandler(`127.0.0.1:${server.addr.port}`);
  return { server, handler };
}

function failure(expected: string, status?: number): (error: unknown) => boolean {
  return (error: unknown) => {
    assert.ok(error instanceof PeerRequestError, String(error));
    assert.equal(error.failure, expected);
    assert.equal(error.status, status);
    assert.ok(!error.message.includes(secret));
    return true;
  };
}

Deno.test(
  "HttpTransport.request() over loopback: success, refused, timeout, invalid reply, unreachable",
  async () => {
    const signer = await RequestSigner.create(secret);
    const { server, handler } = startServer((id) =>
      new InternalHandler({ signer, clock: systemClock, self: id, windowMs: 30_000 })
    );
    let releaseSlow = () => {};
    const slowReleased = new Promise<void>((resolve) => releaseSlow = resolve);
    handler.register("echo", (body, sender) => Promise.resolve({ body, sender }));
    handler.register("slow", async () => {
      await slowReleased;
      return {};
    });
    handler.register("huge", () => Promise.resolve({ text: "x".repeat(internalMessageBytesMax) }));
    const target = `127.0.0.1:${server.addr.port}`;
    const transport = new HttpTransport({ self, signer, clock: systemClock });
    const wrongTransport = new HttpTransport({
      self,
      signer: await RequestSigner.create("wrong-secret-0123456789abcdef0123456"),
      clock: systemClock,
    });
    try {
      assert.deepEqual(await transport.request(target, "echo", { n: 1 }, { timeoutMs: 2_000 }), {
        body: { n: 1 },
        sender: self,
      });
      await assert.rejects(
        wrongTransport.request(target, "echo", {}, { timeoutMs: 2_000 }),
        failure("refused", 403),
      );
      await assert.rejects(transport.request(target, "slow", {}, { timeoutMs: 50 }), failure("timeout"));
      await assert.rejects(
        transport.request(target, "missing", {}, { timeoutMs: 2_000 }),
        (error: unknown) => {
          assert.ok(failure("invalid_reply", 404)(error));
          assert.equal((error as PeerRequestError).remoteCode, "not_found");
          return true;
        },
      );
      await assert.rejects(
        transport.request(target, "not-json", {}, { timeoutMs: 2_000 }),
        failure("invalid_reply", 200),
      );
      await assert.rejects(
        transport.request(target, "huge", {}, { timeoutMs: 5_000 }),
        failure("invalid_reply", 200),
      );
      await assert.rejects(
        transport.request(target, "endless", {}, { timeoutMs: 5_000 }),
        /over 4194304 bytes/,
      );
    } finally {
      releaseSlow();
      await server.shutdown();
      transport.close();
      wrongTransport.close();
    }
    await assert.rejects(transport.request(target, "echo", {}, { timeoutMs: 2_000 }), failure("unreachable"));
  },
);

Deno.test(
  "HttpTransport.request() to a node dialed by another name is signed again for its id, once",
  async () => {
    const signer = await RequestSigner.create(secret);
    const { server, handler } = startServer((id) =>
      new InternalHandler({ signer, clock: systemClock, self: id, windowMs: 30_000 })
    );
    let served = 0;
    handler.register("echo", (body) => {
      served += 1;
      return Promise.resolve(body);
    });
    // "localhost" reaches the node, whose member id says 127.0.0.1: the first request is refused with it.
    const transport = new HttpTransport({ self, signer, clock: systemClock });
    try {
      const alias = `localhost:${server.addr.port}`;
      assert.deepEqual(await transport.request(alias, "echo", { n: 1 }, { timeoutMs: 2_000 }), { n: 1 });
      assert.deepEqual(await transport.request(alias, "echo", { n: 2 }, { timeoutMs: 2_000 }), { n: 2 });
      assert.equal(served, 2, "each request ran once");
    } finally {
      await server.shutdown();
      transport.close();
    }
  },
);
