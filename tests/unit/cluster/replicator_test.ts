// Goal: placement and the Replicator's write, read, hint and handler paths under per-key Paxos: where a
// key lives; who proposes a write, when a forwarded write may go to another proposer, what error code a
// forwarder re-raises, and how forwarded writes are batched; that a write needs a majority of the key's
// whole replica set (users: every ring member), whoever this node believes alive, and that its own disk
// is only one acceptor among them; that a refusal raises the ballot and the write is ordered after the
// newest accepted state; joint rounds while a membership change is not settled for a key; hints for
// replicas that missed a commit, delivered when they are back; publication on every live member; what
// the internal handlers (paxos, apply, read, write) answer, and the round apply starts for a state that
// an outstanding promise blocks; read repair on a non-replica.
// Method: a FakeCluster of real Stores on MemoryFs wired by a fake Transport that can make a target
// unreachable or time out, and a fake MembershipView changed by hand; settle() waits for background work.
// paxos_test.ts covers the end-to-end promises (partitions, paused proposers, races, the one-round path).
import assert from "node:assert/strict";
import { waitFor } from "../../helpers/wait_for.ts";
import { PeerRequestError, UnknownKindError, usersTable } from "../../../src/cluster/mod.ts";
import { quorumOf } from "../../../src/cluster/proposer.ts";
import type { ApplyItem } from "../../../src/cluster/replication_wire.ts";
import type { PaxosItem, ProposalItem } from "../../../src/cluster/paxos_wire.ts";
import { type ClientWrite, ForwardedError } from "../../../src/cluster/replicator.ts";
import { AssertionError } from "../../../src/util/assert.ts";
import type { Ballot } from "../../../src/util/ballot.ts";
import { InvalidRequestError, KvError, UnavailableError } from "../../../src/util/errors.ts";
import { type CreateOptions, MemoryFs, type ReplicaEntry } from "../../../src/store/mod.ts";
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

function ballot(counter: number, node: string): Ballot {
  return { counter, node };
}

/** Alice's live state `valueJson` at `version`, accepted at `at` (the zero ballot when left out). */
function stateOf(version: number, valueJson: string, at?: Ballot): ReplicaEntry {
  const entry: ReplicaEntry = { version, timestamp: 5, owner: "alice", deleted: false, valueJson };
  return at === undefined ? entry : { ...entry, ballot: at };
}

/** A key of `table` whose replicas, in preference order, start with `prefix`. */
function keyWithReplicas(cluster: FakeCluster, prefix: readonly string[], keyTable = table): string {
  const placement = cluster.placement(nodeA);
  return findKey((key) => {
    const replicas = placement.replicasOf(keyTable, key);
    return prefix.every((id, index) => replicas[index] === id);
  });
}

/** A, B, C and D: a key of three replicas may leave A out, so A forwards its writes. */
const fourNodes = [nodeA, nodeB, nodeC, nodeD];

/** A key whose replicas start with `prefix` and do not include A (a cluster of `fourNodes`). */
function keyAwayFromA(cluster: FakeCluster, prefix: readonly string[], keyPrefix = "k"): string {
  const placement = cluster.placement(nodeA);
  return findKey((key) => {
    const replicas = placement.replicasOf(table, key);
    return !replicas.includes(nodeA) && prefix.every((id, index) => replicas[index] === id);
  }, keyPrefix);
}

function versionOn(cluster: FakeCluster, id: string, key: string, keyTable = table): number | undefined {
  return cluster.node(id).store.getEntry(keyTable, key)?.version;
}

/** The proposals (paxos items but notices) sent from request `since` on, with their targets. */
function paxosItemsSince(cluster: FakeCluster, since: number): Array<{ item: ProposalItem; target: string }> {
  const requests = cluster.network.sent.slice(since).filter(({ kind }) => kind === "paxos");
  return requests.flatMap(({ body, target }) =>
    (body as { items: PaxosItem[] }).items.flatMap((item) => item.op === "chosen" ? [] : [{ item, target }])
  );
}

/** The targets of the paxos items about `key` sent from request `since` on, sorted and distinct. */
function paxosTargetsOf(cluster: FakeCluster, key: string, since: number): string[] {
  const items = paxosItemsSince(cluster, since).filter(({ item }) => item.key === key);
  return [...new Set(items.map(({ target }) => target))].sort();
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

// --- quorumOf ---------------------------------------------------------------------------------------------

Deno.test("quorumOf() is a majority of the whole replica set", () => {
  const rows: Array<[replicaCount: number, quorum: number]> = [
    [1, 1],
    [2, 2],
    [3, 2],
    [4, 3],
    [5, 3],
    [7, 4],
  ];
  for (const [replicaCount, quorum] of rows) assert.equal(quorumOf(replicaCount), quorum, `${replicaCount}`);
  assert.throws(() => quorumOf(0), AssertionError);
});

// --- Replicator.write: routing ----------------------------------------------------------------------------

Deno.test("Replicator.write() proposes locally when this node is the key's first live replica", async () => {
  await using cluster = await FakeCluster.start();
  const key = keyWithReplicas(cluster, [nodeA]);
  const entry = await cluster.node(nodeA).replicator.write(put(key, { n: 1 }));
  await cluster.drained(); // the proposer's own accept is written lazily
  assert.equal(entry.version, 1);
  assert.equal(versionOn(cluster, nodeA, key), 1);
  assert.equal(cluster.network.sentWhere({ kind: "writes" }).length, 0);
  assert.deepEqual(paxosTargetsOf(cluster, key, 0), [nodeB, nodeC], "its own acceptor is asked directly");
  await cluster.network.settle();
  const state = cluster.node(nodeA).store.replicaOf(table, key);
  assert.equal(state?.ballot?.node, nodeA, "accepted at A's ballot");
  assert.deepEqual(cluster.node(nodeB).store.replicaOf(table, key), state);
  assert.deepEqual(cluster.node(nodeC).store.replicaOf(table, key), state);
  assert.equal(cluster.node(nodeA).replicator.stats.forwardedWrites, 0);
});

Deno.test(
  "Replicator.write() proposes a new key itself when a replica, wherever it sits in the ring",
  async () => {
    await using cluster = await FakeCluster.start();
    const key = keyWithReplicas(cluster, [nodeB, nodeC, nodeA]);
    const entry = await cluster.node(nodeA).replicator.write(put(key, { n: 1 }));
    await cluster.drained(); // the proposer's own accept is written lazily
    assert.equal(entry.version, 1);
    assert.equal(cluster.network.sentWhere({ kind: "writes" }).length, 0, "no forward");
    assert.equal(cluster.node(nodeA).store.replicaOf(table, key)?.ballot?.node, nodeA);
    assert.equal(cluster.node(nodeA).replicator.stats.forwardedWrites, 0);
  },
);

Deno.test(
  "Replicator.write() in one round judges a put or delete on the key's head and a patch on its value",
  async () => {
    await using cluster = await FakeCluster.start();
    const key = keyWithReplicas(cluster, [nodeA]);
    const node = cluster.node(nodeA);
    const write = (request: ClientWrite) => node.replicator.write(request);
    const first = await write(put(key, { a: 1 }));
    const fastBefore = node.replicator.stats.fastPathWrites;
    // The clock went back: a state's timestamp never does (the head carries it).
    cluster.clock.advance(-60_000);
    const second = await write(put(key, { a: 2 }, { owner: "alice", ifVersion: 1 }));
    assert.equal(second.timestamp, first.timestamp, "not below the state it follows");
    await assert.rejects(
      write(put(key, { a: 9 }, { owner: "bob" })),
      (error) => error instanceof KvError && error.code === "forbidden",
    );
    await assert.rejects(
      write(put(key, { a: 9 }, { owner: "alice", ifVersion: 1 })),
      (error) => error instanceof KvError && error.code === "version_conflict",
    );
    const patched = await write({ op: "patch", table, key, value: { b: 3 }, conditions: alice });
    assert.equal(
      patched.json,
      `{"value":{"a":2,"b":3},"version":3,"timestamp":${first.timestamp},"owner":"alice"}`,
    );
    assert.equal((await write({ op: "delete", table, key, conditions: alice })).version, 4);
    await assert.rejects(
      write({ op: "patch", table, key, value: { b: 4 }, conditions: alice }),
      (error) => error instanceof KvError && error.code === "key_not_found",
    );
    assert.equal((await write(put(key, { c: 5 }, { owner: "bob" }))).version, 5, "a deleted key is anyone's");
    assert.equal(node.replicator.stats.fastPathWrites, fastBefore + 4, "each in one round");
  },
);

Deno.test(
  "Replicator.write() forwards to the replica that took the key last; it writes in one round",
  async () => {
    await using cluster = await FakeCluster.start();
    const key = keyWithReplicas(cluster, [nodeA]);
    await cluster.node(nodeB).replicator.write(put(key, { n: 1 }));
    await cluster.network.settle();
    const fastBefore = cluster.node(nodeB).replicator.stats.fastPathWrites;
    const since = cluster.network.sent.length;
    for (const n of [2, 3]) {
      const entry = await cluster.node(nodeA).replicator.write(put(key, { n }));
      assert.equal(entry.version, n);
    }
    assert.deepEqual(
      cluster.network.sentWhere({ kind: "writes" }).map(({ source, target }) => [source, target]),
      [[nodeA, nodeB], [nodeA, nodeB]],
      "B holds the key, first replica or not",
    );
    assert.equal(cluster.node(nodeB).replicator.stats.fastPathWrites, fastBefore + 2, "one round each");
    assert.ok(paxosItemsSince(cluster, since).every(({ item }) => item.op !== "prepare"), "no prepare");
    await cluster.network.settle();
    const reads = cluster.network.sent.length;
    assert.equal(
      (await cluster.node(nodeA).replicator.readEntry(table, key, { consistent: true }))?.version,
      3,
    );
    assert.deepEqual(
      cluster.network.sent.slice(reads).filter(({ kind }) => kind === "read").map(({ target }) => target),
      [nodeB],
      "a consistent read runs on the key's proposer too",
    );
  },
);

Deno.test(
  "Replicator.write(): three nodes taking one new key at once all commit; a loser's write goes to " +
    "the winner",
  async () => {
    await using cluster = await FakeCluster.start();
    for (let round = 0; round < 10; round += 1) {
      const key = `race${round}`;
      const writes = [nodeA, nodeB, nodeC].map((id, index) =>
        cluster.node(id).replicator.write(put(key, { from: index }))
      );
      const results = await Promise.allSettled(writes);
      const versions = results.map((result) =>
        result.status === "fulfilled" ? result.value.version : result.reason
      );
      assert.deepEqual([...versions].sort(), [1, 2, 3], `${key}: every write committed once, no 503`);
    }
    // A write refused at its prepare went to the winner; one refused at its accept (its state went out)
    // retried.
    const forwarded = [nodeA, nodeB, nodeC].map((id) => cluster.node(id).replicator.stats.forwardedWrites);
    assert.ok(forwarded.some((count) => count > 0), `some losers forwarded: ${forwarded}`);
  },
);

Deno.test("Replicator.write() forwards from a non-replica to the key's first live replica", async () => {
  await using cluster = await FakeCluster.start({ ids: fourNodes });
  const key = keyAwayFromA(cluster, [nodeB]);
  const entry = await cluster.node(nodeA).replicator.write(put(key, { n: 1 }));
  await cluster.drained(); // the proposer's own accept is written lazily
  assert.equal(entry.version, 1);
  assert.equal(entry.json, cluster.node(nodeB).store.getEntry(table, key)?.json);
  assert.deepEqual(
    cluster.network.sentWhere({ kind: "writes" }).map(({ source, target }) => [source, target]),
    [[nodeA, nodeB]],
  );
  assert.equal(cluster.node(nodeA).replicator.stats.forwardedWrites, 1);
  await cluster.network.settle();
  for (const id of cluster.placement(nodeA).replicasOf(table, key)) {
    assert.equal(versionOn(cluster, id, key), 1);
  }
  assert.equal(versionOn(cluster, nodeA, key), undefined, "A holds none of it");
});

Deno.test("Replicator.write() retries on the next live replica when the first is unreachable", async () => {
  await using cluster = await FakeCluster.start({ ids: fourNodes });
  const key = keyAwayFromA(cluster, [nodeB, nodeC]);
  cluster.network.fail(nodeB, "unreachable");
  const entry = await cluster.node(nodeA).replicator.write(put(key, { n: 1 }));
  assert.equal(entry.version, 1);
  assert.deepEqual(cluster.network.sentWhere({ kind: "writes" }).map(({ target }) => target), [nodeB, nodeC]);
  assert.equal(cluster.node(nodeC).store.replicaOf(table, key)?.ballot?.node, nodeC, "C proposed");
  assert.equal(versionOn(cluster, nodeB, key), undefined);
  await cluster.network.settle();
  assert.equal(cluster.node(nodeC).replicator.stats.hintCount, 1, "C keeps a hint for unreachable B");
});

Deno.test("Replicator.write() proposes itself when it is next after an unreachable proposer", async () => {
  await using cluster = await FakeCluster.start();
  const key = keyWithReplicas(cluster, [nodeB, nodeA]);
  await cluster.node(nodeB).replicator.write(put(key, { n: 1 }));
  await cluster.network.settle();
  cluster.network.fail(nodeB, "unreachable");
  const entry = await cluster.node(nodeA).replicator.write(put(key, { n: 2 }));
  assert.equal(entry.version, 2);
  assert.equal(cluster.node(nodeA).store.replicaOf(table, key)?.ballot?.node, nodeA);
  assert.deepEqual(cluster.network.sentWhere({ kind: "writes" }).map(({ target }) => target), [nodeB]);
});

Deno.test(
  "Replicator: once every member left, writes and consistent reads are 503, settles fail",
  async () => {
    await using cluster = await FakeCluster.start();
    const key = keyWithReplicas(cluster, [nodeA]);
    await cluster.node(nodeA).replicator.write(put(key, { n: 1 }));
    await cluster.drained(); // the proposer's own accept is written lazily
    cluster.membership.set({ ring: [], live: [nodeA] }); // SIGTERM to every node at once: each saw all leave
    const replicator = cluster.node(nodeA).replicator;
    await assert.rejects(replicator.write(put(key, { n: 2 })), UnavailableError);
    await cluster.drained(); // the proposer's own accept is written lazily
    await assert.rejects(replicator.readEntry(table, key, { consistent: true }), UnavailableError);
    assert.equal(await replicator.settle(table, key), false);
    assert.equal(versionOn(cluster, nodeA, key), 1, "nothing changed");
  },
);

Deno.test("Replicator.write() does not retry elsewhere after a timeout: it may have applied", async () => {
  await using cluster = await FakeCluster.start({ ids: fourNodes });
  const key = keyAwayFromA(cluster, [nodeB, nodeC]);
  cluster.network.fail(nodeB, "timeout");
  await assert.rejects(cluster.node(nodeA).replicator.write(put(key, { n: 1 })), (error) => {
    assert.ok(error instanceof UnavailableError);
    assert.equal(error.code, "unavailable");
    assert.match(error.message, /its proposer did not answer/);
    assert.ok(error.cause instanceof PeerRequestError);
    assert.equal(error.cause.failure, "timeout");
    return true;
  });
  assert.deepEqual(cluster.network.sentWhere({ kind: "writes" }).map(({ target }) => target), [nodeB]);
  for (const id of fourNodes) assert.equal(versionOn(cluster, id, key), undefined);
});

Deno.test("Replicator.write() fails at once when no majority of the key's replicas is live", async () => {
  await using cluster = await FakeCluster.start();
  const replicator = cluster.node(nodeA).replicator;
  const elsewhere = keyWithReplicas(cluster, [nodeB]);
  const here = keyWithReplicas(cluster, [nodeA]);
  cluster.membership.set({ live: [nodeA] });
  await assert.rejects(
    replicator.write(put(elsewhere, 1)),
    (error) => error instanceof UnavailableError && /1 of its 3 replicas are up/.test(error.message),
  );
  await assert.rejects(
    replicator.write(put(here, 1)),
    (error) => error instanceof UnavailableError && /majority of its replicas is needed/.test(error.message),
    "this node alone is no majority, even as the key's first replica",
  );
  assert.equal(cluster.network.sent.length, 0);
  assert.equal(cluster.node(nodeA).store.acceptorOf(table, here).promised.counter, 0, "no round began");
});

Deno.test("Replicator.write() re-raises a forwarded error with the proposer's code", async () => {
  await using cluster = await FakeCluster.start({ ids: fourNodes });
  const key = keyAwayFromA(cluster, [nodeB]);
  const replicator = cluster.node(nodeA).replicator;
  await replicator.write(put(key, { n: 1 }));
  const missing = keyAwayFromA(cluster, [nodeB], "m");
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
  await using cluster = await FakeCluster.start({ ids: fourNodes });
  const key = keyAwayFromA(cluster, [nodeB]);
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

Deno.test("Replicator.write() batches forwarded writes that wait together, each answered alone", async () => {
  await using cluster = await FakeCluster.start({ ids: fourNodes });
  const [first, second, bobs] = ["f", "s", "b"].map((prefix) => keyAwayFromA(cluster, [nodeB], prefix)) as [
    string,
    string,
    string,
  ];
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
  await cluster.network.settle();
  const kept = cluster.node(nodeB).store.getEntry(table, bobs);
  assert.deepEqual([kept?.owner, kept?.version], ["bob", 1], "the refused one changed nothing");
});

Deno.test("Replicator.write() forwards alone to a proposer that serves no batches (older)", async () => {
  await using cluster = await FakeCluster.start({ ids: fourNodes });
  const key = keyAwayFromA(cluster, [nodeB]);
  cluster.network.register(nodeB, { writes: () => Promise.reject(new UnknownKindError("writes")) });
  const entry = await cluster.node(nodeA).replicator.write(put(key, { n: 1 }));
  await cluster.drained(); // the proposer's own accept is written lazily
  assert.equal(entry.version, 1);
  assert.deepEqual(cluster.network.sentWhere({ kind: "write" }).map(({ target }) => target), [nodeB]);
  assert.equal(versionOn(cluster, nodeB, key), 1);
});

// --- Replicator.write: quorum and ballots -----------------------------------------------------------------

Deno.test("Replicator.write() needs a majority of answers, whoever is believed live", async () => {
  await using cluster = await FakeCluster.start();
  const key = keyWithReplicas(cluster, [nodeA]);
  cluster.network.fail(nodeB, "unreachable");
  cluster.network.fail(nodeC, "unreachable");
  const replicator = cluster.node(nodeA).replicator;
  await assert.rejects(
    replicator.write(put(key, { n: 1 })),
    (error) => error instanceof UnavailableError && /majority of its replicas/.test(error.message),
  );
  assert.equal(cluster.node(nodeA).store.replicaOf(table, key), undefined, "no accept without promises");
  assert.ok(paxosTargetsOf(cluster, key, 0).length > 0, "B and C were asked: A believes them alive");
  await cluster.network.settle();
  assert.equal(replicator.stats.hintCount, 0, "nothing was committed, so nothing is owed");
});

Deno.test("Replicator.write() commits on 2 of 3 while one replica fails, and hints that one", async () => {
  await using cluster = await FakeCluster.start();
  const key = keyWithReplicas(cluster, [nodeA]);
  cluster.network.fail(nodeC, "unreachable");
  const replicator = cluster.node(nodeA).replicator;
  const entry = await replicator.write(put(key, { n: 1 }));
  assert.equal(entry.version, 1);
  await cluster.network.settle();
  assert.equal(versionOn(cluster, nodeB, key), 1);
  assert.equal(versionOn(cluster, nodeC, key), undefined);
  assert.equal(replicator.stats.hintCount, 1);
});

Deno.test("Replicator.write() of a user needs a majority of every ring member", async () => {
  await using cluster = await FakeCluster.start({ ids: [nodeA, nodeB, nodeC, nodeD] });
  const user = (name: string): ClientWrite => ({
    op: "put",
    table: usersTable,
    key: name,
    value: { hash: "x" },
    conditions: alice,
  });
  const name = keyWithReplicas(cluster, [nodeA], usersTable);
  const key = findKey((candidate) => {
    const replicas = cluster.placement(nodeA).replicasOf(table, candidate);
    return replicas[0] === nodeA && replicas.includes(nodeB);
  });
  cluster.network.fail(nodeC, "unreachable");
  cluster.network.fail(nodeD, "unreachable");
  await assert.rejects(cluster.node(nodeA).replicator.write(user(name)), UnavailableError, "2 of 4 users");
  assert.equal((await cluster.node(nodeA).replicator.write(put(key, 1))).version, 1, "2 of 3 for a key");
  cluster.network.restore(nodeD);
  const entry = await cluster.node(nodeA).replicator.write(user(name));
  assert.equal(entry.version, 1, "3 of 4");
  await cluster.network.settle();
  for (const id of [nodeB, nodeD]) assert.equal(versionOn(cluster, id, name, usersTable), 1);
  // Believed down or not, C is one of the four: the quorum stays 3.
  cluster.membership.set({ live: [nodeA, nodeB] });
  await assert.rejects(cluster.node(nodeA).replicator.write(user(name)), /2 of its 4 replicas are up/);
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

Deno.test("Replicator.write() commits on the others while its own acceptor's fsync is held", async () => {
  const gated = new SyncGateFs();
  await using cluster = await FakeCluster.start({ fsOf: (id) => id === nodeA ? gated : new MemoryFs() });
  const key = keyWithReplicas(cluster, [nodeA]);
  gated.hold();
  const entry = await cluster.node(nodeA).replicator.write(put(key, { n: 1 }));
  assert.equal(entry.version, 1, "B and C are a majority: A's disk is one acceptor among three");
  assert.equal(versionOn(cluster, nodeA, key), undefined, "not durable on A yet");
  for (const id of [nodeB, nodeC]) assert.equal(versionOn(cluster, id, key), 1);
  gated.release();
  await cluster.network.settle();
  await waitFor(() => versionOn(cluster, nodeA, key) === 1, { timeoutMs: 2_000, what: "A's own accept" });
});

Deno.test(
  "Replicator: a one-round write is read back at once from its proposer, before its own lazy accept " +
    "is durable",
  async () => {
    const gated = new SyncGateFs();
    await using cluster = await FakeCluster.start({ fsOf: (id) => id === nodeA ? gated : new MemoryFs() });
    const key = keyWithReplicas(cluster, [nodeA]);
    const { replicator, store } = cluster.node(nodeA);
    assert.equal((await replicator.write(put(key, { n: 1 }))).version, 1);
    await cluster.drained();
    const fastBefore = replicator.stats.fastPathWrites;
    gated.hold();
    // One round (A wrote the key last): A's own accept is lazy, B and C make the quorum.
    assert.equal((await replicator.write(put(key, { n: 2 }))).version, 2);
    assert.equal(replicator.stats.fastPathWrites, fastBefore + 1, "the one-round path");
    assert.equal(store.getEntry(table, key)?.version, 1, "A's own copy is not durable yet");
    const read = await replicator.readEntry(table, key);
    assert.equal(read?.version, 2, "read back from A at once");
    assert.deepEqual(JSON.parse(read!.json).value, { n: 2 });
    // The next one-round write still takes one round: A's acceptor holds the state, durable or not.
    assert.equal((await replicator.write(put(key, { n: 3 }))).version, 3);
    assert.equal(replicator.stats.fastPathWrites, fastBefore + 2);
    assert.equal((await replicator.readEntry(table, key))?.version, 3);
    gated.release();
    await cluster.drained();
    assert.equal(store.getEntry(table, key)?.version, 3, "durable on A too");
    assert.equal((await replicator.readEntry(table, key))?.version, 3);
  },
);

Deno.test({
  name: "Replicator keeps no hint for itself when its own acceptor answered after the quorum",
  fn: async () => {
    const gated = new SyncGateFs();
    await using cluster = await FakeCluster.start({ fsOf: (id) => id === nodeA ? gated : new MemoryFs() });
    const key = keyWithReplicas(cluster, [nodeA]);
    gated.hold();
    assert.equal((await cluster.node(nodeA).replicator.write(put(key, { n: 1 }))).version, 1);
    gated.release();
    await waitFor(() => versionOn(cluster, nodeA, key) === 1, { timeoutMs: 2_000, what: "A's own accept" });
    assert.equal(cluster.node(nodeA).replicator.stats.hintCount, 0, "B and C accepted; A holds it too");
    cluster.membership.set({ live: [nodeA, nodeB, nodeC] });
    await cluster.network.settle();
  },
});

Deno.test({
  name: "Replicator.write() counts its own store failing to sync as one failed acceptor",
  fn: async () => {
    const faultyFs = new FaultyFs(new MemoryFs());
    await using cluster = await FakeCluster.start({ fsOf: (id) => id === nodeA ? faultyFs : new MemoryFs() });
    const key = keyWithReplicas(cluster, [nodeA]);
    faultyFs.failSyncs();
    const entry = await cluster.node(nodeA).replicator.write(put(key, { n: 1 }));
    assert.equal(entry.version, 1, "B and C accepted: committed");
    await cluster.network.settle();
    for (const id of [nodeB, nodeC]) assert.equal(versionOn(cluster, id, key), 1);
    faultyFs.heal();
  },
});

Deno.test("Replicator.write() retries above a refused ballot, after the newest state", async () => {
  await using cluster = await FakeCluster.start();
  const key = keyWithReplicas(cluster, [nodeA]);
  // B and C accepted v9 at a ballot of C that A has never seen; A holds nothing.
  for (const id of [nodeB, nodeC]) {
    const entry = stateOf(9, '"nine"', ballot(7, nodeC));
    await cluster.node(id).store.applyReplicas([{ table, key, entry }]);
  }
  const replicator = cluster.node(nodeA).replicator;
  // Forwarded to A (a forwarded write is proposed where it arrives, never passed on).
  const reply = await replicator.handlers().write!(
    { op: "put", table, key, value: "ten", owner: "alice" },
    nodeB,
  );
  assert.equal(
    (reply as { version: number }).version,
    10,
    "after v9, which A learnt from the prepare's answers",
  );
  assert.ok(replicator.stats.proposalRetries >= 1, "A's first ballot was refused");
  assert.ok(replicator.stats.prepareRounds >= 2);
  await cluster.drained(); // the proposer's own accept is written lazily
  const state = cluster.node(nodeA).store.replicaOf(table, key);
  assert.equal(state?.ballot?.node, nodeA);
  assert.ok((state?.ballot?.counter ?? 0) > 8, "above (8, C), the promise B and C refused with");
});

Deno.test(
  "Replicator.write() of a client whose prepare another proposer refused goes to that proposer",
  async () => {
    await using cluster = await FakeCluster.start();
    const key = keyWithReplicas(cluster, [nodeA]);
    // B and C accepted v9 at a ballot of C that A has never seen; A holds nothing, so it proposes and is
    // refused.
    for (const id of [nodeB, nodeC]) {
      await cluster.node(id).store.applyReplicas([{
        table,
        key,
        entry: stateOf(9, '"nine"', ballot(7, nodeC)),
      }]);
    }
    const replicator = cluster.node(nodeA).replicator;
    const entry = await replicator.write(put(key, "ten"));
    assert.equal(entry.version, 10);
    assert.equal(replicator.stats.proposalRetries, 0, "no duel");
    assert.equal(replicator.stats.forwardedWrites, 1, "nothing of it went out: it went to C instead");
    assert.deepEqual(cluster.network.sentWhere({ kind: "writes" }).map(({ target }) => target), [nodeC]);
    assert.equal(cluster.node(nodeC).store.replicaOf(table, key)?.ballot?.node, nodeC, "C proposed it");
  },
);

Deno.test("Replicator.write() refused by a state its store lacks accepts that state first", async () => {
  await using cluster = await FakeCluster.start();
  const key = keyWithReplicas(cluster, [nodeA]);
  const bobs = { ...stateOf(3, '"bob\'s"', ballot(2, nodeB)), owner: "bob" };
  for (const id of [nodeB, nodeC]) await cluster.node(id).store.applyReplicas([{ table, key, entry: bobs }]);
  const { write } = cluster.node(nodeA).replicator.handlers();
  const reply = await write!({ op: "put", table, key, value: "alice's", owner: "alice" }, nodeB);
  await cluster.drained(); // the proposer's own accept is written lazily
  assert.equal((reply as { error?: { code: string } }).error?.code, "forbidden");
  const state = cluster.node(nodeA).store.replicaOf(table, key);
  assert.deepEqual([state?.owner, state?.version, state?.valueJson], ["bob", 3, '"bob\'s"']);
  assert.equal(state?.ballot?.node, nodeA, "chosen again at A's ballot before the refusal was answered");
});

// --- membership changes -----------------------------------------------------------------------------------

/** D joins A, B, C (no rebalancer runs); returns a key moved to D that A proposes, and who left it. */
async function joinWithoutPass(cluster: FakeCluster): Promise<{ key: string; leaver: string }> {
  const before = cluster.placement(nodeA);
  await cluster.addNode(nodeD);
  const ring = [nodeA, nodeB, nodeC, nodeD];
  cluster.membership.set({ ring, live: ring });
  const after = cluster.placement(nodeA);
  const key = findKey((candidate) => {
    const replicas = after.replicasOf(table, candidate);
    return replicas[0] === nodeA && replicas.includes(nodeD);
  });
  const [leaver] = before.replicasOf(table, key).filter((id) => !after.replicasOf(table, key).includes(id));
  assert.ok(leaver !== undefined);
  return { key, leaver };
}

Deno.test("Replicator.write() of a moved key runs one joint round, then uses the new set", async () => {
  await using cluster = await FakeCluster.start();
  const { key, leaver } = await joinWithoutPass(cluster);
  const replicas = cluster.placement(nodeA).replicasOf(table, key);
  const replicator = cluster.node(nodeA).replicator;
  let since = cluster.network.sent.length;
  assert.equal((await replicator.write(put(key, 1))).version, 1);
  const joint = paxosTargetsOf(cluster, key, since);
  assert.ok(joint.includes(leaver) && joint.includes(nodeD), `old and new replica sets: ${joint}`);
  assert.ok(
    paxosItemsSince(cluster, since).every(({ item }) => item.replicas.join() === replicas.join()),
    "every message names the new replica set",
  );
  since = cluster.network.sent.length;
  assert.equal((await replicator.write(put(key, 2))).version, 2);
  assert.deepEqual(paxosTargetsOf(cluster, key, since), replicas.filter((id) => id !== nodeA).sort());
});

Deno.test("Replicator.settle() runs a joint round; passDone() ends the change once old", async () => {
  await using cluster = await FakeCluster.start();
  const { key, leaver } = await joinWithoutPass(cluster);
  const other = findKey((candidate) => {
    const replicas = cluster.placement(nodeA).replicasOf(table, candidate);
    return replicas[0] === nodeA && replicas.includes(nodeD) && candidate !== key;
  }, "o");
  const replicator = cluster.node(nodeA).replicator;
  let since = cluster.network.sent.length;
  assert.equal(await replicator.settle(table, key), true);
  assert.ok(paxosTargetsOf(cluster, key, since).includes(leaver), "joint");
  // A newer change is not done by a pass over an older placement.
  replicator.passDone(placementOf({ self: nodeA, ringIds: [nodeA, nodeB, nodeC] }));
  cluster.clock.advance(cluster.config.antiEntropyIntervalMs * 10);
  since = cluster.network.sent.length;
  assert.equal(await replicator.settle(table, other), true);
  const [otherLeaver] = placementOf({ self: nodeA, ringIds: [nodeA, nodeB, nodeC] }).replicasOf(table, other)
    .filter((id) => !cluster.placement(nodeA).replicasOf(table, other).includes(id));
  assert.ok(paxosTargetsOf(cluster, other, since).includes(otherLeaver!), "joint: the pass is not done");
  // Every acceptor holds the change until its own pass is done: only then does the new set alone do.
  for (const node of cluster.nodes.values()) node.replicator.passDone(node.replicator.placement);
  since = cluster.network.sent.length;
  const third = findKey((candidate) => {
    const replicas = cluster.placement(nodeA).replicasOf(table, candidate);
    return replicas[0] === nodeA && replicas.includes(nodeD) && candidate !== key && candidate !== other;
  }, "x");
  assert.equal((await replicator.write(put(third, 1))).version, 1);
  const targets = paxosTargetsOf(cluster, third, since);
  const peers = cluster.placement(nodeA).replicasOf(table, third).filter((id) => id !== nodeA);
  assert.deepEqual(targets, peers.sort(), "the new replica set alone");
});

// --- hints and publication --------------------------------------------------------------------------------

Deno.test("Replicator hints a replica believed down and delivers when it is shown alive", async () => {
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
  assert.deepEqual(
    cluster.node(nodeC).store.replicaOf(table, key),
    cluster.node(nodeA).store.replicaOf(table, key),
    "the hint carries the key's current state and its ballot",
  );
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

Deno.test("Replicator.write() publishes a commit once on every live member, replicas too", async () => {
  await using cluster = await FakeCluster.start({ config: { replicationFactor: 2 } });
  const key = keyWithReplicas(cluster, [nodeA, nodeB]);
  await cluster.node(nodeA).replicator.write(put(key, { n: 1 }));
  await cluster.network.settle();
  assert.equal(versionOn(cluster, nodeC, key), undefined, "C does not store the key");
  const json = cluster.node(nodeA).store.getEntry(table, key)?.json;
  for (const id of [nodeA, nodeB, nodeC]) {
    assert.deepEqual(
      cluster.node(id).sink.events,
      [{ kind: "Updated", table, key, version: 1, sequence: 0, json }],
      `published on ${id}`,
    );
  }
  cluster.membership.set({ live: [nodeA, nodeB] });
  await cluster.node(nodeA).replicator.write(put(key, { n: 2 }));
  await cluster.network.settle();
  assert.equal(cluster.node(nodeC).sink.events.length, 1, "a member believed down is not sent it");
  assert.equal(cluster.node(nodeB).sink.events.length, 2);
});

Deno.test("Replicator.close() unsubscribes from membership", async () => {
  await using cluster = await FakeCluster.start();
  assert.equal(cluster.membership.listenerCount, 3);
  cluster.node(nodeA).replicator.close();
  assert.equal(cluster.membership.listenerCount, 2);
});

// --- handlers ---------------------------------------------------------------------------------------------

Deno.test("Replicator.handlers().paxos answers each item by the acceptor rules, in order", async () => {
  await using cluster = await FakeCluster.start();
  const { paxos } = cluster.node(nodeA).replicator.handlers();
  const replicas = [...cluster.placement(nodeA).replicasOf(table, "k")];
  const entry = stateOf(1, '"one"');
  const items: PaxosItem[] = [
    { op: "prepare", table, key: "k", ballot: ballot(1, nodeB), replicas },
    { op: "accept", table, key: "k", ballot: ballot(1, nodeB), replicas, entry },
    { op: "prepare", table, key: "k", ballot: ballot(1, nodeC), replicas },
    { op: "accept", table, key: "k", ballot: ballot(3, nodeC), replicas: [nodeD], entry },
    { op: "prepare", table, key: "k", ballot: ballot(5, nodeC), replicas },
    { op: "accept", table, key: "k", ballot: ballot(4, nodeB), replicas, entry },
  ];
  assert.deepEqual(await paxos!({ items }, nodeB), {
    results: [
      { result: "promised", accepted: { counter: 0, node: "" }, entry: null },
      { result: "accepted" },
      { result: "refused", promised: ballot(2, nodeB) }, // accepting (1, B) promised (2, B)
      { result: "misplaced" }, // another view's replica set
      { result: "promised", accepted: ballot(1, nodeB), entry: { ...entry, ballot: ballot(1, nodeB) } },
      { result: "refused", promised: ballot(5, nodeC) },
    ],
  });
  const state = cluster.node(nodeA).store.acceptorOf(table, "k");
  assert.deepEqual([state.promised, state.accepted], [ballot(5, nodeC), ballot(1, nodeB)], "durable answers");
  await assert.rejects(async () => await paxos!({ items: [] }, nodeB), InvalidRequestError);
  const noBallotNode = { op: "prepare", table, key: "k", ballot: { counter: 1, node: "" }, replicas };
  await assert.rejects(async () => await paxos!({ items: [noBallotNode] }, nodeB), InvalidRequestError);
});

Deno.test(
  "Replicator.handlers().paxos asks a proposer that counts no quorum of the key's earlier set to",
  async () => {
    await using cluster = await FakeCluster.start({ ids: [nodeA, nodeB, nodeC, nodeD] });
    cluster.membership.set({ ring: [nodeA, nodeB, nodeC], live: [nodeA, nodeB, nodeC, nodeD] });
    const before = cluster.placement(nodeA);
    cluster.membership.set({ ring: [nodeA, nodeB, nodeC, nodeD] }); // D joins: a change A has not settled
    const after = cluster.placement(nodeA);
    const key = findKey((candidate) => {
      const now = after.replicasOf(table, candidate);
      return now.includes(nodeA) && now.join() !== before.replicasOf(table, candidate).join();
    });
    const replicas = after.replicasOf(table, key);
    const earlier = before.replicasOf(table, key);
    const { paxos } = cluster.node(nodeA).replicator.handlers();
    // A proposer that never saw the change (a node restarted after leaving, say) names the new set alone.
    const alone = { op: "prepare" as const, table, key, ballot: ballot(1, nodeD), replicas };
    assert.deepEqual(await paxos!({ items: [alone] }, nodeD), {
      results: [{ result: "joint", sets: [earlier] }],
    });
    assert.deepEqual(
      cluster.node(nodeA).store.acceptorOf(table, key).promised,
      { counter: 0, node: "" },
      "nothing recorded",
    );
    const joint = { ...alone, joint: [earlier] };
    assert.deepEqual(await paxos!({ items: [joint] }, nodeD), {
      results: [{ result: "promised", accepted: { counter: 0, node: "" }, entry: null }],
    });
    // Once this node settled the key with a joint round of its own, the new set alone will do.
    assert.equal(await cluster.node(nodeA).replicator.settle(table, key), true);
    const later = { ...alone, ballot: ballot(9, nodeD) };
    assert.equal(
      ((await paxos!({ items: [later] }, nodeD)) as { results: Array<{ result: string }> }).results[0]!
        .result,
      "promised",
    );
  },
);

Deno.test(
  "Replicator (rejoining): its acceptor asks for the ring without it until the key is settled",
  async () => {
    await using cluster = await FakeCluster.start();
    const withD = placementOf({ self: nodeD, ringIds: fourNodes });
    const withoutD = placementOf({ self: nodeD, ringIds: [nodeA, nodeB, nodeC] });
    const key = findKey((candidate) => withD.replicasOf(table, candidate).includes(nodeD));
    await cluster.node(nodeA).replicator.write(put(key, { n: 1 }));
    // D left in its last life and comes back: the others take it back into the ring, D starts from its data.
    cluster.membership.set({ ring: fourNodes, live: fourNodes });
    const rejoined = await cluster.addNode(nodeD, new MemoryFs(), { rejoining: true });
    assert.deepEqual(rejoined.replicator.initialChange?.previous.ringIds, [nodeA, nodeB, nodeC]);
    assert.equal(rejoined.replicator.transitionCount, 1);
    const { paxos } = rejoined.replicator.handlers();
    const prepare = (counter: number, joint?: string[][]) => ({
      op: "prepare",
      table,
      key,
      ballot: ballot(counter, "127.0.0.1:7005"),
      replicas: withD.replicasOf(table, key),
      ...(joint === undefined ? {} : { joint }),
    });
    const answerOf = async (item: unknown) =>
      ((await paxos!({ items: [item] }, "127.0.0.1:7005")) as { results: Array<Record<string, unknown>> })
        .results[0]!;
    // A proposer that never saw D leave names D's old set alone: D does not serve that view by itself.
    assert.deepEqual(await answerOf(prepare(50)), {
      result: "joint",
      sets: [withoutD.replicasOf(table, key)],
    });
    assert.equal((await answerOf(prepare(51, [[...withoutD.replicasOf(table, key)]]))).result, "promised");
    // Its first pass settles the keys it holds; from then on its own view will do.
    assert.equal(await rejoined.replicator.settle(table, key), true);
    assert.equal((await answerOf(prepare(90))).result, "promised");
  },
);

Deno.test("Replicator without rejoining has no change to start with", async () => {
  await using cluster = await FakeCluster.start();
  assert.equal(cluster.node(nodeA).replicator.initialChange, undefined);
  assert.equal(cluster.node(nodeA).replicator.transitionCount, 0);
});

Deno.test(
  "Replicator.handlers().paxos publishes notices and answers proposals, in the batch's order",
  async () => {
    await using cluster = await FakeCluster.start();
    const { paxos } = cluster.node(nodeA).replicator.handlers();
    const key = keyWithReplicas(cluster, [nodeB]);
    const replicas = [...cluster.placement(nodeA).replicasOf(table, key)];
    const items: PaxosItem[] = [
      { op: "chosen", table, key: "elsewhere", kind: "Deleted", version: 4, json: "{}" },
      { op: "prepare", table, key, ballot: ballot(5, nodeB), replicas },
      { op: "accept", table, key, ballot: ballot(5, nodeB), replicas, entry: stateOf(1, '"one"') },
      { op: "chosen", table, key, kind: "Updated", version: 1, json: '{"value":"one"}' },
    ];
    assert.deepEqual(await paxos!({ items }, nodeB), {
      results: [
        { result: "noted" },
        { result: "promised", accepted: { counter: 0, node: "" }, entry: null },
        { result: "accepted" },
        { result: "noted" },
      ],
    });
    assert.equal(
      cluster.node(nodeA).store.getEntry(table, "elsewhere"),
      undefined,
      "a notice stores nothing",
    );
    assert.equal(cluster.node(nodeA).store.replicaOf(table, key)?.ballot?.node, nodeB);
    assert.deepEqual(cluster.node(nodeA).sink.events, [
      { kind: "Deleted", table, key: "elsewhere", version: 4, sequence: 0, json: "{}" },
      { kind: "Updated", table, key, version: 1, sequence: 0, json: '{"value":"one"}' },
    ]);
    const malformed = { op: "chosen", table, key, kind: "Updated", version: 0, json: "{}" };
    await assert.rejects(async () => await paxos!({ items: [malformed] }, nodeB), InvalidRequestError);
  },
);

Deno.test("Replicator.handlers().apply stores by the accept rule", async () => {
  await using cluster = await FakeCluster.start();
  const { apply } = cluster.node(nodeA).replicator.handlers();
  const store = cluster.node(nodeA).store;
  const entry = stateOf(3, '{"n":3}', ballot(2, nodeB));
  const items: ApplyItem[] = [{ store: true, table, key: "stored", entry }];
  assert.deepEqual(await apply!({ items }, nodeB), { results: [{ result: "applied" }] });
  assert.deepEqual(store.replicaOf(table, "stored"), entry);
  assert.deepEqual(cluster.node(nodeA).sink.events, [], "a delayed accept is not an event");
  const notice = { store: false, table, key: "elsewhere", kind: "Deleted", version: 4, json: "{}" };
  await assert.rejects(async () => await apply!({ items: [notice] }, nodeB), InvalidRequestError);
  // Ballots decide, not versions: a higher version at a lower ballot is stale.
  const older = { store: true, table, key: "stored", entry: stateOf(7, '"lost"', ballot(1, nodeC)) } as const;
  const same = { store: true, table, key: "stored", entry } as const;
  assert.deepEqual(await apply!({ items: [older, same] }, nodeB), {
    results: [{ result: "stale" }, { result: "identical" }],
  });
  assert.deepEqual(store.replicaOf(table, "stored"), entry);
  // Below the key's promise it is stale too; at the promise it is a valid accept.
  await store.promise(table, "stored", ballot(4, nodeC));
  const below = { store: true, table, key: "stored", entry: stateOf(4, '"four"', ballot(3, nodeC)) } as const;
  const at = { store: true, table, key: "stored", entry: stateOf(4, '"four"', ballot(4, nodeC)) } as const;
  assert.deepEqual(await apply!({ items: [below, at] }, nodeB), {
    results: [{ result: "stale" }, { result: "applied" }],
  });
  assert.deepEqual(store.replicaOf(table, "stored"), at.entry);
  await assert.rejects(async () => await apply!({ items: [{ store: true }] }, nodeB), InvalidRequestError);
  await assert.rejects(async () => await apply!({}, nodeB), InvalidRequestError);
});

Deno.test("Replicator.handlers().apply of a state blocked by a stale promise runs a round", async () => {
  await using cluster = await FakeCluster.start();
  const key = keyWithReplicas(cluster, [nodeA]);
  const chosen = stateOf(1, '"chosen"', ballot(3, nodeC));
  for (const id of [nodeB, nodeC]) {
    await cluster.node(id).store.applyReplicas([{ table, key, entry: chosen }]);
  }
  // A promised (4, C) to a prepare whose accept never came: no delayed accept below it can land here.
  const store = cluster.node(nodeA).store;
  await store.promise(table, key, ballot(4, nodeC));
  const { apply } = cluster.node(nodeA).replicator.handlers();
  const answer = await apply!({ items: [{ store: true, table, key, entry: chosen }] }, nodeB);
  assert.deepEqual(answer, { results: [{ result: "stale" }] });
  await cluster.network.settle();
  // The round starts two request timeouts of the node's clock after the refusal, not before.
  const settleDelayMs = 2 * cluster.config.requestTimeoutMs;
  assert.equal(cluster.clock.timerCount, 1, "the round waits on a timer");
  cluster.clock.advance(settleDelayMs - 1);
  await cluster.network.settle();
  assert.equal(store.replicaOf(table, key)?.valueJson, undefined, "no round before the delay");
  cluster.clock.advance(1);
  assert.equal(cluster.clock.timerCount, 0);
  await waitFor(() => store.replicaOf(table, key)?.valueJson === '"chosen"', {
    timeoutMs: 6_000,
    what: "the round that brings A onto the chosen state",
  });
  assert.equal(store.replicaOf(table, key)?.ballot?.node, nodeA, "accepted at A's ballot, above (4, C)");
  assert.equal(store.replicaOf(table, key)?.version, 1, "the identity change");
});

Deno.test("Replicator.handlers().apply judges after an accept of the key pending here", async () => {
  const gated = new SyncGateFs();
  await using cluster = await FakeCluster.start({ fsOf: (id) => id === nodeA ? gated : new MemoryFs() });
  const store = cluster.node(nodeA).store;
  gated.hold();
  // A's acceptor took (2, A) for k: queued, not yet durable (its fsync is held).
  const accepted = store.accept(table, "k", ballot(2, nodeA), stateOf(1, '"accepted here"'));
  assert.equal(store.replicaOf(table, "k"), undefined, "pending: not visible yet");
  const { apply } = cluster.node(nodeA).replicator.handlers();
  const late = stateOf(1, '"an older proposal"', ballot(1, nodeB));
  const answer = apply!({ items: [{ store: true, table, key: "k", entry: late }] }, nodeB);
  gated.release();
  assert.equal((await accepted).version, 1);
  assert.deepEqual(await answer, { results: [{ result: "stale" }] });
  assert.equal(store.replicaOf(table, "k")?.valueJson, '"accepted here"');
});

Deno.test("Replicator.handlers().read answers the entry and its replica form, or nulls", async () => {
  await using cluster = await FakeCluster.start();
  const node = cluster.node(nodeA);
  const { read } = node.replicator.handlers();
  assert.deepEqual(await read!({ table, key: "missing" }, nodeB), { entry: null, replica: null });
  await node.store.applyReplicas([{ table, key: "k", entry: stateOf(1, '{"n":1}', ballot(1, nodeB)) }]);
  const stored = node.store.getEntry(table, "k")!;
  assert.deepEqual(await read!({ table, key: "k" }, nodeB), {
    entry: { json: stored.json, version: 1, deleted: false },
    replica: stateOf(1, '{"n":1}', ballot(1, nodeB)),
  });
  await assert.rejects(async () => await read!({ table }, nodeB), InvalidRequestError);
});

Deno.test("Replicator.handlers().write proposes and answers errors as codes", async () => {
  await using cluster = await FakeCluster.start();
  const key = keyWithReplicas(cluster, [nodeA]);
  const { write } = cluster.node(nodeA).replicator.handlers();
  const reply = await write!({ op: "put", table, key, value: { n: 1 }, owner: "alice" }, nodeB);
  await cluster.drained(); // the proposer's own accept is written lazily
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
  await cluster.drained(); // the proposer's own accept is written lazily
  assert.equal((conflict as { error: { code: string } }).error.code, "version_conflict");
  await assert.rejects(async () => await write!({ op: "put", table, key }, nodeB), InvalidRequestError);
  await cluster.drained(); // the proposer's own accept is written lazily
  const deleted = await write!({ op: "delete", table, key, owner: "alice", ifVersion: 1 }, nodeB) as {
    version: number;
    deleted: boolean;
  };
  assert.equal(deleted.version, 2);
  assert.equal(deleted.deleted, true);
});

Deno.test("Replicator.handlers().write answers unavailable for a key placed elsewhere", async () => {
  await using cluster = await FakeCluster.start({ config: { replicationFactor: 2 } });
  const key = findKey((candidate) => !cluster.placement(nodeA).replicasOf(table, candidate).includes(nodeA));
  const { write } = cluster.node(nodeA).replicator.handlers();
  const reply = await write!({ op: "put", table, key, value: 1, owner: "alice" }, nodeB) as {
    error: { code: string; message: string };
  };
  assert.equal(reply.error.code, "unavailable");
  assert.match(reply.error.message, /no longer replicates it/);
  assert.equal(cluster.network.sent.length, 0, "no round was run");
});

// --- readEntry --------------------------------------------------------------------------------------------

Deno.test("Replicator.readEntry() reads locally on a replica", async () => {
  await using cluster = await FakeCluster.start();
  const key = keyWithReplicas(cluster, [nodeB]);
  await cluster.node(nodeA).store.put(table, key, { n: 1 }, alice);
  const entry = await cluster.node(nodeA).replicator.readEntry(table, key);
  assert.equal(entry?.version, 1);
  assert.equal(cluster.network.sent.length, 0);
});

Deno.test("Replicator.readEntry() on a non-replica repairs with the highest-ballot state", async () => {
  await using cluster = await FakeCluster.start({ config: { replicationFactor: 2 } });
  const key = findKey((candidate) => !cluster.placement(nodeA).replicasOf(table, candidate).includes(nodeA));
  // B holds a lost branch of a higher version; C the state of a later ballot, which supersedes it.
  await cluster.node(nodeB).store.applyReplica(table, key, stateOf(5, '"lost"', ballot(1, nodeB)));
  await cluster.node(nodeC).store.applyReplica(table, key, stateOf(4, '"chosen"', ballot(3, nodeC)));
  const replicator = cluster.node(nodeA).replicator;
  const entry = await replicator.readEntry(table, key);
  assert.equal(entry?.version, 4, "the first majority of a set of two is both: the higher ballot wins");
  await cluster.network.settle();
  assert.equal(replicator.stats.forwardedReads, 1);
  assert.equal(replicator.stats.readRepairs, 1);
  assert.deepEqual(cluster.node(nodeB).store.replicaOf(table, key), stateOf(4, '"chosen"', ballot(3, nodeC)));
  assert.deepEqual(cluster.network.sentWhere({ kind: "apply" }).map(({ target }) => target), [nodeB]);
  assert.equal(versionOn(cluster, nodeA, key), undefined, "the reader keeps no copy");
});

Deno.test("Replicator.readEntry() repairs a replica lacking the key, leaves equal ones", async () => {
  await using cluster = await FakeCluster.start({ config: { replicationFactor: 2 } });
  const key = findKey((candidate) => !cluster.placement(nodeA).replicasOf(table, candidate).includes(nodeA));
  const state = stateOf(1, "1", ballot(1, nodeB));
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
