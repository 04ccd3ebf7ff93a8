// Goal: SPEC §4 and §5 together: a subscriber on any node receives every change of its key, whichever
// node took the write, in version order and once each, and Last-Event-ID resume works on any node.
// Method: TestCluster of 5 (so some nodes hold no copy of the key); fetch-based SSE readers.
import assert from "node:assert/strict";
import { putValue } from "../../helpers/node_process.ts";
import { SseReader } from "../../helpers/sse_reader.ts";
import { TestCluster } from "../../helpers/test_cluster.ts";

Deno.test("cluster sse: subscribers on every node see every change in order, once, and resume anywhere", async () => {
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
        assert.equal(event.id, String(version), `node ${node} got version ${event.id}, expected ${version}`);
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
});
