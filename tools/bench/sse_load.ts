// Issue #4 item 6: many SSE subscribers under a steady write rate on one node, checking that every
// subscriber receives every event of its key, in order, with no errors, and that RSS stays flat after
// warm-up. Run pinned apart from the node: `deno task bench:sse-load` (this process on CPU1, the node on
// CPU0). Settings by env: SSE_SUBSCRIBERS (5000), SSE_KEYS (500), SSE_WRITES_PER_SEC (500), SSE_SECS (120).
import { serverV8Flags } from "./lib.ts";

const root = new URL("../../", import.meta.url).pathname;
const subscriberCount = Number(Deno.env.get("SSE_SUBSCRIBERS") ?? 5_000);
const keyCount = Number(Deno.env.get("SSE_KEYS") ?? 500);
const writesPerSec = Number(Deno.env.get("SSE_WRITES_PER_SEC") ?? 500);
const durationSecs = Number(Deno.env.get("SSE_SECS") ?? 120);

interface Subscriber {
  key: number;
  lastId: number;
  received: number;
  outOfOrder: number;
  closed: boolean;
}

async function startNode(dataDir: string): Promise<{ child: Deno.ChildProcess; port: number }> {
  const child = new Deno.Command("taskset", {
    args: [
      "-c",
      "0",
      Deno.execPath(),
      "run",
      "-A",
      serverV8Flags,
      `${root}main.ts`,
      "127.0.0.1:0",
      "--data-dir",
      dataDir,
    ],
    env: { DYNA_LOG: "warn", DYNA_SUBSCRIBERS_MAX: String(subscriberCount + 100) },
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let line = "";
  while (!line.includes("\n")) line += (await reader.read()).value ?? "";
  void (async () => {
    while (!(await reader.read()).done) { /* drain */ }
  })();
  return { child, port: Number(/:(\d+)\s*$/.exec(line.trim())![1]) };
}

async function subscribe(port: number, subscriber: Subscriber): Promise<void> {
  const connection = await Deno.connect({ hostname: "127.0.0.1", port });
  const request =
    `GET /load/subscribe/k${subscriber.key} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n`;
  await connection.write(new TextEncoder().encode(request));
  void (async () => {
    const decoder = new TextDecoder();
    const buffer = new Uint8Array(16_384);
    let carry = "";
    try {
      // Ends when the node closes the stream.
      for (;;) {
        const read = await connection.read(buffer);
        if (read === null) break;
        carry += decoder.decode(buffer.subarray(0, read), { stream: true });
        for (const match of carry.matchAll(/id: (\d+)\n/g)) {
          const id = Number(match[1]);
          if (id !== subscriber.lastId + 1) subscriber.outOfOrder += 1;
          subscriber.lastId = id;
          subscriber.received += 1;
        }
        carry = carry.slice(carry.lastIndexOf("\n") + 1);
      }
    } catch {
      // connection reset
    }
    subscriber.closed = true;
  })();
}

function rssMb(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${pid}/status`))![1]) / 1024;
}

/** Writes at `writesPerSec` from 32 paced workers (a bounded number of requests in flight). */
async function writeLoad(port: number, token: string, versions: number[]): Promise<number> {
  let errors = 0;
  const intervalMs = 1000 / writesPerSec;
  const startedMs = performance.now();
  const total = writesPerSec * durationSecs;
  let next = 0;
  await Promise.all(Array.from({ length: 32 }, async () => {
    while (next < total) {
      const index = next++;
      const waitMs = startedMs + index * intervalMs - performance.now();
      if (waitMs > 1) await new Promise((resolve) => setTimeout(resolve, waitMs));
      const key = index % keyCount;
      try {
        const response = await fetch(`http://127.0.0.1:${port}/load/key/k${key}`, {
          method: "PUT",
          headers: { authorization: `Bearer ${token}` },
          body: JSON.stringify({ value: { n: index } }),
        });
        if (response.status === 201) {
          versions[key] = Math.max(versions[key]!, (await response.json()).version);
        } else {
          errors += 1;
          await response.body?.cancel();
        }
      } catch {
        errors += 1;
      }
    }
  }));
  return errors;
}

async function main(): Promise<void> {
  const dataDir = await Deno.makeTempDir({ prefix: "dynarust_sse_load_" });
  const node = await startNode(dataDir);
  try {
    const auth = await fetch(`http://127.0.0.1:${node.port}/auth/load`, {
      method: "POST",
      body: '{"secret":"pw"}',
    });
    const { token } = await auth.json();
    const subscribers: Subscriber[] = Array.from({ length: subscriberCount }, (_, index) => ({
      key: index % keyCount,
      lastId: 0,
      received: 0,
      outOfOrder: 0,
      closed: false,
    }));
    for (let start = 0; start < subscribers.length; start += 250) {
      await Promise.all(
        subscribers.slice(start, start + 250).map((subscriber) => subscribe(node.port, subscriber)),
      );
    }
    // Writes start once the node holds every subscription, so each subscriber's first event is version 1.
    for (let attempt = 0; attempt < 600; attempt += 1) {
      const stats = await (await fetch(`http://127.0.0.1:${node.port}/stats`)).json();
      if (stats.active_sse_connections >= subscriberCount) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    console.log(
      `${subscriberCount} subscribers over ${keyCount} keys; writing ${writesPerSec}/s for ${durationSecs} s`,
    );
    const rssSamples: number[] = [rssMb(node.child.pid)];
    const sampler = setInterval(() => rssSamples.push(rssMb(node.child.pid)), 10_000);
    const versions = new Array<number>(keyCount).fill(0);
    const errors = await writeLoad(node.port, token, versions);
    clearInterval(sampler);
    const deadline = performance.now() + 10_000;
    while (
      performance.now() < deadline && subscribers.some((s) => !s.closed && s.lastId < versions[s.key]!)
    ) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const missing = subscribers.filter((s) => s.lastId < versions[s.key]!).length;
    const outOfOrder = subscribers.reduce((sum, s) => sum + s.outOfOrder, 0);
    const dropped = subscribers.filter((s) => s.closed).length;
    const delivered = subscribers.reduce((sum, s) => sum + s.received, 0);
    const warm = rssSamples.slice(1);
    console.log(JSON.stringify({
      subscriberCount,
      keyCount,
      writesPerSec,
      durationSecs,
      writeErrors: errors,
      delivered,
      subscribersMissingEvents: missing,
      outOfOrderEvents: outOfOrder,
      subscribersDisconnected: dropped,
      rssMbAtStart: Math.round(rssSamples[0]!),
      rssMbAfterWarmUpMin: Math.round(Math.min(...warm)),
      rssMbAfterWarmUpMax: Math.round(Math.max(...warm)),
    }));
  } finally {
    node.child.kill("SIGTERM");
    await node.child.status;
    await Deno.remove(dataDir, { recursive: true });
  }
}

await main();
