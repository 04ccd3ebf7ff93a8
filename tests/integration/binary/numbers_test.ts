// Goal: a value JSON cannot carry exactly is refused, never changed (SPEC §8, issue 18 item 10):
// `{"value":1e400}` was stored as null. Every JSON body a client sends is checked: PUT, PATCH, batch
// reads and registrations.
// Method: a real node; bodies written by hand (JSON.stringify cannot produce 1e400), then read back.
import assert from "node:assert/strict";
import { NodeProcess, tokenFor } from "../../helpers/node_process.ts";

async function send(
  node: NodeProcess,
  request: { method: string; path: string; body: string; token?: string },
): Promise<{ status: number; problem: { code?: string; detail?: string } }> {
  const response = await node.fetch(request.path, {
    method: request.method,
    headers: {
      "content-type": "application/json",
      ...(request.token === undefined ? {} : { authorization: `Bearer ${request.token}` }),
    },
    body: request.body,
  });
  return { status: response.status, problem: await response.json() };
}

Deno.test(
  "PUT/PATCH/POST bodies with a number that overflows or underflows a double are 400, nothing stored",
  async () => {
    await using node = await NodeProcess.start();
    const token = await tokenFor(node, "alice");
    const refusals = [
      { method: "PUT", path: "/t/key/big", body: '{"value":1e400}', token, kind: /too large/ },
      {
        method: "PUT",
        path: "/t/key/big",
        body: `{"value":[-${"9".repeat(400)}]}`,
        token,
        kind: /too large/,
      },
      { method: "PUT", path: "/t/key/tiny", body: '{"value":{"x":1e-400}}', token, kind: /too small/ },
      { method: "PATCH", path: "/t/key/kept", body: '{"value":{"n":1.8e308}}', token, kind: /too large/ },
      { method: "POST", path: "/t/keys", body: '["kept", 1e400]', kind: /too large/ },
      { method: "POST", path: "/auth/bob", body: '{"secret":"pw","pin":1e400}', kind: /too large/ },
    ];
    const kept = await send(node, { method: "PUT", path: "/t/key/kept", body: '{"value":{"n":1}}', token });
    assert.equal(kept.status, 201);
    for (const { kind, ...request } of refusals) {
      const { status, problem } = await send(node, request);
      assert.equal(status, 400, `${request.method} ${request.body.slice(0, 40)}: ${JSON.stringify(problem)}`);
      assert.equal(problem.code, "invalid_request");
      assert.match(problem.detail ?? "", kind);
      assert.match(problem.detail ?? "", /number at character \d+/);
    }
    for (const path of ["/t/key/big", "/t/key/tiny"]) {
      const read = await node.fetch(path);
      assert.equal(read.status, 404, `${path} was not stored`);
      await read.body?.cancel();
    }
    const read = await node.fetch("/t/key/kept");
    assert.deepEqual(await read.json().then((entry) => [entry.value, entry.version]), [{ n: 1 }, 1]);
    const bob = await send(node, { method: "POST", path: "/auth/bob", body: '{"secret":"other"}' });
    assert.equal(bob.status, 201, "the refused registration created no user");
    const largest = await send(node, {
      method: "PUT",
      path: "/t/key/largest",
      body: '{"value":1.7976931348623157e308}',
      token,
    });
    assert.equal(largest.status, 201, "the largest double is carried exactly");
    assert.equal((largest.problem as { value?: number }).value, Number.MAX_VALUE);
  },
);
