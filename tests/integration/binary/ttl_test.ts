// Goal: keys that expire (SPEC §2) against a real single node: `ttl_secs` on PUT/PATCH gives `expires_at`,
// a write without it clears it; once expired the key is missing to GET (consistent too), /store, /keys and
// batch reads, its subscribers get one Deleted of the next version with reason "expired", anyone may
// re-create it after that version; a bad ttl_secs is a 400 that changes nothing; expiries survive restarts.
// Method: a node child process over HTTP; fetch-based SSE readers; lifetimes of one to a few seconds, waited
// for by polling the key (never a bare sleep).
import assert from "node:assert/strict";
import { defaultLimits } from "../../../src/config/limits.ts";
import { NodeProcess, tokenFor } from "../../helpers/node_process.ts";
import { SseReader } from "../../helpers/sse_reader.ts";
import { waitFor } from "../../helpers/wait_for.ts";

/** A PUT or PATCH of `body` (raw: a test may send a bad one), with a bearer token. */
async function write(
  node: NodeProcess,
  path: string,
  body: unknown,
  options: { token: string; method?: "PUT" | "PATCH" },
): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await node.fetch(path, {
    method: options.method ?? "PUT",
    headers: { "content-type": "application/json", authorization: `Bearer ${options.token}` },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

async function getJson(node: NodeProcess, path: string, init?: RequestInit): Promise<[number, unknown]> {
  const response = await node.fetch(path, init);
  return [response.status, await response.json()];
}

async function statsOf(node: NodeProcess): Promise<Record<string, unknown>> {
  return await (await node.fetch("/stats")).json();
}

/** Waits until a GET of `path` answers 404: the key's lifetime ended (by the node's clock). */
async function waitMissing(node: NodeProcess, path: string, timeoutMs = 8_000): Promise<void> {
  await waitFor(async () => {
    const response = await node.fetch(path);
    await response.body?.cancel();
    return response.status === 404;
  }, { timeoutMs, intervalMs: 50, what: `${path} to expire` });
}

Deno.test(
  "ttl: an expired key is missing to every read, and its subscriber gets one Deleted with reason " +
    "expired",
  async () => {
    await using node = await NodeProcess.start();
    const token = await tokenFor(node, "alice");
    await using events = await SseReader.open(`${node.baseUrl}/t/subscribe/k`);
    assert.equal((await write(node, "/t/key/keep", { value: "stays" }, { token })).status, 201);
    const created = await write(node, "/t/key/k", { value: { a: 1 }, ttl_secs: 1 }, { token });
    assert.equal(created.status, 201);
    assert.equal(created.body.expires_at, (created.body.timestamp as number) + 1_000);
    const [status, read] = await getJson(node, "/t/key/k");
    if (status === 200) assert.deepEqual(read, created.body); // the lifetime may end before this GET
    await waitMissing(node, "/t/key/k");
    assert.equal((await getJson(node, "/t/key/k?consistent=true"))[0], 404);
    assert.deepEqual(Object.keys((await getJson(node, "/t/store"))[1] as object), ["keep"]);
    assert.deepEqual((await getJson(node, "/t/keys"))[1], ["keep"]);
    const batch = await getJson(node, "/t/keys", { method: "POST", body: '["k","keep"]' });
    assert.deepEqual(Object.keys(batch[1] as object), ["keep"]);
    const updated = await events.nextEvent();
    assert.equal(updated.id, "1");
    const deleted = await events.nextEvent();
    assert.equal(deleted.id, "2");
    assert.equal(deleted.data.event, "Deleted");
    const tombstone = deleted.data.value as Record<string, unknown>;
    assert.deepEqual(Object.keys(tombstone), ["key", "version", "timestamp", "reason"]);
    assert.deepEqual({ ...tombstone, timestamp: 0 }, {
      key: "k",
      version: 2,
      timestamp: 0,
      reason: "expired",
    });
    // Anyone may re-create it, after the expiry's version; the stream shows that next, not a second Deleted.
    const bobToken = await tokenFor(node, "bob");
    const recreated = await write(node, "/t/key/k", { value: "bob's" }, { token: bobToken });
    assert.equal(recreated.status, 201);
    assert.equal(recreated.body.version, 3);
    assert.equal(recreated.body.owner, "bob");
    assert.equal("expires_at" in recreated.body, false);
    assert.equal((await events.nextEvent()).id, "3");
    assert.equal((await statsOf(node)).expired_keys, 1);
    const metrics = await (await node.fetch("/metrics")).text();
    assert.match(metrics, /^dynarust_expired_keys_total 1$/m);
  },
);

Deno.test(
  "ttl: a write without ttl_secs clears expires_at, PATCH included; a bad ttl_secs is a 400 that " +
    "changes nothing",
  async () => {
    await using node = await NodeProcess.start();
    const token = await tokenFor(node, "alice");
    const first = await write(node, "/t/key/k", { value: { a: 1 }, ttl_secs: 600 }, { token });
    assert.equal(first.body.expires_at, (first.body.timestamp as number) + 600_000);
    const plain = await write(node, "/t/key/k", { value: { a: 2 } }, { token });
    assert.equal("expires_at" in plain.body, false);
    const patched = await write(node, "/t/key/k", { value: { b: 1 }, ttl_secs: 60 }, {
      token,
      method: "PATCH",
    });
    assert.equal(patched.status, 201);
    assert.deepEqual(patched.body.value, { a: 2, b: 1 });
    assert.equal(patched.body.expires_at, (patched.body.timestamp as number) + 60_000);
    const cleared = await write(node, "/t/key/k", { value: { c: 1 } }, { token, method: "PATCH" });
    assert.equal("expires_at" in cleared.body, false);
    const max = defaultLimits.ttlSecsMax;
    for (const ttlSecs of [0, -1, 1.5, "5", null, max + 1]) {
      for (const method of ["PUT", "PATCH"] as const) {
        const refused = await write(node, "/t/key/k", { value: { d: 1 }, ttl_secs: ttlSecs }, {
          token,
          method,
        });
        assert.equal(refused.status, 400, `${method} ttl_secs ${ttlSecs}`);
        assert.equal(refused.body.code, "invalid_request");
        assert.equal(
          refused.body.detail,
          `ttl_secs is ${
            JSON.stringify(ttlSecs)
          }; it must be an integer from 1 to ${max} (ttlSecsMax, seconds)`,
        );
      }
    }
    const [, after] = await getJson(node, "/t/key/k");
    assert.deepEqual(after, cleared.body, "nothing changed");
    const longest = await write(node, "/t/key/k", { value: 1, ttl_secs: max }, { token });
    assert.equal(longest.body.expires_at, (longest.body.timestamp as number) + max * 1000);
  },
);

Deno.test(
  "ttl: expiries survive restarts: an expired key stays gone, a key due after a crash expires after " +
    "it",
  async () => {
    const dataDir = await Deno.makeTempDir({ prefix: "dynarust_ttl_" });
    try {
      let node = await NodeProcess.start({ dataDir });
      const token = await tokenFor(node, "alice");
      await write(node, "/t/key/gone", { value: 1, ttl_secs: 1 }, { token });
      await waitMissing(node, "/t/key/gone");
      await waitFor(async () => (await statsOf(node)).expired_keys === 1, { timeoutMs: 5_000 });
      const later = await write(node, "/t/key/later", { value: 2, ttl_secs: 2 }, { token });
      assert.equal(later.status, 201);
      await node.stop("SIGKILL"); // a crash: no final checkpoint, the WAL holds both
      await node[Symbol.asyncDispose]();
      node = await NodeProcess.start({ dataDir });
      try {
        assert.equal((await getJson(node, "/t/key/gone"))[0], 404);
        await waitMissing(node, "/t/key/later");
        await waitFor(async () => (await statsOf(node)).expired_keys === 1, {
          timeoutMs: 5_000,
          what: "the key due after the restart to be expired by the restarted node",
        });
        const token2 = await tokenFor(node, "alice");
        const again = await write(node, "/t/key/gone", { value: 3 }, { token: token2 });
        assert.equal(again.body.version, 3, "re-created after the expiry tombstone of version 2");
        const recreated = await write(node, "/t/key/later", { value: 4 }, { token: token2 });
        assert.equal(recreated.body.version, 3);
      } finally {
        await node[Symbol.asyncDispose]();
      }
    } finally {
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    }
  },
);
