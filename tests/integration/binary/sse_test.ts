// Goal: SPEC §4 against a real node: order, ids, Deleted events, keepalive, resume with Last-Event-ID,
// whole-table streams, and the disconnection of a subscriber too slow to keep up.
// Method: a node child process; fetch-based SSE readers; a raw TCP subscriber that never reads.
import assert from "node:assert/strict";
import { NodeProcess, putValue, tokenFor } from "../../helpers/node_process.ts";
import { SseReader } from "../../helpers/sse_reader.ts";
import { waitFor } from "../../helpers/wait_for.ts";

Deno.test("sse: events of a key arrive in version order with id = version, then Deleted", async () => {
  await using node = await NodeProcess.start();
  const token = await tokenFor(node, "alice");
  await using events = await SseReader.open(`${node.baseUrl}/notifications/subscribe/status`);
  assert.equal(events.response.headers.get("content-type"), "text/event-stream");
  assert.equal(events.response.headers.get("cache-control"), "no-store");
  await Promise.all(
    Array.from(
      { length: 20 },
      (_, index) =>
        putValue(node, "/notifications/key/status", { index }, { token }).then((response) =>
          response.body?.cancel()
        ),
    ),
  );
  for (let version = 1; version <= 20; version += 1) {
    const event = await events.nextEvent();
    assert.equal(event.id, String(version));
    assert.equal(event.data.event, "Updated");
    assert.equal((event.data.value as { version: number }).version, version);
    assert.equal((event.data.value as { owner: string }).owner, "alice");
  }
  await node.fetch("/notifications/key/status", {
    method: "DELETE",
    headers: { authorization: `Bearer ${token}` },
  })
    .then((response) => response.body?.cancel());
  const deleted = await events.nextEvent();
  assert.equal(deleted.id, "21");
  assert.equal(deleted.data.event, "Deleted");
  assert.deepEqual(Object.keys(deleted.data.value as object).sort(), ["key", "timestamp", "version"]);
  await events[Symbol.asyncDispose]();
  await waitFor(async () => (await (await node.fetch("/stats")).json()).active_sse_connections === 0, {
    timeoutMs: 5_000,
    what: "a subscriber that went away to be unsubscribed",
  });
});

Deno.test("sse: keepalive comments flow on an idle stream", async () => {
  await using node = await NodeProcess.start({ env: { DYNA_SSE_KEEPALIVE_MS: "100" } });
  await using events = await SseReader.open(`${node.baseUrl}/t/subscribe/k`);
  assert.equal(await events.readyId(), "0", "the stream starts with its position: k does not exist");
  let keepalives = 0;
  while (keepalives < 2) {
    const frame = await events.next(2_000);
    assert.ok(frame !== undefined);
    assert.equal(frame.data, undefined, "no event on an idle key");
    if (frame.comment === "keepalive") keepalives += 1;
  }
});

Deno.test(
  "sse: Last-Event-ID replays what was missed, from memory or from the change log, then live",
  async () => {
    await using node = await NodeProcess.start();
    const token = await tokenFor(node, "alice");
    {
      // The client's first connection: from it on, the node remembers k's changes for its resumption.
      await using first = await SseReader.open(`${node.baseUrl}/t/subscribe/k`);
      for (let index = 1; index <= 2; index += 1) {
        await (await putValue(node, "/t/key/k", index, { token })).body?.cancel();
      }
      for (const version of [1, 2]) assert.equal((await first.nextEvent()).id, String(version));
    }
    for (let index = 3; index <= 5; index += 1) {
      await (await putValue(node, "/t/key/k", index, { token })).body?.cancel();
    }
    {
      await using events = await SseReader.open(`${node.baseUrl}/t/subscribe/k`, { "last-event-id": "2" });
      for (const version of [3, 4, 5]) assert.equal((await events.nextEvent()).id, String(version));
      await (await putValue(node, "/t/key/k", 6, { token })).body?.cancel();
      assert.equal(
        (await events.nextEvent()).id,
        "6",
        "live events follow the replay without a gap or a repeat",
      );
    }
    for (let index = 7; index <= 200; index += 1) {
      await (await putValue(node, "/t/key/k", index, { token })).body?.cancel();
    }
    await using old = await SseReader.open(`${node.baseUrl}/t/subscribe/k`, { "last-event-id": "1" });
    // Older than the memory holds, within the change log's window: every version from 2 to 200, once each.
    for (let version = 2; version <= 200; version += 1) {
      const event = await old.nextEvent();
      assert.equal(event.id, String(version));
      assert.equal((event.data.value as { value: number }).value, version);
    }
  },
);

Deno.test(
  "sse: a gap older than the change log's window gets the key's Resync, then the current value",
  async () => {
    // The smallest window: 128 KiB of changes, dropped a 64 KiB segment at a time.
    await using node = await NodeProcess.start({ env: { DYNA_CHANGE_RETENTION_BYTES: String(128 * 1024) } });
    const token = await tokenFor(node, "alice");
    const padding = "x".repeat(500);
    for (let index = 1; index <= 600; index += 1) {
      await (await putValue(node, "/t/key/k", { index, padding }, { token })).body?.cancel();
    }
    await using old = await SseReader.open(`${node.baseUrl}/t/subscribe/k`, { "last-event-id": "1" });
    const first = await old.nextEvent();
    assert.deepEqual([first.id, first.data], ["", { event: "Resync", table: "t", key: "k" }]);
    // Then the oldest version the window still holds, and every later one: never a silent jump.
    const held = await old.nextEvent();
    assert.ok(Number(held.id) > 2, `version ${held.id} is past the dropped ones`);
    for (let version = Number(held.id) + 1; version <= 600; version += 1) {
      assert.equal((await old.nextEvent()).id, String(version));
    }
    // A table stream from before the window: the table's Resync with the newest id.
    await using table = await SseReader.open(`${node.baseUrl}/t/subscribe`, { "last-event-id": "1" });
    assert.equal((await table.nextEvent()).data.event, "Resync");
  },
);

Deno.test(
  "sse: ?since= resumes like Last-Event-ID, the header wins, and a since that is not an id is a 400",
  async () => {
    await using node = await NodeProcess.start();
    const token = await tokenFor(node, "alice");
    {
      // From the first subscription on, the node remembers k's changes for resumption.
      await using first = await SseReader.open(`${node.baseUrl}/t/subscribe/k`);
      for (let index = 1; index <= 4; index += 1) {
        await (await putValue(node, "/t/key/k", index, { token })).body?.cancel();
      }
      assert.equal((await first.nextEvent()).id, "1");
    }
    {
      await using since = await SseReader.open(`${node.baseUrl}/t/subscribe/k?since=2`);
      for (const version of [3, 4]) assert.equal((await since.nextEvent()).id, String(version));
    }
    {
      // A browser's own reconnect sends the header: it is the newer position, so it wins.
      await using both = await SseReader.open(`${node.baseUrl}/t/subscribe/k?since=1`, {
        "last-event-id": "3",
      });
      assert.equal((await both.nextEvent()).id, "4");
    }
    for (const bad of ["-1", "x", "1.5", "99999999999999999"]) {
      const response = await node.fetch(`/t/subscribe/k?since=${encodeURIComponent(bad)}`);
      assert.equal(response.status, 400, `since=${bad}`);
      assert.match((await response.json()).detail, /since/);
      const table = await node.fetch(`/t/subscribe?since=${encodeURIComponent(bad)}`);
      assert.equal(table.status, 400, `table stream since=${bad}`);
      await table.body?.cancel();
    }
  },
);

Deno.test("sse: a table stream names each key and resumes", async () => {
  await using node = await NodeProcess.start();
  const token = await tokenFor(node, "alice");
  await using events = await SseReader.open(`${node.baseUrl}/devices/subscribe`);
  await (await putValue(node, "/devices/key/a", 1, { token })).body?.cancel();
  await (await putValue(node, "/devices/key/b", 2, { token })).body?.cancel();
  await (await putValue(node, "/other/key/a", 3, { token })).body?.cancel();
  const first = await events.nextEvent();
  const second = await events.nextEvent();
  assert.deepEqual([first.data.key, second.data.key], ["a", "b"]);
  assert.ok(Number(second.id) > Number(first.id));
  await using resumed = await SseReader.open(`${node.baseUrl}/devices/subscribe`, {
    "last-event-id": first.id,
  });
  const replayed = await resumed.nextEvent();
  assert.equal(replayed.data.key, "b");
  assert.equal(replayed.id, second.id);
});

Deno.test(
  "sse: a subscriber that never reads is disconnected and the node keeps serving others",
  async () => {
    await using node = await NodeProcess.start({ env: { DYNA_SSE_QUEUE_DEPTH_MAX: "8" } });
    const token = await tokenFor(node, "alice");
    const url = new URL(node.baseUrl);
    const stalled = await Deno.connect({ hostname: url.hostname, port: Number(url.port) });
    await stalled.write(new TextEncoder().encode("GET /big/subscribe/k HTTP/1.1\r\nHost: x\r\n\r\n"));
    await waitFor(async () => (await (await node.fetch("/stats")).json()).active_sse_connections === 1, {
      timeoutMs: 5_000,
    });
    await using live = await SseReader.open(`${node.baseUrl}/big/subscribe/k`);
    const big = "x".repeat(256 * 1024);
    let dropped = 0;
    for (let index = 1; index <= 400 && dropped === 0; index += 1) {
      await (await putValue(node, "/big/key/k", `${index}${big}`, { token })).body?.cancel();
      assert.equal(
        (await live.nextEvent()).id,
        String(index),
        "the reading subscriber gets every event in order",
      );
      if (index % 10 === 0) dropped = (await (await node.fetch("/stats")).json()).dropped_sse_subscribers;
    }
    assert.equal(dropped, 1, "the stalled subscriber was disconnected");
    stalled.close();
    await waitFor(async () => (await (await node.fetch("/stats")).json()).active_sse_connections === 1, {
      timeoutMs: 5_000,
    });
  },
);
