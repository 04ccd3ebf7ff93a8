// Goal: keys that expire across a cluster (SPEC §2, §5; cluster DESIGN.md, "Expiry (TTL)"): a key expires
// exactly once (one new version, the same tombstone on every node, one Deleted per subscriber on every
// node); a write that extends the lifetime before it ends wins; a node paused with SIGSTOP, or cut off by a
// partition, while it is the key's usual proposer causes no second expiry when it comes back.
// Method: TestClusters of three node processes (SIGSTOP) and an InProcessCluster over a FaultyNetwork (the
// partition), fetch-based SSE readers. A subscriber sees "exactly one Deleted" when the event after it is
// the next write's Updated, never a second Deleted; lifetimes of seconds are waited for by polling.
import assert from "node:assert/strict";
import { InProcessCluster } from "../../helpers/in_process_cluster.ts";
import { SseReader } from "../../helpers/sse_reader.ts";
import { TestCluster } from "../../helpers/test_cluster.ts";
import { waitFor } from "../../helpers/wait_for.ts";

interface Fetcher {
  fetch(path: string, init?: RequestInit): Promise<Response>;
}

async function tokenOf(node: Fetcher): Promise<string> {
  const response = await node.fetch("/auth/alice", { method: "POST", body: '{"secret":"pw"}' });
  return (await response.json()).token;
}

/** A PUT of `{"value": value, "ttl_secs": ttlSecs}` (no ttl_secs when undefined): its 201 body. */
async function putTtl(
  node: Fetcher,
  options: { token: string; value: unknown; ttlSecs?: number },
): Promise<Record<string, unknown>> {
  const body = options.ttlSecs === undefined
    ? { value: options.value }
    : { value: options.value, ttl_secs: options.ttlSecs };
  const response = await node.fetch("/t/key/k", {
    method: "PUT",
    headers: { authorization: `Bearer ${options.token}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const answer = await response.json();
  assert.equal(response.status, 201, JSON.stringify(answer));
  return answer;
}

/** The next change events of `reader`, as `Kind version` (reason appended for an expiry). */
async function nextEvents(reader: SseReader, count: number, timeoutMs = 15_000): Promise<string[]> {
  const events: string[] = [];
  for (let index = 0; index < count; index += 1) {
    const { id, data } = await reader.nextEvent(timeoutMs);
    const value = data.value as { version: number; reason?: string };
    assert.equal(String(value.version), id);
    events.push(`${data.event} ${id}${value.reason === undefined ? "" : ` ${value.reason}`}`);
  }
  return events;
}

async function expiredKeysOf(nodes: Fetcher[]): Promise<number> {
  let total = 0;
  for (const node of nodes) total += (await (await node.fetch("/stats")).json()).expired_keys as number;
  return total;
}

/** Waits until a consistent GET of /t/key/k on `node` answers `status`. */
async function waitStatus(node: Fetcher, status: number, timeoutMs = 15_000): Promise<void> {
  await waitFor(async () => {
    const response = await node.fetch("/t/key/k?consistent=true");
    await response.body?.cancel();
    return response.status === status;
  }, { timeoutMs, intervalMs: 50, what: `a consistent read of k to answer ${status}` });
}

Deno.test(
  "cluster ttl: a key expires exactly once: one tombstone on every node, one Deleted per subscriber",
  async () => {
    await using cluster = await TestCluster.start({ nodeCount: 3 });
    const token = await tokenOf(cluster.node(0));
    const readers = await Promise.all(
      [0, 1, 2].map((index) => SseReader.open(`${cluster.node(index).baseUrl}/t/subscribe/k`)),
    );
    try {
      await putTtl(cluster.node(1), { token, value: { session: 1 }, ttlSecs: 1 });
      for (const reader of readers) {
        assert.deepEqual(await nextEvents(reader, 2), ["Updated 1", "Deleted 2 expired"]);
      }
      // The same tombstone, byte for byte, on every node's own copy. The expiry is acknowledged by a majority
      // of the key's replicas, and a stream may show it before the last replica has applied it: wait for that
      // replica (never longer than anti-entropy), then compare exactly.
      let copies: Awaited<ReturnType<typeof cluster.localEntry>>[] = [];
      await waitFor(async () => {
        copies = await Promise.all([0, 1, 2].map((index) => cluster.localEntry(index, "t", "k")));
        return copies.every((copy) => copy?.version === 2);
      }, { timeoutMs: 15_000, intervalMs: 50, what: "the expiry's tombstone on every replica" });
      for (const copy of copies) assert.deepEqual(copy, copies[0]);
      assert.equal(copies[0]!.version, 2);
      assert.match(copies[0]!.json, /^\{"key":"k","version":2,"timestamp":\d+,"reason":"expired"\}$/);
      assert.equal(await expiredKeysOf([0, 1, 2].map((index) => cluster.node(index))), 1);
      // The next change is the next write, on every stream: no second expiry came in between.
      await putTtl(cluster.node(2), { token, value: "again" });
      for (const reader of readers) assert.deepEqual(await nextEvents(reader, 1), ["Updated 3"]);
    } finally {
      for (const reader of readers) await reader[Symbol.asyncDispose]();
    }
  },
);

Deno.test(
  "cluster ttl: a write that extends the lifetime before it ends wins; the old lifetime never " +
    "expires it",
  async () => {
    await using cluster = await TestCluster.start({ nodeCount: 3 });
    const token = await tokenOf(cluster.node(0));
    await using reader = await SseReader.open(`${cluster.node(2).baseUrl}/t/subscribe/k`);
    const first = await putTtl(cluster.node(0), { token, value: 1, ttlSecs: 3 });
    const firstExpiresAt = first.expires_at as number;
    const extended = await putTtl(cluster.node(1), { token, value: 2, ttlSecs: 60 });
    assert.ok(Date.now() < firstExpiresAt, "the extension was written within the first lifetime");
    assert.equal(extended.version, 2);
    // Past the first lifetime and the grace any replica waits: whoever could have expired version 1 tried.
    await waitFor(() => Date.now() > firstExpiresAt + 3_000, { timeoutMs: 10_000, what: "the old lifetime" });
    for (const index of [0, 1, 2]) {
      const response = await cluster.node(index).fetch("/t/key/k?consistent=true");
      assert.deepEqual(await response.json(), extended, `node ${index}`);
    }
    await putTtl(cluster.node(2), { token, value: 3 });
    assert.deepEqual(await nextEvents(reader, 3), ["Updated 1", "Updated 2", "Updated 3"]);
    assert.equal(await expiredKeysOf([0, 1, 2].map((index) => cluster.node(index))), 0);
  },
);

Deno.test(
  "cluster ttl: the key's proposer paused with SIGSTOP across its expiry causes no second expiry",
  async () => {
    await using cluster = await TestCluster.start({ nodeCount: 3 });
    const token = await tokenOf(cluster.node(0));
    const readers = await Promise.all(
      [1, 2].map((index) => SseReader.open(`${cluster.node(index).baseUrl}/t/subscribe/k`)),
    );
    try {
      // Written through node 0, which proposes it: node 0 is the key's usual proposer, due first. Its notice
      // of version 1 rides in its next batch: paused before sending it, the streams would show a Resync.
      await putTtl(cluster.node(0), { token, value: "v", ttlSecs: 2 });
      for (const reader of readers) assert.deepEqual(await nextEvents(reader, 1), ["Updated 1"]);
      cluster.node(0).signal("SIGSTOP");
      try {
        for (const reader of readers) assert.deepEqual(await nextEvents(reader, 1), ["Deleted 2 expired"]);
      } finally {
        cluster.node(0).signal("SIGCONT");
      }
      // Node 0 wakes up with version 1 due in its queue: it proposes its expiry (refused: the others chose
      // the tombstone) or first receives their tombstone (its queue entry is then dropped). Either way, once
      // its own copy is the tombstone and no expiry is in flight, no second one can come.
      await waitFor(async () => (await cluster.localEntry(0, "t", "k"))?.version === 2, {
        timeoutMs: 15_000,
        what: "node 0 to hold the expiry tombstone",
      });
      await waitFor(
        async () => (await (await cluster.node(0).fetch("/stats")).json()).expiry.in_flight === 0,
        {
          timeoutMs: 15_000,
          what: "node 0's expiries to settle",
        },
      );
      await cluster.waitConverged(15_000);
      const written = await putTtl(cluster.node(1), { token, value: "after" });
      assert.equal(written.version, 3, "one expiry, one version");
      for (const reader of readers) assert.deepEqual(await nextEvents(reader, 1), ["Updated 3"]);
      assert.equal(await expiredKeysOf([0, 1, 2].map((index) => cluster.node(index))), 1);
    } finally {
      for (const reader of readers) await reader[Symbol.asyncDispose]();
    }
  },
);

Deno.test(
  "cluster ttl: the key's proposer cut off by a partition across its expiry causes no second expiry",
  async () => {
    await using cluster = await InProcessCluster.start({ nodeCount: 3 });
    const token = await tokenOf({ fetch: (path, init) => cluster.fetch(0, path, init) });
    const node = (index: number): Fetcher => ({ fetch: (path, init) => cluster.fetch(index, path, init) });
    await using reader = await SseReader.open(`${cluster.node(1).url}/t/subscribe/k`);
    await putTtl(node(0), { token, value: "v", ttlSecs: 2 });
    assert.deepEqual(await nextEvents(reader, 1), ["Updated 1"]);
    cluster.network.partition([cluster.id(0)], [cluster.id(1), cluster.id(2)]);
    assert.deepEqual(await nextEvents(reader, 1), ["Deleted 2 expired"]);
    // Node 0, alone, cannot expire it (no quorum): it reads the key as missing by its clock meanwhile.
    await waitStatus(node(1), 404);
    const alone = await cluster.fetch(0, "/t/key/k");
    assert.equal(alone.status, 404);
    await alone.body?.cancel();
    await waitFor(() => cluster.node(0).cluster.expirer.stats.failed >= 1, {
      timeoutMs: 15_000,
      what: "node 0's expiry to fail without a quorum",
    });
    cluster.network.heal();
    // After healing node 0 either retries (refused: the majority chose the tombstone) or receives the
    // majority's tombstone first (anti-entropy; its queue entry is then dropped when due).
    await waitFor(() => cluster.node(0).store.getEntry("t", "k")?.version === 2, {
      timeoutMs: 40_000,
      what: "node 0 to hold the majority's expiry tombstone",
    });
    await waitFor(() => cluster.node(0).cluster.expirer.stats.inFlight === 0, {
      timeoutMs: 15_000,
      what: "node 0's expiries to settle",
    });
    // Healing spreads each side's old verdict (the other was dead) until each refutes it: wait it out.
    await cluster.waitConverged();
    await waitStatus(node(0), 404);
    const written = await putTtl(node(2), { token, value: "after" });
    assert.equal(written.version, 3, "one expiry, one version");
    assert.deepEqual(await nextEvents(reader, 1), ["Updated 3"]);
    const expired = [0, 1, 2].map((index) => cluster.node(index).cluster.replicator.stats.expiredKeys);
    assert.equal(expired.reduce((sum, count) => sum + count, 0), 1, `expiries per node: ${expired}`);
  },
);
