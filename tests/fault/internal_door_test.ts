// Goal: issue 18, items 3 and 4: the node-to-node door (`POST /_internal/<kind>`) refuses from the headers
// alone what it must not read (no CLUSTER_SECRET: 403; a declared body over the limit: 413; a bad MAC:
// 403), reads an authenticated body against the limit and a deadline (408, connection dropped) and holds it
// to its declared digest (403); a 60 MB body never grows the node's memory. A correctly signed message that
// breaks what the store or the broker asserts (JSON spanning lines) is a 400 and the node serves on, and
// an invariant broken while serving a request fails that request only, unless it is the store's own.
// Method: real node processes on 127.0.0.1:0 (with and without CLUSTER_SECRET) over fetch and raw TCP,
// their VmRSS read from /proc; requests signed with RequestSigner as a peer signs them. The assertion
// policy runs on an in-process node (main.ts `startNode`) whose parts are replaced to throw.
import assert from "node:assert/strict";
import { RequestSigner } from "../../src/cluster/mod.ts";
import { loadConfig } from "../../src/config/load.ts";
import { AssertionError } from "../../src/util/assert.ts";
import { createLogger } from "../../src/util/log.ts";
import { startNode } from "../../main.ts";
import { closeQuietly, connectRaw, readHead, rssMiB, statusOfHead } from "../helpers/fuzz.ts";
import { NodeProcess, putValue, tokenFor } from "../helpers/node_process.ts";
import { clusterSecret, jwtSecret } from "../helpers/test_cluster.ts";

const encoder = new TextEncoder();
const sender = "127.0.0.1:1";
const bigBytes = 60_000_000;
/** Growth of a node's VmRSS allowed while it is sent 60 MB bodies (before the fix: ~900 MiB). */
const rssGrowthMaxMiB = 100;

function startClusterNode(): Promise<NodeProcess> {
  return NodeProcess.start({
    env: { CLUSTER_SECRET: clusterSecret, JWT_SECRET: jwtSecret, DYNA_CLUSTER_PRESET: "local-test" },
  });
}

function idOf(node: NodeProcess): string {
  return new URL(node.baseUrl).host;
}

async function statusOf(response: Promise<Response>): Promise<number | string> {
  try {
    const answered = await response;
    await answered.body?.cancel();
    return answered.status;
  } catch (error) {
    return String(error);
  }
}

async function assertServing(node: NodeProcess): Promise<void> {
  const health = await node.fetch("/health");
  await health.body?.cancel();
  assert.equal(health.status, 200, "the node still serves");
}

/** A 60 MB body streamed in 1 MiB chunks, without a Content-Length. */
function chunkedBody(bytes: Uint8Array): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream({
    pull(controller) {
      if (offset >= bytes.length) return controller.close();
      controller.enqueue(bytes.subarray(offset, offset + (1 << 20)));
      offset += 1 << 20;
    },
  });
}

Deno.test(
  "internal door (a): 60 MB bodies are refused unread, and the node's memory stays flat",
  async () => {
    const big = new Uint8Array(bigBytes).fill(0x20);
    const bigText = " ".repeat(bigBytes);
    const signer = await RequestSigner.create(clusterSecret);
    for (const withSecret of [false, true]) {
      await using node = withSecret ? await startClusterNode() : await NodeProcess.start();
      const path = "/_internal/apply";
      const before = await rssMiB(node.pid);
      const cases: Array<[string, () => Promise<Response>, number]> = [
        ["unsigned", () => node.fetch(path, { method: "POST", body: big }), withSecret ? 413 : 403],
        ["unsigned, chunked", () => node.fetch(path, { method: "POST", body: chunkedBody(big) }), 403],
      ];
      if (withSecret) {
        // Signed over the very bytes sent: the headers pass, and the body is cut off at the 4 MiB limit.
        const signedOver = () =>
          signer.sign({ path, sender, target: idOf(node), bodyText: bigText, nowMs: Date.now() });
        cases.push([
          "signed, declared 60 MB",
          () => node.fetch(path, { method: "POST", headers: signedOver(), body: big }),
          413,
        ]);
        cases.push([
          "signed, chunked",
          () => node.fetch(path, { method: "POST", headers: signedOver(), body: chunkedBody(big) }),
          413,
        ]);
      }
      for (let round = 0; round < 4; round += 1) {
        for (const [label, send, expected] of cases) {
          const status = await statusOf(send());
          // A refusal sent while the body is still coming may reach the client as a reset: also unread.
          assert.ok(
            status === expected || typeof status === "string",
            `${label} (secret: ${withSecret}): ${status}`,
          );
        }
      }
      const after = await rssMiB(node.pid);
      assert.ok(
        after - before < rssGrowthMaxMiB,
        `VmRSS grew from ${before.toFixed(0)} to ${after.toFixed(0)} MiB after ${
          4 * cases.length
        } bodies of 60 MB`,
      );
      await assertServing(node);
    }
  },
);

Deno.test(
  "internal door (b): a declared 60 MB body that never comes is answered at once, unread",
  async () => {
    for (const withSecret of [false, true]) {
      await using node = withSecret ? await startClusterNode() : await NodeProcess.start();
      const attempts: Array<[string, number]> = [[`content-length: ${bigBytes}`, withSecret ? 413 : 403]];
      if (withSecret) attempts.push(["content-length: 1000", 403]); // within the limit but not signed
      for (const [lengthHeader, expected] of attempts) {
        const connection = await connectRaw(node.baseUrl);
        try {
          const startedMs = performance.now();
          await connection.write(
            encoder.encode(`POST /_internal/apply HTTP/1.1\r\nhost: x\r\n${lengthHeader}\r\n\r\n`),
          );
          const head = await readHead(connection, 3_000);
          const elapsedMs = performance.now() - startedMs;
          assert.equal(
            statusOfHead(head),
            expected,
            `${lengthHeader} (secret: ${withSecret}): ${head.slice(0, 80)}`,
          );
          assert.ok(elapsedMs < 2_000, `answered after ${elapsedMs.toFixed(0)} ms`);
        } finally {
          closeQuietly(connection);
        }
      }
      await assertServing(node);
    }
  },
);

/**
 * Sends signed headers for a body of `bodyBytes` and only its first 10 bytes; returns the answer and when.
 */
/** Whether the peer closes `connection` within `timeoutMs` (what it still sends is skipped). */
async function closedWithin(connection: Deno.Conn, timeoutMs: number): Promise<boolean> {
  const buffer = new Uint8Array(4096);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((resolve) =>
    timer = setTimeout(() => resolve("timeout"), timeoutMs)
  );
  try {
    for (;;) { // until the close or the timeout
      const read = await Promise.race([connection.read(buffer).catch(() => null), timeout]);
      if (read === "timeout") return false;
      if (read === null) return true;
    }
  } finally {
    clearTimeout(timer);
  }
}

async function stallBody(node: NodeProcess, bodyBytes: number) {
  const signer = await RequestSigner.create(clusterSecret);
  const bodyText = JSON.stringify({ table: "t", key: "k".repeat(bodyBytes - 22) });
  assert.equal(bodyText.length, bodyBytes);
  const path = "/_internal/read";
  const headers = signer.sign({ path, sender, target: idOf(node), bodyText, nowMs: Date.now() });
  const head = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join("");
  const connection = await connectRaw(node.baseUrl);
  try {
    const startedMs = performance.now();
    await connection.write(
      encoder.encode(`POST ${path} HTTP/1.1\r\nhost: x\r\ncontent-length: ${bodyBytes}\r\n${head}\r\n`),
    );
    await connection.write(encoder.encode(bodyText.slice(0, 10))); // then nothing more
    const text = await readHead(connection, 10_000);
    const elapsedMs = performance.now() - startedMs;
    // Then the node drops the connection, its body still unread: it holds no descriptor for the sender.
    const closed = await closedWithin(connection, 3_000);
    return { text, elapsedMs, closed };
  } finally {
    closeQuietly(connection);
  }
}

Deno.test("internal door (c): an authenticated body that stalls is cut off on time (408)", async () => {
  await using node = await startClusterNode();
  // local-test preset: 2 s after the headers, plus 2 s for the (first) MiB declared.
  for (const bodyBytes of [100_000, 1_000]) {
    const { text, elapsedMs, closed } = await stallBody(node, bodyBytes);
    assert.equal(statusOfHead(text), 408, `${bodyBytes} bytes: ${text.slice(0, 200)}`);
    assert.ok(closed, "the connection is closed after the 408");
    assert.match(text, /connection: close/i);
    assert.ok(elapsedMs >= 3_500 && elapsedMs < 8_000, `cut off after ${elapsedMs.toFixed(0)} ms`);
  }
  await assertServing(node);
});

Deno.test(
  "internal door (d): a body that does not match its signed digest is 403 and never served",
  async () => {
    await using node = await startClusterNode();
    const token = await tokenFor(node, "alice");
    const written = await putValue(node, "/t/key/k", "original", { token });
    assert.equal(written.status, 201);
    await written.body?.cancel();
    const signer = await RequestSigner.create(clusterSecret);
    const path = "/_internal/write";
    const signedBody = JSON.stringify({ op: "put", table: "t", key: "k", value: "AAAAAAAA", owner: "alice" });
    const sentBody = JSON.stringify({ op: "put", table: "t", key: "k", value: "tampered", owner: "alice" });
    assert.equal(signedBody.length, sentBody.length);
    const headers = signer.sign({
      path,
      sender,
      target: idOf(node),
      bodyText: signedBody,
      nowMs: Date.now(),
    });
    const response = await node.fetch(path, { method: "POST", headers, body: sentBody });
    const text = await response.text();
    assert.equal(response.status, 403, text);
    assert.match(text, /does not match its digest/);
    const read = await (await node.fetch("/t/key/k")).json();
    assert.equal(read.value, "original");
    assert.equal(read.version, 1);
  },
);

Deno.test(
  "internal door: a signed apply whose JSON spans lines is 400 and the node serves on (issue 18, " +
    "item 4)",
  async () => {
    await using node = await startClusterNode();
    const signer = await RequestSigner.create(clusterSecret);
    const multiLine = '{"value":\n"x","version":1,"timestamp":1,"owner":"a"}';
    const bodies: Array<[path: string, body: unknown]> = [
      ["/_internal/paxos", {
        items: [{ op: "chosen", table: "t", key: "k", kind: "Updated", version: 1, json: multiLine }],
      }],
      ["/_internal/apply", {
        items: [{
          store: true,
          table: "t",
          key: "k",
          entry: { version: 1, timestamp: 1, owner: "a", deleted: false, valueJson: '{\n"a":1}' },
        }],
      }],
    ];
    for (const [path, body] of bodies) {
      const bodyText = JSON.stringify(body);
      const headers = signer.sign({ path, sender, target: idOf(node), bodyText, nowMs: Date.now() });
      const response = await node.fetch(path, { method: "POST", headers, body: bodyText }).catch((error) =>
        error
      );
      assert.ok(response instanceof Response, `the node answered: ${response}`);
      const text = await response.text();
      assert.equal(response.status, 400, text);
      assert.match(text, /invalid_request/);
      await assertServing(node);
    }
    const read = await node.fetch("/t/key/k");
    await read.body?.cancel();
    assert.equal(read.status, 404, "nothing was stored");
  },
);

Deno.test(
  "assertion policy: a broken invariant fails its request (500) and the node serves on, unless it is " +
    "the store's",
  async () => {
    const dataDir = await Deno.makeTempDir({ prefix: "dynarust_policy_" });
    const invocation = loadConfig({
      args: ["127.0.0.1:0", "--data-dir", dataDir],
      env: { CLUSTER_SECRET: clusterSecret, JWT_SECRET: jwtSecret, DYNA_CLUSTER_PRESET: "local-test" },
    });
    if (invocation.kind !== "run") throw new Error("unexpected invocation");
    const lines: string[] = [];
    const handle = await startNode(invocation.config, {
      logger: createLogger({ level: "error", write: (line) => lines.push(line) }),
    });
    let fatalCode: number | undefined;
    void handle.fatal.then((code) => fatalCode = code);
    try {
      const cluster = handle.cluster as unknown as { read: () => never };
      const read = cluster.read;
      cluster.read = () => {
        throw new AssertionError("a bug in request handling");
      };
      const failed = await fetch(`${handle.url}/t/key/k`);
      assert.equal(failed.status, 500);
      assert.equal((await failed.json()).code, "internal");
      assert.ok(lines.some((line) => line.includes("a bug in request handling")), "logged with its stack");
      cluster.read = read;
      const served = await fetch(`${handle.url}/t/key/k`);
      await served.body?.cancel();
      assert.equal(served.status, 404, "the node serves on");
      assert.equal(fatalCode, undefined, "and does not stop");
      // Broken inside the store: its own state is in doubt, so the node stops (exit code 70).
      const store = handle.store as unknown as { getEntry: () => never };
      store.getEntry = () => {
        throw new AssertionError("the index lost a record");
      };
      const broken = await fetch(`${handle.url}/t/key/k`);
      await broken.body?.cancel();
      assert.equal(broken.status, 500);
      assert.equal(await handle.fatal, 70);
    } finally {
      await handle.stop({ graceful: false });
      await Deno.remove(dataDir, { recursive: true });
    }
  },
);
