// Goal: SPEC §5 data placement with real node processes: any node answers any request; each key lives on
// REPLICATION_FACTOR nodes (all when fewer); users registered on one node log in on any; listings merge
// across nodes; a write its proposer refuses as too large is answered 413; write→read-elsewhere latency
// is printed for the notes.
// Method: TestCluster; a node's own copy is read with a signed internal `read`, as a peer would.
import assert from "node:assert/strict";
import { lanClusterConfig, Ring } from "../../../src/cluster/mod.ts";
import { NodeProcess, putValue, tokenFor } from "../../helpers/node_process.ts";
import { clusterSecret, TestCluster } from "../../helpers/test_cluster.ts";
import { waitFor } from "../../helpers/wait_for.ts";

async function login(cluster: TestCluster, index: number, user: string, secret = "pw"): Promise<Response> {
  return await cluster.node(index).fetch(`/auth/${user}`, {
    method: "POST",
    body: JSON.stringify({ secret }),
  });
}

Deno.test(
  "cluster: a user registered on one node logs in on every node; a write anywhere reads everywhere",
  async () => {
    await using cluster = await TestCluster.start({ nodeCount: 3 });
    const created = await login(cluster, 0, "alice");
    assert.equal(created.status, 201);
    const { token } = await created.json();
    for (const index of [1, 2]) {
      const again = await login(cluster, index, "alice");
      assert.equal(again.status, 200, `login on node ${index}`);
      await again.body?.cancel();
      const wrong = await login(cluster, index, "alice", "nope");
      assert.equal(wrong.status, 401);
      await wrong.body?.cancel();
    }
    const latenciesMs: number[] = [];
    for (let index = 0; index < 60; index += 1) {
      const writer = index % 3;
      const reader = (index + 1) % 3;
      const startedMs = performance.now();
      const written = await putValue(cluster.node(writer), `/t/key/k${index}`, { index }, { token });
      assert.equal(written.status, 201);
      const { version } = await written.json();
      await waitFor(async () => {
        const response = await cluster.node(reader).fetch(`/t/key/k${index}`);
        if (response.status !== 200) {
          await response.body?.cancel();
          return false;
        }
        return (await response.json()).version === version;
      }, { timeoutMs: 5_000, intervalMs: 1 });
      latenciesMs.push(performance.now() - startedMs);
    }
    latenciesMs.sort((a, b) => a - b);
    console.log(
      `write→read on another node (3 nodes, 60 writes): p50 ${latenciesMs[30]!.toFixed(1)} ms, ` +
        `p99 ${latenciesMs[59]!.toFixed(1)} ms`,
    );
    const bob = await (await login(cluster, 2, "bob")).json();
    const forbidden = await putValue(cluster.node(1), "/t/key/k0", "mine", { token: bob.token });
    assert.equal(forbidden.status, 403, "ownership holds whichever node takes the write");
    await forbidden.body?.cancel();
  },
);

Deno.test("cluster: with 5 nodes and REPLICATION_FACTOR 3 each key lives on exactly 3 nodes", async () => {
  await using cluster = await TestCluster.start({ nodeCount: 5 });
  const { token } = await (await login(cluster, 0, "alice")).json();
  const keyCount = 40;
  for (let index = 0; index < keyCount; index += 1) {
    const response = await putValue(cluster.node(index % 5), `/spread/key/k${index}`, index, { token });
    assert.equal(response.status, 201);
    await response.body?.cancel();
  }
  await waitFor(async () => {
    for (let index = 0; index < keyCount; index += 1) {
      let count = 0;
      for (const node of [0, 1, 2, 3, 4]) {
        if ((await cluster.localEntry(node, "spread", `k${index}`)) !== null) count += 1;
      }
      if (count !== 3) return false;
    }
    return true;
  }, { timeoutMs: 5_000, what: "every key on exactly 3 nodes" });
  for (const node of [0, 1, 2, 3, 4]) {
    const read = await cluster.node(node).fetch(`/spread/key/k7`);
    assert.equal((await read.json()).value, 7, `node ${node} answers a key it may not hold`);
  }
  const keys: string[] = await (await cluster.node(3).fetch("/spread/keys")).json();
  assert.equal(keys.length, keyCount, "the listing merges every node's keys");
  assert.deepEqual(keys, [...keys].sort());
  const page = await (await cluster.node(1).fetch("/spread/keys?limit=5&after=k1")).json();
  assert.deepEqual(page, keys.filter((key) => key > "k1").slice(0, 5));
  const store = await (await cluster.node(2).fetch("/spread/store")).json();
  assert.equal(Object.keys(store).length, keyCount);
  assert.equal((await cluster.node(4).fetch("/nothing/keys")).status, 404);
});

Deno.test(
  "cluster: a value larger than the default 4 MiB node-to-node message replicates when the limit " +
    "allows it",
  async () => {
    const requestBytesMax = 6 << 20;
    await using cluster = await TestCluster.start({
      nodeCount: 3,
      // The default timing: its 2 s request timeout leaves room for megabytes under a busy test run.
      env: { DYNA_REQUEST_BYTES_MAX: String(requestBytesMax), DYNA_CLUSTER_PRESET: "lan" },
    });
    const token = await tokenFor(cluster.node(0), "alice");
    // Quotes double when the value travels as a JSON string between nodes: 4.4 MB on the wire, over the
    // default 4 MiB message.
    const value = '"'.repeat(2_200_000);
    for (const [index, key] of ["from-0", "from-1", "from-2"].entries()) {
      const response = await putValue(cluster.node(index), `/big/key/${key}`, value, { token });
      assert.equal(response.status, 201, await response.text());
    }
    for (const index of [0, 1, 2]) {
      await waitFor(async () => {
        for (const key of ["from-0", "from-1", "from-2"]) {
          const response = await cluster.node(index).fetch(`/big/key/${key}`);
          if (response.status !== 200 || (await response.json()).value !== value) return false;
        }
        return true;
      }, { timeoutMs: 20_000, what: `node ${index} to hold the three large values` });
    }
    const refused = await NodeProcess.runToExit(["127.0.0.1:0"], {
      CLUSTER_SECRET: clusterSecret,
      DYNA_REQUEST_BYTES_MAX: String(40 << 20),
    });
    assert.equal(refused.code, 78);
    assert.match(refused.stderr, /DYNA_REQUEST_BYTES_MAX 41943040 is more than a cluster can replicate/);
  },
);

Deno.test(
  "cluster: a write forwarded to a proposer with a smaller DYNA_REQUEST_BYTES_MAX is answered 413, " +
    "not 503",
  async () => {
    // Node 0 reads client bodies up to 6 MiB; node 1 keeps the default 1 MiB, and with it the default 4 MiB
    // node-to-node message, so it refuses a larger forwarded write whole, before reading it.
    await using cluster = await TestCluster.start({
      nodeCount: 1,
      // The default timing: its 2 s request timeout leaves room for megabytes under a busy test run.
      env: { DYNA_REQUEST_BYTES_MAX: String(6 << 20), DYNA_CLUSTER_PRESET: "lan" },
    });
    await cluster.add({ env: { DYNA_REQUEST_BYTES_MAX: String(1 << 20) } });
    await cluster.waitConverged();
    const token = await tokenFor(cluster.node(0), "alice");
    const ring = new Ring({
      memberIds: [cluster.id(0), cluster.id(1)],
      virtualNodeCount: lanClusterConfig(clusterSecret).virtualNodeCount,
    });
    let key = "";
    for (let index = 0; key === ""; index += 1) {
      if (ring.replicasOf("big", `k${index}`, 1)[0] === cluster.id(1)) key = `k${index}`;
    }
    // Node 1 takes the key first, so node 0 forwards its writes of it to node 1 (their usual proposer).
    const first = await putValue(cluster.node(1), `/big/key/${key}`, "first", { token });
    assert.equal(first.status, 201);
    await first.body?.cancel();
    await waitFor(
      async () => (await (await cluster.node(0).fetch(`/big/key/${key}`)).json()).value === "first",
      {
        timeoutMs: 10_000,
        what: "node 0 holds node 1's write",
      },
    );
    // 4.3 MB: under node 0's request limit, over node 1's 4 MiB message limit.
    const value = "x".repeat(4_300_000);
    const refused = await putValue(cluster.node(0), `/big/key/${key}`, value, { token });
    const problem = await refused.json();
    assert.equal(refused.status, 413, JSON.stringify(problem));
    assert.equal(problem.code, "payload_too_large");
    assert.match(problem.detail, new RegExp(`proposer ${cluster.id(1)} refused the forwarded write`));
    assert.match(problem.detail, /DYNA_REQUEST_BYTES_MAX/);
    for (const index of [0, 1]) {
      const read = await cluster.node(index).fetch(`/big/key/${key}`);
      assert.equal((await read.json()).value, "first", `node ${index} must not hold the refused write`);
    }
    const small = await putValue(cluster.node(0), `/big/key/${key}`, "small", { token });
    assert.equal(small.status, 201, "the forwarding node still takes writes");
    await small.body?.cancel();
    const read = await cluster.node(1).fetch(`/big/key/${key}`);
    assert.equal((await read.json()).value, "small");
  },
);
