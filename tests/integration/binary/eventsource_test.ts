// Goal: issue 18 item 12 and SPEC §4b's first bullet against a real node, with real EventSource clients:
// a stream cut before any change resumes from its ready id and misses none of the writes made while it
// was cut; a garbage Last-Event-ID is treated as absent (or, past every version, answered with the
// current value), never a crash or a silenced stream.
// Method: a node child process; the npm `eventsource` package (WHATWG EventSource: it records ids, sends
// Last-Event-ID and reconnects by itself) and the typed client, each through a TCP proxy the test cuts;
// fetch-based readers for the raw frames.
import assert from "node:assert/strict";
import { DynaClient, type KeyEvent } from "../../../src/client/mod.ts";
import { EventSourceLog } from "../../helpers/event_source_log.ts";
import { NodeProcess, putValue, tokenFor } from "../../helpers/node_process.ts";
import { SseReader } from "../../helpers/sse_reader.ts";
import { TcpProxy } from "../../helpers/tcp_proxy.ts";
import { waitFor } from "../../helpers/wait_for.ts";

/** Writes `{"n": n, "name": "write n"}` to `path` for each n, in order, each acknowledged. */
async function writeNamed(node: NodeProcess, path: string, options: { token: string; ns: number[] }) {
  for (const n of options.ns) {
    const response = await putValue(node, path, { n, name: `write ${n}` }, { token: options.token });
    assert.equal(response.status, 201);
    await response.body?.cancel();
  }
}

function activeStreams(node: NodeProcess): Promise<number> {
  return node.fetch("/stats").then((response) => response.json()).then((stats) =>
    stats.active_sse_connections
  );
}

Deno.test(
  "eventsource: a stream cut before any change resumes from its ready id and misses no write",
  async () => {
    await using node = await NodeProcess.start();
    const token = await tokenFor(node, "alice");
    await using proxy = TcpProxy.start(Number(new URL(node.baseUrl).port));
    await using log = new EventSourceLog(`http://127.0.0.1:${proxy.port}/t/subscribe/k`);
    await waitFor(() => log.readyIds.length === 1, { timeoutMs: 10_000, what: "the stream's ready block" });
    proxy.cut(); // before any change: the client has received no change, so no change id
    await waitFor(() => log.errorCount >= 1, { timeoutMs: 10_000, what: "the client to see the cut" });
    const writeCount = 5;
    await writeNamed(node, "/t/key/k", {
      token,
      ns: Array.from({ length: writeCount }, (_, index) => index + 1),
    });
    proxy.heal();
    await waitFor(() => log.openCount === 2, { timeoutMs: 15_000, what: "the client to reconnect" });
    await writeNamed(node, "/t/key/k", { token, ns: [writeCount + 1] }); // a live change after the reconnect
    await waitFor(() => log.versions().includes(writeCount + 1), {
      timeoutMs: 10_000,
      what: "the live write",
    });
    assert.deepEqual(log.versions(), [1, 2, 3, 4, 5, 6], "every version once, in order, none missed");
    for (const change of log.changes) {
      assert.equal(change.id, String(change.data.value?.version), "the event id is the version");
      assert.deepEqual(change.data.value?.value, { n: Number(change.id), name: `write ${change.id}` });
    }
    assert.deepEqual(log.readyIds, ["0", "0"], "ready at position 0, and again at 0 when resumed after 0");
  },
);

Deno.test(
  "eventsource: the typed client cut before any change resumes from its ready id and misses no write",
  async () => {
    await using node = await NodeProcess.start();
    await using proxy = TcpProxy.start(Number(new URL(node.baseUrl).port));
    const writer = new DynaClient({ baseUrl: node.baseUrl });
    await writer.login("alice", "pw");
    const tasks = new DynaClient({ baseUrl: `http://127.0.0.1:${proxy.port}` }).table<{ n: number }>("t");
    const stop = new AbortController();
    const readyIds: number[] = [];
    const onReady = (position: number) => readyIds.push(position);
    const changes = tasks.subscribe("k", { signal: stop.signal, retryMs: 50, onReady });
    const received: Array<KeyEvent<{ n: number }>> = [];
    const reading = (async () => {
      for await (const change of changes) received.push(change);
    })();
    try {
      await waitFor(() => readyIds.length === 1, { timeoutMs: 10_000, what: "the stream's ready block" });
      proxy.cut();
      await waitFor(async () => await activeStreams(node) === 0, { timeoutMs: 10_000, what: "the cut" });
      for (const n of [1, 2, 3]) await writer.table<{ n: number }>("t").put("k", { n });
      proxy.heal();
      await waitFor(async () => await activeStreams(node) === 1, {
        timeoutMs: 10_000,
        what: "the reconnect",
      });
      await writer.table<{ n: number }>("t").put("k", { n: 4 });
      await waitFor(() => received.some((change) => change.id === 4), { timeoutMs: 10_000, what: "write 4" });
      assert.deepEqual(
        received.map((change) => change.id),
        [1, 2, 3, 4],
        "none of the writes while cut is missed",
      );
      assert.deepEqual(readyIds, [0, 0], "onReady: at version 0, then resumed from it");
    } finally {
      stop.abort();
      await reading;
    }
  },
);

Deno.test(
  "eventsource: a garbage Last-Event-ID is treated as absent, one past every version gets the " +
    "current value",
  async () => {
    await using node = await NodeProcess.start();
    const token = await tokenFor(node, "alice");
    await writeNamed(node, "/t/key/k", { token, ns: [1, 2, 3] });
    for (const garbage of ["abc", "-1", "", "3.5", "0x10", "99999999999999999999", "1e3"]) {
      await using events = await SseReader.open(`${node.baseUrl}/t/subscribe/k`, {
        "last-event-id": garbage,
      });
      assert.equal(
        await events.readyId(),
        "3",
        `Last-Event-ID ${JSON.stringify(garbage)}: a fresh stream at v3`,
      );
    }
    // A safe integer past every version of k (another node's, or made up): not a reason to skip changes.
    await using far = await SseReader.open(`${node.baseUrl}/t/subscribe/k`, {
      "last-event-id": String(Number.MAX_SAFE_INTEGER),
    });
    assert.equal(await far.readyId(), "2");
    const current = await far.nextEvent();
    assert.deepEqual([current.id, current.data.event], ["3", "Updated"], "the current value, not silence");
    await writeNamed(node, "/t/key/k", { token, ns: [4] });
    assert.equal((await far.nextEvent()).id, "4", "then live changes");
    for (const garbage of ["abc", "-5", String(Number.MAX_SAFE_INTEGER)]) {
      await using table = await SseReader.open(`${node.baseUrl}/t/subscribe`, { "last-event-id": garbage });
      assert.match(await table.readyId(), /^\d+$/, `table stream, Last-Event-ID ${garbage}`);
    }
    assert.equal((await node.fetch("/health")).status, 200, "the node is still up");
  },
);
