// Goal: an expiry through Paxos (DESIGN.md, "Expiry (TTL)"): one tombstone of the next version, the same
// on every replica and published once per member, whoever proposes it and however many propose it at once;
// a write that extended the lifetime first is never expired; a paused proposer's late expiry is refused;
// a write on a key that expired here expires it first; the usual proposer goes first; a forwarded write
// keeps its lifetime.
// Method: a FakeCluster of real Stores on MemoryFs with a manual clock shared by every node.
import assert from "node:assert/strict";
import type { ClientWrite } from "../../../src/cluster/replicator.ts";
import { KvError } from "../../../src/util/errors.ts";
import { FakeCluster, findKey, nodeA, nodeB, nodeC, nodeD } from "./fake_cluster.ts";

const table = "t";
const alice = { owner: "alice" };
const graceMs = 2_000;

function put(key: string, value: unknown, ttlSecs?: number): ClientWrite {
  const write: ClientWrite = { op: "put", table, key, value, conditions: alice };
  if (ttlSecs !== undefined) write.ttlSecs = ttlSecs;
  return write;
}

/** A key of `table` whose replica set is A, B and C in this order. */
function keyOnABC(cluster: FakeCluster): string {
  const placement = cluster.placement(nodeA);
  return findKey((key) => placement.replicasOf(table, key).join() === [nodeA, nodeB, nodeC].join());
}

/** The events each node published for `key`, as `kind version json`. */
function eventsOf(cluster: FakeCluster, id: string, key: string): string[] {
  return cluster.node(id).sink.events.filter((event) => event.key === key).map((event) =>
    `${event.kind} ${event.version} ${event.json}`
  );
}

async function settled(cluster: FakeCluster): Promise<void> {
  await cluster.network.settle();
  await cluster.drained();
  await cluster.network.settle();
}

Deno.test(
  "Replicator.expire(): one tombstone of the next version on every replica, published once per member",
  async () => {
    await using cluster = await FakeCluster.start();
    const key = keyOnABC(cluster);
    const written = await cluster.node(nodeA).replicator.write(put(key, { a: 1 }, 5));
    assert.equal(written.expiresAt, cluster.clock.nowMs() + 5_000);
    assert.equal(await cluster.node(nodeA).replicator.expire({ table, key, version: 1 }), false, "not due");
    cluster.clock.advance(5_000);
    assert.equal(await cluster.node(nodeA).replicator.expire({ table, key, version: 1 }), true);
    assert.equal(await cluster.node(nodeB).replicator.expire({ table, key, version: 1 }), false, "once");
    await settled(cluster);
    const tombstone = `{"key":"${key}","version":2,"timestamp":${cluster.clock.nowMs()},"reason":"expired"}`;
    for (const id of [nodeA, nodeB, nodeC]) {
      assert.equal(cluster.node(id).store.getEntry(table, key)!.json, tombstone, id);
      assert.deepEqual(
        eventsOf(cluster, id, key),
        [`Updated 1 ${written.json}`, `Deleted 2 ${tombstone}`],
        id,
      );
    }
    assert.equal(cluster.node(nodeA).replicator.stats.expiredKeys, 1);
    assert.equal(cluster.node(nodeB).replicator.stats.expiredKeys, 0);
  },
);

Deno.test(
  "Replicator.expire(): three replicas expiring one key at once make one version between them",
  async () => {
    await using cluster = await FakeCluster.start();
    const key = keyOnABC(cluster);
    await cluster.node(nodeA).replicator.write(put(key, "v", 1));
    cluster.clock.advance(1_000);
    const outcomes: Array<boolean | string> = await Promise.all(
      [nodeA, nodeB, nodeC].map((id) =>
        cluster.node(id).replicator.expire({ table, key, version: 1 }).catch((error: unknown) => {
          if (error instanceof KvError) return error.code; // a duel may run out of attempts: retried later
          throw error;
        })
      ),
    );
    assert.ok(outcomes.filter((outcome) => outcome === true).length <= 1, String(outcomes));
    // Whatever the duel did, a later round finds the key expired once: version 2, then nothing more.
    await cluster.node(nodeC).replicator.expire({ table, key, version: 1 }).catch(() => false);
    const state = await cluster.node(nodeB).replicator.readEntry(table, key, { consistent: true });
    assert.equal(state!.version, 2);
    assert.equal(state!.deleted, true);
    await settled(cluster);
    for (const id of [nodeA, nodeB, nodeC]) {
      // One tombstone: a duel's loser may publish the winner's state again, with the same version and bytes.
      const deletes = [...new Set(eventsOf(cluster, id, key).filter((event) => event.startsWith("Deleted")))];
      assert.equal(deletes.length, 1, `${id}: ${deletes.join(" | ")}`);
      assert.equal(deletes[0]!.endsWith(',"reason":"expired"}'), true);
    }
  },
);

Deno.test(
  "Replicator: a write that extended the lifetime before the expiry wins; the old version is not " +
    "expired",
  async () => {
    await using cluster = await FakeCluster.start();
    const key = keyOnABC(cluster);
    await cluster.node(nodeA).replicator.write(put(key, "short", 2));
    cluster.clock.advance(1_999);
    const extended = await cluster.node(nodeB).replicator.write(put(key, "longer", 60));
    assert.equal(extended.version, 2);
    cluster.clock.advance(1);
    assert.equal(await cluster.node(nodeA).replicator.expire({ table, key, version: 1 }), false);
    assert.equal(await cluster.node(nodeC).replicator.expire({ table, key, version: 1 }), false);
    const state = await cluster.node(nodeC).replicator.readEntry(table, key, { consistent: true });
    assert.equal(state!.version, 2);
    assert.equal(state!.deleted, false);
    assert.equal(state!.expiresAt, JSON.parse(extended.json).expires_at);
  },
);

Deno.test("Replicator: a paused proposer's expiry after the others expired the key is refused", async () => {
  await using cluster = await FakeCluster.start();
  const key = keyOnABC(cluster);
  await cluster.node(nodeA).replicator.write(put(key, "v", 1)); // A is the usual proposer, fast path next
  cluster.clock.advance(1_000);
  cluster.network.pause(nodeA);
  cluster.membership.set({ live: [nodeB, nodeC] });
  assert.equal(await cluster.node(nodeB).replicator.expire({ table, key, version: 1 }), true);
  cluster.membership.set({ live: [nodeA, nodeB, nodeC] });
  cluster.clock.advance(1); // A's clock moved on while it was paused
  // A wakes up still holding version 1, due: its one-round accept carries an old ballot.
  const late = cluster.node(nodeA).replicator.expire({ table, key, version: 1 });
  cluster.network.resume(nodeA);
  assert.equal(await late.catch((error: unknown) => (error as KvError).code), false);
  await settled(cluster);
  for (const id of [nodeA, nodeB, nodeC]) {
    const state = await cluster.node(id).replicator.readEntry(table, key, { consistent: true });
    assert.equal(state!.version, 2, id);
    // A's refused round chose B's tombstone again at its own ballot (a refusal is a statement about a
    // chosen state) and published it again: the same version and bytes, which a broker shows once.
    const deletes = new Set(eventsOf(cluster, id, key).filter((event) => event.startsWith("Deleted")));
    assert.equal(deletes.size, 1, `${id}: ${[...deletes].join(" | ")}`);
  }
});

Deno.test(
  "Replicator.write() on a key expired here expires it first: Deleted(expired), then the new value",
  async () => {
    await using cluster = await FakeCluster.start();
    const key = keyOnABC(cluster);
    await cluster.node(nodeA).replicator.write(put(key, "old", 1));
    cluster.clock.advance(1_000);
    const bob = { op: "put", table, key, value: "bob's", conditions: { owner: "bob" } } as const;
    const recreated = await cluster.node(nodeA).replicator.write(bob);
    assert.equal(recreated.version, 3, "after the expiry tombstone");
    await settled(cluster);
    assert.deepEqual(eventsOf(cluster, nodeC, key).map((event) => event.split(" ").slice(0, 2).join(" ")), [
      "Updated 1",
      "Deleted 2",
      "Updated 3",
    ]);
    assert.equal(eventsOf(cluster, nodeC, key)[1]!.endsWith(',"reason":"expired"}'), true);
    assert.equal(cluster.node(nodeA).store.getEntry(table, key)!.owner, "bob");
  },
);

Deno.test(
  "Replicator.expiryDelayMs(): the usual proposer at once, other replicas after the grace, others " +
    "never",
  async () => {
    await using cluster = await FakeCluster.start({ ids: [nodeA, nodeB, nodeC, nodeD] });
    const placement = cluster.placement(nodeA);
    const key = findKey((candidate) =>
      placement.replicasOf(table, candidate).join() === [nodeB, nodeC, nodeD].join()
    );
    await cluster.node(nodeC).replicator.write(put(key, "v", 1)); // C proposed it: its acceptors name C
    await settled(cluster);
    const delays = () =>
      [nodeA, nodeB, nodeC, nodeD].map((id) =>
        cluster.node(id).replicator.expiryDelayMs(table, key, graceMs)
      );
    assert.deepEqual(delays(), [undefined, graceMs, 0, graceMs]);
    // C is believed down: the first live replica in ring order takes over at once (C, if it runs, believes
    // itself alive and goes on too: the conditional change decides).
    cluster.membership.set({ live: [nodeA, nodeB, nodeD] });
    assert.deepEqual(delays(), [undefined, 0, 0, graceMs]);
  },
);

Deno.test("Replicator: a write forwarded to the key's proposer keeps its lifetime", async () => {
  await using cluster = await FakeCluster.start({ ids: [nodeA, nodeB, nodeC, nodeD] });
  const placement = cluster.placement(nodeA);
  const key = findKey((candidate) => !placement.replicasOf(table, candidate).includes(nodeA));
  const written = await cluster.node(nodeA).replicator.write(put(key, { s: 1 }, 7));
  assert.equal(JSON.parse(written.json).expires_at, cluster.clock.nowMs() + 7_000);
  const replica = placement.replicasOf(table, key)[0]!;
  await settled(cluster);
  assert.equal(cluster.node(replica).store.getEntry(table, key)!.expiresAt, cluster.clock.nowMs() + 7_000);
  const read = await cluster.node(nodeA).replicator.readEntry(table, key);
  assert.equal(read!.expiresAt, cluster.clock.nowMs() + 7_000, "a forwarded read carries the lifetime");
});
