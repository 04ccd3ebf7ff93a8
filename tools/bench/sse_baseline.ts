/**
 * The bare SSE fan-out baseline of this machine: `Deno.serve` and one `ReadableStream` per subscriber,
 * each event encoded once and the same bytes enqueued to every subscriber, nothing else (no store, no
 * fsync, no history, no per-subscriber queue bound). It speaks just enough of dynarust's API for the
 * same client to measure both with the same schedule:
 *
 * - `GET /{table}/subscribe/{key}`: an event stream that starts with `: connected`, then every event
 *   of that key;
 * - `PUT /{table}/key/{key}` body `{"value": ...}`: publishes `id: <version>` and
 *   `data: {"event":"Updated","value":{"value":...,"version":n,"timestamp":ms,"owner":"bench"}}` and
 *   answers 201 with the versioned value; no authentication;
 * - `GET /stats`: `{"active_sse_connections": n, "rss": bytes}`; `GET /health`: 200.
 *
 * With a data dir (`--durable <dir>`), a PUT first appends its value to a log there and waits for its
 * fdatasync (group commit, `group_commit.ts`), then publishes and answers: the least a durable write →
 * event can take on this machine, the floor of the 1-subscriber latency target.
 *
 * Adapted from the probe `sse_server.ts` that measured this machine's fan-out limit.
 * Usage: `deno run -A tools/bench/sse_baseline.ts <port> [--durable <dir>]`; prints
 * `listening on http://127.0.0.1:PORT`.
 *
 * @module
 */
import { GroupCommitLog } from "./group_commit.ts";

const port = Number(Deno.args[0] ?? 8003);
const durableDir = Deno.args[1] === "--durable" ? Deno.args[2] : undefined;
const log = durableDir === undefined ? undefined : await GroupCommitLog.open(`${durableDir}/log`);
const encoder = new TextEncoder();
/** Subscribers by key: a PUT fans out to its key's subscribers only. */
const subscribersByKey = new Map<string, Set<ReadableStreamDefaultController<Uint8Array>>>();
let subscriberCount = 0;
const connectedFrame = encoder.encode(": connected\n\n");
const streamHeaders = { "content-type": "text/event-stream", "cache-control": "no-store" };
const jsonHeaders = { "content-type": "application/json" };
let version = 0;

function subscribe(key: string): Response {
  let controller: ReadableStreamDefaultController<Uint8Array> | undefined;
  let subscribers = subscribersByKey.get(key);
  if (subscribers === undefined) {
    subscribers = new Set();
    subscribersByKey.set(key, subscribers);
  }
  const keySubscribers = subscribers;
  const body = new ReadableStream<Uint8Array>({
    start(streamController) {
      controller = streamController;
      keySubscribers.add(streamController);
      subscriberCount += 1;
      streamController.enqueue(connectedFrame);
    },
    cancel() {
      if (controller !== undefined && keySubscribers.delete(controller)) subscriberCount -= 1;
    },
  });
  return new Response(body, { headers: streamHeaders });
}

/** Encodes the event once and enqueues the same bytes to every subscriber. */
async function publish(request: Request, key: string): Promise<Response> {
  const body = await request.json() as { value?: unknown };
  const valueJson = JSON.stringify(body.value ?? null);
  await log?.append(`${key}\t${valueJson}\n`);
  version += 1;
  const entryJson = `{"value":${valueJson},"version":${version},"timestamp":${Date.now()},"owner":"bench"}`;
  const frame = encoder.encode(`id: ${version}\ndata: {"event":"Updated","value":${entryJson}}\n\n`);
  const subscribers = subscribersByKey.get(key) ?? new Set();
  for (const controller of subscribers) {
    try {
      controller.enqueue(frame);
    } catch {
      if (subscribers.delete(controller)) subscriberCount -= 1;
    }
  }
  return new Response(entryJson, { status: 201, headers: jsonHeaders });
}

function handle(request: Request): Response | Promise<Response> {
  const path = new URL(request.url).pathname;
  const subscribePath = /^\/([^/]+)\/subscribe\/([^/]+)$/.exec(path);
  if (request.method === "GET" && subscribePath !== null) {
    return subscribe(`${subscribePath[1]}/${subscribePath[2]}`);
  }
  const keyPath = /^\/([^/]+)\/key\/([^/]+)$/.exec(path);
  if (request.method === "PUT" && keyPath !== null) return publish(request, `${keyPath[1]}/${keyPath[2]}`);
  if (path === "/stats") {
    const stats = { active_sse_connections: subscriberCount, rss: Deno.memoryUsage().rss };
    return new Response(JSON.stringify(stats), { headers: jsonHeaders });
  }
  if (path === "/health") return new Response('{"status":"ok"}', { headers: jsonHeaders });
  return new Response("not found", { status: 404 });
}

Deno.serve({
  hostname: "127.0.0.1",
  port,
  onListen: ({ port: listenPort }) => console.log(`listening on http://127.0.0.1:${listenPort}`),
}, handle);
