// Goal: listTable lists a table's live keys in key order across the cluster: a k-way merge of every live
// node's sorted pages keeping the highest version of a key held twice, across page boundaries
// (listPageCount at max and max + 1), paged with after/limit; TableNotFoundError when no node has the
// table, UnavailableError when a node does not answer; local only when the node holds every key.
// Method: a FakeCluster of real Stores on MemoryFs whose `list` handler is listLocal, over a fake Transport.
import assert from "node:assert/strict";
import {
  type ListedEntry,
  listLocal,
  listPageCount,
  listTable,
  TableNotFoundError,
} from "../../../src/cluster/listing.ts";
import type { ReplicaEntry, Store } from "../../../src/store/mod.ts";
import { UnavailableError } from "../../../src/util/errors.ts";
import { systemClock } from "../../../src/util/clock.ts";
import { FakeCluster, nodeA, nodeB, nodeC } from "./fake_cluster.ts";

const table = "t";

function live(version: number, valueJson: string): ReplicaEntry {
  return { version, timestamp: 10, owner: "alice", deleted: false, valueJson };
}

async function seed(store: Store, states: Record<string, ReplicaEntry>, keyTable = table): Promise<void> {
  await store.applyReplicas(Object.entries(states).map(([key, entry]) => ({ table: keyTable, key, entry })));
}

async function list(
  cluster: FakeCluster,
  options: { table?: string; after?: string; limit?: number } = {},
): Promise<ListedEntry[]> {
  const node = cluster.node(nodeA);
  const listed: ListedEntry[] = [];
  for await (
    const entry of listTable({
      table: options.table ?? table,
      limit: options.limit ?? 100_000,
      ...(options.after === undefined ? {} : { after: options.after }),
      placement: node.replicator.placement,
      store: node.store,
      transport: cluster.network.transport(nodeA),
      timeoutMs: 1_000,
      clock: systemClock,
    })
  ) {
    listed.push(entry);
  }
  return listed;
}

/** A cluster of three that is not fully replicated (two replicas per key), seeded with overlapping keys. */
async function overlappingCluster(): Promise<FakeCluster> {
  const cluster = await FakeCluster.start({ config: { replicationFactor: 2 } });
  assert.equal(cluster.placement(nodeA).fullyReplicated, false);
  await seed(cluster.node(nodeA).store, { a: live(1, '"a1"'), c: live(1, '"c1"') });
  await seed(cluster.node(nodeB).store, { a: live(2, '"a2"'), b: live(1, '"b1"') });
  await seed(cluster.node(nodeC).store, { c: live(3, '"c3"'), d: live(1, '"d1"') });
  return cluster;
}

function summary(entries: readonly ListedEntry[]): string[] {
  return entries.map((entry) => `${entry.key}@${entry.version}`);
}

Deno.test(
  "listTable() merges every node's keys in order, keeping the highest version of a duplicate",
  async () => {
    await using cluster = await overlappingCluster();
    const listed = await list(cluster);
    assert.deepEqual(summary(listed), ["a@2", "b@1", "c@3", "d@1"]);
    assert.equal(listed[0]!.json, cluster.node(nodeB).store.getEntry(table, "a")?.json);
    assert.equal(listed[2]!.json, cluster.node(nodeC).store.getEntry(table, "c")?.json);
    assert.deepEqual(
      cluster.network.sentWhere({ kind: "list" }).map(({ target }) => target).sort(),
      [nodeB, nodeC],
      "this node's page is read locally",
    );
  },
);

Deno.test("listTable() pages with after (exclusive) and limit", async () => {
  await using cluster = await overlappingCluster();
  assert.deepEqual(summary(await list(cluster, { limit: 2 })), ["a@2", "b@1"]);
  assert.deepEqual(summary(await list(cluster, { after: "a", limit: 2 })), ["b@1", "c@3"]);
  assert.deepEqual(summary(await list(cluster, { after: "b" })), ["c@3", "d@1"]);
  assert.deepEqual(summary(await list(cluster, { after: "d" })), []);
  assert.deepEqual(summary(await list(cluster, { after: "zzz", limit: 5 })), []);
  assert.deepEqual(summary(await list(cluster, { limit: 0 })), []);
});

Deno.test("listTable() throws TableNotFoundError when no node has the table", async () => {
  await using cluster = await overlappingCluster();
  await assert.rejects(list(cluster, { table: "nowhere" }), (error) => {
    assert.ok(error instanceof TableNotFoundError);
    assert.equal(error.code, "table_not_found");
    return true;
  });
  await seed(cluster.node(nodeC).store, { only: live(1, "1") }, "onC");
  assert.deepEqual(summary(await list(cluster, { table: "onC" })), ["only@1"], "one node suffices");
});

Deno.test("listTable() fails with UnavailableError when a live node does not answer", async () => {
  await using cluster = await overlappingCluster();
  cluster.network.fail(nodeC, "timeout");
  await assert.rejects(
    list(cluster),
    (error) => error instanceof UnavailableError && /127\.0\.0\.1:7003 did not answer/.test(error.message),
  );
  cluster.membership.set({ live: [nodeA, nodeB] });
  assert.deepEqual(summary(await list(cluster)), ["a@2", "b@1", "c@1"], "down nodes are not asked");
});

for (const count of [listPageCount, listPageCount + 1]) {
  Deno.test(`listTable() merges across page boundaries when a node holds ${count} keys`, async () => {
    await using cluster = await FakeCluster.start({ config: { replicationFactor: 2 } });
    const keyOf = (index: number) => `k${String(index).padStart(5, "0")}`;
    const onB: Record<string, ReplicaEntry> = {};
    const onC: Record<string, ReplicaEntry> = {};
    for (let index = 0; index < count; index += 1) {
      onB[keyOf(index)] = live(1, "1");
      if (index % 2 === 0) onC[keyOf(index)] = live(2, "2");
    }
    onC[keyOf(count + 5)] = live(1, "1");
    await seed(cluster.node(nodeB).store, onB);
    await seed(cluster.node(nodeC).store, onC);
    const listed = await list(cluster);
    assert.equal(listed.length, count + 1);
    listed.slice(0, count).forEach((entry, index) => {
      assert.equal(entry.key, keyOf(index));
      assert.equal(entry.version, index % 2 === 0 ? 2 : 1, entry.key);
    });
    assert.equal(listed.at(-1)!.key, keyOf(count + 5));
    const pages = cluster.network.sentWhere({ kind: "list", target: nodeB }).length;
    assert.equal(pages, 2, "a full page asks for the next one");
  });
}

Deno.test("listTable() answers from this node alone when it holds every key", async () => {
  await using cluster = await FakeCluster.start();
  assert.equal(cluster.placement(nodeA).fullyReplicated, true);
  await seed(cluster.node(nodeA).store, { x: live(1, "1"), y: live(2, "2"), z: live(1, "3") });
  await seed(cluster.node(nodeB).store, { w: live(1, "1") });
  assert.deepEqual(summary(await list(cluster, { after: "x", limit: 1 })), ["y@2"]);
  assert.equal(cluster.network.sent.length, 0);
  await assert.rejects(list(cluster, { table: "nowhere" }), TableNotFoundError);
});

Deno.test("listLocal() answers one sorted page of live keys and whether the table exists", async () => {
  await using cluster = await FakeCluster.start();
  const store = cluster.node(nodeA).store;
  assert.deepEqual(listLocal(store, { table, limit: 10 }), { exists: false, entries: [] });
  await seed(store, {
    b: live(1, "1"),
    a: live(1, "2"),
    c: { version: 1, timestamp: 1, owner: "o", deleted: true },
  });
  const page = listLocal(store, { table, limit: 10 });
  assert.equal(page.exists, true);
  assert.deepEqual(page.entries.map((entry) => entry.key), ["a", "b"]);
  assert.deepEqual(listLocal(store, { table, after: "a", limit: 1 }).entries.map((entry) => entry.key), [
    "b",
  ]);
});

Deno.test(
  "listTable() leaves out a key whose newest state expired, not showing an older live copy instead",
  async () => {
    await using cluster = await overlappingCluster();
    // c's newest state (on C) expired; A still holds an older live c@1 without a lifetime.
    await seed(cluster.node(nodeC).store, { c: { ...live(4, '"c4"'), expiresAt: 1_000 } });
    await seed(cluster.node(nodeB).store, { e: { ...live(1, '"e1"'), expiresAt: Date.now() + 3_600_000 } });
    assert.deepEqual(summary(await list(cluster)), ["a@2", "b@1", "d@1", "e@1"]);
    assert.deepEqual(
      summary(await list(cluster, { limit: 3 })),
      ["a@2", "b@1", "d@1"],
      "not counted in limit",
    );
    // Fully replicated, the node's own listing leaves it out as well, before the limit.
    await using whole = await FakeCluster.start();
    await seed(whole.node(nodeA).store, { x: { ...live(1, "1"), expiresAt: 1_000 }, y: live(1, "2") });
    assert.deepEqual(summary(await list(whole, { limit: 1 })), ["y@1"]);
  },
);
