// `deno task bench`: a quick side-by-side measurement of one node against this machine's GET limit
// (a bare Hono route over a Map), measured in the same run, server pinned to CPU0 and wrk to CPU1.
// Prints one table and writes bench/results.json. The full suite (etcd, SSE fan-out, 100k records,
// cluster) is issue #5.
const root = new URL("..", import.meta.url).pathname;
const durationSecs = Number(Deno.env.get("BENCH_SECS") ?? 5);

async function have(command: string): Promise<boolean> {
  const result = await new Deno.Command("sh", { args: ["-c", `command -v ${command}`], stdout: "null" })
    .output();
  return result.success;
}

async function startServer(args: string[]): Promise<{ child: Deno.ChildProcess; url: string }> {
  const child = new Deno.Command("taskset", {
    args: ["-c", "0", Deno.execPath(), "run", "-A", ...args],
    cwd: root,
    stdout: "piped",
    stderr: "null",
    env: { DYNA_LOG: "error" },
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let output = "";
  while (!output.includes("\n")) {
    const { done, value } = await reader.read();
    if (done) throw new Error(`server did not start: ${output}`);
    output += value;
  }
  (async () => {
    while (!(await reader.read()).done) { /* drain */ }
  })().catch(() => {});
  return { child, url: /listening on (\S+)/.exec(output)![1]! };
}

interface WrkResult {
  requestsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  non2xx: number;
}

function toMs(text: string): number {
  const match = /([\d.]+)(us|ms|s)/.exec(text)!;
  const value = Number(match[1]);
  return match[2] === "us" ? value / 1000 : match[2] === "s" ? value * 1000 : value;
}

async function wrk(url: string, script: string, env: Record<string, string> = {}): Promise<WrkResult> {
  const args = (seconds: number) => [
    ...["-c", "1", "wrk", "-t1", "-c64", `-d${seconds}s`, "--latency"],
    ...["-s", `${root}tools/bench/${script}`, url],
  ];
  await new Deno.Command("taskset", { args: args(2), env, stdout: "null" }).output(); // warm-up (JIT)
  const output = await new Deno.Command("taskset", { args: args(durationSecs), env, stdout: "piped" })
    .output();
  const text = new TextDecoder().decode(output.stdout);
  if (!/Requests\/sec/.test(text)) {
    throw new Error(`wrk gave no figures: ${text}${new TextDecoder().decode(output.stderr)}`);
  }
  return {
    requestsPerSec: Number(/Requests\/sec:\s+([\d.]+)/.exec(text)?.[1] ?? 0),
    p50Ms: toMs(/^\s+50%\s+(\S+)/m.exec(text)?.[1] ?? "0ms"),
    p99Ms: toMs(/^\s+99%\s+(\S+)/m.exec(text)?.[1] ?? "0ms"),
    non2xx: Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(text)?.[1] ?? 0),
  };
}

function rssMb(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024;
}

async function stop(child: Deno.ChildProcess): Promise<void> {
  child.kill("SIGTERM");
  await child.status;
}

async function measureNode(): Promise<{ get: WrkResult; put: WrkResult; rssMb: number }> {
  const dataDir = await Deno.makeTempDir({ prefix: "dynarust_bench_" });
  const node = await startServer(["main.ts", "127.0.0.1:0", "--data-dir", dataDir]);
  try {
    const auth = await fetch(`${node.url}/auth/bench`, { method: "POST", body: '{"secret":"bench-secret"}' });
    const { token } = await auth.json();
    for (let index = 0; index < 1000; index += 1) {
      const response = await fetch(`${node.url}/t/key/k${index}`, {
        method: "PUT",
        headers: { authorization: `Bearer ${token}` },
        body: JSON.stringify({ value: { n: index, s: "hello" } }),
      });
      await response.body?.cancel();
    }
    const get = await wrk(node.url, "get.lua");
    const put = await wrk(node.url, "put.lua", { BENCH_TOKEN: token });
    return { get, put, rssMb: rssMb(node.child.pid) };
  } finally {
    await stop(node.child);
    await Deno.remove(dataDir, { recursive: true });
  }
}

const loremWords = (
  "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore " +
  "et dolore magna aliqua ut enim ad minim veniam quis nostrud exercitation ullamco laboris nisi ex ea " +
  "commodo consequat duis aute irure in reprehenderit voluptate velit esse cillum fugiat nulla pariatur " +
  "excepteur sint occaecat cupidatat non proident sunt culpa qui officia deserunt mollit anim id est laborum"
).split(" ");

/** 50 words of lorem ipsum chosen by a seeded generator (mulberry32), like a real lorem generator. */
function lorem(seed: number): string {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = Math.imul(state ^ (state >>> 15), state | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return Array.from({ length: 50 }, () => loremWords[Math.floor(next() * loremWords.length)]).join(" ");
}

async function duBytes(dir: string): Promise<number> {
  const output = await new Deno.Command("du", { args: ["-sb", dir], stdout: "piped" }).output();
  return Number(new TextDecoder().decode(output.stdout).split("\t")[0]);
}

interface LoadResult {
  recordCount: number;
  loadPerSec: number;
  rssMb: number;
  diskBytes: number;
  restartToServingMs: number;
  rssAfterRestartMb: number;
}

async function measureLoad(recordCount: number): Promise<LoadResult> {
  const dataDir = await Deno.makeTempDir({ prefix: "dynarust_bench_load_" });
  let node = await startServer(["main.ts", "127.0.0.1:0", "--data-dir", dataDir]);
  try {
    const auth = await fetch(`${node.url}/auth/bench`, { method: "POST", body: '{"secret":"bench-secret"}' });
    const { token } = await auth.json();
    const startedMs = performance.now();
    let next = 0;
    await Promise.all(Array.from({ length: 64 }, async () => {
      while (next < recordCount) {
        const index = next++;
        const response = await fetch(`${node.url}/lorem/key/r${index}`, {
          method: "PUT",
          headers: { authorization: `Bearer ${token}` },
          body: JSON.stringify({ value: { id: index, text: lorem(index) } }),
        });
        await response.body?.cancel();
      }
    }));
    const loadPerSec = recordCount / ((performance.now() - startedMs) / 1000);
    const rss = rssMb(node.child.pid);
    await stop(node.child);
    const diskBytes = await duBytes(dataDir);
    const restartedMs = performance.now();
    node = await startServer(["main.ts", "127.0.0.1:0", "--data-dir", dataDir]);
    const restartToServingMs = performance.now() - restartedMs;
    const check = await fetch(`${node.url}/lorem/key/r${recordCount - 1}`);
    if (check.status !== 200) throw new Error(`record lost across restart: ${check.status}`);
    await check.body?.cancel();
    return {
      recordCount,
      loadPerSec,
      rssMb: rss,
      diskBytes,
      restartToServingMs,
      rssAfterRestartMb: rssMb(node.child.pid),
    };
  } finally {
    await stop(node.child);
    await Deno.remove(dataDir, { recursive: true });
  }
}

async function main(): Promise<void> {
  for (const tool of ["wrk", "taskset"]) {
    if (!(await have(tool))) {
      console.log(`skipped: ${tool} is not installed (apt-get install -y wrk util-linux)`);
      return;
    }
  }
  console.log(`measuring the Hono+Map GET limit (${durationSecs} s)...`);
  const baseline = await startServer(["tools/bench/hono_baseline.ts", "18099"]);
  const limit = await wrk(baseline.url, "get.lua");
  await stop(baseline.child);
  console.log(`measuring dynarust GET and durable PUT (${durationSecs} s each)...`);
  const node = await measureNode();
  const rows = [
    ["Hono+Map GET (limit)", limit, "1.00"],
    ["dynarust GET", node.get, (node.get.requestsPerSec / limit.requestsPerSec).toFixed(2)],
    ["dynarust durable PUT", node.put, (node.put.requestsPerSec / limit.requestsPerSec).toFixed(2)],
  ] as const;
  console.log("\n| scenario | req/s | p50 ms | p99 ms | non-2xx | × GET limit |\n|---|---|---|---|---|---|");
  for (const [name, result, ratio] of rows) {
    console.log(
      `| ${name} | ${result.requestsPerSec.toFixed(0)} | ${result.p50Ms.toFixed(2)} | ${
        result.p99Ms.toFixed(2)
      } | ${result.non2xx} | ${ratio} |`,
    );
  }
  console.log(`\nnode RSS after the run: ${node.rssMb.toFixed(0)} MB`);
  const recordCount = Number(Deno.env.get("BENCH_RECORDS") ?? 100_000);
  console.log(`\nloading ${recordCount} records of 50-word lorem ipsum...`);
  const load = await measureLoad(recordCount);
  console.log(
    `load ${load.loadPerSec.toFixed(0)} records/s, RSS ${load.rssMb.toFixed(0)} MB, ` +
      `data dir ${(load.diskBytes / 1e6).toFixed(1)} MB, restart to serving ${
        load.restartToServingMs.toFixed(0)
      } ms, ` +
      `RSS after restart ${load.rssAfterRestartMb.toFixed(0)} MB`,
  );
  await Deno.mkdir(`${root}bench`, { recursive: true });
  await Deno.writeTextFile(
    `${root}bench/results.json`,
    JSON.stringify(
      { date: new Date().toISOString(), deno: Deno.version, durationSecs, limit, node },
      null,
      2,
    ),
  );
}

await main();
