/**
 * Scenario `records`: BENCH_RECORDS records of 50-word lorem ipsum JSON written over HTTP by 64
 * concurrent writers (from this process, pinned to CPU1): load rate, node RSS, bytes on disk (while the
 * node runs, and after its graceful stop), restart-to-serving time (from spawning the node until a GET
 * of the last record answers 200) and RSS after the restart.
 *
 * Scenario `restart`: BENCH_RESTART_RECORDS records prepared straight into a data dir with dynarust's own
 * store (`records_prepare.ts`: the files a node writes, without minutes of HTTP), then the same restart
 * measurement.
 *
 * @module
 */
import { attemptStep, type BenchContext, type Scenario } from "./context.ts";
import { nodeArgs, registerUser, startDynarust, writeMany } from "./dynarust.ts";
import {
  denoPath,
  directoryBytes,
  freePort,
  loadCpu,
  makeDataDir,
  megabyte,
  PinnedProcess,
  removeDataDir,
  round,
  rssMb,
  serverCpu,
  type Settings,
  sleep,
} from "./lib.ts";
import { recordOf, recordTable } from "./lorem.ts";
import { formatCount, formatMs, formatRatio } from "./report.ts";

/** Records per second the HTTP load is expected to reach here, for the progress display. */
const expectedLoadPerSec = 3_000;
/** Records per second `records_prepare.ts` is expected to reach here, its closing checkpoint included. */
const expectedPreparePerSec = 12_000;
/** Restart time per record seen here (200,000 records: 6.7 s), for the progress display and deadlines. */
const expectedRestartMsPerRecord = 0.04;

/** What one restart took. */
interface RestartFigures {
  /** From spawning the node to the first 200 for the last record. */
  restartMs: number;
  rssMb: number;
}

/**
 * Starts a node on an existing data dir and polls `GET /lorem/key/<last>` every 5 ms until it answers
 * 200; the time counts from just before the spawn.
 */
async function measureRestart(dataDir: string, lastKey: string, timeoutMs: number): Promise<RestartFigures> {
  const port = freePort();
  const url = `http://127.0.0.1:${port}/${recordTable}/key/${lastKey}`;
  const startedMs = performance.now();
  const node = PinnedProcess.start({
    name: "dynarust (restart)",
    cpu: serverCpu,
    command: denoPath,
    args: nodeArgs({ listen: `127.0.0.1:${port}`, dataDir }),
    env: { DYNA_LOG: "error" },
  });
  try {
    const deadline = startedMs + timeoutMs;
    // Bounded by the deadline.
    while (performance.now() < deadline) {
      if (node.exited) throw new Error(`node exited during restart: ${node.stderrTail.slice(-400)}`);
      const status = await fetch(url, { signal: AbortSignal.timeout(2_000) })
        .then(async (response) => {
          await response.body?.cancel();
          return response.status;
        })
        .catch(() => 0);
      if (status === 200) {
        return { restartMs: performance.now() - startedMs, rssMb: rssMb(node.pid) };
      }
      if (status !== 0 && status !== 503) throw new Error(`GET ${lastKey} after restart answered ${status}`);
      await sleep(5);
    }
    throw new Error(`the node did not serve ${lastKey} within ${timeoutMs} ms of its restart`);
  } finally {
    await node.stop();
  }
}

/** Figures of the records scenario. */
interface LoadFigures {
  recordCount: number;
  writeErrorCount: number;
  loadMs: number;
  loadPerSec: number;
  rssMbAfterLoad: number;
  /** RSS once the node has been idle `idleSettleMs` after loading (V8's memory reducer may have run). */
  rssMbIdle: number;
  diskBytesRunning: number;
  diskBytesStopped: number;
  restart: RestartFigures;
}

async function loadRecords(settings: Settings, signal: AbortSignal): Promise<LoadFigures> {
  const dataDir = await makeDataDir("records");
  try {
    const node = await startDynarust({ name: "dynarust", dataDir });
    let loaded: Omit<LoadFigures, "diskBytesStopped" | "restart">;
    try {
      const token = await registerUser(node.url, "bench", "bench-secret");
      const recordCount = settings.recordCount;
      const startedMs = performance.now();
      const { errorCount } = await writeMany(
        { url: node.url, token, table: recordTable, count: recordCount, concurrency: 64 },
        recordOf,
        signal,
      );
      const loadMs = performance.now() - startedMs;
      const rssMbAfterLoad = rssMb(node.process.pid);
      const diskBytesRunning = await directoryBytes(dataDir);
      await new Promise((resolve) => setTimeout(resolve, idleSettleMs));
      loaded = {
        recordCount,
        writeErrorCount: errorCount,
        loadMs,
        loadPerSec: recordCount / (loadMs / 1000),
        rssMbAfterLoad,
        rssMbIdle: rssMb(node.process.pid),
        diskBytesRunning,
      };
    } finally {
      await node.process.stop();
    }
    const diskBytesStopped = await directoryBytes(dataDir);
    const restart = await measureRestart(dataDir, `r${settings.recordCount - 1}`, 60_000);
    return { ...loaded, diskBytesStopped, restart };
  } finally {
    await removeDataDir(dataDir);
  }
}

/**
 * The control of the RSS target: a node taking the same PUTs (same bodies, read, parsed and checked) with
 * every one refused by the store because another user owns the key (403), so nothing is kept. Its RSS is
 * what the runtime, the HTTP server and V8's heap sizing hold under this load by themselves.
 */
async function measureControl(settings: Settings, signal: AbortSignal): Promise<number> {
  const dataDir = await makeDataDir("control");
  try {
    const node = await startDynarust({ name: "dynarust control", dataDir });
    try {
      const ownerToken = await registerUser(node.url, "owner", "owner-secret");
      const taken = await writeMany(
        { url: node.url, token: ownerToken, table: recordTable, count: 1, concurrency: 1 },
        () => ({ key: "taken", value: "owned by someone else" }),
        signal,
      );
      if (taken.errorCount !== 0) throw new Error("the control key could not be written");
      const token = await registerUser(node.url, "bench", "bench-secret");
      const { errorCount } = await writeMany(
        { url: node.url, token, table: recordTable, count: settings.recordCount, concurrency: 64 },
        (index) => ({ key: "taken", value: recordOf(index).value }),
        signal,
      );
      if (errorCount !== settings.recordCount) throw new Error("a control PUT was accepted");
      return rssMb(node.process.pid);
    } finally {
      await node.process.stop();
    }
  } finally {
    await removeDataDir(dataDir);
  }
}

/** How long the node stays idle after loading before its RSS is read again (reported, no target). */
const idleSettleMs = 15_000;

function recordsSecs(settings: Settings): number {
  return settings.recordCount / expectedLoadPerSec + 8 + idleSettleMs / 1000;
}

const recordTargets = {
  rss: "RSS after loading ≤ 150 MB",
  disk: "data dir ≤ 15 MB",
  restart: "restart to serving ≤ 1 s",
  rssRestart: "RSS after restart ≤ 150 MB",
};

function reportRecords(context: BenchContext, figures: LoadFigures, controlRssMb: number | undefined): void {
  const { report } = context;
  const label = `${formatCount(figures.recordCount)} records (50 words each)`;
  report.info({
    scenario: `${label}: load over HTTP, 64 writers`,
    figure: `${formatCount(figures.loadPerSec)} records/s · ${figures.writeErrorCount} errors`,
    baseline: "—",
    ratio: "—",
  });
  if (controlRssMb !== undefined) {
    report.info({
      scenario: `${label}: control, the same PUTs each refused by the store (403, nothing kept): node RSS`,
      figure: `${controlRssMb.toFixed(1)} MB`,
      baseline: "—",
      ratio: "—",
    });
  }
  report.info({
    scenario: `${label}: node RSS after ${idleSettleMs / 1000} s idle`,
    figure: `${figures.rssMbIdle.toFixed(1)} MB`,
    baseline: "—",
    ratio: "—",
  });
  const rows: [string, string, number, string, number][] = [
    [`${label}: node RSS after loading`, recordTargets.rss, figures.rssMbAfterLoad, "MB", 150],
    [`${label}: data dir on disk`, recordTargets.disk, figures.diskBytesRunning / megabyte, "MB", 15],
    [`${label}: restart to serving`, recordTargets.restart, figures.restart.restartMs, "ms", 1000],
    [`${label}: node RSS after restart`, recordTargets.rssRestart, figures.restart.rssMb, "MB", 150],
  ];
  for (const [scenario, target, value, unit, limit] of rows) {
    let figure = unit === "ms" ? formatMs(value) : `${value.toFixed(1)} MB`;
    if (target === recordTargets.disk) {
      figure += ` while running (${
        (figures.diskBytesStopped / megabyte).toFixed(1)
      } MB after a graceful stop)`;
    }
    const versusControl = target === recordTargets.rss && controlRssMb !== undefined
      ? { baseline: `control ${controlRssMb.toFixed(1)} MB`, ratio: formatRatio(value, controlRssMb) }
      : {};
    report.check({ scenario, figure, ...versusControl, target, value, unit, met: value <= limit });
  }
}

async function runRecords(context: BenchContext): Promise<void> {
  const { settings, report } = context;
  const figures = await attemptStep(
    context,
    {
      name: `records: ${formatCount(settings.recordCount)} over HTTP, then restart`,
      expectedSecs: recordsSecs(settings),
    },
    (signal) => loadRecords(settings, signal),
  );
  if (figures === undefined) {
    for (const target of Object.values(recordTargets)) {
      report.unmeasured({ scenario: "records", target, why: "not measured: step failed" });
    }
    return;
  }
  const controlRssMb = await attemptStep(
    context,
    {
      name: `records: control, ${formatCount(settings.recordCount)} refused PUTs`,
      expectedSecs: recordsSecs(settings),
    },
    (signal) => measureControl(settings, signal),
  );
  report.record("records", {
    ...figures,
    ...(controlRssMb === undefined ? {} : { controlRssMb }),
    loadPerSec: round(figures.loadPerSec, 0),
    note: "disk target: the data dir while the node runs after loading (WAL not yet checkpointed); " +
      "restart: graceful stop (SIGTERM), then from spawn until GET of the last record answers 200",
  });
  reportRecords(context, figures, controlRssMb);
}

/** Scenario `records`; see the module doc. */
export const recordsScenario: Scenario = {
  name: "records",
  title: "BENCH_RECORDS lorem records over HTTP: load rate, RSS, disk, restart time",
  expectedSecs: (settings) => 2 * recordsSecs(settings),
  run: runRecords,
};

/** How long preparing `recordCount` records may take: 4× the expected time, plus a minute. */
function prepareTimeoutMs(recordCount: number): number {
  return (recordCount / expectedPreparePerSec * 4 + 60) * 1000;
}

/** How long a restart over `recordCount` records may take: 5× the expected time, at least 2 minutes. */
function restartTimeoutMs(recordCount: number): number {
  return Math.max(120_000, recordCount * expectedRestartMsPerRecord * 5);
}

/**
 * Writes `recordCount` records of `lorem.ts` into `dataDir` with `records_prepare.ts` (dynarust's own store,
 * closed at the end as a graceful stop does), pinned to the load CPU; returns what it printed.
 */
export async function prepareRecords(dataDir: string, recordCount: number): Promise<Record<string, number>> {
  const prepare = PinnedProcess.start({
    name: "records_prepare",
    cpu: loadCpu,
    command: denoPath,
    args: ["run", "-A", "tools/bench/records_prepare.ts", dataDir, String(recordCount)],
  });
  const timeoutMs = prepareTimeoutMs(recordCount);
  const status = await prepare.waitForExit({ timeoutMs });
  const line = prepare.stdout.trim().split("\n").at(-1) ?? "";
  if (!status.success || !line.startsWith("{")) {
    throw new Error(`records_prepare exited ${status.code}: ${prepare.stderrTail.slice(-500)}`);
  }
  return JSON.parse(line) as Record<string, number>;
}

function restartSecs(settings: Settings): number {
  const count = settings.restartRecordCount;
  return count / expectedPreparePerSec + count * expectedRestartMsPerRecord / 1000 + 5;
}

async function runRestart(context: BenchContext): Promise<void> {
  const { settings, report } = context;
  const count = settings.restartRecordCount;
  const label = `${formatCount(count)} records: restart to serving`;
  const target = "restart ≤ 5 s";
  const figures = await attemptStep(
    context,
    {
      name: `restart: prepare ${formatCount(count)} records, restart`,
      expectedSecs: restartSecs(settings),
      timeoutSecs: (prepareTimeoutMs(count) + restartTimeoutMs(count)) / 1000 + 30,
    },
    async () => {
      const dataDir = await makeDataDir("restart");
      try {
        const prepared = await prepareRecords(dataDir, count);
        const diskBytes = await directoryBytes(dataDir);
        const restart = await measureRestart(dataDir, `r${count - 1}`, restartTimeoutMs(count));
        return { recordCount: count, prepared, diskBytes, restart };
      } finally {
        await removeDataDir(dataDir);
      }
    },
  );
  if (figures === undefined) {
    report.unmeasured({ scenario: label, target, why: "not measured: step failed" });
    return;
  }
  report.record("restart", {
    ...figures,
    method: "records written with src/store (records_prepare.ts), store closed (checkpoint), node restarted",
  });
  report.check({
    scenario: label,
    figure: `${formatMs(figures.restart.restartMs)} · RSS after ${
      figures.restart.rssMb.toFixed(0)
    } MB · data dir ${(figures.diskBytes / megabyte).toFixed(1)} MB (prepared with src/store directly)`,
    target,
    value: figures.restart.restartMs,
    unit: "ms",
    met: figures.restart.restartMs <= 5_000,
  });
}

/** Scenario `restart`; see the module doc. */
export const restartScenario: Scenario = {
  name: "restart",
  title: "BENCH_RESTART_RECORDS records (prepared with src/store): restart-to-serving time",
  expectedSecs: restartSecs,
  run: runRestart,
};
