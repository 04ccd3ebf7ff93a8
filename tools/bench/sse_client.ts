/**
 * The SSE load client of `deno task bench`, run as its own process pinned to the load CPU with a raised
 * open-file limit. It opens subscribers with raw TCP (`Deno.connect` and a hand-written HTTP/1.1 GET;
 * the chunked body is parsed loosely: only complete `\n\n`-terminated frames are scanned), then writes
 * on a fixed schedule with `fetch` (keep-alive) from the same process, and measures each delivery:
 *
 *   latency = (client clock when the read holding the event returned) − (client clock just before the
 *   PUT of that write was sent)
 *
 * Both stamps come from this process's monotonic clock. Each written value is
 * `{"bench_n": n, "sent_ms": <epoch ms>}`; the client finds `"bench_n":n` in each event's data and looks
 * up the send time of write n; events must arrive with increasing ids (versions), each once. Write n
 * goes to key `k<n mod keyCount>`; subscriber i listens to key `k<i mod keyCount>`, or, with `streams`,
 * opens `streams[i mod streams.length].path` and expects the writes of that entry's key (a filtered table
 * stream, `live.ts`). An event of another key's write counts as unexpected. The first
 * `warmupWriteCount` writes are delivered and checked but not measured.
 *
 * Usage: `deno run -A tools/bench/sse_client.ts '<ClientPlan as JSON>'`; prints one JSON line, a
 * {@linkcode ClientResult}, on stdout.
 *
 * @module
 */
import { fileLimitOf, round, rssMb, sleep, summarize, type Summary } from "./lib.ts";

/** What the client does; every duration is in ms. */
export interface ClientPlan {
  /** `http://127.0.0.1:PORT` */
  url: string;
  /** Bearer token for the PUTs (the baseline ignores it). */
  token: string;
  table: string;
  keyCount: number;
  subscriberCount: number;
  /** Subscribers connecting at once. */
  connectBatchSize: number;
  /** All subscribers must be connected within this. */
  connectTimeoutMs: number;
  warmupWriteCount: number;
  /** Measured writes, after the warm-up ones. */
  writeCount: number;
  /** Write n is sent at start + n × writeIntervalMs (or as soon as a writer is free, when late). */
  writeIntervalMs: number;
  /** Writes in flight at most. */
  writeConcurrency: number;
  /** After the last write, wait at most this long for every delivery. */
  drainMs: number;
  /** The server's pid, for its RSS. */
  serverPid: number;
  /**
   * What the subscribers open instead of their key's stream: subscriber i takes entry `i mod length`,
   * GETs its `path` (path and query) with every `{subscriber}` replaced by i, and expects exactly the
   * writes of key `k<key>`.
   */
  streams?: ReadonlyArray<{ path: string; key: number }>;
}

/** What the client measured. */
export interface ClientResult {
  subscribersConnected: number;
  subscribersFailed: number;
  /** The server's own count of open streams after connecting. */
  serverSubscriberCount: number | null;
  connectMs: number;
  writesSent: number;
  writeErrorCount: number;
  /** Measured writes per second actually sent. */
  writesPerSec: number | null;
  deliveredCount: number;
  expectedCount: number;
  /** Subscribers that missed at least one event of their key. */
  subscribersMissingEvents: number;
  /** Events that arrived again or before an older one. */
  outOfOrderCount: number;
  /** Events of writes a subscriber should not get (another key's, or one its filter excludes). */
  unexpectedCount: number;
  /** Streams the server closed during the run. */
  subscribersClosed: number;
  /** Per delivery. */
  latencyMs: Summary;
  /** Per measured write: the latency of its slowest delivery. */
  lastDeliveryMs: Summary;
  serverRssMbAfterConnect: number | null;
  serverRssMbAfterWrites: number | null;
  clientRssMb: number | null;
  clientFileLimit: number | null;
}

interface Subscriber {
  key: number;
  /** Path and query of its GET. */
  path: string;
  ready: boolean;
  closed: boolean;
  /** The SSE id (the key's version) of the last event received. */
  lastEventId: number;
  measuredCount: number;
  connection?: Deno.TcpConn;
}

/** An event's id and the write it carries: `id: 7\ndata: {..."value":{"bench_n":12,...}...}`. */
const eventPattern = /id: (\d+)\ndata: [^\n]*?"bench_n":(\d+)/g;
const headerEnd = "\r\n\r\n";

/** The state of one run; see the module doc. */
class SseLoad {
  readonly plan: ClientPlan;
  readonly subscribers: Subscriber[];
  readonly sentMs: Float64Array;
  readonly lastDeliveryMs: Float64Array;
  readonly latencies: number[] = [];
  outOfOrderCount = 0;
  unexpectedCount = 0;
  deliveredCount = 0;

  constructor(plan: ClientPlan) {
    this.plan = plan;
    this.subscribers = Array.from({ length: plan.subscriberCount }, (_, index) => {
      const stream = plan.streams?.[index % plan.streams.length];
      const key = stream?.key ?? index % plan.keyCount;
      return {
        key,
        path: stream?.path.replaceAll("{subscriber}", String(index)) ?? `/${plan.table}/subscribe/k${key}`,
        ready: false,
        closed: false,
        lastEventId: -1,
        measuredCount: 0,
      };
    });
    const writeTotal = plan.warmupWriteCount + plan.writeCount;
    this.sentMs = new Float64Array(writeTotal).fill(NaN);
    this.lastDeliveryMs = new Float64Array(writeTotal).fill(NaN);
  }

  /** Records the events of one complete piece of stream text, received at `receivedMs`. */
  onFrames(subscriber: Subscriber, text: string, receivedMs: number): void {
    for (const match of text.matchAll(eventPattern)) {
      const eventId = Number(match[1]);
      const write = Number(match[2]);
      if (eventId <= subscriber.lastEventId || !(write < this.sentMs.length)) {
        this.outOfOrderCount += 1;
        continue;
      }
      if (write % this.plan.keyCount !== subscriber.key) {
        this.unexpectedCount += 1;
        continue;
      }
      subscriber.lastEventId = eventId;
      if (write < this.plan.warmupWriteCount) continue;
      const latency = receivedMs - this.sentMs[write]!;
      this.latencies.push(latency);
      this.deliveredCount += 1;
      subscriber.measuredCount += 1;
      if (!(latency <= this.lastDeliveryMs[write]!)) this.lastDeliveryMs[write] = latency;
    }
  }

  /**
   * Connects one subscriber; resolves once its stream has started (dynarust's `event: ready` block, or the
   * baseline's `: connected` comment), or failed.
   */
  async subscribe(subscriber: Subscriber, timeoutMs: number): Promise<void> {
    const url = new URL(this.plan.url);
    const connection = await Deno.connect({ hostname: url.hostname, port: Number(url.port) });
    subscriber.connection = connection;
    const request = `GET ${subscriber.path} HTTP/1.1\r\n` +
      `Host: ${url.host}\r\nAccept: text/event-stream\r\n\r\n`;
    await connection.write(new TextEncoder().encode(request));
    const ready = Promise.withResolvers<void>();
    const timer = setTimeout(() => ready.reject(new Error("the stream did not start in time")), timeoutMs);
    void this.#read(subscriber, ready).finally(() => {
      subscriber.closed = true;
      ready.reject(new Error("stream closed before it started"));
    });
    try {
      await ready.promise;
    } finally {
      clearTimeout(timer);
    }
  }

  async #read(subscriber: Subscriber, ready: PromiseWithResolvers<void>): Promise<void> {
    const connection = subscriber.connection!;
    const decoder = new TextDecoder();
    const buffer = new Uint8Array(16_384);
    let carry = "";
    let headerDone = false;
    try {
      // Ends when the server closes the stream or the process exits.
      for (;;) {
        const read = await connection.read(buffer);
        if (read === null) return;
        const receivedMs = performance.now();
        let text = carry + decoder.decode(buffer.subarray(0, read), { stream: true });
        if (!headerDone) {
          const end = text.indexOf(headerEnd);
          if (end < 0) {
            carry = text;
            continue;
          }
          if (!/^HTTP\/1\.1 200/.test(text)) return;
          headerDone = true;
          text = text.slice(end + headerEnd.length);
        }
        if (!subscriber.ready && (text.includes("event: ready\n") || text.includes(": connected"))) {
          subscriber.ready = true;
          ready.resolve();
        }
        const cut = text.lastIndexOf("\n\n");
        if (cut >= 0) this.onFrames(subscriber, text.slice(0, cut + 2), receivedMs);
        carry = cut >= 0 ? text.slice(cut + 2) : text;
      }
    } catch {
      // Reset by the server.
    }
  }
}

async function connectAll(load: SseLoad): Promise<number> {
  const { plan } = load;
  const startedMs = performance.now();
  const deadline = startedMs + plan.connectTimeoutMs;
  for (let start = 0; start < load.subscribers.length; start += plan.connectBatchSize) {
    const remainingMs = deadline - performance.now();
    if (remainingMs <= 0) break;
    const batch = load.subscribers.slice(start, start + plan.connectBatchSize);
    await Promise.all(batch.map((subscriber) => load.subscribe(subscriber, remainingMs).catch(() => {})));
  }
  return performance.now() - startedMs;
}

async function writeAll(load: SseLoad): Promise<{ errorCount: number; measuredMs: number }> {
  const { plan } = load;
  const total = plan.warmupWriteCount + plan.writeCount;
  const startedMs = performance.now();
  let next = 0;
  let errorCount = 0;
  let measuredStartMs = NaN;
  const writer = async () => {
    // Bounded by `total`: each pass takes one write.
    while (next < total) {
      const write = next++;
      const waitMs = startedMs + write * plan.writeIntervalMs - performance.now();
      if (waitMs > 0) await sleep(waitMs);
      if (write === plan.warmupWriteCount) measuredStartMs = performance.now();
      errorCount += await sendWrite(load, write) ? 0 : 1;
    }
  };
  await Promise.all(Array.from({ length: plan.writeConcurrency }, writer));
  return { errorCount, measuredMs: performance.now() - measuredStartMs };
}

async function sendWrite(load: SseLoad, write: number): Promise<boolean> {
  const { plan } = load;
  load.sentMs[write] = performance.now();
  const value = { bench_n: write, sent_ms: performance.timeOrigin + load.sentMs[write]! };
  try {
    const response = await fetch(`${plan.url}/${plan.table}/key/k${write % plan.keyCount}`, {
      method: "PUT",
      headers: { authorization: `Bearer ${plan.token}`, "content-type": "application/json" },
      body: JSON.stringify({ value }),
      signal: AbortSignal.timeout(10_000),
    });
    await response.body?.cancel();
    return response.status === 201 || response.status === 200;
  } catch {
    return false;
  }
}

/** Deliveries the connected subscribers should get from the measured writes. */
function expectedDeliveries(load: SseLoad): { total: number; perKey: number[] } {
  const readyPerKey = new Array<number>(load.plan.keyCount).fill(0);
  for (const subscriber of load.subscribers) if (subscriber.ready) readyPerKey[subscriber.key]! += 1;
  const writesPerKey = new Array<number>(load.plan.keyCount).fill(0);
  const { warmupWriteCount, writeCount } = load.plan;
  for (let write = warmupWriteCount; write < warmupWriteCount + writeCount; write += 1) {
    writesPerKey[write % load.plan.keyCount]! += 1;
  }
  const total = readyPerKey.reduce((sum, count, key) => sum + count * writesPerKey[key]!, 0);
  return { total, perKey: writesPerKey };
}

async function serverSubscriberCount(url: string): Promise<number | null> {
  try {
    const response = await fetch(`${url}/stats`, { signal: AbortSignal.timeout(5_000) });
    return (await response.json() as { active_sse_connections?: number }).active_sse_connections ?? null;
  } catch {
    return null;
  }
}

function serverRss(pid: number): number | null {
  try {
    return round(rssMb(pid), 1);
  } catch {
    return null;
  }
}

async function run(plan: ClientPlan): Promise<ClientResult> {
  const load = new SseLoad(plan);
  const connectMs = await connectAll(load);
  const connected = load.subscribers.filter((subscriber) => subscriber.ready).length;
  const serverCount = await serverSubscriberCount(plan.url);
  const rssAfterConnect = serverRss(plan.serverPid);
  const writes = await writeAll(load);
  const expected = expectedDeliveries(load);
  const drainDeadline = performance.now() + plan.drainMs;
  // Bounded by the drain deadline.
  while (load.deliveredCount < expected.total && performance.now() < drainDeadline) await sleep(20);
  const missing =
    load.subscribers.filter((subscriber) =>
      subscriber.ready && subscriber.measuredCount < expected.perKey[subscriber.key]!
    ).length;
  const summaryOf = (values: ArrayLike<number>): Summary => {
    const summary = summarize(Array.from(values).filter((value) => !Number.isNaN(value)));
    return {
      ...summary,
      p50: round(summary.p50, 3)!,
      p90: round(summary.p90, 3)!,
      p99: round(summary.p99, 3)!,
      max: round(summary.max, 3)!,
    };
  };
  return {
    subscribersConnected: connected,
    subscribersFailed: plan.subscriberCount - connected,
    serverSubscriberCount: serverCount,
    connectMs: Math.round(connectMs),
    writesSent: plan.warmupWriteCount + plan.writeCount,
    writeErrorCount: writes.errorCount,
    writesPerSec: round(plan.writeCount / (writes.measuredMs / 1000), 1),
    deliveredCount: load.deliveredCount,
    expectedCount: expected.total,
    subscribersMissingEvents: missing,
    outOfOrderCount: load.outOfOrderCount,
    unexpectedCount: load.unexpectedCount,
    subscribersClosed: load.subscribers.filter((subscriber) => subscriber.ready && subscriber.closed).length,
    latencyMs: summaryOf(load.latencies),
    lastDeliveryMs: summaryOf(load.lastDeliveryMs.subarray(plan.warmupWriteCount)),
    serverRssMbAfterConnect: rssAfterConnect,
    serverRssMbAfterWrites: serverRss(plan.serverPid),
    clientRssMb: round(Deno.memoryUsage().rss / 1_000_000, 1),
    clientFileLimit: fileLimitOf(Deno.pid) ?? null,
  };
}

if (import.meta.main) {
  const plan = JSON.parse(Deno.args[0] ?? "{}") as ClientPlan;
  const result = await run(plan);
  console.log(JSON.stringify(result));
  // Thousands of open streams would otherwise keep the process alive.
  Deno.exit(0);
}
