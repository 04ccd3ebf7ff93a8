// Goal: SPEC §4b "No silent gaps" as a real EventSource client sees it. A key's Resync (no `id:`, no
// `event:`) reaches the client as an ordinary message with `{"event":"Resync","table":..,"key":..}`, right
// before the version after the jump; and, having no id, it leaves the client's Last-Event-ID at the last
// version it really has, so a client cut just after the Resync resumes from there and is told again.
// Method: a single node cannot miss versions of its own keys, so the gap is made in the broker itself
// (it is given versions 1, 2 and 5, as a cluster node that missed 3 and 4 would be). The sse module's
// real Broker and Subscriber streams are served by Deno.serve on 127.0.0.1:0 and read by the npm
// `eventsource` package (WHATWG EventSource). A pass-through in front of the stream adds `retry: 20` so
// that reconnects are quick, and on the first connection ends the response right after the Resync.
import assert from "node:assert/strict";
import { defaultLimits } from "../../src/config/limits.ts";
import { Broker, type Subscription } from "../../src/sse/mod.ts";
import { type ChangeEvent, type Entry, zeroBallot } from "../../src/store/types.ts";
import { silentLogger } from "../../src/util/log.ts";
import { EventSourceLog } from "../helpers/event_source_log.ts";
import { waitFor } from "../helpers/wait_for.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The change of `key` to `{ n: version }`, with the json the store would prepare. */
function change(key: string, version: number): ChangeEvent {
  const json = JSON.stringify({
    value: { n: version },
    version,
    timestamp: 1_700_000_000_000,
    owner: "alice",
  });
  return { kind: "Updated", table: "t", key, version, sequence: 0, json, source: "local" };
}

/** What a store read of the key would answer after `event`. */
function entryOf(event: ChangeEvent): Entry {
  return {
    version: event.version,
    timestamp: 1_700_000_000_000,
    owner: "alice",
    deleted: false,
    json: event.json,
    ballot: zeroBallot,
  };
}

/**
 * The subscription's stream behind `retry: 20`; with `cutAfterResync`, it ends right after the first
 * chunk that is a key's Resync (and cancels the subscription), as a connection lost at that moment.
 */
function served(
  subscription: Subscription,
  options: { cutAfterResync: boolean },
): ReadableStream<Uint8Array> {
  const reader = subscription.stream.getReader();
  return new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(encoder.encode("retry: 20\n\n"));
    },
    async pull(controller) {
      const { done, value } = await reader.read();
      if (done) return controller.close();
      controller.enqueue(value);
      if (options.cutAfterResync && decoder.decode(value).startsWith('data: {"event":"Resync"')) {
        controller.close();
        await reader.cancel();
      }
    },
    cancel: () => reader.cancel(),
  }, { highWaterMark: 0 });
}

/** Serves `GET /t/subscribe/{key}` and `GET /t/subscribe` from `broker`, as the HTTP layer would. */
function serveBroker(
  broker: Broker,
  options: {
    current: (key: string) => Entry | undefined;
    lastEventIds: Array<string | null>;
    /** End the first connection right after a Resync. */
    cutOnce: boolean;
  },
) {
  let connectionCount = 0;
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (request) => {
    connectionCount += 1;
    const header = request.headers.get("last-event-id");
    options.lastEventIds.push(header);
    const lastEventId = header === null ? {} : { lastEventId: Number(header) };
    const key = /^\/t\/subscribe\/(.+)$/.exec(new URL(request.url).pathname)?.[1];
    const subscription = key === undefined
      ? broker.subscribeTable("t", lastEventId)
      : broker.subscribeKey("t", key, { ...lastEventId, current: options.current(key) });
    const body = served(subscription, { cutAfterResync: options.cutOnce && connectionCount === 1 });
    return new Response(body, { headers: { "content-type": "text/event-stream" } });
  });
}

Deno.test(
  "eventsource: a key's Resync is a message before the version after the jump; cut after it, the " +
    "client resumes from its last version and is told again",
  async () => {
    const broker = new Broker({ limits: defaultLimits, logger: silentLogger });
    const published = new Map<string, ChangeEvent>();
    const publish = (event: ChangeEvent) => {
      published.set(event.key, event);
      broker.publish(event);
    };
    const lastEventIds: Array<string | null> = [];
    const server = serveBroker(broker, {
      current: (key) => {
        const event = published.get(key);
        return event === undefined ? undefined : entryOf(event);
      },
      lastEventIds,
      cutOnce: true,
    });
    try {
      await using log = new EventSourceLog(`http://127.0.0.1:${server.addr.port}/t/subscribe/k`);
      await waitFor(() => log.readyIds.length === 1, { timeoutMs: 10_000, what: "the stream's ready block" });
      // This node gets versions 1 and 2, misses 3 and 4, and gets 5.
      for (const version of [1, 2, 5]) publish(change("k", version));
      await waitFor(() => log.openCount === 2 && log.readyIds.length === 2, {
        timeoutMs: 10_000,
        what: "the client to reconnect after the cut",
      });
      publish(change("k", 6));
      await waitFor(() => log.versions().includes(6), { timeoutMs: 10_000, what: "the live version 6" });
      const resync = { event: "Resync", table: "t", key: "k" };
      const received = log.changes.map((message) =>
        message.data.event === "Resync" ? message.data : message.data.value?.version
      );
      assert.deepEqual(received, [1, 2, resync, resync, 5, 6], "told of the jump on each connection");
      assert.deepEqual(lastEventIds, [null, "2"], "the Resync has no id: the client resumes from version 2");
      assert.deepEqual(log.readyIds, ["0", "2"]);
      // npm eventsource gives an event without an id the lastEventId "" (a browser gives the last id);
      // either way the id it sends back on a reconnect stays the last one received.
      assert.deepEqual(log.changes.map((message) => message.id), ["1", "2", "", "", "5", "6"]);
    } finally {
      broker.close();
      await server.shutdown();
    }
  },
);

Deno.test(
  "eventsource: a table stream tells of a key's skipped versions with the key's Resync, before the " +
    "change",
  async () => {
    const broker = new Broker({ limits: defaultLimits, logger: silentLogger });
    const lastEventIds: Array<string | null> = [];
    const server = serveBroker(broker, { current: () => undefined, lastEventIds, cutOnce: false });
    try {
      await using log = new EventSourceLog(`http://127.0.0.1:${server.addr.port}/t/subscribe`);
      await waitFor(() => log.readyIds.length === 1, { timeoutMs: 10_000, what: "the stream's ready block" });
      const start = Number(log.readyIds[0]);
      broker.publish(change("k", 1));
      broker.publish(change("j", 1));
      broker.publish(change("k", 4)); // this node missed 2 and 3
      broker.publish(change("j", 2));
      await waitFor(() => log.changes.length === 5, { timeoutMs: 10_000, what: "five messages" });
      // The Resync has no id: it is an event between the changes of ids start + 2 and start + 3.
      const ids = log.changes.map((received) => received.id);
      assert.deepEqual(ids, [start + 1, start + 2, "", start + 3, start + 4].map((id) => String(id)));
      assert.deepEqual(log.changes[2]?.data, { event: "Resync", table: "t", key: "k" });
      assert.deepEqual([log.changes[3]?.data.key, log.changes[3]?.data.value?.version], ["k", 4]);
      assert.deepEqual(lastEventIds, [null], "one connection");
    } finally {
      broker.close();
      await server.shutdown();
    }
  },
);
