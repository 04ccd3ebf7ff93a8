// Goal: issue 19's promises of per-key Paxos over a fake network of real stores: a 201 is never lost to a
// partition or a paused proposer, two writes are never acknowledged with one version, `If-Match` runs
// against the latest acknowledged state, an unusable answer is never an acknowledgement, the usual write
// takes one round, and a consistent read completes an unfinished write.
// Method: FakeCluster (real Stores on MemoryFs, a FakeNetwork that can partition links and pause nodes,
// a shared FakeMembership set by hand). Every write names itself in the value (`{"writes":[...]}`), so the
// final state lists exactly the writes that survived and each check is exact.
import assert from "node:assert/strict";
import type { ClientWrite } from "../../../src/cluster/replicator.ts";
import { KvError } from "../../../src/util/errors.ts";
import { FakeCluster, findKey, nodeA, nodeB, nodeC } from "./fake_cluster.ts";

const table = "t";
const owner = "alice";

/** A key whose replicas, in preference order, are A, B, C: A is its usual proposer. */
function keyOnABC(cluster: FakeCluster): string {
  const placement = cluster.placement(nodeA);
  return findKey((key) => placement.replicasOf(table, key).join() === [nodeA, nodeB, nodeC].join());
}

/** A write naming itself: `writes` is the chain of writes the value descends from. */
function cas(key: string, chain: readonly string[], ifVersion: number): ClientWrite {
  return { op: "put", table, key, value: { writes: chain }, conditions: { owner, ifVersion } };
}

/** The outcome of a write as a client sees it: its version, or its error code. */
async function outcome(write: Promise<{ version: number }>): Promise<number | string> {
  try {
    return (await write).version;
  } catch (error) {
    if (error instanceof KvError) return error.code;
    throw error;
  }
}

/** The chain of writes of the key's state on node `id`'s store. */
function chainOn(cluster: FakeCluster, id: string, key: string): string[] | undefined {
  const json = cluster.node(id).store.replicaOf(table, key)?.valueJson;
  return json === undefined ? undefined : (JSON.parse(json) as { writes: string[] }).writes;
}

/** The latest chosen chain, read through a consistent (Paxos) read on node `id`. */
async function consistentChain(cluster: FakeCluster, id: string, key: string): Promise<string[]> {
  const entry = await cluster.node(id).replicator.readEntry(table, key, { consistent: true });
  assert.ok(entry !== undefined && !entry.deleted);
  return (JSON.parse(entry.json) as { value: { writes: string[] } }).value.writes;
}

Deno.test(
  "Paxos: an isolated proposer cannot answer 201, and the majority's write survives the heal",
  async () => {
    await using cluster = await FakeCluster.start();
    const key = keyOnABC(cluster);
    assert.equal(await outcome(cluster.node(nodeA).replicator.write(cas(key, ["w1"], 0))), 1);
    cluster.network.partition([nodeA], [nodeB, nodeC]);
    // Through B: A (first replica) is unreachable, so B proposes; B and C are a majority.
    assert.equal(await outcome(cluster.node(nodeB).replicator.write(cas(key, ["w1", "w2-majority"], 1))), 2);
    // A still believes everyone alive; alone it is no majority, whatever it believes.
    assert.equal(
      await outcome(cluster.node(nodeA).replicator.write(cas(key, ["w1", "w2-minority"], 1))),
      "unavailable",
    );
    cluster.network.heal();
    for (const id of [nodeA, nodeB, nodeC]) {
      assert.deepEqual(await consistentChain(cluster, id, key), ["w1", "w2-majority"]);
    }
    // A's next write is ordered after the majority's, not after its own failed branch.
    assert.equal(
      await outcome(cluster.node(nodeA).replicator.write(cas(key, ["w1", "w2-majority", "w3"], 2))),
      3,
    );
    await cluster.network.settle();
    await cluster.drained(); // the proposer's own accept is written lazily
    for (const id of [nodeA, nodeB, nodeC]) {
      assert.deepEqual(chainOn(cluster, id, key), ["w1", "w2-majority", "w3"]);
    }
  },
);

Deno.test("Paxos: a paused proposer's queued write does not replace one acknowledged meanwhile", async () => {
  await using cluster = await FakeCluster.start();
  const key = keyOnABC(cluster);
  assert.equal(await outcome(cluster.node(nodeA).replicator.write(cas(key, ["w1"], 0))), 1);
  cluster.network.pause(nodeA);
  // Forwarded to A, which is paused: the client is told 503 (indeterminate).
  const paused = outcome(cluster.node(nodeB).replicator.write(cas(key, ["w1", "w2-paused"], 1)));
  assert.equal(await paused, "unavailable");
  // The others now believe A down and write the same version elsewhere.
  cluster.membership.set({ live: [nodeB, nodeC] });
  assert.equal(await outcome(cluster.node(nodeC).replicator.write(cas(key, ["w1", "w2-live"], 1))), 2);
  cluster.membership.set({ live: [nodeA, nodeB, nodeC] });
  cluster.network.resume(nodeA); // A now runs the forwarded write it had queued: If-Match 1 fails there
  await cluster.network.settle();
  for (const id of [nodeA, nodeB, nodeC]) {
    assert.deepEqual(await consistentChain(cluster, id, key), ["w1", "w2-live"]);
  }
  // A's own acceptor took its lost branch on resuming; the rounds since brought it onto the chosen one.
  for (const id of [nodeA, nodeB, nodeC]) assert.deepEqual(chainOn(cluster, id, key), ["w1", "w2-live"]);
});

Deno.test("Paxos: two proposers racing one If-Match get at most one 201 for that version", async () => {
  await using cluster = await FakeCluster.start();
  const key = keyOnABC(cluster);
  assert.equal(await outcome(cluster.node(nodeA).replicator.write(cas(key, ["w1"], 0))), 1);
  // B cannot reach A, so B proposes itself while A proposes too.
  cluster.network.partition([nodeB], [nodeA]);
  const [fromA, fromB] = await Promise.all([
    outcome(cluster.node(nodeA).replicator.write(cas(key, ["w1", "a"], 1))),
    outcome(cluster.node(nodeB).replicator.write(cas(key, ["w1", "b"], 1))),
  ]);
  cluster.network.heal();
  const won = [fromA, fromB].filter((result) => result === 2);
  assert.ok(won.length <= 1, `both got 201: ${fromA}, ${fromB}`);
  const chain = await consistentChain(cluster, nodeC, key);
  if (fromA === 2) assert.deepEqual(chain, ["w1", "a"]);
  if (fromB === 2) assert.deepEqual(chain, ["w1", "b"]);
  for (const result of [fromA, fromB]) {
    assert.ok(result === 2 || result === "version_conflict" || result === "unavailable", String(result));
  }
});

Deno.test("Paxos: the usual write is one accept round, without a prepare", async () => {
  await using cluster = await FakeCluster.start();
  const key = keyOnABC(cluster);
  const replicator = cluster.node(nodeA).replicator;
  assert.equal(await outcome(replicator.write(cas(key, ["w1"], 0))), 1);
  const prepares = () =>
    cluster.network.sentWhere({ kind: "paxos", source: nodeA }).flatMap(({ body }) =>
      (body as { items: Array<{ op: string }> }).items.filter((item) => item.op === "prepare")
    ).length;
  const before = prepares();
  assert.equal(before, 2, "the first write prepares on both peers");
  for (let version = 2; version <= 5; version += 1) {
    assert.equal(await outcome(replicator.write(cas(key, [`w${version}`], version - 1))), version);
  }
  assert.equal(prepares(), before, "later writes send no prepare");
  assert.equal(replicator.stats.fastPathWrites, 4);
});

Deno.test(
  "Paxos: an answer that does not answer its item is a failure, never an acknowledgement",
  async () => {
    await using cluster = await FakeCluster.start();
    const key = keyOnABC(cluster);
    // C answers every paxos item with "accepted", whatever it was asked; B is cut off.
    cluster.network.register(nodeC, {
      paxos: (body) =>
        Promise.resolve({
          results: (body as { items: unknown[] }).items.map(() => ({ result: "accepted" })),
        }),
    });
    cluster.network.partition([nodeA], [nodeB]);
    assert.equal(await outcome(cluster.node(nodeA).replicator.write(cas(key, ["w1"], 0))), "unavailable");
  },
);

Deno.test(
  "Paxos: a consistent read completes a write accepted by a minority, and reads agree after",
  async () => {
    await using cluster = await FakeCluster.start();
    const key = keyOnABC(cluster);
    assert.equal(await outcome(cluster.node(nodeA).replicator.write(cas(key, ["w1"], 0))), 1);
    // A's next write reaches only its own acceptor (the fast path's accept, then its prepare, fail
    // elsewhere).
    cluster.network.partition([nodeA], [nodeB, nodeC]);
    assert.equal(
      await outcome(cluster.node(nodeA).replicator.write(cas(key, ["w1", "w2"], 1))),
      "unavailable",
    );
    assert.deepEqual(chainOn(cluster, nodeA, key), ["w1", "w2"], "accepted by A alone");
    // Without A, the majority has not seen it: v1 is the latest chosen state.
    assert.deepEqual(await consistentChain(cluster, nodeB, key), ["w1"]);
    cluster.network.heal();
    // The unacknowledged write may take effect now (its 503 said so), but reads never go back: once one shows
    // it, every later one does.
    const reads: string[][] = [];
    for (const id of [nodeC, nodeA, nodeB, nodeC, nodeA]) reads.push(await consistentChain(cluster, id, key));
    assert.deepEqual(
      reads.at(-1),
      ["w1", "w2"],
      "A's own acceptor holds w2, so a round through A completes it",
    );
    for (let index = 1; index < reads.length; index += 1) {
      assert.deepEqual(
        reads[index]!.slice(0, reads[index - 1]!.length),
        reads[index - 1],
        `read ${index} went back`,
      );
    }
  },
);

Deno.test(
  "Paxos: refusals answer against the chosen state: 404, 403 and 409 as on a single node",
  async () => {
    await using cluster = await FakeCluster.start();
    const key = keyOnABC(cluster);
    const replicator = cluster.node(nodeB).replicator;
    const patch: ClientWrite = { op: "patch", table, key, value: { a: 1 }, conditions: { owner } };
    assert.equal(await outcome(replicator.write(patch)), "key_not_found");
    assert.equal(await outcome(replicator.write(cas(key, ["w1"], 0))), 1);
    assert.equal(await outcome(replicator.write(cas(key, ["again"], 0))), "version_conflict");
    const mallory: ClientWrite = { op: "put", table, key, value: 1, conditions: { owner: "mallory" } };
    assert.equal(await outcome(replicator.write(mallory)), "forbidden");
    const remove: ClientWrite = { op: "delete", table, key, conditions: { owner } };
    assert.equal(await outcome(replicator.write(remove)), 2);
    assert.equal(
      await outcome(replicator.write(cas(key, ["reborn"], 0))),
      3,
      "a tombstone keeps its version",
    );
  },
);
