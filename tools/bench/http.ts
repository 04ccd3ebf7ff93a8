/**
 * Scenario `http`: GETs and durable PUTs at 64 connections (wrk -t1 -c64 --latency, pinned to CPU1,
 * after a warm-up run), against this machine's GET limit (a bare Hono route over a Map,
 * `hono_baseline.ts`), dynarust, and etcd's v3 JSON gateway. Scenario `redis`: redis-benchmark SET/GET
 * at 64 connections with `appendfsync always`, as a reference row.
 *
 * @module
 */
import { attemptStep, type BenchContext, type Scenario, skippedBecauseMissing } from "./context.ts";
import { registerUser, startDynarust, writeMany } from "./dynarust.ts";
import {
  denoPath,
  freePort,
  makeDataDir,
  PinnedProcess,
  removeDataDir,
  rssMb,
  serverCpu,
  type Settings,
} from "./lib.ts";
import { type RedisFigures, runRedisBenchmark, startEtcd, startRedis } from "./peers.ts";
import { formatCount, formatRatio } from "./report.ts";
import { describeHttp, type HttpFigures, runWrk } from "./wrk.ts";

const scenarioLabel = "HTTP, 64 connections";
const getTargets = ["dynarust GET ≥ 0.80× GET limit", "dynarust GET p99 ≤ 3 ms"];
const putTargets = ["dynarust PUT ≥ 3× etcd PUT", "dynarust PUT ≥ 0.40× GET limit"];

/** Seconds of the warm-up run before each measured wrk run. */
export function warmupSecs(settings: Settings): number {
  return Math.min(3, settings.wrkSecs);
}

/** One bare baseline server (`script` run with its port and `args`) under one wrk script. */
async function measureBaseline(
  settings: Settings,
  options: { script: string; args?: string[]; wrkScript: string },
): Promise<HttpFigures> {
  const port = freePort();
  const dataDir = await makeDataDir("baseline");
  const server = PinnedProcess.start({
    name: options.script,
    cpu: serverCpu,
    command: denoPath,
    args: ["run", "-A", `tools/bench/${options.script}`, String(port), ...(options.args ?? []), dataDir],
  });
  try {
    const match = await server.waitForLine(/listening on (\S+)/, { timeoutMs: 30_000 });
    return await runWrk({
      url: match[1]!,
      script: options.wrkScript,
      secs: settings.wrkSecs,
      warmupSecs: warmupSecs(settings),
      env: { BENCH_TOKEN: "none" },
    });
  } finally {
    await server.stop();
    await removeDataDir(dataDir);
  }
}

/** The two physical limits beside the GET limit: a GET with an ETag, and a group-committed durable PUT. */
interface Limits {
  getWithEtag?: HttpFigures;
  durablePut?: HttpFigures;
}

/** dynarust's GET and durable PUT figures, and its RSS after both. */
interface NodeFigures {
  get: HttpFigures;
  put: HttpFigures;
  rssMb: number;
}

async function measureDynarust(settings: Settings, signal: AbortSignal): Promise<NodeFigures> {
  const dataDir = await makeDataDir("http");
  try {
    const node = await startDynarust({ name: "dynarust", dataDir });
    try {
      const token = await registerUser(node.url, "bench", "bench-secret");
      const preload = await writeMany(
        { url: node.url, token, table: "t", count: 1000, concurrency: 64 },
        (index) => ({ key: `k${index}`, value: { n: index, s: "hello" } }),
        signal,
      );
      if (preload.errorCount > 0) throw new Error(`${preload.errorCount} of 1000 preload PUTs failed`);
      const common = { url: node.url, secs: settings.wrkSecs, warmupSecs: warmupSecs(settings) };
      const get = await runWrk({ ...common, script: "get.lua" });
      const put = await runWrk({ ...common, script: "put.lua", env: { BENCH_TOKEN: token } });
      return { get, put, rssMb: rssMb(node.process.pid) };
    } finally {
      await node.process.stop();
    }
  } finally {
    await removeDataDir(dataDir);
  }
}

async function measureEtcd(settings: Settings): Promise<{ put: HttpFigures; get: HttpFigures }> {
  const etcd = await startEtcd();
  try {
    const common = { url: etcd.url, secs: settings.wrkSecs, warmupSecs: warmupSecs(settings) };
    // The PUT warm-up creates k0..k999, which the GET run reads.
    const put = await runWrk({ ...common, script: "etcd_put.lua" });
    const get = await runWrk({ ...common, script: "etcd_get.lua" });
    return { put, get };
  } finally {
    await etcd.stop();
  }
}

function reportGet(context: BenchContext, limit: HttpFigures | undefined, node: NodeFigures | undefined) {
  const { report } = context;
  if (limit !== undefined) {
    report.info({
      scenario: `${scenarioLabel}: GET limit (Hono+Map)`,
      figure: describeHttp(limit),
      baseline: "—",
      ratio: "1.00×",
    });
  }
  if (limit === undefined || node === undefined) {
    const why = `not measured: ${limit === undefined ? "GET limit" : "dynarust"} step failed`;
    for (const target of getTargets) report.unmeasured({ scenario: scenarioLabel, target, why });
    return;
  }
  const ratio = node.get.requestsPerSec / limit.requestsPerSec;
  report.check({
    scenario: `${scenarioLabel}: dynarust GET (1000 keys)`,
    figure: describeHttp(node.get),
    baseline: `GET limit ${formatCount(limit.requestsPerSec)} req/s`,
    ratio: formatRatio(node.get.requestsPerSec, limit.requestsPerSec),
    target: getTargets[0]!,
    value: ratio,
    unit: "× GET limit",
    met: ratio >= 0.8,
  });
  report.check({
    scenario: `${scenarioLabel}: dynarust GET p99`,
    figure: `p99 ${node.get.p99Ms.toFixed(2)} ms`,
    baseline: `GET limit p99 ${limit.p99Ms.toFixed(2)} ms`,
    ratio: formatRatio(node.get.p99Ms, limit.p99Ms),
    target: getTargets[1]!,
    value: node.get.p99Ms,
    unit: "ms",
    met: node.get.p99Ms <= 3,
  });
}

function reportPut(
  context: BenchContext,
  figures: { limit?: HttpFigures; node?: NodeFigures; etcd?: { put: HttpFigures; get: HttpFigures } },
  etcdMissing: string | undefined,
) {
  const { report } = context;
  const { limit, node, etcd } = figures;
  if (etcd !== undefined) {
    report.info({
      scenario: `${scenarioLabel}: etcd PUT (v3 JSON gateway)`,
      figure: describeHttp(etcd.put),
      baseline: "—",
      ratio: "—",
    });
    report.info({
      scenario: `${scenarioLabel}: etcd GET (linearizable range)`,
      figure: describeHttp(etcd.get),
      baseline: node === undefined ? "—" : `dynarust GET ${formatCount(node.get.requestsPerSec)} req/s`,
      ratio: node === undefined ? "—" : formatRatio(etcd.get.requestsPerSec, node.get.requestsPerSec),
    });
  }
  if (node === undefined) {
    for (const target of putTargets) {
      report.unmeasured({ scenario: scenarioLabel, target, why: "not measured: dynarust step failed" });
    }
    return;
  }
  if (etcd === undefined) {
    const why = etcdMissing ?? "not measured: etcd step failed";
    report.unmeasured({ scenario: `${scenarioLabel}: dynarust durable PUT`, target: putTargets[0]!, why });
  } else {
    const ratio = node.put.requestsPerSec / etcd.put.requestsPerSec;
    report.check({
      scenario: `${scenarioLabel}: dynarust durable PUT`,
      figure: describeHttp(node.put),
      baseline: `etcd PUT ${formatCount(etcd.put.requestsPerSec)} req/s`,
      ratio: formatRatio(node.put.requestsPerSec, etcd.put.requestsPerSec),
      target: putTargets[0]!,
      value: ratio,
      unit: "× etcd PUT",
      met: ratio >= 3,
    });
  }
  if (limit === undefined) {
    report.unmeasured({
      scenario: scenarioLabel,
      target: putTargets[1]!,
      why: "not measured: GET limit step failed",
    });
    return;
  }
  const ratio = node.put.requestsPerSec / limit.requestsPerSec;
  report.check({
    scenario: `${scenarioLabel}: dynarust durable PUT vs GET limit`,
    figure: `${formatCount(node.put.requestsPerSec)} req/s`,
    baseline: `GET limit ${formatCount(limit.requestsPerSec)} req/s`,
    ratio: formatRatio(node.put.requestsPerSec, limit.requestsPerSec),
    target: putTargets[1]!,
    value: ratio,
    unit: "× GET limit",
    met: ratio >= 0.4,
  });
}

async function runHttp(context: BenchContext): Promise<void> {
  const { settings, report, installed } = context;
  if (!installed.has("wrk")) {
    report.problem(scenarioLabel, skippedBecauseMissing("wrk"), [...getTargets, ...putTargets]);
    return;
  }
  const stepSecs = settings.wrkSecs + warmupSecs(settings);
  const limit = await attemptStep(
    context,
    { name: "HTTP: GET limit (Hono+Map)", expectedSecs: stepSecs + 1 },
    () => measureBaseline(settings, { script: "hono_baseline.ts", wrkScript: "get.lua" }),
  );
  const limits: Limits = {};
  const getWithEtag = await attemptStep(
    context,
    { name: "HTTP: GET limit with ETag (Hono+Map)", expectedSecs: stepSecs + 1 },
    () => measureBaseline(settings, { script: "hono_baseline.ts", args: ["--etag"], wrkScript: "get.lua" }),
  );
  if (getWithEtag !== undefined) limits.getWithEtag = getWithEtag;
  const durablePut = await attemptStep(
    context,
    { name: "HTTP: durable PUT limit (Hono+Map, group commit)", expectedSecs: stepSecs + 1 },
    () => measureBaseline(settings, { script: "put_baseline.ts", wrkScript: "put.lua" }),
  );
  if (durablePut !== undefined) limits.durablePut = durablePut;
  const node = await attemptStep(
    context,
    { name: "HTTP: dynarust GET and durable PUT", expectedSecs: 2 * stepSecs + 3 },
    (signal) => measureDynarust(settings, signal),
  );
  const etcdMissing = installed.has("etcd") ? undefined : skippedBecauseMissing("etcd");
  const etcd = etcdMissing !== undefined ? undefined : await attemptStep(
    context,
    { name: "HTTP: etcd PUT and GET", expectedSecs: 2 * stepSecs + 2 },
    () => measureEtcd(settings),
  );
  if (etcdMissing !== undefined) report.problems["etcd"] = etcdMissing;
  report.record("http", {
    getLimit: limit,
    ...limits,
    dynarust: node,
    etcd: etcd ?? etcdMissing ?? "failed",
  });
  reportGet(context, limit, node);
  reportPut(context, {
    ...(limit === undefined ? {} : { limit }),
    ...(node === undefined ? {} : { node }),
    ...(etcd === undefined ? {} : { etcd }),
  }, etcdMissing);
  reportLimits(context, { limits, ...(limit === undefined ? {} : { limit }), node, etcd });
}

/**
 * The rows that say how far the targets are from physics: the GET limit with SPEC's ETag header, and a
 * bare durable PUT (parse, Map, one write and one fsync per batch, no encryption), each against dynarust.
 */
function reportLimits(
  context: BenchContext,
  figures: {
    limits: Limits;
    limit?: HttpFigures;
    node: NodeFigures | undefined;
    etcd: { put: HttpFigures } | undefined;
  },
): void {
  const { report } = context;
  const { limits, limit, node, etcd } = figures;
  if (limits.getWithEtag !== undefined) {
    report.info({
      scenario: `${scenarioLabel}: GET limit with SPEC's ETag header (Hono+Map)`,
      figure: describeHttp(limits.getWithEtag),
      baseline: limit === undefined ? "—" : `GET limit ${formatCount(limit.requestsPerSec)} req/s`,
      ratio: limit === undefined ? "—" : formatRatio(limits.getWithEtag.requestsPerSec, limit.requestsPerSec),
    });
    if (node !== undefined) {
      report.info({
        scenario: `${scenarioLabel}: dynarust GET vs the ETag limit`,
        figure: `${formatCount(node.get.requestsPerSec)} req/s`,
        baseline: `GET limit with ETag ${formatCount(limits.getWithEtag.requestsPerSec)} req/s`,
        ratio: formatRatio(node.get.requestsPerSec, limits.getWithEtag.requestsPerSec),
      });
    }
  }
  if (limits.durablePut !== undefined) {
    const versus = etcd === undefined ? { baseline: "—", ratio: "—" } : {
      baseline: `etcd PUT ${formatCount(etcd.put.requestsPerSec)} req/s`,
      ratio: formatRatio(limits.durablePut.requestsPerSec, etcd.put.requestsPerSec),
    };
    report.info({
      scenario: `${scenarioLabel}: durable PUT limit (Hono+Map, group commit, no encryption)`,
      figure: describeHttp(limits.durablePut),
      ...versus,
    });
    if (limit !== undefined) {
      report.info({
        scenario: `${scenarioLabel}: durable PUT limit vs GET limit`,
        figure: `${formatCount(limits.durablePut.requestsPerSec)} req/s`,
        baseline: `GET limit ${formatCount(limit.requestsPerSec)} req/s`,
        ratio: formatRatio(limits.durablePut.requestsPerSec, limit.requestsPerSec),
      });
    }
    if (node !== undefined) {
      report.info({
        scenario: `${scenarioLabel}: dynarust PUT vs the durable PUT limit`,
        figure: `${formatCount(node.put.requestsPerSec)} req/s`,
        baseline: `durable PUT limit ${formatCount(limits.durablePut.requestsPerSec)} req/s`,
        ratio: formatRatio(node.put.requestsPerSec, limits.durablePut.requestsPerSec),
      });
    }
  }
}

/** Scenario `http`; see the module doc. */
export const httpScenario: Scenario = {
  name: "http",
  title: "HTTP GET/PUT, 64 connections: GET limit (Hono+Map), dynarust, etcd",
  expectedSecs: (settings) => 7 * (settings.wrkSecs + warmupSecs(settings)) + 16,
  run: runHttp,
};

async function runRedis(context: BenchContext): Promise<void> {
  const { settings, report, installed } = context;
  const label = "redis 7, appendfsync always, c=64 (reference)";
  for (const tool of ["redis-server", "redis-benchmark"] as const) {
    if (!installed.has(tool)) {
      report.problem(label, skippedBecauseMissing(tool));
      return;
    }
  }
  // About BENCH_SECS of SET plus GET at the rates seen here (20–80k SET/s, ~100k GET/s).
  const requestCount = 40_000 * settings.wrkSecs;
  const figures = await attemptStep(
    context,
    {
      name: "redis: SET and GET",
      expectedSecs: settings.wrkSecs + 2,
      timeoutSecs: 20 * settings.wrkSecs + 30,
    },
    async () => {
      const redis = await startRedis();
      try {
        return await runRedisBenchmark({
          port: redis.port,
          requestCount,
          timeoutMs: (20 * settings.wrkSecs + 20) * 1000,
        });
      } finally {
        await redis.stop();
      }
    },
  );
  if (figures === undefined) return;
  report.record("redis", { requestCount, ...figures });
  const dynarust = report.figures["http"]?.["dynarust"] as NodeFigures | undefined;
  reportRedisRow(context, { name: "SET", measured: figures.set, ours: dynarust?.put, oursName: "PUT" });
  reportRedisRow(context, { name: "GET", measured: figures.get, ours: dynarust?.get, oursName: "GET" });
}

/** One reference row: redis's figures, and dynarust's matching ones when the http scenario ran. */
function reportRedisRow(
  context: BenchContext,
  options: { name: string; measured: RedisFigures; ours: HttpFigures | undefined; oursName: string },
): void {
  const { name, measured, ours, oursName } = options;
  const latency = `p50 ${measured.p50Ms.toFixed(2)} ms · p99 ${measured.p99Ms.toFixed(2)} ms`;
  context.report.info({
    scenario: `redis 7, appendfsync always, c=64 (reference): ${name}`,
    figure: `${formatCount(measured.requestsPerSec)} req/s · ${latency}`,
    baseline: ours === undefined ? "—" : `dynarust ${oursName} ${formatCount(ours.requestsPerSec)} req/s`,
    ratio: ours === undefined ? "—" : `dynarust ${formatRatio(ours.requestsPerSec, measured.requestsPerSec)}`,
    target: "reference",
  });
}

/** Scenario `redis`; see the module doc. */
export const redisScenario: Scenario = {
  name: "redis",
  title: "redis-benchmark SET/GET, c=64, appendonly yes appendfsync always (reference)",
  expectedSecs: (settings) => settings.wrkSecs + 3,
  run: runRedis,
};
