// Goal: anti-entropy makes two replicas hold the same state of every key they share after one syncWith,
// in both directions and by the store's conflict rule (version, then timestamp, tombstones included);
// identical replicas exchange only the digest; keys the peer does not replicate are left out.
// start() runs rounds on the injected clock, and neither stop() nor catchUp() leaves a timer armed.
// Method: a FakeCluster of real Stores on MemoryFs over a fake Transport; syncWith() and round() are
// called directly, start()'s rounds run as the test advances the cluster's ManualClock (whose timerCount
// shows a timer left armed), and settle() waits for the far side's pushes.
import assert from "node:assert/strict";
import { digestBucketCount } from "../../../src/cluster/replication_wire.ts";
import type { ReplicaEntry, Store } from "../../../src/store/mod.ts";
import { InvalidRequestError } from "../../../src/util/errors.ts";
import { waitFor } from "../../helpers/wait_for.ts";
import { FakeCluster, findKey, nodeA, nodeB, nodeC } from "./fake_cluster.ts";

const table = "t";

function live(version: number, timestamp: number, valueJson: string): ReplicaEntry {
  return { version, timestamp, owner: "alice", deleted: false, valueJson };
}

function tombstone(version: number, timestamp: number): ReplicaEntry {
  return { version, timestamp, owner: "alice", deleted: true };
}

/** Every key of the store in replica form, tombstones included, by `table/key`. */
function dump(store: Store): Record<string, ReplicaEntry | undefined> {
  const result: Record<string, ReplicaEntry | undefined> = {};
  for (const { table: keyTable, key } of store.scan()) {
    result[`${keyTable}/${key}`] = store.replicaOf(keyTable, key);
  }
  return result;
}

async function seed(store: Store, states: Record<string, ReplicaEntry>): Promise<void> {
  await store.applyReplicas(Object.entries(states).map(([key, entry]) => ({ table, key, entry })));
}

Deno.test("AntiEntropy.syncWith() makes two replicas converge in both directions", async () => {
  await using cluster = await FakeCluster.start({ ids: [nodeA, nodeB] });
  const a = cluster.node(nodeA);
  const b = cluster.node(nodeB);
  await seed(a.store, {
    onlyOnA: live(1, 10, '"a"'),
    newerOnA: live(2, 10, '"a2"'),
    deletedOnB: live(2, 10, '"a"'),
    laterOnB: live(1, 10, '"early"'),
  });
  await seed(b.store, {
    onlyOnB: live(1, 10, '"b"'),
    newerOnA: live(1, 10, '"b1"'),
    deletedOnB: tombstone(3, 20),
    laterOnB: live(1, 20, '"late"'),
  });
  await a.antiEntropy.syncWith(nodeB);
  await cluster.network.settle();
  const expected = {
    [`${table}/onlyOnA`]: live(1, 10, '"a"'),
    [`${table}/onlyOnB`]: live(1, 10, '"b"'),
    [`${table}/newerOnA`]: live(2, 10, '"a2"'),
    [`${table}/deletedOnB`]: tombstone(3, 20),
    [`${table}/laterOnB`]: live(1, 20, '"late"'),
  };
  assert.deepEqual(dump(a.store), expected);
  assert.deepEqual(dump(b.store), expected);
  assert.equal(a.antiEntropy.roundCount, 1);
  assert.ok(a.antiEntropy.pushedCount > 0 && b.antiEntropy.pushedCount > 0, "both sides pushed");
  // A second round finds nothing left to repair.
  const sentBefore = cluster.network.sent.length;
  await b.antiEntropy.syncWith(nodeA);
  await cluster.network.settle();
  assert.deepEqual(cluster.network.sent.slice(sentBefore).map(({ kind }) => kind), ["digest"]);
});

Deno.test("AntiEntropy.syncWith() between identical replicas sends only the digest", async () => {
  await using cluster = await FakeCluster.start({ ids: [nodeA, nodeB] });
  const states = { k1: live(1, 10, "1"), k2: live(4, 10, "[2]"), k3: tombstone(2, 30) };
  await seed(cluster.node(nodeA).store, states);
  await seed(cluster.node(nodeB).store, states);
  await cluster.node(nodeA).antiEntropy.syncWith(nodeB);
  await cluster.network.settle();
  assert.deepEqual(cluster.network.sent.map(({ kind, target }) => [kind, target]), [["digest", nodeB]]);
  const digest = cluster.network.sent[0]!.body as { buckets: string[] };
  assert.equal(digest.buckets.length, digestBucketCount);
  assert.equal(cluster.node(nodeA).antiEntropy.pushedCount, 0);
  assert.equal(cluster.node(nodeB).antiEntropy.pushedCount, 0);
});

Deno.test(
  "AntiEntropy.syncWith() sees replicas as identical whatever their local commit sequences",
  async () => {
    await using cluster = await FakeCluster.start({ ids: [nodeA, nodeB] });
    const states = { k1: live(1, 10, "1"), k2: live(4, 10, "[2]"), k3: tombstone(2, 30) };
    // B took other writes first, and the same states in another order: every sequence differs from A's.
    await seed(cluster.node(nodeB).store, { other: live(1, 5, "0"), k3: tombstone(2, 30) });
    await seed(cluster.node(nodeB).store, { k2: live(4, 10, "[2]"), k1: live(1, 10, "1") });
    await seed(cluster.node(nodeA).store, { ...states, other: live(1, 5, "0") });
    await cluster.node(nodeA).antiEntropy.syncWith(nodeB);
    await cluster.network.settle();
    assert.deepEqual(cluster.network.sent.map(({ kind }) => kind), ["digest"]);
  },
);

Deno.test("AntiEntropy digests a large store in slices, letting other work run in between", async () => {
  await using cluster = await FakeCluster.start({ ids: [nodeA, nodeB] });
  const states = Object.fromEntries(
    Array.from({ length: 9_000 }, (_, index) => [`k${index}`, live(1, 10, "1")]),
  );
  await seed(cluster.node(nodeA).store, states);
  await seed(cluster.node(nodeB).store, states);
  let turns = 0;
  const timer = setInterval(() => turns += 1, 0);
  try {
    await cluster.node(nodeA).antiEntropy.syncWith(nodeB);
  } finally {
    clearInterval(timer);
  }
  // Two digests (one here, one on B) of 9,000 keys each, in slices of 2,000.
  assert.ok(turns >= 4, `other work ran ${turns} times during the round`);
  assert.deepEqual(cluster.network.sent.map(({ kind }) => kind), ["digest"]);
});

Deno.test("AntiEntropy.syncWith() leaves out keys the peer does not replicate", async () => {
  await using cluster = await FakeCluster.start({ config: { replicationFactor: 2 } });
  const placement = cluster.placement(nodeA);
  const notB = findKey((key) => {
    const replicas = placement.replicasOf(table, key);
    return replicas.includes(nodeA) && !replicas.includes(nodeB);
  });
  const shared = findKey((key) => {
    const replicas = placement.replicasOf(table, key);
    return replicas.includes(nodeA) && replicas.includes(nodeB);
  });
  await seed(cluster.node(nodeA).store, { [notB]: live(1, 10, "1") });
  await cluster.node(nodeA).antiEntropy.syncWith(nodeB);
  await cluster.network.settle();
  assert.deepEqual(cluster.network.sent.map(({ kind }) => kind), ["digest"]);
  assert.equal(cluster.node(nodeB).store.getEntry(table, notB), undefined);
  await seed(cluster.node(nodeA).store, { [shared]: live(1, 10, "1") });
  await cluster.node(nodeA).antiEntropy.syncWith(nodeB);
  await cluster.network.settle();
  assert.deepEqual(cluster.node(nodeB).store.replicaOf(table, shared), live(1, 10, "1"));
  assert.equal(cluster.node(nodeB).store.getEntry(table, notB), undefined);
  assert.equal(cluster.network.sentWhere({ target: nodeC }).length, 0);
});

Deno.test({
  name: "AntiEntropy.syncWith() repairs replicas that differ only in value at one version and timestamp",
  fn: async () => {
    await using cluster = await FakeCluster.start({ ids: [nodeA, nodeB] });
    await seed(cluster.node(nodeA).store, { k: live(1, 10, '"a"') });
    await seed(cluster.node(nodeB).store, { k: live(1, 10, '"b"') });
    await cluster.node(nodeA).antiEntropy.syncWith(nodeB);
    await cluster.network.settle();
    // The conflict rule picks the larger value JSON, '"b"', on both.
    assert.deepEqual(cluster.node(nodeA).store.replicaOf(table, "k"), live(1, 10, '"b"'));
    assert.deepEqual(cluster.node(nodeB).store.replicaOf(table, "k"), live(1, 10, '"b"'));
  },
});

Deno.test("AntiEntropy.round() syncs with a live peer and does nothing alone", async () => {
  await using cluster = await FakeCluster.start({ ids: [nodeA, nodeB] });
  cluster.membership.set({ live: [nodeA] });
  await cluster.node(nodeA).antiEntropy.round();
  assert.equal(cluster.network.sent.length, 0);
  assert.equal(cluster.node(nodeA).antiEntropy.roundCount, 0);
  cluster.membership.set({ live: [nodeA, nodeB] });
  await seed(cluster.node(nodeA).store, { k: live(1, 10, "1") });
  await cluster.node(nodeA).antiEntropy.round();
  await cluster.network.settle();
  assert.deepEqual(cluster.node(nodeB).store.replicaOf(table, "k"), live(1, 10, "1"));
});

Deno.test("AntiEntropy.handlers() refuse malformed digest and sync bodies", async () => {
  await using cluster = await FakeCluster.start({ ids: [nodeA, nodeB] });
  const { digest, sync } = cluster.node(nodeA).antiEntropy.handlers();
  const tooFew = { buckets: Array.from({ length: digestBucketCount - 1 }, () => "0.0") };
  await assert.rejects(async () => await digest!(tooFew, nodeB), InvalidRequestError);
  await assert.rejects(async () => await digest!({}, nodeB), InvalidRequestError);
  await assert.rejects(
    async () => await sync!({ bucket: digestBucketCount, summaries: [] }, nodeB),
    InvalidRequestError,
  );
  await assert.rejects(async () => await sync!({ bucket: 0 }, nodeB), InvalidRequestError);
  const empty = { buckets: Array.from({ length: digestBucketCount }, () => "0.0") };
  assert.deepEqual(await digest!(empty, nodeB), { differing: [] }, "empty stores agree");
});

Deno.test(
  "AntiEntropy.start() runs a round every antiEntropyIntervalMs of its clock until stop()",
  async () => {
    await using cluster = await FakeCluster.start({ ids: [nodeA, nodeB] });
    const { clock } = cluster;
    const antiEntropy = cluster.node(nodeA).antiEntropy;
    const intervalMs = cluster.config.antiEntropyIntervalMs;
    antiEntropy.start();
    antiEntropy.start();
    assert.equal(clock.timerCount, 1, "start() twice runs one timer chain");
    clock.advance(intervalMs - 1);
    assert.equal(antiEntropy.roundCount, 0);
    clock.advance(1);
    assert.equal(antiEntropy.roundCount, 1);
    await cluster.network.settle();
    await waitFor(() => clock.timerCount === 1, { timeoutMs: 2_000, what: "the next round's timer" });
    clock.advance(intervalMs);
    assert.equal(antiEntropy.roundCount, 2);
    await cluster.network.settle();
    antiEntropy.stop();
    assert.equal(clock.timerCount, 0, "stop() leaves no timer armed");
    clock.advance(10 * intervalMs);
    assert.equal(antiEntropy.roundCount, 2);
  },
);

Deno.test(
  "AntiEntropy: a round in flight across stop() and start() does not start a second timer chain",
  async () => {
    await using cluster = await FakeCluster.start({ ids: [nodeA, nodeB] });
    const { clock } = cluster;
    const antiEntropy = cluster.node(nodeA).antiEntropy;
    await seed(cluster.node(nodeA).store, { k: live(1, 10, "1") });
    cluster.network.pause(nodeB); // the round's digest request waits for B
    antiEntropy.start();
    clock.advance(cluster.config.antiEntropyIntervalMs);
    assert.equal(antiEntropy.roundCount, 1, "a round is in flight");
    antiEntropy.stop();
    antiEntropy.start();
    assert.equal(clock.timerCount, 1);
    cluster.network.resume(nodeB);
    await cluster.network.settle();
    assert.deepEqual(cluster.node(nodeB).store.replicaOf(table, "k"), live(1, 10, "1"), "the round ended");
    assert.equal(clock.timerCount, 1, "the old chain's round scheduled nothing");
    antiEntropy.stop();
    assert.equal(clock.timerCount, 0, "stop() leaves no timer armed");
  },
);

Deno.test("AntiEntropy.catchUp() clears its deadline's timer when every peer answers first", async () => {
  await using cluster = await FakeCluster.start({ ids: [nodeA, nodeB, nodeC] });
  await seed(cluster.node(nodeB).store, { k: live(1, 10, "1") });
  await cluster.node(nodeA).antiEntropy.catchUp(60_000);
  assert.equal(cluster.clock.timerCount, 0, "no deadline timer is left armed");
  assert.deepEqual(cluster.node(nodeA).store.replicaOf(table, "k"), live(1, 10, "1"));
});

Deno.test("AntiEntropy.catchUp() gives up at its deadline when a peer does not answer", async () => {
  await using cluster = await FakeCluster.start({ ids: [nodeA, nodeB] });
  cluster.network.pause(nodeB);
  let ended = false;
  const catchingUp = cluster.node(nodeA).antiEntropy.catchUp(5_000).then(() => ended = true);
  await Promise.resolve();
  cluster.clock.advance(4_999);
  await Promise.resolve();
  assert.equal(ended, false, "not before the deadline");
  assert.equal(cluster.clock.timerCount, 1, "the deadline's timer is still armed");
  cluster.clock.advance(1);
  await catchingUp;
  assert.equal(cluster.clock.timerCount, 0);
  cluster.network.resume(nodeB);
});
