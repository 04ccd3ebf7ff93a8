/**
 * What `deno task bench` found: one markdown table (scenario | figure | baseline | ratio | target | met?)
 * and `bench/results.json` with the machine, the versions of every program measured, every figure and
 * every target with its outcome. Scenarios that could not run say why, in both places.
 *
 * @module
 */
import { dirname } from "node:path";
import { commandOutput } from "./lib.ts";

/** One line of the table. */
export interface Row {
  scenario: string;
  figure: string;
  baseline: string;
  ratio: string;
  target: string;
  /** `yes`, `NO`, `no: out of reach, ...`, `—` (no target), `skipped: ...` or `failed: ...`. */
  met: string;
}

/** A target and how this run did against it. */
export interface TargetOutcome {
  scenario: string;
  target: string;
  /** The measured value the target is about, in `unit`; null when it could not be measured. */
  value: number | null;
  unit: string;
  /** true met, false not met, null not measured (see `note`). */
  met: boolean | null;
  /**
   * Set when the target is not met and this run's own baseline misses it too: the target is out of reach
   * on this machine, and this says by which measurement.
   */
  outOfReach?: string;
  note?: string;
}

/** Options of {@linkcode Report.check}. */
export interface CheckOptions {
  scenario: string;
  figure: string;
  baseline?: string;
  ratio?: string;
  target: string;
  value: number;
  unit: string;
  met: boolean;
  /**
   * When the same run's baseline, which does no more than the target needs, itself misses the target:
   * which baseline and its figure (e.g. "the contract PUT limit itself: 0.36×"). Shown only when not met.
   */
  outOfReach?: string;
}

/** Collects rows, targets and figures while the scenarios run. */
export class Report {
  readonly rows: Row[] = [];
  readonly targets: TargetOutcome[] = [];
  /** Figures by scenario name, as measured (numbers in ms, req/s, MB or bytes as their names say). */
  readonly figures: Record<string, Record<string, unknown>> = {};
  /** Scenarios that did not run or did not finish, with the reason. */
  readonly problems: Record<string, string> = {};

  /** Stores a scenario's figures, merged with what it stored before. */
  record(scenario: string, figures: Record<string, unknown>): void {
    this.figures[scenario] = { ...this.figures[scenario], ...figures };
  }

  /** A row without a target. */
  info(row: Omit<Row, "met" | "target"> & { target?: string }): void {
    this.rows.push({ ...row, target: row.target ?? "—", met: "—" });
  }

  /** A row with a target, and the target's outcome. */
  check(options: CheckOptions): void {
    this.rows.push({
      scenario: options.scenario,
      figure: options.figure,
      baseline: options.baseline ?? "—",
      ratio: options.ratio ?? "—",
      target: options.target,
      met: options.met
        ? "yes"
        : options.outOfReach === undefined
        ? "NO"
        : `no: out of reach, ${options.outOfReach}`,
    });
    this.targets.push({
      scenario: options.scenario,
      target: options.target,
      value: Number.isFinite(options.value) ? options.value : null,
      unit: options.unit,
      met: options.met,
      ...(options.met || options.outOfReach === undefined ? {} : { outOfReach: options.outOfReach }),
    });
  }

  /** A target that could not be measured (a peer missing, a step failed). */
  unmeasured(options: { scenario: string; target: string; why: string }): void {
    const { scenario, target, why } = options;
    this.rows.push({ scenario, target, figure: "—", baseline: "—", ratio: "—", met: why });
    this.targets.push({ scenario, target, value: null, unit: "", met: null, note: why });
  }

  /** A scenario, or part of one, that did not run; `why` starts with `skipped:` or `failed:`. */
  problem(scenario: string, why: string, targets: readonly string[] = []): void {
    this.problems[scenario] = why;
    if (targets.length === 0) {
      this.rows.push({ scenario, figure: "—", baseline: "—", ratio: "—", target: "—", met: why });
    }
    for (const target of targets) this.unmeasured({ scenario, target, why });
  }

  /** The table as markdown. */
  markdown(): string {
    const escape = (text: string) => text.replaceAll("|", "\\|");
    const lines = [
      "| scenario | figure | baseline | ratio | target | met? |",
      "|---|---|---|---|---|---|",
      ...this.rows.map((row) =>
        `| ${
          [row.scenario, row.figure, row.baseline, row.ratio, row.target, row.met].map(escape).join(" | ")
        } |`
      ),
    ];
    return lines.join("\n");
  }
}

/** The machine a run measured. */
export interface Machine {
  cpuModel: string;
  coreCount: number;
  memoryBytes: number;
  kernel: string;
}

/** CPU model, cores, memory and kernel, from `/proc` and `uname -r`. */
export async function describeMachine(): Promise<Machine> {
  const cpuinfo = await Deno.readTextFile("/proc/cpuinfo").catch(() => "");
  const meminfo = await Deno.readTextFile("/proc/meminfo").catch(() => "");
  return {
    cpuModel: /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? "unknown",
    coreCount: (cpuinfo.match(/^processor\s*:/gm) ?? []).length || navigator.hardwareConcurrency,
    memoryBytes: Number(/MemTotal:\s+(\d+)/.exec(meminfo)?.[1] ?? 0) * 1024,
    kernel: (await commandOutput("uname", ["-r"]))?.trim() ?? "unknown",
  };
}

/** Versions of Deno and of the peers that are installed (absent ones are left out). */
export async function describeVersions(): Promise<Record<string, string>> {
  const versions: Record<string, string> = { deno: Deno.version.deno, v8: Deno.version.v8 };
  const probes: [string, string, string[], RegExp][] = [
    ["wrk", "wrk", ["--version"], /^wrk (\S+)/m],
    ["etcd", "etcd", ["--version"], /etcd Version:\s*(\S+)/],
    ["redis", "redis-server", ["--version"], /v=(\S+)/],
  ];
  for (const [name, command, args, pattern] of probes) {
    const output = await commandOutput(command, args);
    const version = output === undefined ? undefined : pattern.exec(output)?.[1];
    if (version !== undefined) versions[name] = version;
  }
  return versions;
}

/** Everything `bench/results.json` holds. */
export interface Results {
  date: string;
  machine: Machine;
  versions: Record<string, string>;
  settings: Record<string, unknown>;
  placement: string;
  durationSecs: number;
  scenarios: { name: string; title: string }[];
  figures: Record<string, Record<string, unknown>>;
  targets: TargetOutcome[];
  problems: Record<string, string>;
  table: string;
}

/** Writes `results` as JSON to `path` (`bench/results.json` unless `BENCH_OUT` says otherwise). */
export async function writeResults(results: Results, path: string): Promise<void> {
  await Deno.mkdir(dirname(path), { recursive: true });
  await Deno.writeTextFile(path, `${JSON.stringify(results, null, 2)}\n`);
}

/** `1234567.8` → `1,234,568`. */
export function formatCount(value: number): string {
  return Number.isFinite(value) ? Math.round(value).toLocaleString("en-US") : "n/a";
}

/** A duration in ms with two decimals below 10 ms, one below 1 s, whole above. */
export function formatMs(value: number): string {
  if (!Number.isFinite(value)) return "n/a";
  if (value < 10) return `${value.toFixed(2)} ms`;
  return value < 1000 ? `${value.toFixed(1)} ms` : `${Math.round(value).toLocaleString("en-US")} ms`;
}

/** `a / b` as `0.93×`, or `n/a`. */
export function formatRatio(numerator: number, denominator: number): string {
  const ratio = numerator / denominator;
  return Number.isFinite(ratio) ? `${ratio.toFixed(2)}×` : "n/a";
}
