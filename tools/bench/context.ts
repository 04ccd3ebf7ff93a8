/**
 * What every scenario of `deno task bench` gets: the settings, the progress display, the report and
 * which peer programs are installed.
 *
 * @module
 */
import { messageOf, type Settings } from "./lib.ts";
import type { Progress } from "./progress.ts";
import type { Report } from "./report.ts";

/** The programs a scenario may need; absent ones make it report "skipped". */
export const toolNames = ["wrk", "etcd", "redis-server", "redis-benchmark"] as const;

/** One of {@linkcode toolNames}. */
export type ToolName = typeof toolNames[number];

/** Shared by the scenarios of one run. */
export interface BenchContext {
  settings: Settings;
  progress: Progress;
  report: Report;
  /** Which of {@linkcode toolNames} are on the PATH. */
  installed: ReadonlySet<ToolName>;
}

/** A scenario: a name for `BENCH_ONLY`, its expected duration, and the code that runs it. */
export interface Scenario {
  name: string;
  /** What it measures, for `--help`-like listings. */
  title: string;
  expectedSecs(settings: Settings): number;
  run(context: BenchContext): Promise<void>;
}

/** `skipped: wrk not installed — run ...` */
export function skippedBecauseMissing(tool: string): string {
  return `skipped: ${tool} not installed — run \`bash tools/bench/setup.sh\``;
}

/**
 * Runs one step; when it fails, the failure is reported under the step's name and undefined is returned,
 * so the other steps of the scenario still run.
 */
export async function attemptStep<T>(
  context: BenchContext,
  options: { name: string; expectedSecs: number; timeoutSecs?: number },
  run: (signal: AbortSignal) => Promise<T>,
): Promise<T | undefined> {
  try {
    return await context.progress.step(options.name, options, run);
  } catch (error) {
    context.report.problem(options.name, `failed: ${messageOf(error).slice(0, 300)}`);
    return undefined;
  }
}
