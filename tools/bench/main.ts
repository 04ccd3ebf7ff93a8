/**
 * `deno task bench`: the side-by-side suite of issue #5. It starts everything it measures on 127.0.0.1,
 * every server pinned to CPU0 and every load tool (and this process) to CPU1, runs the scenarios
 * (BENCH_ONLY picks some), prints one markdown table and writes `bench/results.json`.
 *
 * Env: BENCH_SECS (wrk seconds per HTTP step, default 10), BENCH_ONLY (comma list of scenario names),
 * BENCH_RECORDS (default 100000), BENCH_RESTART_RECORDS (default 1000000).
 *
 * @module
 */
import { clusterScenario } from "./cluster.ts";
import { type BenchContext, type Scenario, type ToolName, toolNames } from "./context.ts";
import { httpScenario, redisScenario } from "./http.ts";
import { liveMultiplexScenario, liveResumeScenario, liveSnapshotScenario } from "./live.ts";
import { liveFilterScenario } from "./live_filter.ts";
import {
  commandExists,
  commandOutput,
  defaultResultsPath,
  fileLimitWanted,
  loadCpu,
  messageOf,
  readSettings,
  serverCpu,
  type Settings,
  stopAllProcesses,
} from "./lib.ts";
import { Progress } from "./progress.ts";
import { recordsScenario, restartScenario } from "./records.ts";
import { describeMachine, describeVersions, Report, writeResults } from "./report.ts";
import { fanoutScenario, manySubscribersScenario, sseLatencyScenario } from "./sse.ts";

/** Every scenario, in the order they run. */
export const scenarios: readonly Scenario[] = [
  httpScenario,
  redisScenario,
  sseLatencyScenario,
  fanoutScenario,
  manySubscribersScenario,
  recordsScenario,
  restartScenario,
  clusterScenario,
  liveFilterScenario,
  liveSnapshotScenario,
  liveResumeScenario,
  liveMultiplexScenario,
];

const placement =
  `servers pinned to CPU${serverCpu} (taskset -c ${serverCpu}), load tools and this process ` +
  `to CPU${loadCpu}; the 3 cluster nodes share CPU${serverCpu}; all on 127.0.0.1; open-file limit raised ` +
  `to ${fileLimitWanted} or the hard limit`;

const defaultSettings: Settings = {
  wrkSecs: 10,
  only: undefined,
  recordCount: 100_000,
  restartRecordCount: 1_000_000,
  httpRounds: 10,
  resultsPath: defaultResultsPath,
};

/** Pins this process (all its threads) to the load CPU, so in-process load never runs on the server's. */
async function pinThisProcess(): Promise<string | undefined> {
  const output = await commandOutput("taskset", ["-a", "-p", "-c", String(loadCpu), String(Deno.pid)]);
  return output?.includes("new affinity list") === true ? undefined : `could not pin the bench: ${output}`;
}

async function installedTools(): Promise<Set<ToolName>> {
  const installed = new Set<ToolName>();
  for (const tool of toolNames) if (await commandExists(tool)) installed.add(tool);
  return installed;
}

function totalSecs(selected: readonly Scenario[], settings: Settings): number {
  return selected.reduce((sum, scenario) => sum + scenario.expectedSecs(settings), 0);
}

async function runScenarios(context: BenchContext, selected: readonly Scenario[]): Promise<void> {
  for (const scenario of selected) {
    try {
      await scenario.run(context);
    } catch (error) {
      context.report.problem(scenario.name, `failed: ${messageOf(error).slice(0, 300)}`);
    } finally {
      await stopAllProcesses();
    }
  }
}

function printIntroduction(progress: Progress, selected: readonly Scenario[], settings: Settings): void {
  const minutes = (secs: number) => `${(secs / 60).toFixed(1)} min`;
  progress.note(`dynarust bench: ${selected.map((scenario) => scenario.name).join(", ")}`);
  progress.note(
    `BENCH_SECS=${settings.wrkSecs} BENCH_RECORDS=${settings.recordCount} ` +
      `BENCH_RESTART_RECORDS=${settings.restartRecordCount}; ${placement}`,
  );
  progress.note(
    `expected: ~${minutes(totalSecs(selected, settings))} for this run, ` +
      `~${minutes(totalSecs(scenarios, defaultSettings))} for the full suite with the defaults`,
  );
}

/** Runs the suite; returns the exit code (0 also when targets are not met: that is a result). */
export async function main(): Promise<number> {
  let settings: Settings;
  try {
    settings = readSettings(scenarios.map((scenario) => scenario.name));
  } catch (error) {
    console.error(`bench: ${messageOf(error)}`);
    return 64;
  }
  if (!(await commandExists("taskset"))) {
    console.error("bench: taskset not installed — run `bash tools/bench/setup.sh`");
    return 69;
  }
  const progress = new Progress();
  const pinProblem = await pinThisProcess();
  if (pinProblem !== undefined) progress.note(pinProblem);
  const selected = scenarios.filter((scenario) => settings.only?.has(scenario.name) ?? true);
  const context: BenchContext = {
    settings,
    progress,
    report: new Report(),
    installed: await installedTools(),
  };
  printIntroduction(progress, selected, settings);
  const interrupted = () => {
    void stopAllProcesses().finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", interrupted);
  try {
    await runScenarios(context, selected);
  } finally {
    Deno.removeSignalListener("SIGINT", interrupted);
    await stopAllProcesses();
  }
  await finish(context, selected);
  return 0;
}

async function finish(context: BenchContext, selected: readonly Scenario[]): Promise<void> {
  const { report, progress, settings } = context;
  const table = report.markdown();
  const path = settings.resultsPath;
  await writeResults({
    date: new Date().toISOString(),
    machine: await describeMachine(),
    versions: await describeVersions(),
    settings: { ...settings, only: settings.only === undefined ? "all" : [...settings.only] },
    placement,
    durationSecs: Math.round(progress.elapsedSecs),
    scenarios: selected.map((scenario) => ({ name: scenario.name, title: scenario.title })),
    figures: report.figures,
    targets: report.targets,
    problems: report.problems,
    table,
  }, path);
  const countWhere = (met: boolean | null) => report.targets.filter((target) => target.met === met).length;
  const outOfReach = report.targets.filter((target) => target.outOfReach !== undefined).length;
  const elapsed = `${progress.elapsedSecs.toFixed(0)} s`;
  progress.note(`\n${table}\n`);
  progress.note(
    `targets: ${countWhere(true)} met, ${countWhere(false)} not met (${outOfReach} of them out of reach by ` +
      `this run's own baseline), ${countWhere(null)} not measured; ` +
      `${elapsed}; figures in ${path}`,
  );
}
