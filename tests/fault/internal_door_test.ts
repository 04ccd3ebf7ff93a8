// Goal: issue 18, item 4: a correctly signed message that breaks what the store or the broker asserts
// (JSON spanning lines) is a 400 and the node serves on, and an invariant broken while serving a request
// fails that request only, unless it is the store's own.
// Method: a real node process on 127.0.0.1:0 with CLUSTER_SECRET, sent requests signed with RequestSigner
// as a peer signs them. The assertion policy runs on an in-process node (main.ts `startNode`) whose parts
// are replaced to throw.
import assert from "node:assert/strict";
import { RequestSigner } from "../../src/cluster/mod.ts";
import { loadConfig } from "../../src/config/load.ts";
import { AssertionError } from "../../src/util/assert.ts";
import { createLogger } from "../../src/util/log.ts";
import { startNode } from "../../main.ts";
import { NodeProcess } from "../helpers/node_process.ts";
import { clusterSecret, jwtSecret } from "../helpers/test_cluster.ts";

const sender = "127.0.0.1:1";

function startClusterNode(): Promise<NodeProcess> {
  return NodeProcess.start({
    env: { CLUSTER_SECRET: clusterSecret, JWT_SECRET: jwtSecret, DYNA_CLUSTER_PRESET: "local-test" },
  });
}

async function assertServing(node: NodeProcess): Promise<void> {
  const health = await node.fetch("/health");
  await health.body?.cancel();
  assert.equal(health.status, 200, "the node still serves");
}

Deno.test("internal door: a signed apply whose JSON spans lines is 400 and the node serves on (issue 18, item 4)", async () => {
  await using node = await startClusterNode();
  const signer = await RequestSigner.create(clusterSecret);
  const path = "/_internal/apply";
  const multiLine = '{"value":\n"x","version":1,"timestamp":1,"owner":"a"}';
  const bodies = [
    { items: [{ store: false, table: "t", key: "k", kind: "Updated", version: 1, json: multiLine }] },
    {
      items: [{
        store: true,
        table: "t",
        key: "k",
        entry: { version: 1, timestamp: 1, owner: "a", deleted: false, valueJson: '{\n"a":1}' },
      }],
    },
  ];
  for (const body of bodies) {
    const bodyText = JSON.stringify(body);
    const headers = signer.sign({ path, sender, bodyText, nowMs: Date.now() });
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
});

Deno.test("assertion policy: a broken invariant fails its request (500) and the node serves on, unless it is the store's", async () => {
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
});
