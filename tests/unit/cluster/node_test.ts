// Goal: ClusterNode.leave() waits for its hand-off at most `deadlineMs` of the node's clock and leaves no
// deadline timer armed when the hand-off ends first.
// Method: a ClusterNode on a real Store (MemoryFs) and a ManualClock, over a scripted Transport that admits
// the join and answers `leave` at once or never; the clock's timerCount shows a timer left armed (Deno
// 2.9's op sanitizer does not report a pending setTimeout).
import assert from "node:assert/strict";
import { ClusterNode } from "../../../src/cluster/node.ts";
import type { Transport } from "../../../src/cluster/transport.ts";
import { ManualClock } from "../../../src/util/clock.ts";
import { UnavailableError } from "../../../src/util/errors.ts";
import { silentLogger } from "../../../src/util/log.ts";
import { nodeA, nodeB, openTestStore, RecordingSink, testClusterConfig } from "./fake_cluster.ts";

/** A node A that joined B; B answers `leave` at once, or never when `leaveAnswered` is false. */
async function joinedNode(options: { leaveAnswered: boolean }) {
  const clock = new ManualClock();
  const store = await openTestStore(clock);
  const leaves: string[] = [];
  const transport: Transport = {
    request: (target, kind) => {
      if (kind === "join") {
        return Promise.resolve({ members: [{ id: nodeB, status: "alive", incarnation: 1 }] });
      }
      if (kind === "leave") {
        leaves.push(target);
        return options.leaveAnswered ? Promise.resolve({}) : new Promise(() => {});
      }
      return Promise.reject(new UnavailableError(`no ${kind} in this test`));
    },
  };
  const node = await ClusterNode.create({
    self: nodeA,
    config: testClusterConfig(),
    store,
    sink: new RecordingSink(),
    clock,
    logger: silentLogger,
    transport,
  });
  await node.join(nodeB);
  return { clock, store, node, leaves };
}

Deno.test("ClusterNode.leave() clears its deadline's timer when the hand-off ends first", async () => {
  const { clock, store, node, leaves } = await joinedNode({ leaveAnswered: true });
  try {
    await node.leave(60_000);
    assert.deepEqual(leaves, [nodeB]);
    assert.equal(clock.timerCount, 0, "no deadline timer is left armed");
  } finally {
    await store.close();
  }
});

Deno.test("ClusterNode.leave() stops waiting for a peer that never answers at its deadline", async () => {
  const { clock, store, node, leaves } = await joinedNode({ leaveAnswered: false });
  try {
    let ended = false;
    const leaving = node.leave(5_000).then(() => ended = true);
    await Promise.resolve();
    assert.deepEqual(leaves, [nodeB]);
    clock.advance(4_999);
    await Promise.resolve();
    assert.equal(ended, false, "not before the deadline");
    assert.equal(clock.timerCount, 1, "the deadline's timer is still armed");
    clock.advance(1);
    await leaving;
    assert.equal(clock.timerCount, 0);
  } finally {
    await store.close();
  }
});
