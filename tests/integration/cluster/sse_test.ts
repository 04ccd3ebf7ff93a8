// Goal: SPEC §4 and §5 together: a subscriber on any node receives every change of its key, whichever
// node took the write, in version order and once each, and Last-Event-ID resume works on any node, also
// from a stream's ready id on a node that restarted (issue 18 item 12).
// Method: TestClusters of 5 and 4 (so some nodes hold no copy of the key); fetch-based SSE readers and
// the npm `eventsource` client through a TCP proxy the test cuts.
import assert from "node:assert/strict";
import { EventSourceLog } from "../../helpers/event_source_log.ts";
import { putValue } from "../../helpers/node_process.ts";
import { SseReader } from "../../helpers/sse_reader.ts";
import { TcpProxy } from "../../helpers/tcp_proxy.ts";
import { TestCluster } from "../../helpers/test_cluster.ts";
import { waitFor } from "../../helpers/wait_for.ts";

Deno.test(
  "cluster sse: subscribers on every node see every change in order, once, and resume anywhere",
  async () => {
    await using cluster = await TestCluster.start({ nodeCount: 5 });
    const { token } =
      await (await cluster.node(0).fetch("/auth/alice", { method: "POST", body: '{"secret":"pw"}' }))
        .json();
    const readers = await Promise.all(
      [0, 1, 2, 3, 4].map((index) => SseReader.open(`${cluster.node(index).baseUrl}/live/subscribe/status`)),
    );
    try {
      const writeCount = 30;
      for (let index = 0; index < writeCount; index += 1) {
        const response = await putValue(cluster.node(index % 5), "/live/key/status", { index }, { token });
        assert.equal(response.status, 201);
        await response.body?.cancel();
      }
      for (const [node, reader] of readers.entries()) {
        for (let version = 1; version <= writeCount; version += 1) {
          const event = await reader.nextEvent();
          assert.equal(
            event.id,
            String(version),
            `node ${node} got version ${event.id}, expected ${version}`,
          );
          assert.deepEqual((event.data.value as { value: unknown }).value, { index: version - 1 });
        }
      }
    } finally {
      for (const reader of readers) await reader[Symbol.asyncDispose]();
    }
    for (const index of [0, 1, 2, 3, 4]) {
      await using resumed = await SseReader.open(`${cluster.node(index).baseUrl}/live/subscribe/status`, {
        "last-event-id": "27",
      });
      for (const version of [28, 29, 30]) {
        assert.equal((await resumed.nextEvent()).id, String(version), `resume on node ${index}`);
      }
    }
    await using old = await SseReader.open(`${cluster.node(3).baseUrl}/live/subscribe/status`, {
      "last-event-id": "0",
    });
    const first = await old.nextEvent();
    assert.ok(Number(first.id) >= 1, "an old Last-Event-ID gets history or the current value, never nothing");
  },
);

Deno.test(
  "cluster sse: an EventSource whose node restarts resumes from its ready id and learns what was " +
    "written meanwhile",
  async () => {
    await using cluster = await TestCluster.start({ nodeCount: 4 }); // 3 replicas a key: one node holds none
    const { token } =
      await (await cluster.node(0).fetch("/auth/alice", { method: "POST", body: '{"secret":"pw"}' }))
        .json();
    const write = async (index: number, n: number) => {
      const response = await putValue(cluster.node(index), "/live/key/status", { n }, { token });
      assert.equal(response.status, 201);
      await response.body?.cancel();
    };
    for (const n of [1, 2, 3]) await write(0, n);
    // The node without a copy: its stream's position comes from the replicas, over the network.
    const holders = async () =>
      await Promise.all([0, 1, 2, 3].map((index) => cluster.localEntry(index, "live", "status")));
    await waitFor(async () => (await holders()).filter((entry) => entry?.version === 3).length === 3, {
      timeoutMs: 10_000,
      what: "three replicas at version 3",
    });
    const away = (await holders()).findIndex((entry) => entry === null);
    const writer = away === 0 ? 1 : 0;
    await using proxy = TcpProxy.start(Number(new URL(cluster.node(away).baseUrl).port));
    await using log = new EventSourceLog(`http://127.0.0.1:${proxy.port}/live/subscribe/status`);
    await waitFor(() => log.readyIds.length === 1, { timeoutMs: 10_000, what: "the stream's ready block" });
    proxy.cut();
    await waitFor(() => log.errorCount >= 1, { timeoutMs: 10_000, what: "the client to see the cut" });
    await cluster.stop(away);
    for (let n = 4; n <= 10; n += 1) await write(writer, n);
    await cluster.restart(away); // same port and data dir; it serves once caught up
    proxy.heal();
    await waitFor(() => log.openCount === 2, { timeoutMs: 20_000, what: "the client to reconnect" });
    await write(writer, 11);
    await waitFor(() => log.versions().includes(11), { timeoutMs: 10_000, what: "the live write" });
    // The restarted node remembers no change of the gap, so it says so (a Resync of the key, no id), then
    // sends the current value: v10, then live.
    assert.deepEqual(log.changes[0]?.data, { event: "Resync", table: "live", key: "status" });
    assert.deepEqual(
      log.versions().slice(1),
      [10, 11],
      "the state written while away, then live: no silent gap",
    );
    assert.deepEqual(log.changes[1]?.data.value?.value, { n: 10 });
    assert.deepEqual(log.readyIds, ["3", "3"], "ready at the key's version, read from the replicas");
    // Resumed on another node instead, from the same position: that node was up for versions 4-11, and its
    // change log replays every one of them, in order, though nobody subscribed to the key there.
    await using moved = await SseReader.open(`${cluster.node(writer).baseUrl}/live/subscribe/status`, {
      "last-event-id": log.readyIds[0]!,
    });
    assert.equal(await moved.readyId(), "3");
    const replayed: string[] = [];
    for (let n = 4; n <= 11; n += 1) replayed.push((await moved.nextEvent()).id);
    assert.deepEqual(replayed, ["4", "5", "6", "7", "8", "9", "10", "11"]);
  },
);
