// Goal: SPEC §5 membership with real node processes: join and gossip convergence, a refused join on a
// wrong secret, internal routes that refuse missing and wrong credentials, a killed node marked dead and
// a stopped one shown as left.
// Method: TestCluster (node processes on 127.0.0.1, local-test timing); timings are printed for the notes.
import assert from "node:assert/strict";
import { NodeProcess } from "../../helpers/node_process.ts";
import { clusterSecret, jwtSecret, TestCluster } from "../../helpers/test_cluster.ts";
import { waitFor } from "../../helpers/wait_for.ts";
import { internalKinds } from "../../helpers/fuzz.ts";

Deno.test("cluster: 5 nodes join at runtime and every node sees every other alive", async () => {
  await using cluster = await TestCluster.start({ nodeCount: 3 });
  for (const index of [0, 1, 2]) assert.equal((await cluster.membership(index)).size, 3);
  const startedMs = performance.now();
  await cluster.add();
  await cluster.add();
  await cluster.waitConverged();
  console.log(`two joiners known to all 5 nodes after ${(performance.now() - startedMs).toFixed(0)} ms`);
  const view = await (await cluster.node(4).fetch("/membership")).json();
  assert.equal(view.nodes.length, 5);
  for (const node of view.nodes) {
    assert.equal(typeof node.incarnation, "number");
    assert.equal(typeof node.last_seen_ms, "number");
  }
});

Deno.test(
  "cluster: a joiner with a wrong CLUSTER_SECRET is refused and exits non-zero naming the cause",
  async () => {
    await using cluster = await TestCluster.start({ nodeCount: 1 });
    const dataDir = await Deno.makeTempDir({ prefix: "dynarust_wrong_" });
    const result = await NodeProcess.runToExit(
      ["127.0.0.1:0", cluster.id(0), "--data-dir", dataDir],
      { CLUSTER_SECRET: "a-different-secret-0123456789abcdef", JWT_SECRET: jwtSecret },
    );
    await Deno.remove(dataDir, { recursive: true });
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /join refused by 127\.0\.0\.1:\d+: CLUSTER_SECRET does not match \(403\)/);
    assert.ok(!result.stderr.includes(clusterSecret) && !result.stderr.includes("a-different-secret"));
    assert.equal((await cluster.membership(0)).size, 1, "the refused node never became a member");
  },
);

Deno.test("cluster: every internal route refuses requests without or with wrong credentials", async () => {
  await using cluster = await TestCluster.start({ nodeCount: 1 });
  await using solo = await NodeProcess.start();
  const kinds = internalKinds;
  const body = JSON.stringify({ table: "t", key: "k" });
  for (const kind of kinds) {
    const bare = await cluster.node(0).fetch(`/_internal/${kind}`, { method: "POST", body });
    assert.equal(bare.status, 403, `${kind} without credentials`);
    assert.equal((await bare.json()).code, "cluster_unauthorized");
    const forged = await cluster.node(0).fetch(`/_internal/${kind}`, {
      method: "POST",
      body,
      headers: { "x-dyna-node": "127.0.0.1:1", "x-dyna-time": String(Date.now()), "x-dyna-mac": "AAAA" },
    });
    assert.equal(forged.status, 403, `${kind} with a wrong MAC`);
    await forged.body?.cancel();
    const internalHeader = await cluster.node(0).fetch(`/_internal/${kind}`, {
      method: "POST",
      body,
      headers: { "x-internal-request": "true" },
    });
    assert.equal(internalHeader.status, 403, `${kind}: no client header skips authentication`);
    await internalHeader.body?.cancel();
    const unclustered = await solo.fetch(`/_internal/${kind}`, { method: "POST", body });
    assert.equal(unclustered.status, 403, `${kind} on a node without CLUSTER_SECRET`);
    await unclustered.body?.cancel();
  }
  const replayed = await cluster.node(0).fetch("/_internal/ping", {
    method: "POST",
    body: "{}",
    headers: {
      "x-dyna-node": "127.0.0.1:1",
      "x-dyna-time": String(Date.now() - 3_600_000),
      "x-dyna-mac": "AAAA",
    },
  });
  assert.equal(replayed.status, 403, "a request outside the time window is refused");
  await replayed.body?.cancel();
});

Deno.test("cluster: a SIGKILLed node is marked dead and a SIGTERMed node shows as left", async () => {
  await using cluster = await TestCluster.start({ nodeCount: 3 });
  const killedAtMs = performance.now();
  await cluster.stop(2, "SIGKILL");
  await waitFor(async () => (await cluster.membership(0)).get(cluster.id(2)) === "dead", {
    timeoutMs: 10_000,
    what: "the killed node to be marked dead",
  });
  console.log(
    `killed node marked dead after ${(performance.now() - killedAtMs).toFixed(0)} ms (local-test preset)`,
  );
  const status = await cluster.stop(1, "SIGTERM");
  assert.equal(status.code, 0);
  await waitFor(async () => (await cluster.membership(0)).get(cluster.id(1)) === "left", {
    timeoutMs: 5_000,
    what: "the stopped node to show as left",
  });
});
