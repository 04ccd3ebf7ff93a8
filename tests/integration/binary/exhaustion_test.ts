// Goal: no flood of connections stops a node (SPEC §8): it raises its descriptor limit, caps connections and
// subscribers below it, answers the excess 503 or closes it, survives failed accepts, and closes connections
// that send no whole request within the request timeout, while event streams stay open.
// Method: real nodes in child processes under `ulimit -n`, flooded over raw sockets from this process (which
// has a far higher limit), then checked over HTTP: still serving, every flooding connection answered or
// closed.
import assert from "node:assert/strict";
import { NodeProcess, putValue, tokenFor } from "../../helpers/node_process.ts";
import { waitFor } from "../../helpers/wait_for.ts";
import { capacityOf } from "../../../src/server/mod.ts";
import { defaultLimits } from "../../../src/config/limits.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** How a flooding connection ended. */
type Ending = { kind: "answered"; status: number; text: string } | { kind: "closed"; text: string };

function portOf(node: NodeProcess): number {
  return Number(new URL(node.baseUrl).port);
}

/** Opens `count` connections to `port`, each sending `payload` and nothing more. */
async function flood(port: number, count: number, payload: string): Promise<Deno.TcpConn[]> {
  const connections: Deno.TcpConn[] = [];
  for (let index = 0; index < count; index += 1) {
    const connection = await Deno.connect({ hostname: "127.0.0.1", port });
    connections.push(connection);
    await connection.write(encoder.encode(payload)).catch(() => 0);
  }
  return connections;
}

/**
 * Reads until the node closes the connection, or until `untilText` has been seen; fails after 30 s, so a
 * node that never closes a connection fails the test rather than hanging it.
 */
async function readEnding(connection: Deno.TcpConn, untilText?: string): Promise<Ending> {
  const buffer = new Uint8Array(4096);
  let text = "";
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    connection.close();
  }, 30_000);
  try {
    for (;;) {
      let read: number | null;
      try {
        read = await connection.read(buffer);
      } catch {
        read = null; // reset by the node: closed
      }
      if (timedOut) {
        throw new Error(`the connection neither closed nor showed ${untilText ?? "an end"} in 30 s`);
      }
      if (read !== null) text += decoder.decode(buffer.subarray(0, read));
      if (read === null || (untilText !== undefined && text.includes(untilText))) break;
    }
  } finally {
    clearTimeout(timer);
  }
  const status = /^HTTP\/1\.1 (\d{3})/.exec(text);
  return status === null ? { kind: "closed", text } : { kind: "answered", status: Number(status[1]), text };
}

function closeAll(connections: readonly Deno.TcpConn[]): void {
  for (const connection of connections) {
    try {
      connection.close();
    } catch {
      // already closed
    }
  }
}

async function healthy(node: NodeProcess): Promise<boolean> {
  try {
    const response = await node.fetch("/health");
    await response.body?.cancel();
    return response.status === 200;
  } catch {
    return false;
  }
}

Deno.test(
  "a node under ulimit -n 1024 survives 1,100 half-sent requests: 503 over the cap, the rest closed " +
    "on time",
  async () => {
    await using node = await NodeProcess.start({
      fdLimit: 1024,
      env: { DYNA_REQUEST_TIMEOUT_MS: "5000", DYNA_LOG: "info" },
    });
    const expected = capacityOf({ fdLimit: 1024, ...defaultLimits });
    const connections = await flood(portOf(node), 1_100, "GET /t/key/k HTTP/1.1\r\nHost: x\r\n");
    const endings = await Promise.all(connections.map((connection) => readEnding(connection)));
    closeAll(connections);
    const refused = endings.filter((ending) => ending.kind === "answered" && ending.status === 503).length;
    const closed = endings.filter((ending) => ending.kind === "closed" && ending.text === "").length;
    assert.equal(
      refused + closed,
      1_100,
      "every connection was either refused with 503 or closed, unanswered",
    );
    assert.ok(refused >= 1_100 - expected.connectionsMax, `${refused} refused with 503`);
    const busy = endings.find((ending) => ending.kind === "answered")!;
    assert.match(busy.text, /access-control-allow-origin: \*\r\n/, "the 503 carries CORS, as every answer");
    await waitFor(() => healthy(node), { timeoutMs: 10_000, what: "the node to serve after the flood" });
    const stats = await (await node.fetch("/stats")).json();
    assert.equal(stats.connections.refused, refused, "/stats counts the connections refused");
    assert.ok(stats.connections.timed_out >= 1_100 - refused, "and those closed for sending nothing");
    const token = await tokenFor(node, "alice");
    const written = await putValue(node, "/t/key/after", "still writes", { token });
    assert.equal(written.status, 201);
    await written.body?.cancel();
    assert.equal((await node.stop("SIGTERM")).code, 0, "the node exits cleanly, it never crashed");
    const stderr = await node.stderrText();
    assert.match(stderr, new RegExp(`connections_max=${expected.connectionsMax} `));
    assert.match(stderr, new RegExp(`subscribers_max=${expected.subscribersMax} `));
  },
);

Deno.test(
  "a node under ulimit -n 1024 refuses subscribers past its cap with 503 and keeps every stream live",
  async () => {
    await using node = await NodeProcess.start({ fdLimit: 1024, env: { DYNA_REQUEST_TIMEOUT_MS: "1000" } });
    const expected = capacityOf({ fdLimit: 1024, ...defaultLimits });
    const token = await tokenFor(node, "alice");
    const subscribe = "GET /t/subscribe/k HTTP/1.1\r\nHost: x\r\n\r\n";
    const connections = await flood(portOf(node), 1_000, subscribe);
    // A subscriber's answer starts with its status line and headers; the refused ones end there.
    const heads = await Promise.all(connections.map((connection) => readEnding(connection, "\r\n\r\n")));
    const streaming = connections.filter((_, index) =>
      heads[index]!.kind === "answered" && heads[index]!.text.includes(" 200 ")
    );
    const refused = heads.filter((head) => head.kind === "answered" && head.text.includes(" 503 ")).length;
    assert.equal(streaming.length, expected.subscribersMax, "exactly the subscriber cap is streaming");
    assert.equal(refused, 1_000 - expected.subscribersMax, "every other subscriber was told 503");
    // The refused connections are idle now: they are closed after the timeout, which frees room for requests.
    await waitFor(() => healthy(node), { timeoutMs: 10_000, what: "room for a request next to the streams" });
    const written = await putValue(node, "/t/key/k", "to every stream", { token });
    assert.equal(written.status, 201);
    await written.body?.cancel();
    // Every stream outlived the request timeout (it is busy, not idle) and carries the change.
    const events = await Promise.all(
      streaming.map((connection) => readEnding(connection, "to every stream")),
    );
    assert.equal(events.filter((event) => event.text.includes("to every stream")).length, streaming.length);
    closeAll(connections);
  },
);

Deno.test(
  "a node that cannot raise or read its descriptor limit survives failed accepts (EMFILE)",
  async () => {
    // Without FFI the node cannot read its limit and assumes 1,024; under `ulimit -n 256` accepts then fail.
    await using node = await NodeProcess.start({
      fdLimit: 256,
      permissions: ["--allow-net", "--allow-read", "--allow-write", "--allow-env"],
      env: { DYNA_REQUEST_TIMEOUT_MS: "1000" },
    });
    const connections = await flood(portOf(node), 400, "GET /t/key/k HTTP/1.1\r\nHost: x\r\n");
    const endings = await Promise.all(connections.map((connection) => readEnding(connection)));
    closeAll(connections);
    assert.equal(
      endings.filter((ending) => ending.kind === "closed").length,
      400,
      "each was closed, unanswered",
    );
    await waitFor(() => healthy(node), { timeoutMs: 10_000, what: "the node to serve after failed accepts" });
    assert.equal((await node.stop("SIGTERM")).code, 0, "the node exits cleanly, it never crashed");
    const stderr = await node.stderrText();
    assert.match(stderr, /no FFI permission/);
    assert.match(stderr, /accepting a connection failed; pausing accepts/);
  },
);

Deno.test(
  "a request whose head never ends is closed after DYNA_REQUEST_TIMEOUT_MS; an event stream is not",
  async () => {
    await using node = await NodeProcess.start({ env: { DYNA_REQUEST_TIMEOUT_MS: "500" } });
    const port = portOf(node);
    const [stream] = await flood(port, 1, "GET /t/subscribe/k HTTP/1.1\r\nHost: x\r\n\r\n");
    const [slow] = await flood(port, 1, "GET /t/key/k HTTP/1.1\r\nHost: x\r\nX-Slow: ");
    const startedMs = performance.now();
    const ending = await readEnding(slow!);
    const waitedMs = performance.now() - startedMs;
    assert.equal(ending.kind, "closed");
    assert.ok(waitedMs >= 400 && waitedMs < 5_000, `closed after ${Math.round(waitedMs)} ms`);
    // The stream opened before the slow request is still served after it was closed.
    const token = await tokenFor(node, "alice");
    await (await putValue(node, "/t/key/k", "after the timeout", { token })).body?.cancel();
    const event = await readEnding(stream!, "after the timeout");
    assert.ok(event.text.includes("after the timeout"), "the stream got the change");
    closeAll([stream!, slow!]);
  },
);

Deno.test(
  "a request whose body stalls is answered 408 after DYNA_REQUEST_TIMEOUT_MS and closed; nothing is " +
    "written",
  async () => {
    await using node = await NodeProcess.start({ env: { DYNA_REQUEST_TIMEOUT_MS: "500" } });
    const token = await tokenFor(node, "alice");
    const head = `PUT /t/key/k HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n` +
      "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n";
    const [stalled, trickled] = await flood(portOf(node), 2, `${head}{"va`);
    // One byte every 200 ms: the connection is never idle, but the body is still not whole after the timeout.
    const trickling = setInterval(() => trickled!.write(encoder.encode(" ")).catch(() => 0), 200);
    const startedMs = performance.now();
    try {
      const endings = await Promise.all([readEnding(stalled!), readEnding(trickled!)]);
      const waitedMs = performance.now() - startedMs;
      for (const ending of endings) {
        assert.equal(ending.kind === "answered" ? ending.status : ending.kind, 408, ending.text);
        assert.match(ending.text, /"code":"request_timeout"/);
        assert.match(
          ending.text,
          /access-control-allow-origin: \*/i,
          "the 408 carries CORS, as every answer",
        );
      }
      assert.ok(waitedMs >= 400 && waitedMs < 5_000, `answered and closed after ${Math.round(waitedMs)} ms`);
    } finally {
      clearInterval(trickling);
      closeAll([stalled!, trickled!]);
    }
    const read = await node.fetch("/t/key/k");
    await read.body?.cancel();
    assert.equal(read.status, 404, "nothing was written");
  },
);
