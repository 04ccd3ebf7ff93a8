// Goal: a Rebalancer pass settles exactly the local keys whose replica set changed (one `settle` round
// each), purges a key this node left only once its round succeeded and never while purgeEnabled is false,
// retries the keys that failed for up to settleAttemptsMax rounds (pausing on its clock), tells the pusher
// `passDone(next)` only when every key settled, settles at most rebalanceBatchKeys keys at once, and runs
// passes one at a time, folding changes that arrive meanwhile into one more pass. Over a fake cluster, a node
// that joins ends the pass holding the latest state of every key it now replicates, learnt through joint
// rounds.
// Method: a real Store on MemoryFs, Placements built by hand and a recording KeyPusher whose `settle`
// answers (and timing) the test scripts; then a FakeCluster (real Stores and Replicators over a fake
// network) with a Rebalancer per node wired as ClusterNode wires it, and a 4th node added to the ring.
import assert from "node:assert/strict";
import type { Placement } from "../../../src/cluster/placement.ts";
import type { PaxosItem, ProposalItem } from "../../../src/cluster/paxos_wire.ts";
import {
  type KeyPusher,
  rebalanceBatchKeys,
  Rebalancer,
  settleAttemptsMax,
} from "../../../src/cluster/rebalance.ts";
import type { Store } from "../../../src/store/mod.ts";
import { ManualClock } from "../../../src/util/clock.ts";
import { silentLogger } from "../../../src/util/log.ts";
import { waitFor } from "../../helpers/wait_for.ts";
import {
  FakeCluster,
  nodeA,
  nodeB,
  nodeC,
  nodeD,
  openTestStore,
  placementOf,
  testClusterConfig,
} from "./fake_cluster.ts";

const table = "t";

/**
 * Records every settle and passDone; `answer(key, round)` scripts whether the `round`-th settle of a key
 * (0-based) succeeds (default: always); `gate`, when set, holds each settle until it resolves.
 */
class RecordingPusher implements KeyPusher {
  readonly settles: string[] = [];
  readonly passes: Placement[] = [];
  answer: (key: string, round: number) => boolean = () => true;
  gate: Promise<void> | undefined;
  inFlight = 0;
  inFlightMax = 0;

  pushKeys(): Promise<boolean> {
    return Promise.reject(new Error("a pass settles keys, it does not push them"));
  }

  async settle(_table: string, key: string): Promise<boolean> {
    const round = this.roundsOf(key);
    this.settles.push(key);
    this.inFlight += 1;
    this.inFlightMax = Math.max(this.inFlightMax, this.inFlight);
    try {
      await (this.gate ?? Promise.resolve()); // a settle is a round: it never answers in the caller's turn
      return this.answer(key, round);
    } finally {
      this.inFlight -= 1;
    }
  }

  passDone(next: Placement): void {
    this.passes.push(next);
  }

  /** How many times `key` was settled. */
  roundsOf(key: string): number {
    return this.settles.filter((settled) => settled === key).length;
  }

  /** Every key settled at least once, sorted. */
  settledKeys(): string[] {
    return [...new Set(this.settles)].sort();
  }
}

/** Puts `count` keys that `placement` gives this node (self) into `store`; returns them sorted. */
async function putOwnKeys(store: Store, placement: Placement, count: number): Promise<string[]> {
  const keys: string[] = [];
  for (let index = 0; keys.length < count; index += 1) {
    assert.ok(index < 100_000);
    const key = `k${index}`;
    if (placement.replicasOf(table, key).includes(placement.self)) keys.push(key);
  }
  await Promise.all(keys.map((key) => store.put(table, key, { key }, { owner: "alice" })));
  return keys.sort();
}

const config = testClusterConfig({ replicationFactor: 2 });
const before = placementOf({ self: nodeA, ringIds: [nodeA, nodeB, nodeC], config });
const after = placementOf({ self: nodeA, ringIds: [nodeA, nodeB, nodeC, nodeD], config });

/** The keys of `keys` whose replica set differs between `before` and `after`. */
function movedKeys(keys: readonly string[]): string[] {
  return keys.filter((key) => before.replicasOf(table, key).join() !== after.replicasOf(table, key).join());
}

/** The keys of `keys` that `after` no longer places on A. */
function leavingKeys(keys: readonly string[]): string[] {
  return keys.filter((key) => !after.replicasOf(table, key).includes(nodeA));
}

/** Runs `test` with an empty Store, closed at the end. */
async function withStore(test: (store: Store) => Promise<void>): Promise<void> {
  const store = await openTestStore();
  try {
    await test(store);
  } finally {
    await store.close();
  }
}

Deno.test("Rebalancer.pass() settles each moved key once, purges those A left, passDone", async () => {
  await withStore(async (store) => {
    const keys = await putOwnKeys(store, before, 80);
    const pusher = new RecordingPusher();
    const rebalancer = new Rebalancer({ store, pusher, logger: silentLogger });
    await rebalancer.pass(before, after);
    const moved = movedKeys(keys);
    const leaving = leavingKeys(keys);
    assert.ok(leaving.length > 0 && moved.length > leaving.length, "keys that leave A and keys A keeps move");
    assert.ok(moved.length < keys.length, "and some keys do not move");
    assert.deepEqual([...pusher.settles].sort(), moved, "each moved key settled once, no other");
    for (const key of leaving) assert.equal(store.getEntry(table, key), undefined, `${key} purged`);
    for (const key of keys.filter((key) => !leaving.includes(key))) {
      assert.equal(store.getEntry(table, key)?.version, 1, `${key} kept`);
    }
    assert.equal(rebalancer.movedCount, moved.length);
    assert.equal(rebalancer.purgedCount, leaving.length);
    assert.deepEqual(pusher.passes, [after]);
  });
});

Deno.test("Rebalancer.pass() calls passDone for a change that moves none of its keys", async () => {
  await withStore(async (store) => {
    const pusher = new RecordingPusher();
    await new Rebalancer({ store, pusher, logger: silentLogger }).pass(before, after);
    assert.deepEqual(pusher.settles, []);
    assert.deepEqual(pusher.passes, [after]);
  });
});

Deno.test(
  "Rebalancer.pass() does nothing when every member left (a whole cluster stopped at once)",
  async () => {
    await withStore(async (store) => {
      const keys = await putOwnKeys(store, before, 20);
      const pusher = new RecordingPusher();
      const rebalancer = new Rebalancer({ store, pusher, logger: silentLogger });
      await rebalancer.pass(before, placementOf({ self: nodeA, ringIds: [], liveIds: [nodeA] }));
      assert.deepEqual(pusher.settles, [], "no round: there is no replica set to settle on");
      assert.deepEqual(pusher.passes, []);
      for (const key of keys) assert.equal(store.getEntry(table, key)?.version, 1, `${key} kept, not purged`);
    });
  },
);

Deno.test("Rebalancer.pass() retries failed keys and purges a left key only once settled", async () => {
  await withStore(async (store) => {
    const keys = await putOwnKeys(store, before, 80);
    const leaving = leavingKeys(keys);
    const [late, ...onTime] = leaving as [string, ...string[]];
    const pusher = new RecordingPusher();
    let purgedBeforeSettled = false;
    pusher.answer = (key, round) => {
      if (key !== late) return true;
      if (store.getEntry(table, late) === undefined) purgedBeforeSettled = true;
      return round >= 2;
    };
    const rebalancer = new Rebalancer({ store, pusher, logger: silentLogger, retryDelayMs: 1 });
    await rebalancer.pass(before, after);
    assert.equal(pusher.roundsOf(late), 3, "failed twice, settled on the third round");
    for (const key of onTime) assert.equal(pusher.roundsOf(key), 1, "a settled key is not settled again");
    assert.equal(purgedBeforeSettled, false, "kept while its round failed");
    for (const key of leaving) assert.equal(store.getEntry(table, key), undefined, `${key} purged`);
    assert.equal(rebalancer.movedCount, movedKeys(keys).length);
    assert.deepEqual(pusher.passes, [after]);
  });
});

Deno.test(
  "Rebalancer.pass() pauses retryDelayMs times the attempt on its clock before each retry",
  async () => {
    await withStore(async (store) => {
      const keys = await putOwnKeys(store, before, 80);
      const [late] = leavingKeys(keys) as [string];
      const pusher = new RecordingPusher();
      pusher.answer = (key, round) => key !== late || round >= 2;
      const clock = new ManualClock();
      const rebalancer = new Rebalancer({ store, pusher, logger: silentLogger, retryDelayMs: 100, clock });
      const passing = rebalancer.pass(before, after);
      await waitFor(() => clock.timerCount === 1, { timeoutMs: 2_000, what: "the first pause" });
      assert.equal(pusher.roundsOf(late), 1);
      clock.advance(99);
      assert.equal(clock.timerCount, 1, "still pausing");
      clock.advance(1);
      await waitFor(() => pusher.roundsOf(late) === 2 && clock.timerCount === 1, { timeoutMs: 2_000 });
      clock.advance(199);
      assert.equal(clock.timerCount, 1, "the second pause is twice as long");
      clock.advance(1);
      await passing;
      assert.equal(pusher.roundsOf(late), 3);
      assert.equal(clock.timerCount, 0);
      assert.deepEqual(pusher.passes, [after]);
    });
  },
);

Deno.test("Rebalancer.pass() gives up after settleAttemptsMax rounds, without passDone", async () => {
  await withStore(async (store) => {
    const keys = await putOwnKeys(store, before, 80);
    const [stuck] = leavingKeys(keys) as [string];
    const pusher = new RecordingPusher();
    pusher.answer = (key) => key !== stuck;
    const rebalancer = new Rebalancer({ store, pusher, logger: silentLogger, retryDelayMs: 1 });
    await rebalancer.pass(before, after);
    assert.equal(pusher.roundsOf(stuck), settleAttemptsMax);
    assert.equal(store.getEntry(table, stuck)?.version, 1, "a key that never settled is not purged");
    assert.equal(rebalancer.movedCount, movedKeys(keys).length - 1);
    assert.equal(rebalancer.purgedCount, leavingKeys(keys).length - 1);
    assert.deepEqual(pusher.passes, [], "the change is not settled for every key here");
  });
});

Deno.test("Rebalancer.pass() settles but keeps every key when purgeEnabled is false", async () => {
  await withStore(async (store) => {
    const keys = await putOwnKeys(store, before, 40);
    const pusher = new RecordingPusher();
    const rebalancer = new Rebalancer({ store, pusher, logger: silentLogger });
    rebalancer.purgeEnabled = false;
    await rebalancer.pass(before, after);
    assert.ok(leavingKeys(keys).length > 0);
    assert.deepEqual([...pusher.settles].sort(), movedKeys(keys));
    for (const key of keys) assert.equal(store.getEntry(table, key)?.version, 1);
    assert.equal(rebalancer.purgedCount, 0);
    assert.deepEqual(pusher.passes, [after]);
  });
});

for (const count of [rebalanceBatchKeys, rebalanceBatchKeys + 1]) {
  Deno.test(`Rebalancer.pass() settles ${count} keys at most rebalanceBatchKeys at a time`, async () => {
    await withStore(async (store) => {
      const solo = placementOf({ self: nodeA, ringIds: [nodeA], config });
      const pair = placementOf({ self: nodeA, ringIds: [nodeA, nodeD], config });
      const keys = await putOwnKeys(store, solo, count);
      const pusher = new RecordingPusher();
      await new Rebalancer({ store, pusher, logger: silentLogger }).pass(solo, pair);
      assert.equal(pusher.inFlightMax, Math.min(count, rebalanceBatchKeys));
      assert.deepEqual([...pusher.settles].sort(), keys);
      assert.deepEqual(pusher.passes, [pair]);
    });
  });
}

Deno.test("Rebalancer.onPlacementChange() ignores a change that keeps the ring", async () => {
  await withStore(async (store) => {
    await putOwnKeys(store, before, 10);
    const pusher = new RecordingPusher();
    const rebalancer = new Rebalancer({ store, pusher, logger: silentLogger });
    const fewerLive = placementOf({ self: nodeA, ringIds: [nodeA, nodeB, nodeC], liveIds: [nodeA], config });
    rebalancer.onPlacementChange(before, fewerLive);
    await rebalancer.idle();
    assert.deepEqual(pusher.settles, []);
    assert.deepEqual(pusher.passes, []);
  });
});

Deno.test("Rebalancer.onPlacementChange() runs one pass at a time, folding later changes", async () => {
  await withStore(async (store) => {
    const all = testClusterConfig({ replicationFactor: 4 });
    const ring1 = placementOf({ self: nodeA, ringIds: [nodeA], config: all });
    const ring2 = placementOf({ self: nodeA, ringIds: [nodeA, nodeB], config: all });
    const ring3 = placementOf({ self: nodeA, ringIds: [nodeA, nodeB, nodeC], config: all });
    const ring4 = placementOf({ self: nodeA, ringIds: [nodeA, nodeB, nodeC, nodeD], config: all });
    const keys = await putOwnKeys(store, ring1, 10);
    const pusher = new RecordingPusher();
    let release: () => void = () => {};
    pusher.gate = new Promise((resolve) => release = resolve);
    const rebalancer = new Rebalancer({ store, pusher, logger: silentLogger });
    rebalancer.onPlacementChange(ring1, ring2);
    rebalancer.onPlacementChange(ring2, ring3);
    rebalancer.onPlacementChange(ring3, ring4);
    assert.deepEqual([...pusher.settles].sort(), keys, "the first pass runs alone");
    release();
    await rebalancer.idle();
    assert.deepEqual(pusher.passes, [ring2, ring4], "ring2→ring3 and ring3→ring4 folded into one pass");
    for (const key of keys) assert.equal(pusher.roundsOf(key), 2);
    assert.equal(rebalancer.purgedCount, 0);
  });
});

/** Every `paxos` prepare item the network carried from request `since` on, with its target. */
function preparesOf(cluster: FakeCluster, since: number): Array<{ item: ProposalItem; target: string }> {
  const requests = cluster.network.sent.slice(since).filter(({ kind }) => kind === "paxos");
  return requests.flatMap(({ body, target }) =>
    (body as { items: PaxosItem[] }).items.flatMap((item) => item.op === "prepare" ? [{ item, target }] : [])
  );
}

/** Whether some prepare round of `key` reached both `first` and `second` (its proposer counts as reached). */
function oneRoundReached(
  prepares: ReadonlyArray<{ item: ProposalItem; target: string }>,
  options: { key: string; first: string; second: string },
): boolean {
  const reachedByBallot = new Map<string, Set<string>>();
  for (const { item, target } of prepares) {
    if (item.key !== options.key) continue;
    const id = `${item.ballot.counter}/${item.ballot.node}`;
    const reached = reachedByBallot.get(id) ?? new Set([item.ballot.node]);
    reached.add(target);
    reachedByBallot.set(id, reached);
  }
  const reachedSets = [...reachedByBallot.values()];
  return reachedSets.some((reached) => reached.has(options.first) && reached.has(options.second));
}

/**
 * A cluster of A, B, C holding `keys` at version 2, then D joins; resolves once every pass is over, with
 * the Rebalancers of A, B, C and D and the index of the first request sent after the change.
 */
async function joinD(
  cluster: FakeCluster,
  keys: readonly string[],
  options: { pauseD?: boolean } = {},
): Promise<{ rebalancers: Rebalancer[]; since: number }> {
  for (const key of keys) {
    for (const n of [1, 2]) {
      const write = { op: "put", table, key, value: { n }, conditions: { owner: "alice" } } as const;
      await cluster.node(nodeA).replicator.write(write);
    }
  }
  await cluster.network.settle();
  await cluster.addNode(nodeD);
  // Wired as ClusterNode wires them.
  const rebalancers = [...cluster.nodes.values()].map(({ store, replicator }) => {
    const rebalancer = new Rebalancer({ store, pusher: replicator, logger: silentLogger, retryDelayMs: 5 });
    replicator.onPlacementChange((previous, next) => rebalancer.onPlacementChange(previous, next));
    return rebalancer;
  });
  const ring = [nodeA, nodeB, nodeC, nodeD];
  const since = cluster.network.sent.length;
  // Paused: D answers every message of the passes only after they ended (their rounds end at a quorum).
  if (options.pauseD === true) cluster.network.pause(nodeD);
  cluster.membership.set({ ring, live: ring });
  for (const rebalancer of rebalancers) await rebalancer.idle();
  if (options.pauseD === true) cluster.network.resume(nodeD);
  await cluster.network.settle();
  return { rebalancers, since };
}

Deno.test("Rebalancer: a joining node learns each moved key's latest state in joint rounds", async () => {
  await using cluster = await FakeCluster.start();
  const keys = Array.from({ length: 24 }, (_, index) => `j${index}`);
  const oldRing = cluster.placement(nodeA);
  const { rebalancers, since } = await joinD(cluster, keys);
  const newRing = cluster.placement(nodeA);
  const moved = keys.filter((key) => newRing.replicasOf(table, key).includes(nodeD));
  assert.ok(moved.length > 0 && moved.length < keys.length, "some keys move to D, some stay");
  // A, B and C each held every key and settled each moved one; D held none. One of A, B, C left each.
  const movedCounts = rebalancers.map((rebalancer) => rebalancer.movedCount);
  assert.deepEqual(movedCounts, [moved.length, moved.length, moved.length, 0]);
  assert.equal(rebalancers.reduce((sum, rebalancer) => sum + rebalancer.purgedCount, 0), moved.length);
  const prepares = preparesOf(cluster, since);
  for (const key of moved) {
    const replicas = newRing.replicasOf(table, key);
    const [leaver] = oldRing.replicasOf(table, key).filter((id) => !replicas.includes(id)) as [string];
    for (const id of replicas) {
      const state = cluster.node(id).store.replicaOf(table, key);
      assert.deepEqual([state?.version, state?.valueJson], [2, '{"n":2}'], `${key} on ${id}`);
    }
    assert.ok(oneRoundReached(prepares, { key, first: nodeD, second: leaver }), `${key}: a joint round`);
  }
  for (const key of keys.filter((key) => !moved.includes(key))) {
    assert.ok(!prepares.some(({ item }) => item.key === key), `${key} did not move: no round`);
  }
  // A proposer that settled a key uses the new replica set alone for it from then on.
  const key = moved.find((candidate) => newRing.replicasOf(table, candidate)[0] !== nodeD)!;
  const sentBefore = cluster.network.sent.length;
  const write = { op: "put", table, key, value: { n: 3 }, conditions: { owner: "alice" } } as const;
  assert.equal((await cluster.node(nodeA).replicator.write(write)).version, 3);
  // Proposals only: the write's `chosen` notice goes to every live member, replica or not.
  const targets = cluster.network.sent.slice(sentBefore).filter(({ kind, body }) =>
    kind === "paxos" && (body as { items: PaxosItem[] }).items.some((item) => item.op !== "chosen")
  ).map(({ target }) => target);
  assert.ok(targets.length > 0);
  for (const target of targets) assert.ok(newRing.replicasOf(table, key).includes(target), target);
});

Deno.test(
  "Rebalancer: a joining node that answers only after the passes still gets each moved key's state",
  async () => {
    await using cluster = await FakeCluster.start();
    const keys = Array.from({ length: 24 }, (_, index) => `p${index}`);
    const { rebalancers } = await joinD(cluster, keys, { pauseD: true });
    const newRing = cluster.placement(nodeA);
    const moved = keys.filter((key) => newRing.replicasOf(table, key).includes(nodeD));
    assert.ok(moved.length > 0, "some keys move to D");
    assert.deepEqual(rebalancers.map((rebalancer) => rebalancer.movedCount), [
      moved.length,
      moved.length,
      moved.length,
      0,
    ]);
    // Every settling round ended without D (a quorum of the new set without it); its accepts reached D late.
    for (const key of moved) {
      const state = cluster.node(nodeD).store.replicaOf(table, key);
      assert.deepEqual([state?.version, state?.valueJson], [2, '{"n":2}'], `${key} on D`);
    }
  },
);

Deno.test({
  name: "Rebalancer: after every pass no node holds a key outside its replica set",
  fn: async () => {
    await using cluster = await FakeCluster.start();
    const keys = Array.from({ length: 24 }, (_, index) => `j${index}`);
    await joinD(cluster, keys);
    const ring = cluster.placement(nodeA);
    for (const key of keys) {
      for (const id of [nodeA, nodeB, nodeC, nodeD]) {
        if (ring.replicasOf(table, key).includes(id)) continue;
        assert.equal(cluster.node(id).store.replicaOf(table, key), undefined, `${key} left on ${id}`);
      }
    }
  },
});
