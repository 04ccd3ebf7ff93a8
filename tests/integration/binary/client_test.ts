// Goal: the typed client (`src/client/mod.ts`, issue 6) does what its documentation says against a real
// node: login, typed reads and writes, conditional writes, pages, and subscriptions that reconnect with
// Last-Event-ID by themselves and deliver each change once, in order.
// Method: a real node; the stream is cut with a TCP proxy between client and node.
import assert from "node:assert/strict";
import { DynaClient, DynaError, type KeyEvent, type TableEvent } from "../../../src/client/mod.ts";
import { NodeProcess } from "../../helpers/node_process.ts";
import { TcpProxy } from "../../helpers/tcp_proxy.ts";
import { waitFor } from "../../helpers/wait_for.ts";

interface Task {
  title: string;
  done: boolean;
  tags?: string[] | null;
}

/** The next item of `events`, or a failure after `timeoutMs`. */
async function next<T>(events: AsyncGenerator<T>, timeoutMs = 10_000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no event within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    const result = await Promise.race([events.next(), timeout]);
    assert.ok(!result.done, "the subscription ended");
    return result.value;
  } finally {
    clearTimeout(timer);
  }
}

async function refusal(run: () => Promise<unknown>): Promise<DynaError> {
  try {
    await run();
  } catch (error) {
    assert.ok(error instanceof DynaError, String(error));
    return error;
  }
  assert.fail("expected a DynaError");
}

Deno.test("client: login, typed get/put/patch/delete, conditional writes, owners", async () => {
  await using node = await NodeProcess.start();
  const alice = new DynaClient({ baseUrl: node.baseUrl });
  assert.equal((await alice.login("alice", "pw")).created, true);
  assert.equal((await alice.login("alice", "pw")).created, false);
  const tasks = alice.table<Task>("tasks");
  const first = await tasks.put("t1", { title: "docs", done: false });
  assert.deepEqual([first.version, first.owner, first.value], [1, "alice", { title: "docs", done: false }]);
  const read = await tasks.get("t1");
  assert.equal(read?.value.title, "docs");
  const second = await tasks.put("t1", { title: "docs", done: true }, { ifVersion: 1 });
  assert.equal(second.version, 2);
  const stale = await refusal(() => tasks.put("t1", { title: "lost", done: false }, { ifVersion: 1 }));
  assert.deepEqual([stale.status, stale.code], [412, "version_conflict"]);
  const patched = await tasks.patch("t1", { tags: ["a"] });
  assert.deepEqual(patched.value, { title: "docs", done: true, tags: ["a"] });
  const bob = new DynaClient({ baseUrl: node.baseUrl });
  assert.equal(
    (await refusal(() => bob.table<Task>("tasks").put("x", { title: "", done: false }))).code,
    "unauthorized",
  );
  await bob.login("bob", "pw2");
  const forbidden = await refusal(() => bob.table<Task>("tasks").delete("t1"));
  assert.deepEqual([forbidden.status, forbidden.code], [403, "forbidden"]);
  await refusal(() => tasks.delete("t1", { ifVersion: 1 }));
  await tasks.delete("t1", { ifVersion: 3 });
  assert.equal(await tasks.get("t1"), undefined);
  assert.equal((await refusal(() => alice.table("_users").get("alice"))).code, "reserved_table");
});

Deno.test("client: ttlSecs on put and patch gives expires_at; a write without it clears it", async () => {
  await using node = await NodeProcess.start();
  const alice = new DynaClient({ baseUrl: node.baseUrl });
  await alice.login("alice", "pw");
  const tasks = alice.table<Task>("tasks");
  const expiring = await tasks.put("t1", { title: "soon", done: false }, { ttlSecs: 600 });
  assert.equal(expiring.expires_at, expiring.timestamp + 600_000);
  assert.equal((await tasks.get("t1"))?.expires_at, expiring.expires_at);
  const patched = await tasks.patch("t1", { done: true }, { ttlSecs: 30, ifVersion: 1 });
  assert.equal(patched.expires_at, patched.timestamp + 30_000);
  const cleared = await tasks.patch("t1", { title: "kept" });
  assert.equal(cleared.expires_at, undefined);
  const refused = await refusal(() => tasks.put("t1", { title: "x", done: false }, { ttlSecs: 0 }));
  assert.deepEqual([refused.status, refused.code], [400, "invalid_request"]);
});

Deno.test("client: getMany, pages in key order, and every entry through entries()", async () => {
  await using node = await NodeProcess.start();
  const client = new DynaClient({ baseUrl: node.baseUrl });
  await client.login("alice", "pw");
  const table = client.table<number>("numbers with spaces");
  const keys = Array.from({ length: 23 }, (_, index) => `k${String(index).padStart(2, "0")}`);
  await Promise.all(keys.map((key, index) => table.put(key, index)));
  const some = await table.getMany(["k01", "k05", "absent"]);
  assert.deepEqual([...some.keys()].sort(), ["k01", "k05"]);
  assert.equal(some.get("k05")?.value, 5);
  assert.deepEqual(await table.keys({ limit: 3, after: "k10" }), ["k11", "k12", "k13"]);
  const page = await table.list({ limit: 2 });
  assert.deepEqual(page.map(([key, entry]) => [key, entry.value]), [["k00", 0], ["k01", 1]]);
  const all: string[] = [];
  for await (const [key, entry] of table.entries({ pageSize: 5 })) {
    assert.equal(entry.value, Number(key.slice(1)));
    all.push(key);
  }
  assert.deepEqual(all, keys);
  assert.deepEqual(await table.keys({ where: { $key: { $gte: "k20" } } }), ["k20", "k21", "k22"]);
  assert.deepEqual(await table.keys({ limit: 2, after: "k20", where: { $key: { $prefix: "k2" } } }), [
    "k21",
    "k22",
  ]);
  const filtered: string[] = [];
  const where = { $or: [{ $key: { $in: ["k03", "k07", "k19"] } }, { $key: "k22", $owner: "alice" }] };
  for await (const [key] of table.entries({ pageSize: 2, where })) filtered.push(key);
  assert.deepEqual(filtered, ["k03", "k07", "k19", "k22"], "pages of matches, limit counting matches");
  const bad = await refusal(() => table.list({ where: { $key: { $gt: {} } } }));
  assert.equal(bad.status, 400);
  assert.equal(bad.code, "invalid_request");
  assert.match(bad.message, /operator "\$gt" needs a number or string/);
  assert.equal((await client.stats()).tables["numbers with spaces"], 23);
  assert.equal((await client.membership())[0]?.status, "alive");
});

Deno.test(
  "client: subscribe() reconnects with Last-Event-ID after the stream breaks and delivers each " +
    "change once",
  async () => {
    await using node = await NodeProcess.start();
    await using proxy = TcpProxy.start(Number(new URL(node.baseUrl).port));
    const writer = new DynaClient({ baseUrl: node.baseUrl });
    await writer.login("alice", "pw");
    const direct = writer.table<{ n: number }>("live");
    const viaProxy = new DynaClient({ baseUrl: `http://127.0.0.1:${proxy.port}` }).table<{ n: number }>(
      "live",
    );
    const stop = new AbortController();
    const changes = viaProxy.subscribe("k", { signal: stop.signal, retryMs: 50 });
    const table = viaProxy.subscribe(undefined, { signal: stop.signal, retryMs: 50 });
    const first = next(changes); // the generators connect on their first pull
    const firstOfTable = next(table);
    await waitSubscribed(node, 2);
    await direct.put("k", { n: 1 });
    const seen: KeyEvent<{ n: number }>[] = [await first];
    const seenInTable: TableEvent<{ n: number }>[] = [await firstOfTable];
    for (const n of [2, 3]) await direct.put("k", { n });
    seen.push(await next(changes), await next(changes));
    proxy.cut(); // breaks both streams; reconnects are refused until heal
    for (const n of [4, 5]) await direct.put("k", { n });
    await direct.delete("k");
    proxy.heal();
    for (let count = 0; count < 3; count += 1) seen.push(await next(changes));
    await direct.put("k", { n: 7 });
    seen.push(await next(changes));
    assert.deepEqual(seen.map((event) => event.id), [1, 2, 3, 4, 5, 6, 7]);
    assert.deepEqual(seen.map((event) => event.event), [
      "Updated",
      "Updated",
      "Updated",
      "Updated",
      "Updated",
      "Deleted",
      "Updated",
    ]);
    const last = seen[6]!;
    assert.ok(last.event === "Updated" && last.value.value.n === 7);
    for (let count = 0; count < 6; count += 1) seenInTable.push(await next(table));
    const ids = seenInTable.map((event) => event.id!);
    assert.deepEqual(ids, [...ids].sort((a, b) => a - b), "table events in order");
    assert.equal(new Set(ids).size, 7, "no table event twice");
    stop.abort();
    assert.equal((await changes.next()).done, true, "an aborted subscription ends");
    await table.return(undefined);
  },
);

function waitSubscribed(node: NodeProcess, count: number): Promise<void> {
  return waitFor(async () => (await (await node.fetch("/stats")).json()).active_sse_connections >= count, {
    timeoutMs: 10_000,
    what: `${count} open streams`,
  });
}

Deno.test(
  "client: watch() follows tables and keys in one stream with a snapshot and a filter, resuming " +
    "after a cut",
  async () => {
    await using node = await NodeProcess.start();
    await using proxy = TcpProxy.start(Number(new URL(node.baseUrl).port));
    const writer = new DynaClient({ baseUrl: node.baseUrl });
    await writer.login("alice", "pw");
    const tasks = writer.table<{ status: string }>("tasks");
    await tasks.put("a", { status: "open" });
    await tasks.put("b", { status: "closed" });
    await writer.table<string>("settings").put("theme", "dark");
    const stop = new AbortController();
    const reader = new DynaClient({ baseUrl: `http://127.0.0.1:${proxy.port}` });
    const events = reader.watch<{ status: string } | string>(
      { tables: ["tasks"], keys: [["settings", "theme"]] },
      { snapshot: true, where: { status: "open" }, signal: stop.signal, retryMs: 50 },
    );
    const snapshot = [await next(events), await next(events), await next(events)];
    assert.deepEqual(snapshot.map((event) => [event.event, "key" in event ? event.key : undefined]), [
      ["Updated", "a"],
      ["Updated", "theme"],
      ["Synced", undefined],
    ]);
    await tasks.put("b", { status: "open" }); // enters the filter
    const entered = await next(events);
    assert.ok(entered.event === "Updated" && entered.key === "b" && entered.table === "tasks");
    proxy.cut();
    await tasks.put("a", { status: "closed" }); // leaves it while the stream is cut
    await writer.table<string>("settings").put("theme", "light");
    proxy.heal();
    const left = await next(events);
    assert.ok(left.event === "Left" && left.key === "a" && left.version === 2, JSON.stringify(left));
    const theme = await next(events);
    assert.ok(theme.event === "Updated" && theme.key === "theme" && theme.value.value === "light");
    assert.ok(Number(theme.id) > Number(left.id) && Number(left.id) > Number(entered.id));
    stop.abort();
    assert.equal((await events.next()).done, true);
    const bad = await refusal(() =>
      reader.watch({ tables: ["tasks"] }, { where: { n: { $gt: {} } } }).next()
    );
    assert.equal(bad.code, "invalid_request");
  },
);
