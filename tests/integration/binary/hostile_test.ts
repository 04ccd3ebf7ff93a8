// Goal: bad input of every kind gets a 4xx (never a 5xx), changes nothing, and leaves the node serving.
// Method: a seeded generator of hostile requests (methods, paths, encodings, headers, bodies) against a
// real node, plus raw-socket garbage, truncated requests and huge headers; then a normal write and read.
import assert from "node:assert/strict";
import { NodeProcess, putValue, tokenFor } from "../../helpers/node_process.ts";
import { Random } from "../../helpers/seed.ts";

const segments = [
  "t",
  "key",
  "store",
  "keys",
  "subscribe",
  "auth",
  "_users",
  "..",
  "%2e%2e",
  "%2F",
  "%00",
  "%ff",
  "%E0%A4%A",
  "%",
  "💥",
  "%F0%9F%92%A5",
  "a".repeat(300),
  "",
  "stats",
  "health",
  "membership",
  "%20",
  "k?x=1",
  "\u202e",
];
const bodies = [
  "",
  "{",
  "null",
  "[]",
  "[1,2",
  '{"value":',
  '{"value":1,"value":2}',
  '{"secret":null}',
  '{"value":1e999999}',
  '{"value":-0}',
  `{"value":${"[".repeat(10_000)}}`,
  '"\\ud800"',
  "\u0000\u0001",
  '{"value":"\\u0000"}',
  '{"__proto__":{"value":1}}',
  '{"constructor":{"prototype":{}}}',
  "x".repeat(2 << 20),
  '{"secret":"' + "s".repeat(5000) + '"}',
];
const methods = ["GET", "PUT", "POST", "PATCH", "DELETE", "OPTIONS", "HEAD", "PROPFIND"];

function hostileRequest(random: Random, token: string): { path: string; init: RequestInit } {
  const depth = 1 + random.int(4);
  const path = `/${Array.from({ length: depth }, () => random.pick(segments)).join("/")}`;
  const method = random.pick(methods);
  const headers: Record<string, string> = {};
  if (random.next() < 0.5) {
    headers.authorization = random.pick([`Bearer ${token}`, "Bearer", "Bearer a.b.c", "x"]);
  }
  if (random.next() < 0.3) headers["if-match"] = random.pick(['"1"', "*", "abc", '"999999999999999999"']);
  if (random.next() < 0.3) headers["last-event-id"] = random.pick(["0", "-1", "abc", "99999999999999999999"]);
  if (random.next() < 0.3) {
    headers["content-type"] = random.pick(["text/plain", "application/json", "multipart/x"]);
  }
  const hasBody = method !== "GET" && method !== "HEAD" && method !== "PROPFIND" && method !== "OPTIONS";
  return { path, init: { method, headers, ...(hasBody ? { body: random.pick(bodies) } : {}) } };
}

Deno.test("hostile: random malformed requests get no 5xx and the node keeps serving", async () => {
  const random = Random.fromEnv("hostile requests");
  await using node = await NodeProcess.start();
  const token = await tokenFor(node, "alice");
  await (await putValue(node, "/t/key/k", "original", { token })).body?.cancel();
  for (let index = 0; index < 600; index += 1) {
    const { path, init } = hostileRequest(random, token);
    let response: Response;
    try {
      response = await node.fetch(path, { ...init, signal: AbortSignal.timeout(5_000) });
    } catch (error) {
      if (error instanceof TypeError && /invalid|URL/i.test(error.message)) continue; // the client refused it
      throw new Error(`request ${index} ${init.method} ${path} failed: ${error}`);
    }
    if (response.status >= 500) {
      assert.fail(`${init.method} ${path} -> ${response.status}: ${await response.text()}`);
    }
    await response.body?.cancel();
  }
  assert.equal((await node.fetch("/health")).status, 200);
  const written = await putValue(node, "/t/key/after", "still works", { token });
  assert.equal(written.status, 201);
  await written.body?.cancel();
});

Deno.test("hostile: raw socket garbage, truncated requests and huge headers leave the node serving", async () => {
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
});
