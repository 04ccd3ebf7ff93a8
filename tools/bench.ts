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
  return {
    requestsPerSec: Number(/Requests\/sec:\s+([\d.]+)/.exec(text)?.[1] ?? 0),
    p50Ms: toMs(/50%\s+(\S+)/.exec(text)?.[1] ?? "0ms"),
    p99Ms: toMs(/99%\s+(\S+)/.exec(text)?.[1] ?? "0ms"),
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
