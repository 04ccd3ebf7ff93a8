// Goal: a Rebalancer pass ships each local key only where it is newly needed (to the new replicas of a key
// this node keeps, to every live replica of a key it loses), purges a lost key only once every live target
// acknowledged it, never purges while purgeEnabled is false, pushes in batches of rebalanceBatchKeys, and
// runs passes one at a time, folding changes that arrive meanwhile into one more pass.
// Method: a real Store on MemoryFs, Placements built by hand, and a recording KeyPusher whose answers
// (and timing) the test controls.
import assert from "node:assert/strict";
import type { Placement } from "../../../src/cluster/placement.ts";
import { type KeyPusher, rebalanceBatchKeys, Rebalancer } from "../../../src/cluster/rebalance.ts";
import type { Store } from "../../../src/store/mod.ts";
import { silentLogger } from "../../../src/util/log.ts";
import { nodeA, nodeB, nodeC, nodeD, openTestStore, placementOf, testClusterConfig } from "./fake_cluster.ts";

const table = "t";

/** Records every push; a push to a peer in `failing` answers false; `gate`, when set, holds each push. */
class RecordingPusher implements KeyPusher {
  readonly pushes: Array<{ peer: string; keys: string[] }> = [];
  readonly failing = new Set<string>();
  gate: Promise<void> | undefined;

  async pushKeys(peer: string, keys: ReadonlyArray<{ table: string; key: string }>): Promise<boolean> {
    this.pushes.push({ peer, keys: keys.map(({ key }) => key) });
    if (this.gate !== undefined) await this.gate;
    return !this.failing.has(peer);
  }

  /** Every key pushed to `peer`, sorted. */
  keysTo(peer: string): string[] {
    return this.pushes.filter((push) => push.peer === peer).flatMap((push) => push.keys).sort();
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

/** The keys of `keys` that `after` no longer places on A. */
function leavingKeys(keys: readonly string[]): string[] {
  return keys.filter((key) => !after.replicasOf(table, key).includes(nodeA));
}

Deno.test("Rebalancer.pass() pushes a kept key only to new replicas and a lost key to its live replicas", async () => {
  const store = await openTestStore();
  try {
    const keys = await putOwnKeys(store, before, 80);
    const pusher = new RecordingPusher();
    const rebalancer = new Rebalancer({ store, pusher, logger: silentLogger });
    await rebalancer.pass(before, after);
    const leaving = leavingKeys(keys);
    const kept = keys.filter((key) => !leaving.includes(key));
    assert.ok(leaving.length > 0 && kept.length > 0, "the fixture has keys of both kinds");
    const expected = new Map<string, string[]>();
    for (const key of keys) {
      const old = before.replicasOf(table, key);
      const targets = after.replicasOf(table, key).filter((id) =>
        id !== nodeA && (leaving.includes(key) || !old.includes(id))
      );
      for (const target of targets) expected.set(target, [...(expected.get(target) ?? []), key]);
    }
    for (const peer of [nodeB, nodeC, nodeD]) {
      assert.deepEqual(pusher.keysTo(peer), (expected.get(peer) ?? []).sort());
    }
    // A key A keeps moves only to D, the one new member; B and C only receive keys A loses.
    for (const peer of [nodeB, nodeC]) {
      for (const key of pusher.keysTo(peer)) assert.ok(leaving.includes(key));
    }
    assert.ok(kept.some((key) => !pusher.keysTo(nodeD).includes(key)), "an unmoved key is not pushed");
    for (const key of leaving) assert.equal(store.getEntry(table, key), undefined, `${key} purged`);
    for (const key of kept) assert.equal(store.getEntry(table, key)?.version, 1, `${key} kept`);
    assert.equal(rebalancer.purgedCount, leaving.length);
    assert.equal(rebalancer.movedCount, pusher.pushes.reduce((sum, push) => sum + push.keys.length, 0));
  } finally {
    await store.close();
  }
});

Deno.test("Rebalancer.pass() purges a lost key only when every live target acknowledged it", async () => {
  const store = await openTestStore();
  try {
    const keys = await putOwnKeys(store, before, 80);
    const pusher = new RecordingPusher();
    pusher.failing.add(nodeB);
    const rebalancer = new Rebalancer({ store, pusher, logger: silentLogger });
    await rebalancer.pass(before, after);
    const leaving = leavingKeys(keys);
    const blocked = leaving.filter((key) => after.replicasOf(table, key).includes(nodeB));
    const free = leaving.filter((key) => !blocked.includes(key));
    assert.ok(blocked.length > 0 && free.length > 0, "the fixture has keys of both kinds");
    for (const key of blocked) assert.equal(store.getEntry(table, key)?.version, 1, `${key} kept: B failed`);
    for (const key of free) assert.equal(store.getEntry(table, key), undefined, `${key} purged`);
    assert.equal(rebalancer.purgedCount, free.length);
  } finally {
    await store.close();
  }
});

Deno.test("Rebalancer.pass() neither pushes nor purges a key whose new replicas are all down", async () => {
  const store = await openTestStore();
  try {
    const keys = await putOwnKeys(store, before, 40);
    const pusher = new RecordingPusher();
    const rebalancer = new Rebalancer({ store, pusher, logger: silentLogger });
    const alone = placementOf({
      self: nodeA,
      ringIds: [nodeA, nodeB, nodeC, nodeD],
      liveIds: [nodeA],
      config,
    });
    await rebalancer.pass(before, alone);
    assert.deepEqual(pusher.pushes, []);
    for (const key of keys) assert.equal(store.getEntry(table, key)?.version, 1);
    assert.equal(rebalancer.purgedCount, 0);
  } finally {
    await store.close();
  }
});

Deno.test("Rebalancer.pass() keeps every key when purgeEnabled is false", async () => {
  const store = await openTestStore();
  try {
    const keys = await putOwnKeys(store, before, 40);
    const pusher = new RecordingPusher();
    const rebalancer = new Rebalancer({ store, pusher, logger: silentLogger });
    rebalancer.purgeEnabled = false;
    await rebalancer.pass(before, after);
    assert.ok(leavingKeys(keys).length > 0);
    for (const key of leavingKeys(keys)) {
      assert.ok(pusher.keysTo(nodeB).concat(pusher.keysTo(nodeC)).includes(key));
    }
    for (const key of keys) assert.equal(store.getEntry(table, key)?.version, 1);
    assert.equal(rebalancer.purgedCount, 0);
  } finally {
    await store.close();
  }
});

for (const count of [rebalanceBatchKeys, rebalanceBatchKeys + 1]) {
  Deno.test(`Rebalancer.pass() pushes ${count} keys in batches of at most rebalanceBatchKeys`, async () => {
    const store = await openTestStore();
    try {
      const solo = placementOf({ self: nodeA, ringIds: [nodeA], config });
      const pair = placementOf({ self: nodeA, ringIds: [nodeA, nodeD], config });
      const keys = await putOwnKeys(store, solo, count);
      const pusher = new RecordingPusher();
      await new Rebalancer({ store, pusher, logger: silentLogger }).pass(solo, pair);
      const sizes = pusher.pushes.map((push) => push.keys.length);
      assert.deepEqual(sizes, count === rebalanceBatchKeys ? [rebalanceBatchKeys] : [rebalanceBatchKeys, 1]);
      assert.deepEqual(pusher.keysTo(nodeD), keys);
    } finally {
      await store.close();
    }
  });
}

Deno.test("Rebalancer.pass() stops pushing to a peer after its first failed batch", async () => {
  const store = await openTestStore();
  try {
    const solo = placementOf({ self: nodeA, ringIds: [nodeA], config });
    const pair = placementOf({ self: nodeA, ringIds: [nodeA, nodeD], config });
    await putOwnKeys(store, solo, rebalanceBatchKeys + 1);
    const pusher = new RecordingPusher();
    pusher.failing.add(nodeD);
    const rebalancer = new Rebalancer({ store, pusher, logger: silentLogger });
    await rebalancer.pass(solo, pair);
    assert.equal(pusher.pushes.length, 1);
    assert.equal(rebalancer.movedCount, 0);
  } finally {
    await store.close();
  }
});

Deno.test("Rebalancer.onPlacementChange() ignores a change that keeps the ring", async () => {
  const store = await openTestStore();
  try {
    await putOwnKeys(store, before, 10);
    const pusher = new RecordingPusher();
    const rebalancer = new Rebalancer({ store, pusher, logger: silentLogger });
    const fewerLive = placementOf({ self: nodeA, ringIds: [nodeA, nodeB, nodeC], liveIds: [nodeA], config });
    rebalancer.onPlacementChange(before, fewerLive);
    await rebalancer.idle();
    assert.deepEqual(pusher.pushes, []);
  } finally {
    await store.close();
  }
});

Deno.test("Rebalancer.onPlacementChange() runs one pass at a time and folds later changes into one more", async () => {
  const store = await openTestStore();
  try {
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
    assert.deepEqual(pusher.pushes.map((push) => push.peer), [nodeB], "the second pass waits for the first");
    release();
    await rebalancer.idle();
    assert.deepEqual(pusher.pushes.map((push) => push.peer).sort(), [nodeB, nodeC, nodeD]);
    for (const peer of [nodeB, nodeC, nodeD]) assert.deepEqual(pusher.keysTo(peer), keys);
    assert.equal(rebalancer.purgedCount, 0);
  } finally {
    await store.close();
  }
});
