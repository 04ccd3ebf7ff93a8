/**
 * The printed report of a chaos run: the replay line, what the nemesis did, the write counts with the lost
 * ones, availability split by the faults active when each attempt started, the subscribers' findings, and
 * every failure. Availability is information, never a failure.
 */
import type { Attempt, Findings, HistoryCheck, StreamCheck } from "./checker.ts";
import type { FaultSpan } from "./nemesis.ts";

/** Sentences of one subscriber's findings listed among the failures (all are counted). */
export const streamSentencesMax = 5;

/** Counts of attempts by how they ended. */
interface Tally {
  ok: number;
  refused: number;
  unavailable: number;
  otherError: number;
  noAnswer: number;
}

/** Tallies per label: the kinds of fault active when an attempt started (`none` without). */
export function availabilityByFault(
  attempts: readonly Attempt[],
  spans: readonly FaultSpan[],
): Map<string, Tally> {
  const tallies = new Map<string, Tally>();
  for (const attempt of attempts) {
    const active = spans.filter((span) =>
      span.startMs <= attempt.startedMs && (span.endMs ?? Infinity) > attempt.startedMs
    );
    const label = [...new Set(active.map((span) => span.kind))].sort().join("+") || "none";
    const tally = tallies.get(label) ?? { ok: 0, refused: 0, unavailable: 0, otherError: 0, noAnswer: 0 };
    const outcome = attempt.outcome;
    if (outcome.kind === "ok") tally.ok += 1;
    else if (outcome.kind === "refused") tally.refused += 1;
    else if (outcome.reason.startsWith("503")) tally.unavailable += 1;
    else if (/^\d+$/.test(outcome.reason)) tally.otherError += 1;
    else tally.noAnswer += 1;
    tallies.set(label, tally);
  }
  return tallies;
}

/** Everything the report prints. */
export interface ReportInput {
  replay: string;
  spans: readonly FaultSpan[];
  attempts: readonly Attempt[];
  history: HistoryCheck;
  readFailures: ReadonlyMap<string, number>;
  streams: readonly StreamCheck[];
  failures: readonly string[];
  notes: readonly string[];
  elapsedSecs: number;
}

/** The report as lines of text. */
export function formatReport(input: ReportInput): string {
  const { history } = input;
  const faultCounts = countBy(input.spans.map((span) => span.kind));
  const readFailed = [...input.readFailures.values()].reduce((sum, count) => sum + count, 0);
  const sum = (pick: (check: StreamCheck) => number) =>
    input.streams.reduce((total, check) => total + pick(check), 0);
  const lines = [
    `chaos report (${input.elapsedSecs.toFixed(0)} s)  replay: ${input.replay}`,
    `  nemesis: ${input.spans.length} faults${formatCounts(faultCounts)}`,
    `  writes: ${input.attempts.length} attempted, ${history.acknowledged} acknowledged, ` +
    `${history.refused} refused, ${history.indeterminate} indeterminate ` +
    `(${history.indeterminateApplied} of them took effect)`,
    `  refused by status:${formatCounts(refusedByStatus(input.attempts)).slice(1) || " none"}`,
    `  reads without a usable answer (no write followed): ${readFailed}${formatCounts(input.readFailures)}`,
    `  LOST acknowledged writes: ${history.lost.length}` +
    (history.lost.length === 0 ? "" : ` (${history.lost.slice(0, 8).map((lost) => lost.id).join(", ")}…)`),
    unavailableLatency(input.attempts),
    `  availability by active fault (201 / 4xx / 503 / other 5xx / no answer):`,
    ...[...availabilityByFault(input.attempts, input.spans)].sort(([a], [b]) => a.localeCompare(b)).map(
      ([label, tally]) =>
        `    ${
          label.padEnd(20)
        } ${tally.ok} / ${tally.refused} / ${tally.unavailable} / ${tally.otherError} / ` +
        `${tally.noAnswer}  (${percent(tally.ok, attemptsOf(tally))} acknowledged)`,
    ),
    `  SSE: ${input.streams.length} subscribers, ${sum((check) => check.shown)} changes shown, ` +
    `${sum((check) => check.reconnects)} reconnects, ${sum((check) => check.resyncs)} Resyncs, ` +
    `${sum((check) => check.findings.texts.length)} violations`,
    `  violations by rule:`,
    ...formatRules([history.findings, ...input.streams.map((check) => check.findings)]),
    ...input.notes.map((note) => `  note: ${note}`),
    `  FAILURES: ${input.failures.length} (at most ${streamSentencesMax} sentences per subscriber; ` +
    `each break is counted above)`,
    ...input.failures.slice(0, 60).map((failure) => `    - ${failure}`),
    ...(input.failures.length > 60 ? [`    … and ${input.failures.length - 60} more`] : []),
  ];
  return lines.join("\n");
}

/** One line per rule broken, with how often, over all findings. */
function formatRules(all: readonly Findings[]): string[] {
  const counts = new Map<string, number>();
  for (const findings of all) {
    for (const [rule, count] of findings.countsByRule) counts.set(rule, (counts.get(rule) ?? 0) + count);
  }
  if (counts.size === 0) return ["    none"];
  return [...counts].sort(([a], [b]) => a.localeCompare(b)).map(([rule, count]) => `    ${rule}: ${count}`);
}

/** How fast writes were told 503 (SPEC §5: fast, with Retry-After). */
function unavailableLatency(attempts: readonly Attempt[]): string {
  const durations = attempts.filter((attempt) =>
    attempt.outcome.kind === "indeterminate" && attempt.outcome.reason.startsWith("503")
  ).map((attempt) => attempt.endedMs - attempt.startedMs).sort((a, b) => a - b);
  if (durations.length === 0) return "  writes answered 503: 0";
  const median = durations[Math.floor(durations.length / 2)]!;
  return `  writes answered 503: ${durations.length}, in ${median.toFixed(0)} ms (median), ` +
    `${durations.at(-1)!.toFixed(0)} ms (max)`;
}

function refusedByStatus(attempts: readonly Attempt[]): Map<string, number> {
  return countBy(
    attempts.flatMap((attempt) =>
      attempt.outcome.kind === "refused"
        ? [`${attempt.intruder ? "intruder " : ""}${attempt.outcome.status}`]
        : []
    ),
  );
}

function attemptsOf(tally: Tally): number {
  return tally.ok + tally.refused + tally.unavailable + tally.otherError + tally.noAnswer;
}

function percent(part: number, whole: number): string {
  return whole === 0 ? "-" : `${((100 * part) / whole).toFixed(0)}%`;
}

function countBy(items: readonly string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const item of items) counts.set(item, (counts.get(item) ?? 0) + 1);
  return counts;
}

function formatCounts(counts: ReadonlyMap<string, number>): string {
  if (counts.size === 0) return "";
  return ` (${[...counts].sort(([a], [b]) => a.localeCompare(b)).map(([k, n]) => `${k} ${n}`).join(", ")})`;
}
