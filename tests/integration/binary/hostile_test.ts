// Goal: bad input of every kind gets a 4xx (never a 5xx), changes nothing, and leaves the node serving.
// Method: the seeded generator of tests/helpers/fuzz.ts (methods, paths, encodings, headers, bodies) against
// a real node, plus raw-socket garbage, truncated requests and huge headers; then a normal write and read.
import assert from "node:assert/strict";
import { NodeProcess, putValue, tokenFor } from "../../helpers/node_process.ts";
import { Random } from "../../helpers/seed.ts";
import { describeRequest, hostileRequest, sendFuzz } from "../../helpers/fuzz.ts";

Deno.test("hostile: random malformed requests get no 5xx and the node keeps serving", async () => {
  const random = Random.fromEnv("hostile requests");
  await using node = await NodeProcess.start();
  const token = await tokenFor(node, "alice");
  await (await putValue(node, "/t/key/k", "original", { token })).body?.cancel();
  for (let index = 0; index < 600; index += 1) {
    const request = hostileRequest(random, token);
    const outcome = await sendFuzz(node.baseUrl, request);
    if (outcome.kind === "connection_failed") assert.fail(`${describeRequest(request)}: ${outcome.detail}`);
    if (outcome.kind === "status" && outcome.status >= 500) {
      assert.fail(`${describeRequest(request)} -> ${outcome.status}: ${outcome.detail}`);
    }
  }
  assert.equal((await node.fetch("/health")).status, 200);
  const written = await putValue(node, "/t/key/after", "still works", { token });
  assert.equal(written.status, 201);
  await written.body?.cancel();
});

Deno.test(
  "hostile: raw socket garbage, truncated requests and huge headers leave the node serving",
  async () => {
    await using node = await NodeProcess.start();
    const url = new URL(node.baseUrl);
    const payloads = [
      "GARBAGE\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nshort",
      "PUT /t/key/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
      `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(200_000)}\r\n\r\n`,
      "GET /t/key/k HTTP/1.1\r\nHost: x\r\n", // never finished (slowloris)
      "\u0000".repeat(1000),
    ];
    const connections: Deno.Conn[] = [];
    for (const payload of payloads) {
      const connection = await Deno.connect({ hostname: url.hostname, port: Number(url.port) });
      connections.push(connection);
      await connection.write(new TextEncoder().encode(payload)).catch(() => 0);
    }
    const health = await node.fetch("/health");
    assert.equal(health.status, 200, "serving while hostile connections are open");
    await health.body?.cancel();
    for (const connection of connections) {
      try {
        connection.close();
      } catch {
        // the node may have closed it already
      }
    }
    const token = await tokenFor(node, "bob");
    const written = await putValue(node, "/t/key/k", 1, { token });
    assert.equal(written.status, 201);
    await written.body?.cancel();
  },
);
