// Goal: SPEC §2 and §5 under network faults: writes taken on both sides of a partition (symmetric and
// one-way) resolve after it heals by one deterministic rule, every replica ends identical, and no
// acknowledged write is lost unless a later acknowledged write of the key replaced it.
// Method: nodes in this process (startNode) whose node-to-node traffic goes through a FaultyNetwork;
// clients reach every node. The randomized scenario is seeded and prints KV_TEST_SEED for replay.
import assert from "node:assert/strict";
import { leftLastTime } from "../../../main.ts";
import { InProcessCluster } from "../../helpers/in_process_cluster.ts";
import { Random } from "../../helpers/seed.ts";
import { SseReader } from "../../helpers/sse_reader.ts";
import { waitFor } from "../../helpers/wait_for.ts";

const options = { sanitizeOps: false, sanitizeResources: false }; // fetch keeps pooled connections to nodes

async function tokenOf(cluster: InProcessCluster, index: number): Promise<string> {
  const response = await cluster.fetch(index, "/auth/alice", { method: "POST", body: '{"secret":"pw"}' });
  return (await response.json()).token;
}

async function put(cluster: InProcessCluster, index: number, key: string, value: unknown, token: string) {
  const response = await cluster.fetch(index, `/t/key/${key}`, {
    method: "PUT",
    headers: { authorization: `Bearer ${token}` },
    body: JSON.stringify({ value }),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await response.text();
  const retryAfter = response.headers.get("retry-after");
  return {
    status: response.status,
    body: response.status === 201 ? JSON.parse(text) : undefined,
    retryAfter,
  };
}

/** Waits until every running node holds the same bytes for `key`. */
async function waitIdentical(cluster: InProcessCluster, key: string, timeoutMs = 15_000): Promise<string> {
  const copies = () =>
    cluster.running().map((index) => cluster.node(index).store.getEntry("t", key)?.json ?? "none");
  try {
    await waitFor(() => {
      const seen = copies();
      return seen.every((copy) => copy === seen[0]) && seen[0] !== "none";
    }, { timeoutMs, intervalMs: 20, what: `replicas of ${key} to converge` });
  } catch (error) {
    throw new Error(`${String(error)}: ${copies().join(" | ")}`);
  }
  return cluster.node(cluster.running()[0]!).store.getEntry("t", key)!.json;
}

Deno.test({
  name: "partition: only the majority side takes writes; after healing every replica holds its last one",
  ...options,
  async fn() {
    await using cluster = await InProcessCluster.start({ nodeCount: 3 });
    const token = await tokenOf(cluster, 0);
    assert.equal((await put(cluster, 0, "k", "before", token)).status, 201);
    await waitIdentical(cluster, "k");
    // Right after the nodes joined, a key needs a quorum of its replicas before the join too; once settled,
    // any two of three will do.
    await cluster.waitSettled();
    cluster.network.partition([cluster.id(0)], [cluster.id(1), cluster.id(2)]);
    await waitFor(() => cluster.node(0).cluster.members().filter((m) => m.status === "dead").length === 2, {
      timeoutMs: 10_000,
      what: "the lone node to see the others dead",
    });
    const lone = await put(cluster, 0, "k", "lone side", token);
    const majority = await put(cluster, 1, "k", "majority side", token);
    const majorityAgain = await put(cluster, 2, "k", "majority side again", token);
    assert.equal(lone.status, 503, "one node of three is no majority, whatever it believes");
    assert.equal(lone.retryAfter, "1");
    assert.equal(majority.status, 201);
    assert.equal(majorityAgain.status, 201);
    // A consistent read is linearizable or 503: the lone node cannot know it is not behind.
    const loneRead = await cluster.fetch(0, "/t/key/k?consistent=true", {
      signal: AbortSignal.timeout(10_000),
    });
    assert.equal(loneRead.status, 503);
    assert.equal(loneRead.headers.get("retry-after"), "1");
    await loneRead.body?.cancel();
    const majorityRead = await cluster.fetch(1, "/t/key/k?consistent=true", {
      signal: AbortSignal.timeout(10_000),
    });
    assert.equal((await majorityRead.json()).value, "majority side again");
    const bad = await cluster.fetch(1, "/t/key/k?consistent=maybe");
    assert.equal(bad.status, 400);
    await bad.body?.cancel();
    cluster.network.heal();
    await cluster.waitConverged();
    const winner = JSON.parse(await waitIdentical(cluster, "k"));
    assert.equal(winner.value, "majority side again", "the last acknowledged write, on every node");
    assert.equal(winner.version, majorityAgain.body.version);
    assert.equal(winner.version, 3, "the lone side's attempt took no version");
  },
});

Deno.test({
  name: "partition: a one-way cut heals and all replicas converge without losing acknowledged writes",
  ...options,
  async fn() {
    await using cluster = await InProcessCluster.start({ nodeCount: 3 });
    const token = await tokenOf(cluster, 0);
    await cluster.waitSettled(); // then any two of three replicas make a quorum
    cluster.network.blockOneWay(cluster.id(2), cluster.id(0));
    const acknowledged = new Map<string, number>();
    for (let index = 0; index < 30; index += 1) {
      const result = await put(cluster, index % 3, `one-way-${index}`, index, token);
      if (result.status === 201) acknowledged.set(`one-way-${index}`, result.body.version);
    }
    assert.ok(acknowledged.size >= 20, `${acknowledged.size} of 30 writes acknowledged during a one-way cut`);
    cluster.network.heal();
    for (const [key, version] of acknowledged) {
      const json = JSON.parse(await waitIdentical(cluster, key));
      assert.ok(json.version >= version, `${key} kept its acknowledged write`);
    }
  },
});

/** Cuts one random node off from the other two; waits until it sees the cut when it runs. */
async function partitionOneNode(cluster: InProcessCluster, random: Random): Promise<void> {
  const lone = random.pick([0, 1, 2]);
  cluster.network.partition(
    [cluster.id(lone)],
    [0, 1, 2].filter((i) => i !== lone).map((i) => cluster.id(i)),
  );
  if (cluster.running().includes(lone)) {
    // Let the failure detector see the partition, so both sides really take writes apart.
    await waitFor(
      () => cluster.node(lone).cluster.members().some((member) => member.status !== "alive"),
      {
        timeoutMs: 5_000,
        what: "the partition to be detected",
      },
    );
  }
}

Deno.test({
  name: "partition: seeded random writes, crashes, restarts and partitions end converged with nothing lost",
  ...options,
  async fn() {
    const random = Random.fromEnv("random faults");
    await using cluster = await InProcessCluster.start({ nodeCount: 3, random });
    const token = await tokenOf(cluster, 0);
    const keys = Array.from({ length: 8 }, (_, index) => `r${index}`);
    const acknowledged = new Map<string, Array<{ version: number; value: number }>>();
    const counts = { crashes: 0, restarts: 0, partitions: 0, writes: 0, acknowledged: 0 };
    const indeterminate = new Set<number>();
    for (let step = 0; step < 60; step += 1) {
      const roll = random.next();
      const running = cluster.running();
      if (roll < 0.06 && running.length === 3) {
        await cluster.crash(random.pick(running));
        counts.crashes += 1;
      } else if (roll < 0.12 && running.length < 3) {
        const down = [0, 1, 2].filter((index) => !running.includes(index));
        try {
          // A node that cannot reach a seed retries its join for 60 s by default: give up after one second.
          await cluster.restart(random.pick(down), { joinTimeoutSecs: 1 });
          counts.restarts += 1;
        } catch {
          // every running node is partitioned away from it: it stays down this step
        }
      } else if (roll < 0.17) {
        await partitionOneNode(cluster, random);
        counts.partitions += 1;
      } else if (roll < 0.25) {
        cluster.network.heal();
      } else {
        const key = random.pick(keys);
        const result = await put(cluster, random.pick(running), key, step, token).catch(() => ({
          status: 0,
          body: undefined,
        }));
        counts.writes += 1;
        if (result.status === 201) {
          counts.acknowledged += 1;
          const list = acknowledged.get(key) ?? [];
          list.push({ version: result.body.version, value: step });
          acknowledged.set(key, list);
        } else {
          // 503 (quorum not reached) or no answer: indeterminate, it may or may not take effect.
          indeterminate.add(step);
        }
      }
    }
    console.log(`random faults: ${JSON.stringify(counts)}`);
    cluster.network.heal();
    for (const index of [0, 1, 2]) if (!cluster.running().includes(index)) await cluster.restart(index);
    await cluster.waitConverged();
    for (const [key, writes] of acknowledged) {
      const final = JSON.parse(await waitIdentical(cluster, key, 30_000));
      const highest = Math.max(...writes.map((write) => write.version));
      assert.ok(final.version >= highest, `${key}: final version ${final.version} < acknowledged ${highest}`);
      const candidates = writes.filter((write) => write.version === final.version).map((write) =>
        write.value
      );
      assert.ok(
        candidates.includes(final.value) || indeterminate.has(final.value),
        `${key}: the final value ${final.value} was written by an acknowledged or indeterminate write`,
      );
    }
  },
});

Deno.test({
  name: "partition: a read through a node without a copy repairs a replica that missed a write",
  ...options,
  async fn() {
    await using cluster = await InProcessCluster.start({ nodeCount: 5 });
    const token = await tokenOf(cluster, 0);
    const placement = cluster.node(0).cluster.replicator.placement;
    const ids = [0, 1, 2, 3, 4].map((index) => cluster.id(index));
    let key = "";
    for (let index = 0; key === ""; index += 1) {
      if (!placement.replicasOf("t", `rr${index}`).includes(ids[0]!)) key = `rr${index}`;
    }
    const [coordinator, , stale] = placement.replicasOf("t", key).map((id) => ids.indexOf(id));
    assert.equal((await put(cluster, coordinator!, key, "old", token)).status, 201);
    await waitFor(
      () =>
        [coordinator!, stale!].every((index) => cluster.node(index).store.getEntry("t", key) !== undefined),
      {
        timeoutMs: 5_000,
        what: "the replicas to hold the first write",
      },
    );
    cluster.network.blockOneWay(cluster.id(coordinator!), cluster.id(stale!));
    const written = await put(cluster, coordinator!, key, "new", token);
    assert.equal(written.status, 201, "the write reaches a quorum without the cut-off replica");
    const staleEntry = cluster.node(stale!).store.getEntry("t", key);
    assert.equal(staleEntry?.version, 1, "the cut-off replica missed the write");
    const read = await cluster.fetch(0, `/t/key/${key}`);
    assert.equal((await read.json()).value, "new");
    await waitFor(() => cluster.node(stale!).store.getEntry("t", key)?.version === 2, {
      timeoutMs: 5_000,
      what: "the stale replica to be repaired",
    });
    assert.ok(cluster.node(0).cluster.replicator.stats.readRepairs >= 1, "the repair came from the read");
  },
});

Deno.test({
  name: "partition: dropped and delayed node-to-node requests lose no acknowledged write",
  ...options,
  async fn() {
    const random = Random.fromEnv("drops and delays");
    await using cluster = await InProcessCluster.start({ nodeCount: 3, random });
    const token = await tokenOf(cluster, 0);
    cluster.network.dropRate = 0.2;
    cluster.network.delayMsMax = 20;
    const acknowledged = new Map<string, number>();
    for (let index = 0; index < 40; index += 1) {
      const key = `drop-${index % 10}`;
      const result = await put(cluster, random.int(3), key, index, token);
      if (result.status === 201) {
        acknowledged.set(key, Math.max(acknowledged.get(key) ?? 0, result.body.version));
      }
    }
    console.log(
      `drops and delays: ${acknowledged.size} keys acknowledged, ${cluster.network.droppedCount} dropped`,
    );
    assert.ok(cluster.network.droppedCount > 0, "requests were really dropped");
    cluster.network.heal();
    await cluster.waitConverged();
    for (const [key, version] of acknowledged) {
      const json = JSON.parse(await waitIdentical(cluster, key));
      assert.ok(json.version >= version, `${key}: final version ${json.version} < acknowledged ${version}`);
    }
  },
});

Deno.test({
  name: "partition: a resumed key stream shows a committed state, never the lone side's failed write",
  ...options,
  async fn() {
    await using cluster = await InProcessCluster.start({ nodeCount: 3 });
    const token = await tokenOf(cluster, 0);
    // A new key once the joins are settled (their rounds would be other nodes'): node 0, which receives its
    // first write, proposes it and so takes the key; it proposes the next write with one accept round.
    await cluster.waitSettled();
    assert.equal((await put(cluster, 0, "k", "before", token)).status, 201);
    cluster.network.partition([cluster.id(0)], [cluster.id(1), cluster.id(2)]);
    // Its own replica accepts it, no other does (or, when it already sees the others down, nothing runs).
    assert.equal((await put(cluster, 0, "k", "lone side", token)).status, 503);
    const store = cluster.node(0).store;
    const { promised, accepted } = store.ballotsOf("t", "k");
    // Under load node 0 may already see the others down (nothing runs) or go two rounds (only a promise is
    // left): then a one-round accept that reached only node 0 is what such a failed write leaves, at the
    // successor of the ballot it committed "before" at (any other ballot would need a promise quorum).
    if (store.getEntry("t", "k")?.version !== 2 && promised.counter === 0) {
      assert.equal(accepted.node, cluster.id(0), "node 0 took the key");
      const ballot = { counter: accepted.counter + 1, node: cluster.id(0) };
      await store.accept("t", "k", ballot, {
        version: 2,
        timestamp: Date.now(),
        owner: "alice",
        deleted: false,
        valueJson: '"lone side"',
      });
    }
    if (promised.counter === 0) assert.equal(store.getEntry("t", "k")?.version, 2, "accepted, never chosen");
    assert.equal((await put(cluster, 1, "k", "majority side", token)).status, 201);
    // Resumed from an id beyond what node 0 remembers: its answer would be the key's current value.
    const url = (index: number) => `${cluster.node(index).url}/t/subscribe/k`;
    const lone = await fetch(url(0), {
      headers: { "last-event-id": "9" },
      signal: AbortSignal.timeout(10_000),
    });
    assert.equal(lone.status, 503, "no committed state can be known on the minority side");
    await lone.body?.cancel();
    cluster.network.heal();
    await cluster.waitConverged();
    let shown: unknown;
    await waitFor(async () => {
      const stream = await SseReader.open(url(0), { "last-event-id": "9" }).catch(() => undefined);
      if (stream === undefined) return false; // 503 until node 0 reaches a quorum again
      await using _ = stream;
      shown = (await stream.nextEvent()).data.value;
      return true;
    }, { timeoutMs: 15_000, what: "node 0 to answer a resume once healed" });
    const { value, version } = shown as { value: unknown; version: number };
    assert.deepEqual([value, version], ["majority side", 2], "the committed v2, wherever it is asked");
  },
});

Deno.test({
  name: "rejoin: a node that left saves so before it says so, and comes back settling its keys like a joiner",
  ...options,
  async fn() {
    await using cluster = await InProcessCluster.start({ nodeCount: 4 });
    const token = await tokenOf(cluster, 0);
    const keys = Array.from({ length: 12 }, (_, index) => `r${index}`);
    for (const key of keys) assert.equal((await put(cluster, 0, key, "before", token)).status, 201);
    await cluster.waitSettled();
    const leaver = cluster.id(3);
    await cluster.leave(3);
    const saved = JSON.parse(await Deno.readTextFile(`${cluster.dataDir(3)}/members.json`)) as string[];
    assert.ok(saved.length === 3 && !saved.includes(leaver), `saved without itself: ${saved}`);
    assert.equal(leftLastTime(saved, leaver), true);
    await waitFor(
      () => cluster.node(0).cluster.members().some((m) => m.id === leaver && m.status === "left"),
      {
        timeoutMs: 10_000,
        what: "the others to see it left",
      },
    );
    for (const key of keys) assert.equal((await put(cluster, 1, key, "while away", token)).status, 201);
    await cluster.restart(3);
    const change = cluster.node(3).cluster.replicator.initialChange;
    assert.deepEqual(
      change?.previous.ringIds,
      [...saved].sort(),
      "its first view is a change from the ring without it",
    );
    await cluster.waitSettled();
    assert.equal(cluster.node(3).cluster.replicator.transitionCount, 0, "its first pass settled every key");
    const stats = await (await cluster.fetch(3, "/stats")).json();
    assert.equal(stats.cluster.membership_changes_unsettled, 0, "and /stats says so");
    for (const key of keys) {
      const read = await cluster.fetch(3, `/t/key/${key}?consistent=true`, {
        signal: AbortSignal.timeout(10_000),
      });
      assert.equal((await read.json()).value, "while away", key);
    }
    // A crash is no leave: the node restarts in the view it had.
    await cluster.crash(2);
    await cluster.restart(2);
    assert.equal(cluster.node(2).cluster.replicator.initialChange, undefined);
  },
});
