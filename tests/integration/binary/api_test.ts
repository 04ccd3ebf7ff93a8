// Goal: every row of SPEC §3 against a real node process, with each of its success and error codes.
// Method: one node per test on 127.0.0.1:0 with its own temp data dir; only HTTP between test and node.
import assert from "node:assert/strict";
import { NodeProcess, putValue, tokenFor } from "../../helpers/node_process.ts";

const json = { "content-type": "application/json" };

async function problem(response: Response, status: number, code: string): Promise<void> {
  const text = await response.text();
  assert.equal(response.status, status, text);
  assert.equal(response.headers.get("content-type"), "application/problem+json");
  const body = JSON.parse(text);
  assert.equal(body.code, code, text);
  assert.equal(body.status, status);
  assert.equal(typeof body.title, "string");
  assert.equal(typeof body.detail, "string");
  assert.equal(typeof body.type, "string");
}

Deno.test("api: POST /auth/{user} registers (201 + token), logs in (200), refuses bad input", async () => {
  await using node = await NodeProcess.start();
  const post = (user: string, body: string) =>
    node.fetch(`/auth/${user}`, { method: "POST", headers: json, body });
  const created = await post("alice", JSON.stringify({ secret: "s3cr3t" }));
  assert.equal(created.status, 201);
  const createdBody = await created.json();
  assert.equal(createdBody.status, "User created");
  assert.equal(createdBody.token.split(".").length, 3);
  const login = await post("alice", JSON.stringify({ secret: "s3cr3t" }));
  assert.equal(login.status, 200);
  assert.equal(typeof (await login.json()).token, "string");
  await problem(await post("alice", JSON.stringify({ secret: "wrong" })), 401, "wrong_secret");
  await problem(await post("bob", "not json"), 400, "invalid_request");
  await problem(await post("bob", JSON.stringify({ secret: 5 })), 400, "invalid_request");
  await problem(await post("bob", JSON.stringify({})), 400, "invalid_request");
  await problem(await post("bo%2Fb", JSON.stringify({ secret: "x" })), 400, "invalid_name");
  await problem(await post("x".repeat(257), JSON.stringify({ secret: "x" })), 400, "invalid_name");
});

Deno.test("api: failed logins are limited with 429 and Retry-After", async () => {
  await using node = await NodeProcess.start({ env: { DYNA_LOGIN_FAILURES_MAX: "3" } });
  await tokenFor(node, "carol", "right");
  const attempt = () =>
    node.fetch("/auth/carol", { method: "POST", headers: json, body: JSON.stringify({ secret: "wrong" }) });
  for (let index = 0; index < 3; index += 1) await problem(await attempt(), 401, "wrong_secret");
  const limited = await attempt();
  assert.ok(Number(limited.headers.get("retry-after")) >= 1);
  await problem(limited, 429, "rate_limited");
});

/**
 * PATCH merges into the value, refuses a non-object, another owner, a stale If-Match and a missing key.
 */
async function assertPatchRules(node: NodeProcess, alice: string, bob: string): Promise<void> {
  const patch = (body: unknown, token: string, headers: Record<string, string> = {}) =>
    node.fetch("/default/key/foo", {
      method: "PATCH",
      headers: { ...json, authorization: `Bearer ${token}`, ...headers },
      body: JSON.stringify(body),
    });
  const patched = await patch({ value: { a: null, b: { d: 3 } } }, alice);
  assert.equal(patched.status, 201);
  assert.deepEqual((await patched.json()).value, { b: { c: 2, d: 3 } });
  await problem(await patch({ value: [1] }, alice), 400, "invalid_request");
  await problem(await patch({ value: {} }, bob), 403, "forbidden");
  await problem(await patch({ value: {} }, alice, { "if-match": '"1"' }), 412, "version_conflict");
  await problem(
    await node.fetch("/default/key/none", {
      method: "PATCH",
      headers: { ...json, authorization: `Bearer ${alice}` },
      body: JSON.stringify({ value: {} }),
    }),
    404,
    "key_not_found",
  );
}

/**
 * DELETE needs a token and the owner, answers `Deleted`, then the key is gone and a second DELETE is 404.
 */
async function assertDeleteRules(node: NodeProcess, alice: string, bob: string): Promise<void> {
  const del = (path: string, token?: string) =>
    node.fetch(path, {
      method: "DELETE",
      headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
    });
  await problem(await del("/default/key/foo"), 401, "unauthorized");
  await problem(await del("/default/key/foo", bob), 403, "forbidden");
  const deleted = await del("/default/key/foo", alice);
  assert.equal(deleted.status, 200);
  assert.deepEqual(await deleted.json(), { message: "Deleted" });
  await problem(await node.fetch("/default/key/foo"), 404, "key_not_found");
  await problem(await del("/default/key/foo", alice), 404, "key_not_found");
}

Deno.test("api: PUT, GET, PATCH, DELETE of a key with versions, owners and conditions", async () => {
  await using node = await NodeProcess.start();
  const alice = await tokenFor(node, "alice");
  const bob = await tokenFor(node, "bob");

  const first = await putValue(node, "/default/key/foo", "hello", { token: alice });
  assert.equal(first.status, 201);
  const firstBody = await first.json();
  assert.deepEqual({ ...firstBody, timestamp: 0 }, {
    value: "hello",
    version: 1,
    timestamp: 0,
    owner: "alice",
  });
  assert.ok(Math.abs(firstBody.timestamp - Date.now()) < 60_000);

  const read = await node.fetch("/default/key/foo");
  assert.equal(read.status, 200);
  assert.equal(read.headers.get("etag"), '"1"');
  assert.deepEqual(await read.json(), firstBody);
  // If-None-Match is not evaluated (see `readKey`): the current version still gets the value.
  const conditionalRead = await node.fetch("/default/key/foo", { headers: { "if-none-match": '"1"' } });
  assert.equal(conditionalRead.status, 200);
  assert.equal(conditionalRead.headers.get("etag"), '"1"');
  assert.deepEqual(await conditionalRead.json(), firstBody);

  const second = await putValue(node, "/default/key/foo", { a: 1, b: { c: 2 } }, { token: alice });
  assert.equal((await second.json()).version, 2);
  await problem(await putValue(node, "/default/key/foo", 1, { token: bob }), 403, "forbidden");
  await problem(
    await putValue(node, "/default/key/foo", 1, { token: alice, headers: { "if-match": '"1"' } }),
    412,
    "version_conflict",
  );
  const conditional = await putValue(node, "/default/key/foo", { a: 1, b: { c: 2 } }, {
    token: alice,
    headers: { "if-match": '"2"' },
  });
  assert.equal((await conditional.json()).version, 3);

  await assertPatchRules(node, alice, bob);
  await assertDeleteRules(node, alice, bob);
  const recreated = await putValue(node, "/default/key/foo", "again", { token: bob });
  const recreatedBody = await recreated.json();
  assert.equal(recreatedBody.version, 6, "a re-created key continues after its tombstone's version");
  assert.equal(recreatedBody.owner, "bob");
});

Deno.test("api: PUT refuses bad tokens, bad bodies and oversized input with 4xx", async () => {
  await using node = await NodeProcess.start({
    env: { DYNA_REQUEST_BYTES_MAX: "1000", DYNA_VALUE_DEPTH_MAX: "4" },
  });
  const alice = await tokenFor(node, "alice");
  const put = (body: string, headers: Record<string, string> = { authorization: `Bearer ${alice}` }) =>
    node.fetch("/t/key/k", { method: "PUT", headers: { ...json, ...headers }, body });
  await problem(await put('{"value":1}', {}), 401, "unauthorized");
  await problem(await put('{"value":1}', { authorization: "Bearer nope" }), 401, "token_invalid");
  await problem(await put('{"value":1}', { authorization: "Basic abc" }), 401, "unauthorized");
  const [head, payload] = alice.split(".");
  const tampered = `${head}.${
    btoa(JSON.stringify({ sub: "mallory", exp: 9999999999 })).replace(/=+$/, "")
  }.x`;
  void payload;
  await problem(await put('{"value":1}', { authorization: `Bearer ${tampered}` }), 401, "token_invalid");
  await problem(await put("{not json"), 400, "invalid_request");
  await problem(await put('{"val":1}'), 400, "invalid_request");
  await problem(await put("[1]"), 400, "invalid_request");
  await problem(await put(""), 400, "invalid_request");
  // depth: value at the limit (4) is accepted, one more is refused
  assert.equal((await put('{"value":[[[[1]]]]}')).status, 201);
  await problem(await put('{"value":[[[[[1]]]]]}'), 400, "invalid_request");
  // body size: exactly the limit is read, one byte more is 413
  const exact = `{"value":"${"x".repeat(1000 - 12)}"}`;
  assert.equal(exact.length, 1000);
  assert.equal((await put(exact)).status, 201);
  await problem(await put(`{"value":"${"x".repeat(1000 - 11)}"}`), 413, "payload_too_large");
  await problem(await node.fetch("/_users/key/alice"), 400, "reserved_table");
  await problem(await node.fetch("/auth/key/alice"), 400, "reserved_table");
  await problem(await node.fetch(`/t/key/${"k".repeat(257)}`), 400, "invalid_name");
  assert.equal((await node.fetch(`/t/key/${"k".repeat(256)}`)).status, 404);
  await problem(await node.fetch("/t/key/a%2Fb"), 400, "invalid_name");
  await problem(await node.fetch("/t/key/a%00b"), 400, "invalid_name");
  await problem(await node.fetch("/t/key/%E0%A4%A"), 400, "invalid_name");
  await problem(await node.fetch("/t/key/k", { method: "POST" }), 405, "method_not_allowed");
  await problem(await node.fetch("/nothing/here/at/all"), 404, "not_found");
  assert.equal((await node.fetch("/health")).status, 200, "the node is still serving");
});

Deno.test("api: listing, paging and batch reads", async () => {
  await using node = await NodeProcess.start();
  const alice = await tokenFor(node, "alice");
  for (const key of ["b", "a", "d", "c"]) {
    assert.equal((await putValue(node, `/list/key/${key}`, { key }, { token: alice })).status, 201);
  }
  const store = await (await node.fetch("/list/store")).json();
  assert.deepEqual(Object.keys(store), ["a", "b", "c", "d"]);
  assert.deepEqual(store.c.value, { key: "c" });
  assert.deepEqual(await (await node.fetch("/list/keys")).json(), ["a", "b", "c", "d"]);
  assert.deepEqual(await (await node.fetch("/list/keys?limit=2")).json(), ["a", "b"]);
  assert.deepEqual(await (await node.fetch("/list/keys?limit=2&after=b")).json(), ["c", "d"]);
  assert.deepEqual(Object.keys(await (await node.fetch("/list/store?after=c")).json()), ["d"]);
  await problem(await node.fetch("/list/keys?limit=0"), 400, "invalid_request");
  await problem(await node.fetch("/list/keys?limit=abc"), 400, "invalid_request");
  await problem(await node.fetch("/nope/store"), 404, "table_not_found");
  await problem(await node.fetch("/nope/keys"), 404, "table_not_found");

  const batch = (body: string) => node.fetch("/list/keys", { method: "POST", headers: json, body });
  const found = await (await batch(JSON.stringify(["a", "zzz", "d"]))).json();
  assert.deepEqual(Object.keys(found).sort(), ["a", "d"]);
  assert.equal(found.a.version, 1);
  await problem(await batch('{"a":1}'), 400, "invalid_request");
  await problem(await batch("[1,2]"), 400, "invalid_request");
  await problem(
    await batch(JSON.stringify(Array.from({ length: 1001 }, (_, index) => `k${index}`))),
    400,
    "invalid_request",
  );
  assert.equal(
    (await batch(JSON.stringify(Array.from({ length: 1000 }, (_, index) => `k${index}`)))).status,
    200,
  );
});

Deno.test("api: /stats, /health, /membership", async () => {
  await using node = await NodeProcess.start();
  const alice = await tokenFor(node, "alice");
  await putValue(node, "/test/key/a", 1, { token: alice });
  await putValue(node, "/default/key/a", 1, { token: alice });
  const stats = await (await node.fetch("/stats")).json();
  assert.deepEqual(stats.tables, { test: 1, default: 1 });
  assert.equal(stats.total_keys, 2);
  assert.ok(stats.total_requests >= 3);
  assert.equal(typeof stats.average_latency_ms, "number");
  assert.equal(stats.active_sse_connections, 0);
  assert.deepEqual(await (await node.fetch("/health")).json(), { status: "ok" });
  const membership = await (await node.fetch("/membership")).json();
  assert.equal(membership.nodes.length, 1);
  assert.equal(membership.nodes[0].status, "alive");
  assert.equal(`http://${membership.nodes[0].address}`, node.baseUrl);
  assert.equal(typeof membership.nodes[0].last_seen_ms, "number");
});
