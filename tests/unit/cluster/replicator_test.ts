// Goal: placement and the Replicator's write, read and hint paths: where a key lives, who coordinates a
// write, when a forwarded write may be retried elsewhere, what a client sees when the quorum is missed,
// how hints reach a replica that comes back, what the internal handlers answer, and read repair.
// Method: a FakeCluster of real Stores on MemoryFs wired by a fake Transport that can make a target
// unreachable or time out, and a fake MembershipView changed by hand; settle() waits for background work.
import assert from "node:assert/strict";
import { waitFor } from "../../helpers/wait_for.ts";
import { PeerRequestError, UnknownKindError, usersTable } from "../../../src/cluster/mod.ts";
import type { ApplyItem } from "../../../src/cluster/replication_wire.ts";
import { type ClientWrite, ForwardedError, writeQuorumOf } from "../../../src/cluster/replicator.ts";
import { InvalidRequestError, KvError, UnavailableError } from "../../../src/util/errors.ts";
import { type CreateOptions, MemoryFs } from "../../../src/store/mod.ts";
import { FaultyFs } from "../../helpers/faulty_fs.ts";
import {
  FakeCluster,
  findKey,
  nodeA,
  nodeB,
  nodeC,
  nodeD,
  placementOf,
  testClusterConfig,
} from "./fake_cluster.ts";

const table = "t";
const alice = { owner: "alice" };

function put(key: string, value: unknown, conditions: ClientWrite["conditions"] = alice): ClientWrite {
  return { op: "put", table, key, value, conditions };
}

/** A key of `table` whose replicas, in preference order, start with `prefix`. */
function keyWithReplicas(cluster: FakeCluster, prefix: readonly string[], keyTable = table): string {
  const placement = cluster.placement(nodeA);
  return findKey((key) => {
    const replicas = placement.replicasOf(keyTable, key);
    return prefix.every((id, index) => replicas[index] === id);
  });
}

function versionOn(cluster: FakeCluster, id: string, key: string, keyTable = table): number | undefined {
  return cluster.node(id).store.getEntry(keyTable, key)?.version;
}

// --- placement.ts ---------------------------------------------------------------------------------------

Deno.test("Placement.replicasOf() gives replicationFactor distinct members, the same on every node", () => {
  const ring = [nodeA, nodeB, nodeC, nodeD];
  const seenFromA = placementOf({ self: nodeA, ringIds: ring });
  const seenFromD = placementOf({ self: nodeD, ringIds: [...ring].reverse() });
  const firsts = new Set<string>();
  for (let index = 0; index < 200; index += 1) {
    const replicas = seenFromA.replicasOf(table, `k${index}`);
    assert.equal(replicas.length, 3);
    assert.equal(new Set(replicas).size, 3);
    for (const id of replicas) assert.ok(ring.includes(id));
    assert.deepEqual(seenFromD.replicasOf(table, `k${index}`), replicas);
    firsts.add(replicas[0]!);
  }
  assert.equal(firsts.size, 4, "every member coordinates some keys");
});

Deno.test("Placement.replicasOf() puts users on every ring member and caps at the ring size", () => {
  const ring = [nodeA, nodeB, nodeC, nodeD];
  const placement = placementOf({ self: nodeA, ringIds: ring });
  assert.deepEqual([...placement.replicasOf(usersTable, "alice")].sort(), ring);
  const small = placementOf({ self: nodeA, ringIds: [nodeA, nodeB] });
  assert.deepEqual([...small.replicasOf(table, "k")].sort(), [nodeA, nodeB]);
  assert.deepEqual(placementOf({ self: nodeA, ringIds: [] }).replicasOf(table, "k"), []);
});

Deno.test("Placement.fullyReplicated holds while the ring is no larger than the replication factor", () => {
  const config = testClusterConfig({ replicationFactor: 3 });
  assert.equal(placementOf({ self: nodeA, ringIds: [nodeA, nodeB], config }).fullyReplicated, true);
  assert.equal(placementOf({ self: nodeA, ringIds: [nodeA, nodeB, nodeC], config }).fullyReplicated, true);
  assert.equal(
    placementOf({ self: nodeA, ringIds: [nodeA, nodeB, nodeC, nodeD], config }).fullyReplicated,
    false,
  );
});

Deno.test("Placement.isLive() counts self as live always and other members only when listed", () => {
  const placement = placementOf({ self: nodeC, ringIds: [nodeA, nodeB, nodeC], liveIds: [nodeB, nodeA] });
  assert.equal(placement.isLive(nodeA), true);
  assert.equal(placement.isLive(nodeC), true, "self is live even when the view omits it");
  assert.equal(placement.isLive(nodeD), false);
  assert.deepEqual(placement.liveIds(), [nodeA, nodeB, nodeC]);
  const down = placementOf({ self: nodeA, ringIds: [nodeA, nodeB, nodeC], liveIds: [nodeA] });
  assert.equal(down.isLive(nodeB), false);
  assert.deepEqual(down.ringIds, [nodeA, nodeB, nodeC], "a member down stays in the ring");
});

Deno.test("Placement.alone holds only for a single member, alone in the ring and among the live", () => {
  assert.equal(placementOf({ self: nodeA, ringIds: [nodeA] }).alone, true);
  assert.equal(placementOf({ self: nodeA, ringIds: [nodeA, nodeB], liveIds: [nodeA] }).alone, false);
  assert.equal(
    placementOf({ self: nodeA, ringIds: [nodeA], liveIds: [nodeA, nodeB] }).alone,
    false,
    "a live peer",
  );
  assert.equal(
    placementOf({ self: nodeA, ringIds: [nodeB], liveIds: [nodeA] }).alone,
    false,
    "left the ring",
  );
});

// --- writeQuorumOf ----------------------------------------------------------------------------------------

Deno.test("writeQuorumOf() is a majority by default, the configured count capped, and all for users", () => {
  const rows: Array<[table: string, replicaCount: number, writeQuorum: number, expected: number]> = [
    [table, 1, 0, 1],
    [table, 2, 0, 2],
    [table, 3, 0, 2],
    [table, 4, 0, 3],
    [table, 5, 0, 3],
    [table, 3, 1, 1],
    [table, 3, 2, 2],
    [table, 3, 3, 3],
    [table, 2, 3, 2],
    [usersTable, 1, 0, 1],
    [usersTable, 3, 0, 3],
    [usersTable, 5, 1, 5],
  ];
  for (const [rowTable, replicaCount, writeQuorum, expected] of rows) {
    assert.equal(
      writeQuorumOf({ table: rowTable, replicaCount, config: { writeQuorum } }),
      expected,
      `${rowTable} with ${replicaCount} replicas and writeQuorum ${writeQuorum}`,
    );
  }
});

// --- Replicator.write -------------------------------------------------------------------------------------

Deno.test("Replicator.write() coordinates locally when this node is the key's first live replica", async () => {
  await using cluster = await FakeCluster.start();
  const key = keyWithReplicas(cluster, [nodeA]);
  const entry = await cluster.node(nodeA).replicator.write(put(key, { n: 1 }));
  assert.equal(entry.version, 1);
  assert.equal(versionOn(cluster, nodeA, key), 1);
  assert.equal(cluster.network.sentWhere({ kind: "writes" }).length, 0);
  await cluster.network.settle();
  assert.deepEqual(
    cluster.node(nodeB).store.replicaOf(table, key),
    cluster.node(nodeA).store.replicaOf(table, key),
  );
  assert.deepEqual(
    cluster.node(nodeC).store.replicaOf(table, key),
    cluster.node(nodeA).store.replicaOf(table, key),
  );
  assert.equal(cluster.node(nodeA).replicator.stats.forwardedWrites, 0);
});

Deno.test("Replicator.write() forwards to the first live replica when that is another node", async () => {
  await using cluster = await FakeCluster.start();
  const key = keyWithReplicas(cluster, [nodeB]);
  const entry = await cluster.node(nodeA).replicator.write(put(key, { n: 1 }));
  assert.equal(entry.version, 1);
  assert.equal(entry.json, cluster.node(nodeB).store.getEntry(table, key)?.json);
  assert.deepEqual(
    cluster.network.sentWhere({ kind: "writes" }).map(({ source, target }) => [source, target]),
    [[nodeA, nodeB]],
  );
  assert.equal(cluster.node(nodeA).replicator.stats.forwardedWrites, 1);
  await cluster.network.settle();
  assert.equal(versionOn(cluster, nodeA, key), 1, "the coordinator replicated back to the forwarder");
});

Deno.test("Replicator.write() retries on the next live replica when the first is unreachable", async () => {
  await using cluster = await FakeCluster.start();
  const key = keyWithReplicas(cluster, [nodeB, nodeC, nodeA]);
  cluster.network.fail(nodeB, "unreachable");
  const entry = await cluster.node(nodeA).replicator.write(put(key, { n: 1 }));
  assert.equal(entry.version, 1);
  assert.deepEqual(cluster.network.sentWhere({ kind: "writes" }).map(({ target }) => target), [nodeB, nodeC]);
  assert.equal(versionOn(cluster, nodeC, key), 1, "C coordinated");
  assert.equal(versionOn(cluster, nodeB, key), undefined);
  await cluster.network.settle();
  assert.equal(cluster.node(nodeC).replicator.stats.hintCount, 1, "C keeps a hint for unreachable B");
});

Deno.test("Replicator.write() coordinates itself when it is the next live replica after an unreachable one", async () => {
  await using cluster = await FakeCluster.start();
  const key = keyWithReplicas(cluster, [nodeB, nodeA]);
  cluster.network.fail(nodeB, "unreachable");
  const entry = await cluster.node(nodeA).replicator.write(put(key, { n: 1 }));
  assert.equal(entry.version, 1);
  assert.equal(versionOn(cluster, nodeA, key), 1);
  assert.deepEqual(cluster.network.sentWhere({ kind: "writes" }).map(({ target }) => target), [nodeB]);
});

Deno.test("Replicator.write() does not retry elsewhere after a timeout: the write may have applied", async () => {
  await using cluster = await FakeCluster.start();
  const key = keyWithReplicas(cluster, [nodeB, nodeC, nodeA]);
  cluster.network.fail(nodeB, "timeout");
  await assert.rejects(cluster.node(nodeA).replicator.write(put(key, { n: 1 })), (error) => {
    assert.ok(error instanceof UnavailableError);
    assert.equal(error.code, "unavailable");
    assert.match(error.message, /coordinator did not answer/);
    assert.ok(error.cause instanceof PeerRequestError);
    assert.equal(error.cause.failure, "timeout");
    return true;
  });
  assert.deepEqual(cluster.network.sentWhere({ kind: "writes" }).map(({ target }) => target), [nodeB]);
  for (const id of [nodeA, nodeB, nodeC]) assert.equal(versionOn(cluster, id, key), undefined);
});

Deno.test("Replicator.write() fails with UnavailableError when no replica is live", async () => {
  await using cluster = await FakeCluster.start({ config: { replicationFactor: 2 } });
  const key = keyWithReplicas(cluster, [nodeB, nodeC]);
  cluster.membership.set({ live: [nodeA] });
  await assert.rejects(
    cluster.node(nodeA).replicator.write(put(key, 1)),
    (error) => error instanceof UnavailableError && /none of its 2 replicas is up/.test(error.message),
  );
  assert.equal(cluster.network.sent.length, 0);
});

Deno.test("Replicator.write() re-raises a forwarded error with the coordinator's code", async () => {
  await using cluster = await FakeCluster.start();
  const key = keyWithReplicas(cluster, [nodeB]);
  const replicator = cluster.node(nodeA).replicator;
  await replicator.write(put(key, { n: 1 }));
  const missing = findKey(
    (candidate) => cluster.placement(nodeA).replicasOf(table, candidate)[0] === nodeB,
    "m",
  );
  const cases: Array<[ClientWrite, string]> = [
    [put(key, { n: 2 }, { owner: "bob" }), "forbidden"],
    [put(key, { n: 2 }, { owner: "alice", ifVersion: 7 }), "version_conflict"],
    [{ op: "patch", table, key: missing, value: { a: 1 }, conditions: alice }, "key_not_found"],
    [{ op: "patch", table, key, value: [1], conditions: alice }, "invalid_request"],
  ];
  for (const [request, code] of cases) {
    await assert.rejects(replicator.write(request), (error) => {
      assert.ok(error instanceof ForwardedError, `${code}: ${error}`);
      assert.equal(error.code, code);
      return true;
    });
  }
  assert.equal(versionOn(cluster, nodeB, key), 1);
});

Deno.test("Replicator.write() turns a forwarded code it does not pass on into unavailable", async () => {
  await using cluster = await FakeCluster.start();
  const key = keyWithReplicas(cluster, [nodeB]);
  cluster.network.register(nodeB, {
    writes: () =>
      Promise.resolve({ results: [{ error: { code: "wal_corrupt", message: "segment 3 is corrupt" } }] }),
  });
  await assert.rejects(cluster.node(nodeA).replicator.write(put(key, 1)), (error) => {
    assert.ok(error instanceof ForwardedError);
    assert.equal(error.code, "unavailable");
    assert.equal(error.message, "segment 3 is corrupt");
    return true;
  });
});

Deno.test("Replicator.write() sends forwarded writes that wait together in one request, each answered alone", async () => {
  await using cluster = await FakeCluster.start();
  const [first, second, bobs] = ["f", "s", "b"].map((prefix) =>
    findKey((key) => cluster.placement(nodeA).replicasOf(table, key)[0] === nodeB, prefix)
  ) as [string, string, string];
  await cluster.node(nodeC).replicator.write(put(bobs, "bob's", { owner: "bob" }));
  await cluster.network.settle();
  const requestsBefore = cluster.network.sentWhere({ kind: "writes", source: nodeA }).length;
  const replicator = cluster.node(nodeA).replicator;
  const results = await Promise.allSettled([
    replicator.write(put(first, 1)),
    replicator.write(put(second, 2)),
    replicator.write(put(bobs, "alice's")),
  ]);
  const batches = cluster.network.sentWhere({ kind: "writes", source: nodeA }).slice(requestsBefore)
    .map(({ body }) => (body as { items: { key: string }[] }).items.map((item) => item.key));
  assert.deepEqual(batches, [[first], [second, bobs]], "the first goes at once, the next two wait together");
  assert.equal(results[0].status === "fulfilled" && results[0].value.version, 1);
  assert.equal(results[1].status === "fulfilled" && JSON.parse(results[1].value.json).value, 2);
  assert.ok(results[2].status === "rejected" && results[2].reason instanceof ForwardedError);
  assert.equal((results[2].reason as ForwardedError).code, "forbidden");
  const kept = cluster.node(nodeB).store.getEntry(table, bobs);
  assert.deepEqual([kept?.owner, kept?.version], ["bob", 1], "the refused one changed nothing");
});

Deno.test("Replicator.write() forwards alone to a coordinator that does not serve batches (an older node)", async () => {
  await using cluster = await FakeCluster.start();
  const key = keyWithReplicas(cluster, [nodeB]);
  cluster.network.register(nodeB, { writes: () => Promise.reject(new UnknownKindError("writes")) });
  const entry = await cluster.node(nodeA).replicator.write(put(key, { n: 1 }));
  assert.equal(entry.version, 1);
  assert.deepEqual(cluster.network.sentWhere({ kind: "write" }).map(({ target }) => target), [nodeB]);
  assert.equal(versionOn(cluster, nodeB, key), 1);
});

Deno.test("Replicator.write() answers UnavailableError when the quorum is missed, keeping hints", async () => {
  await using cluster = await FakeCluster.start();
  const key = keyWithReplicas(cluster, [nodeA]);
  cluster.network.fail(nodeB, "unreachable");
  cluster.network.fail(nodeC, "unreachable");
  const replicator = cluster.node(nodeA).replicator;
  await assert.rejects(
    replicator.write(put(key, { n: 1 })),
    (error) =>
      error instanceof UnavailableError &&
      /durable on 1 of 3 replicas; the write quorum is 2/.test(error.message),
  );
  assert.equal(versionOn(cluster, nodeA, key), 1, "durable on the coordinator: indeterminate, not lost");
  await cluster.network.settle();
  assert.equal(replicator.stats.hintCount, 2);
});

Deno.test("Replicator.write() succeeds with a quorum of 2 of 3 while one live replica fails", async () => {
  await using cluster = await FakeCluster.start();
  const key = keyWithReplicas(cluster, [nodeA]);
  cluster.network.fail(nodeC, "unreachable");
  const replicator = cluster.node(nodeA).replicator;
  const entry = await replicator.write(put(key, { n: 1 }));
  assert.equal(entry.version, 1);
  await cluster.network.settle();
  assert.equal(versionOn(cluster, nodeB, key), 1);
  assert.equal(replicator.stats.hintCount, 1);
});

Deno.test("Replicator.write() ships a write to the other replicas before its own fsync finishes", async () => {
  await using cluster = await FakeCluster.start();
  const key = keyWithReplicas(cluster, [nodeA]);
  const coordinatorVersions: Array<number | undefined> = [];
  for (const id of [nodeB, nodeC]) {
    const apply = cluster.node(id).replicator.handlers().apply!;
    cluster.network.register(id, {
      apply: (body, sender) => {
        coordinatorVersions.push(versionOn(cluster, nodeA, key));
        return apply(body, sender);
      },
    });
  }
  const entry = await cluster.node(nodeA).replicator.write(put(key, { n: 1 }));
  assert.equal(entry.version, 1);
  assert.deepEqual(coordinatorVersions, [undefined, undefined], "sent while not yet durable on A");
  await cluster.network.settle();
  assert.equal(versionOn(cluster, nodeB, key), 1);
  assert.equal(versionOn(cluster, nodeC, key), 1);
});

Deno.test("Replicator.write() answers unavailable when a write shipped to replicas fails to sync here", async () => {
  const faultyFs = new FaultyFs(new MemoryFs());
  await using cluster = await FakeCluster.start({ fsOf: (id) => id === nodeA ? faultyFs : new MemoryFs() });
  const key = keyWithReplicas(cluster, [nodeA]);
  faultyFs.failSyncs();
  await assert.rejects(cluster.node(nodeA).replicator.write(put(key, { n: 1 })), (error) => {
    assert.ok(error instanceof UnavailableError);
    assert.match(error.message, /may or may not win/);
    assert.ok(error.cause instanceof KvError);
    return true;
  });
  await cluster.network.settle();
  assert.equal(versionOn(cluster, nodeB, key), 1, "the replicas took it: the outcome is indeterminate");
  faultyFs.heal();
});

Deno.test("Replicator.write() of a new key waits for the first catch-up answer only, applying later ones", async () => {
  await using cluster = await FakeCluster.start();
  const key = keyWithReplicas(cluster, [nodeA, nodeB, nodeC]);
  const newer = { version: 5, timestamp: 50, owner: "bob", deleted: false, valueJson: '"bob\'s"' };
  await cluster.node(nodeC).store.applyReplicas([{ table, key, entry: newer }]);
  let releaseC = () => {};
  const heldC = new Promise<void>((resolve) => releaseC = resolve);
  const read = cluster.node(nodeC).replicator.handlers().read!;
  cluster.network.register(nodeC, { read: async (body, sender) => (await heldC, await read(body, sender)) });
  const entry = await cluster.node(nodeA).replicator.write(put(key, { n: 1 }));
  assert.equal(entry.version, 1, "B's empty answer with A's own makes a read quorum of 2 of 3");
  releaseC();
  await waitFor(() => versionOn(cluster, nodeA, key) === 5, { timeoutMs: 2_000 });
  assert.equal(cluster.node(nodeA).store.getEntry(table, key)?.owner, "bob", "the late, newer answer won");
});

Deno.test("Replicator.write() forwarded by a replica counts the forwarder's state and reads nobody", async () => {
  await using cluster = await FakeCluster.start();
  const key = keyWithReplicas(cluster, [nodeA, nodeB, nodeC]);
  const entry = await cluster.node(nodeB).replicator.write(put(key, { n: 1 }));
  assert.equal(entry.version, 1);
  await cluster.network.settle();
  assert.deepEqual(cluster.network.sentWhere({ kind: "read" }), [], "B's state and A's make a quorum");
  const bobs = { version: 3, timestamp: 50, owner: "bob", deleted: false, valueJson: '"bob\'s"' };
  const other = findKey((candidate) => {
    const replicas = cluster.placement(nodeA).replicasOf(table, candidate);
    return replicas[0] === nodeA && replicas[1] === nodeB;
  }, "bob");
  await cluster.node(nodeB).store.applyReplicas([{ table, key: other, entry: bobs }]);
  await assert.rejects(
    cluster.node(nodeB).replicator.write(put(other, "alice's")),
    (error) => error instanceof ForwardedError && error.code === "forbidden",
  );
  assert.equal(versionOn(cluster, nodeA, other), 3, "the coordinator took the forwarder's state");
});

Deno.test("Replicator.write() of a user waits for every live replica", async () => {
  await using cluster = await FakeCluster.start({ config: { writeQuorum: 1 } });
  const key = keyWithReplicas(cluster, [nodeA], usersTable);
  cluster.network.fail(nodeC, "unreachable");
  const user = (name: string): ClientWrite => ({
    op: "put",
    table: usersTable,
    key: name,
    value: { hash: "x" },
    conditions: alice,
  });
  await assert.rejects(
    cluster.node(nodeA).replicator.write(user(key)),
    (error) => error instanceof UnavailableError && /write quorum is 3/.test(error.message),
  );
  // A replica believed down does not count against the quorum: it gets a hint instead.
  cluster.membership.set({ live: [nodeA, nodeB] });
  const other = findKey((name) => cluster.placement(nodeA).replicasOf(usersTable, name)[0] === nodeA, "u");
  const entry = await cluster.node(nodeA).replicator.write(user(other));
  assert.equal(entry.version, 1);
  assert.equal(versionOn(cluster, nodeB, other, usersTable), 1, "acknowledged by B before the answer");
});

Deno.test("Replicator hints a replica believed down and delivers when membership shows it alive", async () => {
  await using cluster = await FakeCluster.start();
  const key = keyWithReplicas(cluster, [nodeA]);
  const replicator = cluster.node(nodeA).replicator;
  cluster.membership.set({ live: [nodeA, nodeB] });
  await replicator.write(put(key, { n: 1 }));
  await replicator.write(put(key, { n: 2 }));
  await cluster.network.settle();
  assert.equal(replicator.stats.hintCount, 1, "one hint per (replica, key)");
  assert.equal(cluster.network.sentWhere({ target: nodeC }).length, 0);
  assert.equal(versionOn(cluster, nodeC, key), undefined);
  cluster.membership.set({ ring: [nodeA, nodeB, nodeC] }); // a change that still shows C down
  await cluster.network.settle();
  assert.equal(replicator.stats.hintCount, 1);
  cluster.membership.set({ live: [nodeA, nodeB, nodeC] });
  assert.equal(replicator.stats.hintCount, 0);
  await cluster.network.settle();
  assert.equal(versionOn(cluster, nodeC, key), 2, "the hint carries the key's current state");
});

Deno.test("Replicator re-hints a key whose hint delivery failed", async () => {
  await using cluster = await FakeCluster.start();
  const key = keyWithReplicas(cluster, [nodeA]);
  const replicator = cluster.node(nodeA).replicator;
  cluster.membership.set({ live: [nodeA, nodeB] });
  await replicator.write(put(key, { n: 1 }));
  cluster.network.fail(nodeC, "unreachable");
  cluster.membership.set({ live: [nodeA, nodeB, nodeC] });
  await cluster.network.settle();
  assert.equal(replicator.stats.hintCount, 1);
  cluster.network.restore(nodeC);
  cluster.membership.set({ live: [nodeA, nodeB, nodeC] });
  await cluster.network.settle();
  assert.equal(replicator.stats.hintCount, 0);
  assert.equal(versionOn(cluster, nodeC, key), 1);
});

Deno.test("Replicator.write() notifies live non-replicas so their subscribers see the change", async () => {
  await using cluster = await FakeCluster.start({ config: { replicationFactor: 2 } });
  const key = keyWithReplicas(cluster, [nodeA, nodeB]);
  await cluster.node(nodeA).replicator.write(put(key, { n: 1 }));
  await cluster.network.settle();
  assert.equal(versionOn(cluster, nodeC, key), undefined, "C does not store the key");
  const events = cluster.node(nodeC).sink.events;
  assert.equal(events.length, 1);
  assert.equal(events[0]!.kind, "Updated");
  assert.equal(events[0]!.key, key);
  assert.equal(events[0]!.version, 1);
  assert.equal(events[0]!.json, cluster.node(nodeA).store.getEntry(table, key)?.json);
  assert.equal(cluster.node(nodeB).sink.events.length, 0, "a replica publishes through its store");
});

Deno.test("Replicator.close() unsubscribes from membership", async () => {
  await using cluster = await FakeCluster.start();
  assert.equal(cluster.membership.listenerCount, 3);
  cluster.node(nodeA).replicator.close();
  assert.equal(cluster.membership.listenerCount, 2);
});

// --- handlers -----------------------------------------------------------------------------------------------

Deno.test("Replicator.handlers().apply stores replicas by the conflict rule and publishes notifications", async () => {
  await using cluster = await FakeCluster.start();
  const { apply } = cluster.node(nodeA).replicator.handlers();
  const entry = { version: 3, timestamp: 5, owner: "alice", deleted: false, valueJson: '{"n":3}' };
  const items: ApplyItem[] = [
    { store: true, table, key: "stored", entry },
    { store: false, table, key: "elsewhere", kind: "Deleted", version: 4, json: "{}" },
  ];
  assert.deepEqual(await apply!({ items }, nodeB), {
    results: [{ result: "applied" }, { result: "applied" }],
  });
  assert.deepEqual(cluster.node(nodeA).store.replicaOf(table, "stored"), entry);
  assert.equal(cluster.node(nodeA).store.getEntry(table, "elsewhere"), undefined);
  assert.deepEqual(cluster.node(nodeA).sink.events, [
    { kind: "Deleted", table, key: "elsewhere", version: 4, sequence: 0, json: "{}" },
  ]);
  // An older state is stale: the newer one stays and is sent back; the same state is identical.
  const stale = await apply!({
    items: [{ store: true, table, key: "stored", entry: { ...entry, version: 2 } }],
  }, nodeB);
  assert.deepEqual(stale, { results: [{ result: "stale", newer: entry }] });
  assert.equal(versionOn(cluster, nodeA, "stored"), 3);
  const same = await apply!({ items: [{ store: true, table, key: "stored", entry }] }, nodeB);
  assert.deepEqual(same, { results: [{ result: "identical" }] });
  await assert.rejects(async () => await apply!({ items: [{ store: true }] }, nodeB), InvalidRequestError);
  await assert.rejects(async () => await apply!({}, nodeB), InvalidRequestError);
});

Deno.test("Replicator.handlers().read answers the entry and its replica form, or nulls", async () => {
  await using cluster = await FakeCluster.start();
  const node = cluster.node(nodeA);
  const { read } = node.replicator.handlers();
  assert.deepEqual(await read!({ table, key: "missing" }, nodeB), { entry: null, replica: null });
  await node.store.put(table, "k", { n: 1 }, alice);
  const stored = node.store.getEntry(table, "k")!;
  assert.deepEqual(await read!({ table, key: "k" }, nodeB), {
    entry: { json: stored.json, version: 1, deleted: false },
    replica: node.store.replicaOf(table, "k"),
  });
  await assert.rejects(async () => await read!({ table }, nodeB), InvalidRequestError);
});

Deno.test("Replicator.handlers().write coordinates and answers errors as codes", async () => {
  await using cluster = await FakeCluster.start();
  const key = keyWithReplicas(cluster, [nodeA]);
  const { write } = cluster.node(nodeA).replicator.handlers();
  const reply = await write!({ op: "put", table, key, value: { n: 1 }, owner: "alice" }, nodeB);
  assert.deepEqual(reply, {
    json: cluster.node(nodeA).store.getEntry(table, key)?.json,
    version: 1,
    deleted: false,
  });
  const refused = await write!({ op: "put", table, key, value: 2, owner: "bob" }, nodeB) as {
    error: { code: string; message: string };
  };
  assert.equal(refused.error.code, "forbidden");
  const conflict = await write!({ op: "delete", table, key, owner: "alice", ifVersion: 9 }, nodeB);
  assert.equal((conflict as { error: { code: string } }).error.code, "version_conflict");
  await assert.rejects(async () => await write!({ op: "put", table, key }, nodeB), InvalidRequestError);
  const deleted = await write!({ op: "delete", table, key, owner: "alice", ifVersion: 1 }, nodeB) as {
    version: number;
    deleted: boolean;
  };
  assert.equal(deleted.version, 2);
  assert.equal(deleted.deleted, true);
});

// --- readEntry ------------------------------------------------------------------------------------------------

Deno.test("Replicator.readEntry() reads locally on a replica", async () => {
  await using cluster = await FakeCluster.start();
  const key = keyWithReplicas(cluster, [nodeB]);
  await cluster.node(nodeA).store.put(table, key, { n: 1 }, alice);
  const entry = await cluster.node(nodeA).replicator.readEntry(table, key);
  assert.equal(entry?.version, 1);
  assert.equal(cluster.network.sent.length, 0);
});

Deno.test("Replicator.readEntry() on a non-replica repairs the stale replica with the newest state", async () => {
  await using cluster = await FakeCluster.start({ config: { replicationFactor: 2 } });
  const key = findKey((candidate) => !cluster.placement(nodeA).replicasOf(table, candidate).includes(nodeA));
  const base = { timestamp: 5, owner: "alice", deleted: false };
  await cluster.node(nodeB).store.applyReplica(table, key, { ...base, version: 2, valueJson: '{"n":2}' });
  await cluster.node(nodeC).store.applyReplica(table, key, { ...base, version: 1, valueJson: '{"n":1}' });
  const replicator = cluster.node(nodeA).replicator;
  const entry = await replicator.readEntry(table, key);
  assert.ok(entry !== undefined && [1, 2].includes(entry.version));
  await cluster.network.settle();
  assert.equal(replicator.stats.forwardedReads, 1);
  assert.equal(replicator.stats.readRepairs, 1);
  assert.deepEqual(
    cluster.node(nodeC).store.replicaOf(table, key),
    cluster.node(nodeB).store.replicaOf(table, key),
  );
  assert.deepEqual(cluster.network.sentWhere({ kind: "apply" }).map(({ target }) => target), [nodeC]);
  assert.equal(versionOn(cluster, nodeA, key), undefined, "the reader keeps no copy");
});

Deno.test("Replicator.readEntry() repairs a replica that lacks the key and leaves equal ones alone", async () => {
  await using cluster = await FakeCluster.start({ config: { replicationFactor: 2 } });
  const key = findKey((candidate) => !cluster.placement(nodeA).replicasOf(table, candidate).includes(nodeA));
  const state = { version: 1, timestamp: 5, owner: "alice", deleted: false, valueJson: "1" };
  await cluster.node(nodeB).store.applyReplica(table, key, state);
  const replicator = cluster.node(nodeA).replicator;
  await replicator.readEntry(table, key);
  await cluster.network.settle();
  assert.deepEqual(cluster.node(nodeC).store.replicaOf(table, key), state);
  assert.equal(replicator.stats.readRepairs, 1);
  assert.equal((await replicator.readEntry(table, key))?.version, 1);
  await cluster.network.settle();
  assert.equal(replicator.stats.readRepairs, 1, "no repair between equal replicas");
  assert.equal(await replicator.readEntry(table, `${key}-never`), undefined);
});

Deno.test("Replicator.readEntry() fails with UnavailableError when no replica answers", async () => {
  await using cluster = await FakeCluster.start({ config: { replicationFactor: 2 } });
  const key = findKey((candidate) => !cluster.placement(nodeA).replicasOf(table, candidate).includes(nodeA));
  cluster.network.fail(nodeB, "unreachable");
  cluster.network.fail(nodeC, "timeout");
  await assert.rejects(
    cluster.node(nodeA).replicator.readEntry(table, key),
    (error) => error instanceof UnavailableError && /no replica answered/.test(error.message),
  );
});

Deno.test("Replicator.write() does not count a replica that holds a newer state, and takes that state", async () => {
  await using cluster = await FakeCluster.start();
  const key = keyWithReplicas(cluster, [nodeA]);
  const coordinator = cluster.node(nodeA);
  const replicas = coordinator.replicator.placement.replicasOf(table, key);
  const newer = { version: 9, timestamp: 50, owner: "alice", deleted: false, valueJson: '"newest"' };
  for (const id of replicas.filter((id) => id !== nodeA)) {
    await cluster.node(id).store.applyReplicas([{ table, key, entry: newer }]);
  }
  await coordinator.store.applyReplicas([{
    table,
    key,
    entry: { ...newer, version: 1, valueJson: '"old"' },
  }]);
  await assert.rejects(coordinator.replicator.write(put(key, "stale write")), UnavailableError);
  assert.ok(coordinator.replicator.stats.staleRejections >= 1);
  await waitFor(() => versionOn(cluster, nodeA, key) === 9, { timeoutMs: 2_000 });
  const retried = await coordinator.replicator.write(put(key, "after"));
  assert.equal(retried.version, 10, "the next write is ordered after the newer state");
});

Deno.test("Replicator.handlers().apply refuses a coordinator's write that does not move the version forward", async () => {
  await using cluster = await FakeCluster.start();
  const { apply } = cluster.node(nodeA).replicator.handlers();
  const held = { version: 2, timestamp: 10, owner: "alice", deleted: false, valueJson: '"acknowledged"' };
  await cluster.node(nodeA).store.applyReplicas([{ table, key: "k", entry: held }]);
  const rival = { ...held, timestamp: 20, valueJson: '"second writer of v2"' };
  const strict = await apply!(
    { items: [{ store: true, table, key: "k", entry: rival, strict: true }] },
    nodeB,
  );
  assert.deepEqual(
    strict,
    { results: [{ result: "stale", newer: held }] },
    "a second writer of v2 is refused",
  );
  assert.deepEqual(cluster.node(nodeA).store.replicaOf(table, "k"), held);
  const again = await apply!({ items: [{ store: true, table, key: "k", entry: held, strict: true }] }, nodeB);
  assert.deepEqual(again, { results: [{ result: "identical" }] }, "a re-delivery of the same write is fine");
  const next = { ...held, version: 3, timestamp: 30, valueJson: '"v3"' };
  const forward = await apply!(
    { items: [{ store: true, table, key: "k", entry: next, strict: true }] },
    nodeB,
  );
  assert.deepEqual(forward, { results: [{ result: "applied" }] });
  const repair = { ...next, timestamp: 40, valueJson: '"anti-entropy winner"' };
  const converged = await apply!({ items: [{ store: true, table, key: "k", entry: repair }] }, nodeB);
  assert.deepEqual(
    converged,
    { results: [{ result: "applied" }] },
    "without strict the conflict rule decides",
  );
});

/** A MemoryFs whose `syncData` waits while `hold()` is in force, so a write stays pending in the store. */
class SyncGateFs extends MemoryFs {
  #gate: PromiseWithResolvers<void> | undefined;

  hold(): void {
    this.#gate = Promise.withResolvers<void>();
  }

  release(): void {
    this.#gate?.resolve();
    this.#gate = undefined;
  }

  override async openAppend(path: string, options: CreateOptions) {
    const file = await super.openAppend(path, options);
    const syncData = file.syncData.bind(file);
    file.syncData = async () => {
      await this.#gate?.promise;
      await syncData();
    };
    return file;
  }
}

Deno.test("Replicator.handlers().apply refuses a second writer of a version that is still pending here", async () => {
  const gated = new SyncGateFs();
  await using cluster = await FakeCluster.start({ fsOf: (id) => id === nodeA ? gated : new MemoryFs() });
  const store = cluster.node(nodeA).store;
  gated.hold();
  // Node A coordinates v1 of k: accepted, shipped, not yet durable (its fsync is held).
  const local = store.put(table, "k", "first writer", { owner: "alice" });
  assert.equal(store.replicaOf(table, "k"), undefined, "pending: not visible yet");
  // Another coordinator (B, with another view of the membership) ships its own v1 of k, later in time.
  const rival = {
    version: 1,
    timestamp: cluster.clock.nowMs() + 10,
    owner: "alice",
    deleted: false,
    valueJson: '"second writer of v1"',
  };
  const { apply } = cluster.node(nodeA).replicator.handlers();
  const answer = apply!({ items: [{ store: true, table, key: "k", entry: rival, strict: true }] }, nodeB);
  gated.release();
  assert.equal((await local).version, 1);
  const { results } = await answer as { results: Array<{ result: string }> };
  assert.equal(results[0]!.result, "stale", "B must not count A's acknowledgement for its own v1");
  assert.equal(store.replicaOf(table, "k")?.valueJson, '"first writer"');
});
