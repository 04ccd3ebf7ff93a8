/**
 * Scenario `http`: GETs and durable PUTs at 64 connections (wrk -t1 -c64 --latency, pinned to CPU1,
 * after a warm-up run), against this machine's GET limit (a bare Hono route over a Map,
 * `hono_baseline.ts`), dynarust, and the peers a user would pick instead: etcd's v3 JSON gateway and Deno KV
 * behind the same Hono routes (`denokv_peer.ts`). Scenario `redis`: redis-benchmark SET/GET at 64
 * connections with `appendfsync always`, as a reference row. Every server runs in each of
 * `BENCH_ROUNDS` interleaved rounds: a figure is its best round, and a ratio the median of the rounds'
 * ratios (see {@linkcode pairedRatio}).
 *
 * @module
 */
import { attemptStep, type BenchContext, type Scenario, skippedBecauseMissing } from "./context.ts";
import { startPreloadedNode } from "./dynarust.ts";
import {
  freePort,
  makeDataDir,
  messageOf,
  removeDataDir,
  rssMb,
  type Settings,
  startServerScript,
} from "./lib.ts";
import { type RedisFigures, runRedisBenchmark, startDenoKv, startEtcd, startRedis } from "./peers.ts";
import { formatCount, formatRatio } from "./report.ts";
import { describeHttp, type HttpFigures, runWrk } from "./wrk.ts";

const scenarioLabel = "HTTP, 64 connections";
const getTargets = ["dynarust GET ≥ 0.80× GET limit", "dynarust GET p99 ≤ 3 ms"];
const putTargets = ["dynarust PUT ≥ 3× etcd PUT", "dynarust PUT ≥ 0.40× GET limit"];

/**
 * wrk seconds of each round: every figure gets 2 × BENCH_SECS of measurement, split over the rounds. This
 * host's slow spells last minutes; short rounds interleaved let each server meet the fast ones too.
 */
function roundSecs(settings: Settings): number {
  return Math.max(1, Math.round((2 * settings.wrkSecs) / settings.httpRounds));
}

/** Seconds of the warm-up run before each measured wrk run. */
export function warmupSecs(settings: Settings): number {
  return Math.min(3, settings.wrkSecs);
}

/** A server under measurement: where it listens, the token its PUTs carry, and how to stop it. */
interface RunningServer {
  url: string;
  token: string;
  stop(): Promise<void>;
}

/** Starts one bare baseline server (`script` run with its port, `args` and a data dir) on the server CPU. */
async function startBaseline(options: { script: string; args?: string[] }): Promise<RunningServer> {
  const port = freePort();
  const dataDir = await makeDataDir("baseline");
  const server = startServerScript({
    name: options.script,
    script: `tools/bench/${options.script}`,
    args: [String(port), ...(options.args ?? []), dataDir],
  });
  const stop = async () => {
    await server.stop();
    await removeDataDir(dataDir);
  };
  try {
    const match = await server.waitForLine(/listening on (\S+)/, { timeoutMs: 30_000 });
    return { url: match[1]!, token: "none", stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** One wrk measurement of the scenario: which figure, on which server, with which script. */
interface Measurement {
  figure:
    | "limit"
    | "getWithEtag"
    | "durablePut"
    | "contractPut"
    | "get"
    | "put"
    | "etcdPut"
    | "etcdGet"
    | "denoKvPut"
    | "denoKvGet";
  server: RunningServer;
  script: string;
}

/** A figure measured in every round: its best round (the highest rate), and each round's rate in order. */
interface Measured extends HttpFigures {
  roundRates: number[];
}

/**
 * How many times `figure`'s rate is `baseline`'s: the median of the rounds' ratios, each of two runs made
 * in the same round, seconds apart. This host's speed moves by up to 2× within minutes; a ratio of two
 * best rounds can pair a fast spell with a slow one, where each round's pair shares its spell.
 */
export function pairedRatio(
  figure: { roundRates: readonly number[] },
  baseline: { roundRates: readonly number[] },
) {
  const ratios = figure.roundRates.map((rate, round) => rate / baseline.roundRates[round]!)
    .sort((a, b) => a - b);
  const middle = ratios.length >> 1;
  return ratios.length % 2 === 1 ? ratios[middle]! : (ratios[middle - 1]! + ratios[middle]!) / 2;
}

/**
 * A baseline's ratio that falls short of a target, rounded down: 0.3996× reads 0.39×, not 0.40×, in a row
 * that says the baseline misses 0.4×.
 */
export function formatShortfall(ratio: number): string {
  // The epsilon keeps a ratio that is exactly on a hundredth there (0.29 * 100 is 28.999999999999996).
  return formatRatio(Math.floor(ratio * 100 + 1e-9) / 100, 1);
}

/**
 * The `outOfReach` of a ratio target, when the same run's `baseline` (which does no more than the target
 * needs) made a `ratio` below `target` itself.
 */
function outOfReachBelow(target: number, baseline: string, ratio: number): { outOfReach?: string } {
  return ratio < target ? { outOfReach: `${baseline}: ${formatShortfall(ratio)}` } : {};
}

/**
 * Measures every entry once per round, in the same order each round, and keeps each figure's best round
 * and every round's rate. The first round warms each server up first.
 */
async function measureRounds(
  settings: Settings,
  measurements: readonly Measurement[],
): Promise<Map<Measurement["figure"], Measured>> {
  const kept = new Map<Measurement["figure"], Measured>();
  for (let round = 0; round < settings.httpRounds; round += 1) {
    for (const { figure, server, script } of measurements) {
      const figures = await runWrk({
        url: server.url,
        script,
        secs: roundSecs(settings),
        warmupSecs: round === 0 ? warmupSecs(settings) : 0,
        env: { BENCH_TOKEN: server.token },
      });
      const best = kept.get(figure);
      const roundRates = [...(best?.roundRates ?? []), figures.requestsPerSec];
      kept.set(
        figure,
        best === undefined || figures.requestsPerSec > best.requestsPerSec
          ? { ...figures, roundRates }
          : { ...best, roundRates },
      );
    }
  }
  return kept;
}

/** The two physical limits beside the GET limit: a GET with an ETag, and a group-committed durable PUT. */
interface Limits {
  getWithEtag: Measured;
  durablePut: Measured;
  /**
   * The durable PUT limit with SPEC's ETag, CORS headers and encrypted, deflated batches (`put_baseline.ts
   * --contract`).
   */
  contractPut: Measured;
}

/** dynarust's GET and durable PUT figures, and its RSS after both. */
interface NodeFigures {
  get: Measured;
  put: Measured;
  rssMb: number;
}

function reportGet(
  context: BenchContext,
  figures: { limit?: Measured; limits?: Limits; node?: NodeFigures },
) {
  const { limit, node } = figures;
  // SPEC answers every read with an ETag: the same Hono+Map route with only that header added is the
  // fastest GET that keeps the contract, so when it misses a target here, the target is out of reach.
  const etagLimit = figures.limits?.getWithEtag;
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
  const ratio = pairedRatio(node.get, limit);
  report.check({
    scenario: `${scenarioLabel}: dynarust GET (1000 keys)`,
    figure: describeHttp(node.get),
    baseline: `GET limit ${formatCount(limit.requestsPerSec)} req/s`,
    ratio: formatRatio(ratio, 1),
    target: getTargets[0]!,
    value: ratio,
    unit: "× GET limit",
    met: ratio >= 0.8,
    ...(etagLimit === undefined ? {} : outOfReachBelow(
      0.8,
      "the GET limit with SPEC's ETag and CORS headers itself",
      pairedRatio(etagLimit, limit),
    )),
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
    ...(etagLimit !== undefined && etagLimit.p99Ms > 3
      ? {
        outOfReach: `the GET limit with SPEC's ETag and CORS headers itself: p99 ${
          etagLimit.p99Ms.toFixed(2)
        } ms`,
      }
      : {}),
  });
}

/** The rows of etcd's own PUT and GET figures, its GET next to dynarust's when that was measured. */
function reportEtcd(
  report: BenchContext["report"],
  etcd: { put: Measured; get: Measured },
  node: NodeFigures | undefined,
): void {
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
    ratio: node === undefined ? "—" : formatRatio(pairedRatio(etcd.get, node.get), 1),
  });
}

function reportPut(
  context: BenchContext,
  figures: {
    limit?: Measured;
    limits?: Limits;
    node?: NodeFigures;
    etcd?: { put: Measured; get: Measured };
  },
  etcdMissing: string | undefined,
) {
  const { report } = context;
  const { limit, limits, node, etcd } = figures;
  // A PUT that keeps the contract can go no faster than the contract PUT limit: when that misses a
  // target in this run, the target is out of reach here, and the row says so.
  const contractPut = limits?.contractPut;
  if (etcd !== undefined) reportEtcd(report, etcd, node);
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
    const ratio = pairedRatio(node.put, etcd.put);
    report.check({
      scenario: `${scenarioLabel}: dynarust durable PUT`,
      figure: describeHttp(node.put),
      baseline: `etcd PUT ${formatCount(etcd.put.requestsPerSec)} req/s`,
      ratio: formatRatio(ratio, 1),
      target: putTargets[0]!,
      value: ratio,
      unit: "× etcd PUT",
      met: ratio >= 3,
      ...(contractPut === undefined
        ? {}
        : outOfReachBelow(3, "the contract PUT limit itself", pairedRatio(contractPut, etcd.put))),
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
  const ratio = pairedRatio(node.put, limit);
  report.check({
    scenario: `${scenarioLabel}: dynarust durable PUT vs GET limit`,
    figure: `${formatCount(node.put.requestsPerSec)} req/s`,
    baseline: `GET limit ${formatCount(limit.requestsPerSec)} req/s`,
    ratio: formatRatio(ratio, 1),
    target: putTargets[1]!,
    value: ratio,
    unit: "× GET limit",
    met: ratio >= 0.4,
    ...(contractPut === undefined
      ? {}
      : outOfReachBelow(0.4, "the contract PUT limit itself", pairedRatio(contractPut, limit))),
  });
}

/** All of the scenario's figures, measured with every server up at once, in interleaved rounds. */
interface HttpRun {
  limit: Measured;
  limits: Limits;
  node: NodeFigures;
  etcd?: { put: Measured; get: Measured };
  /** Deno KV's figures, or why it was skipped (it did not start). */
  denoKv: { put: Measured; get: Measured } | string;
}

/**
 * Starts Deno KV (`denokv_peer.ts`) and adds its PUT and GET runs to each round; returns why it was
 * skipped when it does not start, so the rest of the scenario still runs.
 */
async function addDenoKv(servers: RunningServer[], measurements: Measurement[]): Promise<string | undefined> {
  try {
    const denoKv = await startDenoKv();
    servers.push({ url: denoKv.url, token: "none", stop: () => denoKv.stop() });
  } catch (error) {
    return `skipped: Deno KV did not start: ${messageOf(error).slice(0, 300)}`;
  }
  measurements.push({ figure: "denoKvPut", server: servers.at(-1)!, script: "put.lua" });
  measurements.push({ figure: "denoKvGet", server: servers.at(-1)!, script: "get.lua" });
  return undefined;
}

async function measureHttp(context: BenchContext, signal: AbortSignal): Promise<HttpRun> {
  const { settings, installed } = context;
  const servers: RunningServer[] = [];
  try {
    const limitServer = await startBaseline({ script: "hono_baseline.ts" });
    servers.push(limitServer);
    const etagServer = await startBaseline({ script: "hono_baseline.ts", args: ["--etag"] });
    servers.push(etagServer);
    const putServer = await startBaseline({ script: "put_baseline.ts" });
    servers.push(putServer);
    const contractPutServer = await startBaseline({ script: "put_baseline.ts", args: ["--contract"] });
    servers.push(contractPutServer);
    const node = await startPreloadedNode({ name: "dynarust", signal });
    servers.push(node);
    const measurements: Measurement[] = [
      // dynarust's GET runs right after the GET limit, and its PUT right before etcd's: the ratios that
      // judge targets pair runs seconds apart.
      { figure: "limit", server: limitServer, script: "get.lua" },
      { figure: "get", server: node, script: "get.lua" },
      { figure: "getWithEtag", server: etagServer, script: "get.lua" },
      { figure: "durablePut", server: putServer, script: "put.lua" },
      { figure: "contractPut", server: contractPutServer, script: "put.lua" },
      { figure: "put", server: node, script: "put.lua" },
    ];
    if (installed.has("etcd")) {
      const etcd = await startEtcd();
      servers.push({ url: etcd.url, token: "none", stop: () => etcd.stop() });
      // The PUT runs first each round; its warm-up creates k0..k999, which the GET runs read.
      measurements.push({ figure: "etcdPut", server: servers.at(-1)!, script: "etcd_put.lua" });
      measurements.push({ figure: "etcdGet", server: servers.at(-1)!, script: "etcd_get.lua" });
    }
    const denoKvSkipped = await addDenoKv(servers, measurements);
    const best = await measureRounds(settings, measurements);
    const figure = (name: Measurement["figure"]) => best.get(name)!;
    return {
      limit: figure("limit"),
      limits: {
        getWithEtag: figure("getWithEtag"),
        durablePut: figure("durablePut"),
        contractPut: figure("contractPut"),
      },
      node: { get: figure("get"), put: figure("put"), rssMb: rssMb(node.pid) },
      ...(installed.has("etcd") ? { etcd: { put: figure("etcdPut"), get: figure("etcdGet") } } : {}),
      denoKv: denoKvSkipped ?? { put: figure("denoKvPut"), get: figure("denoKvGet") },
    };
  } finally {
    for (const server of servers.toReversed()) await server.stop();
  }
}

async function runHttp(context: BenchContext): Promise<void> {
  const { settings, report, installed } = context;
  if (!installed.has("wrk")) {
    report.problem(scenarioLabel, skippedBecauseMissing("wrk"), [...getTargets, ...putTargets]);
    return;
  }
  const etcdMissing = installed.has("etcd") ? undefined : skippedBecauseMissing("etcd");
  if (etcdMissing !== undefined) report.problems["etcd"] = etcdMissing;
  const run = await attemptStep(
    context,
    {
      name: `HTTP: limits, dynarust, etcd and Deno KV, ${settings.httpRounds} interleaved rounds`,
      expectedSecs: httpSecs(settings) - 2,
    },
    (signal) => measureHttp(context, signal),
  );
  report.record("http", {
    rounds: settings.httpRounds,
    note: "every server up at once, measured in interleaved rounds; each figure is its best round, each " +
      "ratio the median of the rounds' ratios",
    getLimit: run?.limit,
    ...run?.limits,
    dynarust: run?.node,
    etcd: run?.etcd ?? etcdMissing ?? "failed",
    denoKv: run?.denoKv ?? "failed",
  });
  reportGet(context, run === undefined ? {} : { limit: run.limit, limits: run.limits, node: run.node });
  reportPut(context, {
    ...(run === undefined ? {} : { limit: run.limit, limits: run.limits, node: run.node }),
    ...(run?.etcd === undefined ? {} : { etcd: run.etcd }),
  }, etcdMissing);
  if (run !== undefined) reportLimits(context, run);
  if (run !== undefined) reportDenoKv(context, run);
}

/**
 * Deno KV's rows, a peer beside dynarust's GET and durable PUT of the same rounds: its figures, dynarust's
 * as the baseline, and how many times Deno KV's rate dynarust made (the median of the rounds' ratios).
 */
function reportDenoKv(context: BenchContext, run: HttpRun): void {
  const { report } = context;
  const { node, denoKv } = run;
  const label = `${scenarioLabel}: Deno KV (Hono + Deno.openKv, SQLite)`;
  if (typeof denoKv === "string") {
    report.problem(label, denoKv);
    return;
  }
  const rows = [
    { what: "GET (1000 keys)", name: "GET", ours: node.get, theirs: denoKv.get },
    { what: "durable PUT (versionstamp check)", name: "PUT", ours: node.put, theirs: denoKv.put },
  ];
  for (const { what, name, ours, theirs } of rows) {
    report.info({
      scenario: `${label} ${what}`,
      figure: describeHttp(theirs),
      baseline: `dynarust ${name} ${formatCount(ours.requestsPerSec)} req/s · p99 ${
        ours.p99Ms.toFixed(2)
      } ms`,
      ratio: `dynarust ${formatRatio(pairedRatio(ours, theirs), 1)}`,
      target: "peer",
    });
  }
}

/**
 * The rows that say how far the targets are from physics: the GET limit with SPEC's ETag and CORS headers,
 * and a bare durable PUT (parse, Map, one write and one fsync per batch, no encryption) and the same with the
 * contract's ETag and encrypted batches, each against dynarust.
 */
function reportLimits(context: BenchContext, run: HttpRun): void {
  const { report } = context;
  const { limits, limit, node, etcd } = run;
  report.info({
    scenario: `${scenarioLabel}: GET limit with SPEC's ETag and CORS headers (Hono+Map)`,
    figure: describeHttp(limits.getWithEtag),
    baseline: `GET limit ${formatCount(limit.requestsPerSec)} req/s`,
    ratio: formatRatio(pairedRatio(limits.getWithEtag, limit), 1),
  });
  report.info({
    scenario: `${scenarioLabel}: dynarust GET vs the ETag limit`,
    figure: `${formatCount(node.get.requestsPerSec)} req/s`,
    baseline: `GET limit with ETag ${formatCount(limits.getWithEtag.requestsPerSec)} req/s`,
    ratio: formatRatio(pairedRatio(node.get, limits.getWithEtag), 1),
  });
  report.info({
    scenario: `${scenarioLabel}: durable PUT limit (Hono+Map, group commit, no encryption)`,
    figure: describeHttp(limits.durablePut),
    ...(etcd === undefined ? { baseline: "—", ratio: "—" } : {
      baseline: `etcd PUT ${formatCount(etcd.put.requestsPerSec)} req/s`,
      ratio: formatRatio(pairedRatio(limits.durablePut, etcd.put), 1),
    }),
  });
  report.info({
    scenario: `${scenarioLabel}: durable PUT limit vs GET limit`,
    figure: `${formatCount(limits.durablePut.requestsPerSec)} req/s`,
    baseline: `GET limit ${formatCount(limit.requestsPerSec)} req/s`,
    ratio: formatRatio(pairedRatio(limits.durablePut, limit), 1),
  });
  report.info({
    scenario: `${scenarioLabel}: dynarust PUT vs the durable PUT limit`,
    figure: `${formatCount(node.put.requestsPerSec)} req/s`,
    baseline: `durable PUT limit ${formatCount(limits.durablePut.requestsPerSec)} req/s`,
    ratio: formatRatio(pairedRatio(node.put, limits.durablePut), 1),
  });
  report.info({
    scenario:
      `${scenarioLabel}: durable PUT limit with SPEC's ETag, CORS headers and encrypted, deflated batches`,
    figure: describeHttp(limits.contractPut),
    ...(etcd === undefined ? { baseline: "—", ratio: "—" } : {
      baseline: `etcd PUT ${formatCount(etcd.put.requestsPerSec)} req/s`,
      ratio: formatRatio(pairedRatio(limits.contractPut, etcd.put), 1),
    }),
  });
  report.info({
    scenario: `${scenarioLabel}: dynarust PUT vs the contract PUT limit`,
    figure: `${formatCount(node.put.requestsPerSec)} req/s`,
    baseline: `contract PUT limit ${formatCount(limits.contractPut.requestsPerSec)} req/s`,
    ratio: formatRatio(pairedRatio(node.put, limits.contractPut), 1),
  });
}

/** Seconds the scenario should take: 10 wrk runs per round, warm-ups in the first. */
function httpSecs(settings: Settings): number {
  return 10 * settings.httpRounds * roundSecs(settings) + 10 * warmupSecs(settings) + 20;
}

/** Scenario `http`; see the module doc. */
export const httpScenario: Scenario = {
  name: "http",
  title: "HTTP GET/PUT, 64 connections: GET limit (Hono+Map), dynarust, etcd, Deno KV",
  expectedSecs: httpSecs,
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
