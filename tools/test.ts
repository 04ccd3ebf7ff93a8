// `deno task test`: every test, in two steps (the parallel suite, then the bench's end-to-end run, which
// loads both cores for minutes and so runs alone), each step's output shown as it comes, a line before the
// long step saying what it does, and the totals of the whole run alone on the last line:
// `N passed, M failed`. Exits 1 when a test failed or a step ended without its summary.
//
// Usage: deno run -A tools/test.ts   (no flags; deno.json's `test` task runs it after `gen-key --if-missing`)
import { stripVTControlCharacters } from "node:util";

/** One `deno test` run of the task: what it runs, and what to say before it. */
interface Step {
  /** Said on its own line before the step starts. */
  announce: string;
  args: readonly string[];
}

const steps: readonly Step[] = [
  {
    announce: "== every test but the bench's end-to-end run, in parallel (a few minutes)",
    args: [
      "test",
      "-A",
      "--parallel",
      "--ignore=tests/fault/crash_loop_test.ts,tests/integration/tools/bench_test.ts,tests/chaos",
      "tests/",
    ],
  },
  {
    announce: "== the bench's end-to-end run: every `deno task bench` scenario for about a second each, " +
      "on this machine's real servers (about 3 minutes; its steps are shown as they start)",
    args: ["test", "-A", "tests/integration/tools/bench_test.ts"],
  },
];

/** Counts of one `deno test` run, read from its summary line. */
export interface Totals {
  passed: number;
  failed: number;
}

// deno test's summary: "ok | 12 passed (3 steps) | 0 failed (4s)" or "FAILED | 10 passed | 2 failed (5s)".
const summaryPattern = /^(?:ok|FAILED) \| (\d+) passed(?: \(\d+ steps?\))? \| (\d+) failed/m;

/** The counts of the last summary line in a run's output, or undefined when it printed none. */
export function summaryOf(output: string): Totals | undefined {
  const lines = stripVTControlCharacters(output).split("\n").reverse();
  for (const line of lines) {
    const match = summaryPattern.exec(line);
    if (match !== null) return { passed: Number(match[1]), failed: Number(match[2]) };
  }
  return undefined;
}

/** The task's last line: the totals of every step. */
export function totalsLine(totals: readonly Totals[]): string {
  const passed = totals.reduce((sum, step) => sum + step.passed, 0);
  const failed = totals.reduce((sum, step) => sum + step.failed, 0);
  return `${passed} passed, ${failed} failed`;
}

/** Copies a stream to `out` as it comes and keeps its text (the summary is read from it afterwards). */
async function tee(stream: ReadableStream<Uint8Array>, out: { write(bytes: Uint8Array): Promise<number> }) {
  const decoder = new TextDecoder();
  let text = "";
  for await (const chunk of stream) {
    await out.write(chunk);
    text += decoder.decode(chunk, { stream: true });
    // Only the end is needed: the summary is among the last lines.
    if (text.length > 1 << 20) text = text.slice(-(1 << 19));
  }
  return text;
}

async function runStep(step: Step): Promise<Totals> {
  console.log(step.announce);
  const child = new Deno.Command(Deno.execPath(), { args: [...step.args], stdout: "piped", stderr: "piped" })
    .spawn();
  const [stdout, stderr] = await Promise.all([
    tee(child.stdout, Deno.stdout),
    tee(child.stderr, Deno.stderr),
  ]);
  const status = await child.status;
  const totals = summaryOf(stdout) ?? summaryOf(stderr);
  if (totals !== undefined && (status.success || totals.failed > 0)) return totals;
  if (totals !== undefined) {
    // Every test passed yet deno test failed (a leak report, an error outside a test): one failure more.
    console.log(
      `== deno ${step.args.join(" ")} exited ${status.code} after its summary: counted as 1 failed`,
    );
    return { passed: totals.passed, failed: 1 };
  }
  // A run that ended without a summary (a type error, a crash) counts as one failure, never as none.
  console.log(
    `== deno ${step.args.join(" ")} ended (exit ${status.code}) without a summary: counted as 1 failed`,
  );
  return { passed: 0, failed: 1 };
}

if (import.meta.main) {
  const totals: Totals[] = [];
  for (const step of steps) totals.push(await runStep(step));
  console.log(totalsLine(totals));
  Deno.exit(totals.some((step) => step.failed > 0) ? 1 : 0);
}
