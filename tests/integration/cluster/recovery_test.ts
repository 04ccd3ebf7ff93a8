// Goal: SPEC §5 availability and catch-up with real node processes: with one node killed, writes go on;
// when it returns it catches up on what it missed (hints and anti-entropy) and never resurrects a
// deleted key; nodes joining and leaving under write load lose nothing and keys move to new replicas.
// Method: TestCluster; acknowledged writes are recorded and every one is checked on every replica.
import assert from "node:assert/strict";
import { putValue } from "../../helpers/node_process.ts";
import { TestCluster } from "../../helpers/test_cluster.ts";
import { waitFor } from "../../helpers/wait_for.ts";

const catchUpWrites = Number(Deno.env.get("KV_TEST_CATCHUP_WRITES") ?? 2_000);

async function tokenOf(cluster: TestCluster, index: number): Promise<string> {
  const response = await cluster.node(index).fetch("/auth/writer", {
    method: "POST",
    body: '{"secret":"pw"}',
  });
  return (await response.json()).token;
}

/** Writes `count` keys through the given nodes, 32 at a time; returns key → acknowledged version. */
async function writeMany(
  cluster: TestCluster,
  options: { token: string; nodes: () => number[]; count: number; prefix: string },
): Promise<Map<string, number>> {
  const acknowledged = new Map<string, number>();
  let next = 0;
  await Promise.all(Array.from({ length: 32 }, async () => {
    while (next < options.count) {
      const index = next++;
      const nodes = options.nodes();
      const node = nodes[index % nodes.length]!;
      try {
        const response = await putValue(cluster.node(node), `/data/key/${options.prefix}${index}`, index, {
          token: options.token,
        });
        if (response.status === 201) {
          acknowledged.set(`${options.prefix}${index}`, (await response.json()).version);
        } else await response.body?.cancel();
      } catch {
        // the node went away under this request: not acknowledged
      }
    }
  }));
  return acknowledged;
}

Deno.test(
  "cluster: a killed node misses writes, comes back, catches up, and resurrects no deleted key",
  async () => {
    await using cluster = await TestCluster.start({ nodeCount: 3 });
    const token = await tokenOf(cluster, 0);
    const doomed = await putValue(cluster.node(0), "/data/key/doomed", "delete me", { token });
    assert.equal(doomed.status, 201);
    await doomed.body?.cancel();
    await waitFor(async () => (await cluster.localEntry(2, "data", "doomed")) !== null, { timeoutMs: 5_000 });
    await cluster.stop(2, "SIGKILL");
    const deleted = await cluster.node(1).fetch("/data/key/doomed", {
      method: "DELETE",
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(deleted.status, 200, "a key can be deleted while one replica is down");
    await deleted.body?.cancel();
    const acknowledged = await writeMany(cluster, {
      token,
      nodes: () => [0, 1],
      count: catchUpWrites,
      prefix: "m",
    });
    assert.equal(acknowledged.size, catchUpWrites, "every write was taken while a replica was down");
    const restartedMs = performance.now();
    await cluster.restart(2);
    await waitFor(async () => {
      const response = await cluster.node(2).fetch("/stats");
      const stats = await response.json();
      return response.status === 200 && (stats.tables.data ?? 0) >= catchUpWrites;
    }, { timeoutMs: 60_000, intervalMs: 50, what: "the returning node to catch up" });
    console.log(
      `returning node caught up on ${catchUpWrites} missed writes in ${
        (performance.now() - restartedMs).toFixed(0)
      } ms`,
    );
    for (const [key, version] of [...acknowledged].slice(0, 200)) {
      const entry = await cluster.localEntry(2, "data", key);
      assert.ok(entry !== null && entry.version >= version, `${key} on the returning node`);
    }
    const doomedThere = await cluster.localEntry(2, "data", "doomed");
    assert.ok(
      doomedThere !== null && JSON.parse(doomedThere.json).value === undefined,
      "the tombstone reached it",
    );
    assert.equal((await cluster.node(2).fetch("/data/key/doomed")).status, 404, "no resurrection");
  },
);

Deno.test(
  "cluster: nodes join and leave under write load; nothing acknowledged is lost and keys move",
  async () => {
    await using cluster = await TestCluster.start({ nodeCount: 3 });
    const token = await tokenOf(cluster, 0);
    const writing = writeMany(cluster, { token, nodes: () => [0, 1], count: 1_500, prefix: "r" });
    const joined = await cluster.add();
    await cluster.add();
    await cluster.waitConverged();
    assert.equal((await cluster.stop(joined, "SIGTERM")).code, 0, "a leaving node exits 0");
    const acknowledged = await writing;
    // Writes that meet a membership change may be refused (503, SPEC §5); most go through. On 2f743d9 this
    // bound was 1,400 and failed 2 runs in 6 (1,399 and 1,227 acknowledged): what is checked is that nothing
    // acknowledged is lost, below, not how many a join and a leave let through.
    assert.ok(acknowledged.size >= 1_000, `${acknowledged.size} writes acknowledged`);
    await waitFor(async () => {
      for (const [key, version] of acknowledged) {
        const response = await cluster.node(4).fetch(`/data/key/${key}`);
        if (response.status !== 200) return false;
        if ((await response.json()).version < version) return false;
      }
      return true;
    }, {
      timeoutMs: 30_000,
      intervalMs: 200,
      what: "every acknowledged write readable after join and leave",
    });
    const stats = await (await cluster.node(4).fetch("/stats")).json();
    assert.ok(stats.tables.data > 0, "the new node holds keys of its own");
    assert.ok(stats.tables.data < acknowledged.size, "but not every key: data is partitioned");
  },
);
