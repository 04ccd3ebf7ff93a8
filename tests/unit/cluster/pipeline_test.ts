// Goal: PeerPipeline keeps one ordered stream of `apply` requests per peer: one request in flight, the
// next carrying everything queued meanwhile up to applyItemsMax items and batchBytesMax bytes, a backlog
// bounded by pipelineItemsMax, a failed request failing exactly its batch, and close() failing what waits;
// the same pipeline carries forwarded writes (`writes`), whose answer must hold one result per item.
// Method: a ManualTransport holds every request until the test answers it; no network, no timers.
import assert from "node:assert/strict";
import {
  applyBatches,
  batchBytesMax,
  type BatchKind,
  PeerPipeline,
  pipelineItemsMax,
  writeBatches,
} from "../../../src/cluster/pipeline.ts";
import {
  type ApplyItem,
  applyItemsMax,
  type ApplyResult,
  type WriteRequest,
} from "../../../src/cluster/replication_wire.ts";
import { PeerRequestError } from "../../../src/cluster/mod.ts";
import { jsonTextOf } from "../../../src/cluster/transport.ts";
import { silentLogger } from "../../../src/util/log.ts";
import { waitFor } from "../../helpers/wait_for.ts";
import { type HeldRequest, ManualTransport, nodeB } from "./fake_cluster.ts";

/** A pipeline of `batches` to node B over a ManualTransport. */
function pipelineOf<Item, Result>(
  batches: BatchKind<Item, Result>,
): { transport: ManualTransport; pipeline: PeerPipeline<Item, Result> } {
  const transport = new ManualTransport();
  const pipeline = new PeerPipeline({
    peer: nodeB,
    transport,
    timeoutMs: 1_000,
    logger: silentLogger,
    batches,
  });
  return { transport, pipeline };
}

function makePipeline(): { transport: ManualTransport; pipeline: PeerPipeline<ApplyItem, ApplyResult> } {
  return pipelineOf(applyBatches);
}

/** A stored item of key `key` whose value JSON is `valueChars` characters long. */
function item(key: string, valueChars = 8): ApplyItem {
  const valueJson = JSON.stringify("v".repeat(Math.max(0, valueChars - 2)));
  assert.equal(valueJson.length, Math.max(2, valueChars));
  return {
    store: true,
    table: "t",
    key,
    entry: { version: 1, timestamp: 1, owner: "alice", deleted: false, valueJson },
  };
}

function keysOf(body: unknown): string[] {
  return (body as { items: ApplyItem[] }).items.map((sent) => sent.key);
}

/** Sends `item` and returns its acknowledgement, failing when the pipeline refused it. */
function sendAccepted(pipeline: PeerPipeline<ApplyItem, ApplyResult>, sent: ApplyItem): Promise<ApplyResult> {
  const result = pipeline.send(sent);
  assert.ok(result.accepted);
  return result.acknowledged;
}

async function waitForRequests(transport: ManualTransport, count: number): Promise<void> {
  await waitFor(() => transport.requests.length >= count, { timeoutMs: 2_000, what: `${count} requests` });
}

/** Answers a held `apply` batch the way a replica does: one "applied" per item. */
function applyAll(held: HeldRequest): void {
  const { items } = held.body as { items: unknown[] };
  held.resolve({ results: items.map(() => ({ result: "applied" })) });
}

Deno.test("PeerPipeline sends the JSON of its body, each item serialized once for every peer", async () => {
  const toB = makePipeline();
  const toC = makePipeline();
  // Text that JSON escapes: quotes, a backslash, a control character, a lone surrogate.
  const tricky = item('k"\\\u0001\ud800', 40);
  const items = [item("a"), tricky, item("b", 3_000)];
  let stringified = 0;
  const original = JSON.stringify;
  JSON.stringify = ((value: unknown, ...rest: unknown[]) => {
    if (items.includes(value as ApplyItem)) stringified += 1;
    return (original as (...args: unknown[]) => string)(value, ...rest);
  }) as typeof JSON.stringify;
  try {
    for (const { pipeline } of [toB, toC]) for (const sent of items) void sendAccepted(pipeline, sent);
    for (const { transport } of [toB, toC]) {
      // The first item goes at once, the two queued behind it in the next request.
      await waitForRequests(transport, 1);
      applyAll(transport.at(0));
      await waitForRequests(transport, 2);
      applyAll(transport.at(1));
      assert.deepEqual(transport.requests.map((held) => keysOf(held.body)), [["a"], [tricky.key, "b"]]);
      for (const held of transport.requests) {
        assert.equal(jsonTextOf(held.body), original(held.body), "the text sent is the body's JSON");
      }
    }
  } finally {
    JSON.stringify = original;
  }
  assert.equal(stringified, items.length, "each item serialized once, whichever pipeline sent it first");
});

Deno.test("PeerPipeline.send() keeps one request in flight and sends later items in order", async () => {
  const { transport, pipeline } = makePipeline();
  const first = sendAccepted(pipeline, item("a"));
  const second = sendAccepted(pipeline, item("b"));
  const third = sendAccepted(pipeline, item("c"));
  assert.equal(transport.requests.length, 1);
  assert.equal(transport.at(0).target, nodeB);
  assert.equal(transport.at(0).kind, "apply");
  assert.deepEqual(keysOf(transport.at(0).body), ["a"]);
  assert.equal(pipeline.backlog, 3, "two queued and one in flight");
  applyAll(transport.at(0));
  await first;
  await waitForRequests(transport, 2);
  assert.deepEqual(keysOf(transport.at(1).body), ["b", "c"]);
  assert.equal(pipeline.backlog, 2, "the second batch is in flight");
  const fourth = sendAccepted(pipeline, item("d"));
  assert.equal(transport.requests.length, 2, "still one request in flight");
  applyAll(transport.at(1));
  await Promise.all([second, third]);
  await waitForRequests(transport, 3);
  assert.deepEqual(keysOf(transport.at(2).body), ["d"]);
  applyAll(transport.at(2));
  await fourth;
});

Deno.test("PeerPipeline batches at most applyItemsMax items per request (max and max + 1)", async () => {
  const { transport, pipeline } = makePipeline();
  const acknowledgements = [sendAccepted(pipeline, item("first"))];
  for (let index = 0; index < applyItemsMax + 1; index += 1) {
    acknowledgements.push(sendAccepted(pipeline, item(`k${String(index).padStart(4, "0")}`)));
  }
  applyAll(transport.at(0));
  await waitForRequests(transport, 2);
  const batch = keysOf(transport.at(1).body);
  assert.equal(batch.length, applyItemsMax);
  assert.equal(batch[0], "k0000");
  assert.equal(batch.at(-1), `k${String(applyItemsMax - 1).padStart(4, "0")}`);
  applyAll(transport.at(1));
  await waitForRequests(transport, 3);
  assert.deepEqual(keysOf(transport.at(2).body), [`k${String(applyItemsMax).padStart(4, "0")}`]);
  applyAll(transport.at(2));
  await Promise.all(acknowledgements);
});

// itemBytes = 2 * UTF-8 bytes of valueJson + those of table and key + 160; table "t" and a 3-char key
// make an item of valueJson length (half - 164) / 2 exactly half of batchBytesMax.
const halfBatchBytes = batchBytesMax / 2;
const halfValueChars = (halfBatchBytes - 1 - 3 - 160) / 2;

Deno.test("PeerPipeline batches up to batchBytesMax: two halves share a request", async () => {
  assert.ok(Number.isSafeInteger(halfValueChars));
  const { transport, pipeline } = makePipeline();
  const acknowledgements = [sendAccepted(pipeline, item("x"))];
  acknowledgements.push(sendAccepted(pipeline, item("h01", halfValueChars)));
  acknowledgements.push(sendAccepted(pipeline, item("h02", halfValueChars)));
  acknowledgements.push(sendAccepted(pipeline, item("h03", halfValueChars)));
  applyAll(transport.at(0));
  await waitForRequests(transport, 2);
  assert.deepEqual(keysOf(transport.at(1).body), ["h01", "h02"], "exactly batchBytesMax fits");
  applyAll(transport.at(1));
  await waitForRequests(transport, 3);
  assert.deepEqual(keysOf(transport.at(2).body), ["h03"]);
  applyAll(transport.at(2));
  await Promise.all(acknowledgements);
});

Deno.test("PeerPipeline batches up to batchBytesMax: one byte over splits the request", async () => {
  const { transport, pipeline } = makePipeline();
  const acknowledgements = [sendAccepted(pipeline, item("x"))];
  acknowledgements.push(sendAccepted(pipeline, item("h01", halfValueChars)));
  acknowledgements.push(sendAccepted(pipeline, item("h002", halfValueChars))); // one key char more
  applyAll(transport.at(0));
  await waitForRequests(transport, 2);
  assert.deepEqual(keysOf(transport.at(1).body), ["h01"]);
  applyAll(transport.at(1));
  await waitForRequests(transport, 3);
  assert.deepEqual(keysOf(transport.at(2).body), ["h002"]);
  applyAll(transport.at(2));
  await Promise.all(acknowledgements);
});

Deno.test("PeerPipeline sends an item over batchBytesMax alone rather than never", async () => {
  const { transport, pipeline } = makePipeline();
  const acknowledgements = [sendAccepted(pipeline, item("x"))];
  acknowledgements.push(sendAccepted(pipeline, item("big", batchBytesMax)));
  acknowledgements.push(sendAccepted(pipeline, item("small")));
  applyAll(transport.at(0));
  await waitForRequests(transport, 2);
  assert.deepEqual(keysOf(transport.at(1).body), ["big"]);
  applyAll(transport.at(1));
  await waitForRequests(transport, 3);
  assert.deepEqual(keysOf(transport.at(2).body), ["small"]);
  applyAll(transport.at(2));
  await Promise.all(acknowledgements);
});

Deno.test(
  "PeerPipeline.send() holds pipelineItemsMax items (in flight included) and refuses the next",
  async () => {
    const { transport, pipeline } = makePipeline();
    const acknowledgements = [sendAccepted(pipeline, item("in-flight"))];
    for (let index = 1; index < pipelineItemsMax; index += 1) {
      acknowledgements.push(sendAccepted(pipeline, item(`k${index}`)));
    }
    assert.equal(pipeline.backlog, pipelineItemsMax);
    assert.deepEqual(pipeline.send(item("over")), { accepted: false });
    assert.equal(pipeline.backlog, pipelineItemsMax);
    // Drain everything: each answer releases the next batch.
    const requestCount = 1 + Math.ceil((pipelineItemsMax - 1) / applyItemsMax);
    for (let index = 0; index < requestCount; index += 1) {
      applyAll(transport.at(index));
      if (index + 1 < requestCount) await waitForRequests(transport, index + 2);
    }
    await Promise.all(acknowledgements);
    assert.equal(transport.requests.length, requestCount);
    assert.equal(pipeline.backlog, 0);
    const after = sendAccepted(pipeline, item("after")); // room again once drained
    applyAll(transport.at(transport.requests.length - 1));
    await after;
  },
);

Deno.test({
  name: "PeerPipeline.backlog counts the items in flight, as documented",
  fn: async () => {
    const { transport, pipeline } = makePipeline();
    const acknowledged = sendAccepted(pipeline, item("a"));
    assert.equal(pipeline.backlog, 1);
    applyAll(transport.at(0));
    await acknowledged;
  },
});

Deno.test("PeerPipeline rejects every item of a failed batch and goes on with the next", async () => {
  const { transport, pipeline } = makePipeline();
  const first = sendAccepted(pipeline, item("a"));
  const second = sendAccepted(pipeline, item("b"));
  const third = sendAccepted(pipeline, item("c"));
  applyAll(transport.at(0));
  await first;
  await waitForRequests(transport, 2);
  const failure = new PeerRequestError({ target: nodeB, kind: "apply", failure: "timeout" });
  transport.at(1).reject(failure);
  await assert.rejects(second, (error) => error === failure);
  await assert.rejects(third, (error) => error === failure);
  const fourth = sendAccepted(pipeline, item("d"));
  await waitForRequests(transport, 3);
  assert.deepEqual(keysOf(transport.at(2).body), ["d"]);
  applyAll(transport.at(2));
  await fourth;
});

Deno.test("PeerPipeline fails an apply item whose answer is unusable: never an acknowledgement", async () => {
  const { transport, pipeline } = makePipeline();
  const twoResults = { results: [{ result: "applied" }, { result: "applied" }] };
  for (
    const reply of [null, {}, { results: [] }, twoResults, { results: "x" }, { results: [{ result: "ok" }] }]
  ) {
    const index = transport.requests.length;
    const sent = sendAccepted(pipeline, item("a"));
    await waitForRequests(transport, index + 1);
    transport.at(index).resolve(reply);
    await assert.rejects(sent, /malformed/, JSON.stringify(reply));
  }
});

Deno.test(
  "PeerPipeline.close() fails queued items, lets the in-flight batch finish and refuses more",
  async () => {
    const { transport, pipeline } = makePipeline();
    const inFlight = sendAccepted(pipeline, item("a"));
    const queuedB = sendAccepted(pipeline, item("b"));
    const queuedC = sendAccepted(pipeline, item("c"));
    pipeline.close();
    assert.equal(pipeline.backlog, 1, "only the batch in flight is left");
    await assert.rejects(queuedB, /pipeline to 127\.0\.0\.1:7002 closed/);
    await assert.rejects(queuedC, /closed/);
    assert.deepEqual(pipeline.send(item("d")), { accepted: false });
    applyAll(transport.at(0));
    await inFlight;
    assert.equal(transport.requests.length, 1, "nothing is sent after close()");
  },
);

Deno.test(
  "PeerPipeline of forwarded writes: answers each item in order, fails a batch with a malformed " +
    "answer",
  async () => {
    const { transport, pipeline } = pipelineOf(writeBatches);
    const write = (key: string): WriteRequest => ({
      op: "put",
      table: "t",
      key,
      value: { n: 1 },
      owner: "alice",
    });
    const send = (key: string) => {
      const sent = pipeline.send(write(key));
      assert.ok(sent.accepted);
      return sent.acknowledged;
    };
    const [a, b, c] = [send("a"), send("b"), send("c")];
    assert.equal(transport.at(0).kind, "writes");
    transport.at(0).resolve({ results: [{ json: "{}", version: 1, deleted: false }] });
    assert.deepEqual(await a, { json: "{}", version: 1, deleted: false });
    await waitForRequests(transport, 2);
    assert.deepEqual((transport.at(1).body as { items: WriteRequest[] }).items.map((item) => item.key), [
      "b",
      "c",
    ]);
    transport.at(1).resolve({ results: [{ json: "{}", version: 1, deleted: false }] }); // one result for two
    await assert.rejects(b, /malformed/);
    await assert.rejects(c, /malformed/, "unlike apply, a write without its answer is not taken as done");
  },
);

Deno.test(
  "PeerPipeline of forwarded writes counts 3 bytes per character, so a batch of CJK text fits the " +
    "limit",
  async () => {
    const { transport, pipeline } = pipelineOf(writeBatches);
    // Each value is ~1.2 MB in UTF-8: three of them (3.6 MB) would pass the transport's 4 MiB with the rest.
    const value = "中".repeat(400_000);
    const sent = ["a", "b", "c", "d"].map((key) =>
      pipeline.send({ op: "put", table: "t", key, value, owner: "alice" } satisfies WriteRequest)
    );
    const keys = (index: number) =>
      (transport.at(index).body as { items: WriteRequest[] }).items.map((item) => item.key);
    const answer = (count: number) => ({
      results: Array.from({ length: count }, () => ({ json: "{}", version: 1, deleted: false })),
    });
    assert.deepEqual(keys(0), ["a"]);
    transport.at(0).resolve(answer(1));
    await waitForRequests(transport, 2);
    assert.deepEqual(keys(1), ["b", "c"], "a third value would take the batch over batchBytesMax");
    const bodyBytes = new TextEncoder().encode(JSON.stringify(transport.at(1).body)).length;
    assert.ok(bodyBytes < batchBytesMax, `${bodyBytes} bytes`);
    transport.at(1).resolve(answer(2));
    await waitForRequests(transport, 3);
    assert.deepEqual(keys(2), ["d"]);
    transport.at(2).resolve(answer(1));
    for (const result of sent) {
      assert.ok(result.accepted);
      assert.deepEqual(await result.acknowledged, { json: "{}", version: 1, deleted: false });
    }
  },
);

Deno.test(
  "PeerPipeline of replicas counts a value's UTF-8 bytes, so a batch of CJK text splits in time",
  async () => {
    const { transport, pipeline } = makePipeline();
    // 200,000 characters of 3 bytes: 0.6 MB each, counted twice for escaping; three of them are over the
    // limit.
    const cjk = (key: string): ApplyItem => ({
      store: true,
      table: "t",
      key,
      entry: {
        version: 1,
        timestamp: 1,
        owner: "alice",
        deleted: false,
        valueJson: JSON.stringify("中".repeat(200_000)),
      },
    });
    const acknowledgements = ["a", "b", "c", "d"].map((key) => sendAccepted(pipeline, cjk(key)));
    applyAll(transport.at(0));
    await waitForRequests(transport, 2);
    assert.deepEqual(keysOf(transport.at(1).body), ["b", "c"]);
    applyAll(transport.at(1));
    await waitForRequests(transport, 3);
    assert.deepEqual(keysOf(transport.at(2).body), ["d"]);
    applyAll(transport.at(2));
    await Promise.all(acknowledgements);
  },
);

Deno.test(
  "PeerPipeline.post() queues an item in order with sent ones, ignores its failure, and is refused " +
    "when full or closed",
  async () => {
    const { transport, pipeline } = makePipeline();
    const first = sendAccepted(pipeline, item("sent-1"));
    assert.equal(pipeline.post(item("posted-1")), true);
    const second = sendAccepted(pipeline, item("sent-2"));
    assert.equal(pipeline.post(item("posted-2")), true);
    assert.equal(pipeline.backlog, 4, "posted items count in the backlog");
    await waitForRequests(transport, 1);
    assert.deepEqual(keysOf(transport.at(0).body), ["sent-1"]);
    applyAll(transport.at(0));
    await first;
    await waitForRequests(transport, 2);
    assert.deepEqual(keysOf(transport.at(1).body), ["posted-1", "sent-2", "posted-2"], "in the order queued");
    // The batch fails: the sent item's caller hears of it, the posted ones fail silently (nobody waits).
    transport.at(1).reject(new Error("peer gone"));
    await assert.rejects(second, /peer gone/);
    assert.equal(pipeline.backlog, 0);
    for (let index = 0; index < pipelineItemsMax; index += 1) {
      assert.equal(pipeline.post(item(`k${index}`)), true);
    }
    assert.equal(pipeline.post(item("over")), false, "refused when the backlog is full");
    pipeline.close();
    assert.equal(pipeline.post(item("closed")), false, "refused once closed");
  },
);

Deno.test(
  "PeerPipeline.deliver() calls its sink once per item with the item's tag: answered, or failed with " +
    "the batch's error",
  async () => {
    const { transport, pipeline } = makePipeline();
    const calls: string[] = [];
    const sink = {
      answered: (tag: number, result: ApplyResult) => calls.push(`answered ${tag} ${result.result}`),
      failed: (tag: number, error: unknown) => calls.push(`failed ${tag} ${(error as Error).message}`),
    };
    assert.ok(pipeline.deliver(item("a"), sink, 7));
    assert.ok(pipeline.deliver(item("b"), sink, 3));
    assert.ok(pipeline.deliver(item("c"), sink, 5));
    assert.deepEqual(calls, [], "never called from deliver itself");
    await waitForRequests(transport, 1);
    assert.deepEqual(keysOf(transport.requests[0]!.body), ["a"]);
    applyAll(transport.requests[0]!);
    await waitForRequests(transport, 2);
    assert.deepEqual(calls, ["answered 7 applied"]);
    assert.deepEqual(keysOf(transport.requests[1]!.body), ["b", "c"]);
    transport.requests[1]!.reject(new Error("gone"));
    await waitFor(() => calls.length === 3, { timeoutMs: 2_000, what: "the failed batch's sink calls" });
    assert.deepEqual(calls, ["answered 7 applied", "failed 3 gone", "failed 5 gone"]);
    pipeline.close();
    assert.equal(pipeline.deliver(item("d"), sink, 1), false, "a closed pipeline refuses");
    assert.equal(calls.length, 3, "a refused item's sink is never called");
  },
);

Deno.test(
  "PeerPipeline.deliver(): a sink that throws is not called again as failed (the batch's answers " +
    "stand)",
  async () => {
    const { transport, pipeline } = makePipeline();
    const calls: string[] = [];
    let throwOnce = true;
    const sink = {
      answered: (tag: number) => {
        calls.push(`answered ${tag}`);
        if (throwOnce) {
          throwOnce = false;
          throw new Error("the sink broke");
        }
      },
      failed: (tag: number) => calls.push(`failed ${tag}`),
    };
    const unhandled = new Promise<unknown>((resolve) => {
      globalThis.addEventListener("unhandledrejection", function onUnhandled(event) {
        event.preventDefault();
        globalThis.removeEventListener("unhandledrejection", onUnhandled);
        resolve(event.reason);
      });
    });
    assert.ok(pipeline.deliver(item("a"), sink, 1));
    await waitForRequests(transport, 1);
    applyAll(transport.requests[0]!);
    assert.equal(((await unhandled) as Error).message, "the sink broke");
    assert.deepEqual(calls, ["answered 1"], "never answered then failed");
  },
);
