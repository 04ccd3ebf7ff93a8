// Goal: SPEC §4b's snapshot and resume as the npm `eventsource` client (WHATWG EventSource) lives them:
// `?snapshot=true` on a table shows its state, then Synced, then live; a connection cut by a proxy in the
// middle of the snapshot or after it is resumed by the client on its own (Last-Event-ID), and the page's
// final state equals the store's, with every key's versions increasing between Resyncs and no change
// shown twice. Method: a real node process, a TCP proxy that cuts and heals, a writer racing the stream
// with updates, deletes and new keys whose values name themselves; the client's state is rebuilt from
// its messages exactly as a page would.
import assert from "node:assert/strict";
import { EventSourceLog, type ReceivedChange } from "../helpers/event_source_log.ts";
import { NodeProcess, putValue, tokenFor } from "../helpers/node_process.ts";
import { TcpProxy } from "../helpers/tcp_proxy.ts";
import { waitFor } from "../helpers/wait_for.ts";
import { expectedState, openTasks, writeTasks } from "../helpers/live_tasks.ts";

/** A page's table state from its messages: Updated sets, Deleted removes, a table Resync clears. */
function stateOf(changes: readonly ReceivedChange[]): Map<string, number> {
  const state = new Map<string, number>();
  for (const { data } of changes) {
    if (data.event === "Resync" && data.key === undefined) state.clear();
    if (data.key === undefined || data.value?.version === undefined) continue;
    if (data.event === "Updated") state.set(data.key, data.value.version);
    if (data.event === "Deleted") state.delete(data.key);
  }
  return state;
}

/** Every key's versions increase between table Resyncs (no change shown twice or out of order). */
function assertVersionsIncrease(changes: readonly ReceivedChange[]): void {
  let last = new Map<string, number>();
  for (const { data } of changes) {
    if (data.event === "Resync" && data.key === undefined) last = new Map();
    if (data.key === undefined || data.value?.version === undefined) continue;
    const before = last.get(data.key) ?? 0;
    assert.ok(data.value.version > before, `${data.key}: version ${data.value.version} after ${before}`);
    last.set(data.key, data.value.version);
  }
}

async function storeOf(node: NodeProcess, table: string): Promise<Map<string, number>> {
  const body = await (await node.fetch(`/${table}/store`)).json() as Record<string, { version: number }>;
  return new Map(Object.entries(body).map(([key, record]) => [key, record.version]));
}

const sorted = (state: Map<string, number>) => new Map([...state].sort());

async function writeMany(node: NodeProcess, options: { token: string; count: number; keys: number }) {
  for (let index = 0; index < options.count; index += 1) {
    const key = `k${String(index * 7919 % options.keys).padStart(4, "0")}`;
    const response = index % 9 === 4
      ? await node.fetch(`/items/key/${key}`, {
        method: "DELETE",
        headers: { authorization: `Bearer ${options.token}` },
      })
      : await putValue(node, `/items/key/${key}`, { key, write: index }, { token: options.token });
    await response.body?.cancel();
    assert.ok(
      response.status === 201 || response.status === 200 || response.status === 404,
      `${response.status}`,
    );
  }
}

for (const cutDuring of ["snapshot", "live"] as const) {
  Deno.test(
    `live state: a snapshot stream cut during the ${cutDuring} ends equal to the store, ` +
      "each change once",
    async () => {
      await using node = await NodeProcess.start();
      const token = await tokenFor(node, "alice");
      // Values of 4 KiB: the snapshot (~6 MB) is still streaming when the proxy cuts it.
      const padding = "x".repeat(4_096);
      for (let index = 0; index < 1_500; index += 1) {
        const key = `k${String(index).padStart(4, "0")}`;
        const response = await putValue(node, `/items/key/${key}`, { key, write: -1, padding }, { token });
        await response.body?.cancel();
      }
      await using proxy = TcpProxy.start(Number(new URL(node.baseUrl).port));
      await using log = new EventSourceLog(`http://127.0.0.1:${proxy.port}/items/subscribe?snapshot=true`);
      const writing = writeMany(node, { token, count: 600, keys: 1_700 });
      if (cutDuring === "snapshot") {
        await waitFor(() => log.changes.length >= 20, { timeoutMs: 10_000, what: "the snapshot to start" });
        assert.ok(!log.changes.some((change) => change.data.event === "Synced"), "cut before Synced");
      } else {
        await waitFor(() => log.changes.some((change) => change.data.event === "Synced"), {
          timeoutMs: 20_000,
          what: "the snapshot to end",
        });
      }
      proxy.cut();
      await waitFor(() => log.errorCount >= 1, { timeoutMs: 10_000, what: "the client to see the cut" });
      proxy.heal();
      await waitFor(() => log.openCount >= 2, { timeoutMs: 20_000, what: "the client to reconnect" });
      await writing;
      const store = sorted(await storeOf(node, "items"));
      await waitFor(() => {
        const state = sorted(stateOf(log.changes));
        return state.size === store.size && [...state].every(([key, version]) => store.get(key) === version);
      }, { timeoutMs: 20_000, what: "the page's state to equal the store's" });
      assertVersionsIncrease(log.changes);
      if (cutDuring === "snapshot") {
        assert.equal(log.readyIds[1], "0", "cut during the snapshot: the client had nothing to resume from");
        assert.ok(log.changes.some((change) => change.data.event === "Resync"), "and was told to start over");
      } else {
        assert.notEqual(log.readyIds[1], "0", "cut after Synced: resumed from a change id");
      }
    },
  );
}

Deno.test("live state: a key stream with ?snapshot=true sends the value, Synced, then live", async () => {
  await using node = await NodeProcess.start();
  const token = await tokenFor(node, "alice");
  for (const n of [1, 2, 3]) await (await putValue(node, "/t/key/k", { n }, { token })).body?.cancel();
  await using log = new EventSourceLog(`${node.baseUrl}/t/subscribe/k?snapshot=true`);
  await waitFor(() => log.changes.length >= 2, { timeoutMs: 10_000, what: "value and Synced" });
  // The npm client reports an event without an id line as lastEventId "" (a browser repeats the last id);
  // either way the id it sends back on a reconnect is the last one it was given, "3".
  assert.deepEqual(log.changes.map((change) => [change.data.event, change.data.value?.version]), [
    ["Updated", 3],
    ["Synced", undefined],
  ]);
  assert.equal(log.changes[0]!.id, "3");
  assert.deepEqual(log.readyIds, ["0"]);
  await (await putValue(node, "/t/key/k", { n: 4 }, { token })).body?.cancel();
  await waitFor(() => log.versions().includes(4), { timeoutMs: 10_000, what: "the live change" });
  const bad = await node.fetch("/t/subscribe/k?snapshot=yes");
  assert.equal(bad.status, 400);
  assert.equal((await bad.json()).code, "invalid_request");
});

Deno.test(
  "live state: one multiplexed stream with snapshot and filter, cut by a proxy, ends equal to the " +
    "store (npm eventsource)",
  async () => {
    await using node = await NodeProcess.start();
    const token = await tokenFor(node, "alice");
    await writeTasks(node, { token, count: 300, seed: 3 });
    await using proxy = TcpProxy.start(Number(new URL(node.baseUrl).port));
    const where = encodeURIComponent(JSON.stringify(openTasks));
    await using log = new EventSourceLog(
      `http://127.0.0.1:${proxy.port}/subscribe?table=tasks&key=settings/theme&snapshot=true&where=${where}`,
    );
    await waitFor(() => log.changes.some((change) => change.data.event === "Synced"), {
      timeoutMs: 20_000,
      what: "the snapshot",
    });
    const writing = writeTasks(node, { token, count: 400, seed: 4 });
    await waitFor(() => log.changes.length > 40, { timeoutMs: 10_000, what: "live changes" });
    proxy.cut();
    await waitFor(() => log.errorCount >= 1, { timeoutMs: 10_000, what: "the client to see the cut" });
    proxy.heal();
    await waitFor(() => log.openCount >= 2, { timeoutMs: 20_000, what: "the client to reconnect" });
    await writing;
    const expected = await expectedState(node);
    const shown = () => {
      const state = new Map<string, number>();
      for (const { data } of log.changes) {
        const id = `${data.table}/${data.key}`;
        if (data.event === "Resync" && data.key === undefined) state.clear();
        if (data.event === "Updated") state.set(id, data.value!.version!);
        if (data.event === "Deleted" || data.event === "Left") state.delete(id);
      }
      return Object.fromEntries([...state].sort());
    };
    await waitFor(
      () => JSON.stringify(shown()) === JSON.stringify(Object.fromEntries(Object.entries(expected).sort())),
      {
        timeoutMs: 20_000,
        what: "the client's state to equal the store's open tasks and theme",
      },
    );
    let last = new Map<string, number>();
    for (const { data } of log.changes) {
      if (data.event === "Resync" && data.key === undefined) last = new Map();
      const version = (data as { version?: number }).version ?? data.value?.version;
      if (data.key === undefined || version === undefined) continue;
      const id = `${data.table}/${data.key}`;
      assert.ok(version > (last.get(id) ?? 0), `${id}: ${data.event} v${version} after v${last.get(id)}`);
      last.set(id, version);
    }
    assert.ok(log.changes.some((change) => change.data.event === "Left"), "records left the filter");
    assert.notEqual(log.readyIds[1], "0", "resumed from the change log after Synced");
  },
);

Deno.test(
  "live state: malformed stream requests are a 400 naming the problem, before any stream opens",
  async () => {
    await using node = await NodeProcess.start();
    const sources = Array.from({ length: 101 }, (_, index) => `table=t${index}`).join("&");
    const cases: Array<[string, string]> = [
      ["/subscribe", "at least one source"],
      [`/subscribe?${sources}`, "at most 100 sources, got 101"],
      ["/subscribe?key=nokey", '"<table>/<key>"'],
      ["/subscribe?table=auth", "reserved"],
      ["/subscribe?table=t&where=%7B%22n%22%3A%7B%22%24gt%22%3A%7B%7D%7D%7D", "$gt"],
      ["/t/subscribe?where=notjson", "where"],
      ["/t/subscribe?snapshot=1", "snapshot"],
      ["/subscribe?table=t&since=x", "since"],
    ];
    for (const [path, words] of cases) {
      const response = await node.fetch(path);
      assert.equal(response.status, 400, path);
      assert.equal(response.headers.get("content-type"), "application/problem+json", path);
      const body = await response.json();
      assert.equal(body.code, path.includes("auth") ? body.code : "invalid_request", path);
      assert.ok(body.detail.includes(words), `${path}: ${body.detail}`);
    }
    assert.equal((await (await node.fetch("/stats")).json()).active_sse_connections, 0);
  },
);

Deno.test(
  "live state: an expiring key's stream says Deleted with reason expired at the top, and a filtered " +
    "table stream too",
  async () => {
    await using node = await NodeProcess.start();
    const token = await tokenFor(node, "alice");
    await using keyLog = new EventSourceLog(`${node.baseUrl}/t/subscribe/k`);
    const where = encodeURIComponent(JSON.stringify({ n: 1 }));
    await using tableLog = new EventSourceLog(`${node.baseUrl}/t/subscribe?where=${where}`);
    await waitFor(() => keyLog.readyIds.length === 1 && tableLog.readyIds.length === 1, {
      timeoutMs: 10_000,
      what: "both streams",
    });
    const response = await node.fetch("/t/key/k", {
      method: "PUT",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ value: { n: 1 }, ttl_secs: 1 }),
    });
    assert.equal(response.status, 201);
    assert.equal(typeof (await response.json()).expires_at, "number");
    for (const log of [keyLog, tableLog]) {
      await waitFor(() => log.changes.some((change) => change.data.event === "Deleted"), {
        timeoutMs: 15_000,
        what: "the expiry's Deleted",
      });
      const deleted = log.changes.find((change) => change.data.event === "Deleted")!;
      assert.equal((deleted.data as { reason?: string }).reason, "expired");
      assert.equal(deleted.data.value?.version, 2, "the expiry is the next version");
    }
    assert.equal((await node.fetch("/t/key/k")).status, 404);
    // Both changes are in the node's change log, which /stats describes.
    const { change_log } = await (await node.fetch("/stats")).json();
    assert.ok(change_log.records >= 2 && change_log.bytes > 0 && change_log.next_seq > change_log.floor_seq);
  },
);
