/**
 * Shared helpers of `deno task bench`: settings from the environment, pinned child processes, bounded
 * waits, quantiles and the figures read from `/proc` and `du`. Every child process is registered, so one
 * call ({@linkcode stopAllProcesses}) stops whatever is still running, whatever failed.
 *
 * ```ts
 * const file = `${benchDir}hono_baseline.ts`; // prints "listening on <url>"
 * const args = ["run", "-A", file, "8002"];
 * const server = PinnedProcess.start({ name: "hono", cpu: 0, command: denoPath, args });
 * try {
 *   const [, url] = await server.waitForLine(/listening on (\S+)/, { timeoutMs: 30_000 });
 * } finally {
 *   await server.stop();
 * }
 * ```
 *
 * @module
 */

/** The repository's root directory, with a trailing slash. */
export const repositoryRoot: string = new URL("../../", import.meta.url).pathname;

/** The directory of the bench modules and wrk scripts, with a trailing slash. */
export const benchDir: string = new URL("./", import.meta.url).pathname;

/** The Deno binary running this program; children run under the same version. */
export const denoPath: string = Deno.execPath();

/**
 * V8 flags of every server the bench starts, dynarust and baselines alike: what `deno task start` and
 * `deno task compile` give a node (deno.json). A young generation of 8 MB semi-spaces instead of V8's
 * larger default: A/B on this VM, PUT 10–20% less CPU per request, GET unchanged, ~30 MB less RSS with
 * 10,000 SSE streams. And an old generation that at most doubles what survives a full collection, not
 * V8's dynamic factor (up to 4x under a fast allocator): 100k records, RSS right after loading 158 → 135–139
 * MB. A smaller factor saves a little more memory (60%: ~130 MB) but its more frequent full collections
 * pushed the 3-node write → read p99 from 15–19 ms (none) to 20–25 ms; doubling costs it ~2 ms (17 ms).
 */
export const serverV8Flags = "--v8-flags=--max-semi-space-size=8,--heap-growing-percent=100";

/** The CPU every server runs on. */
export const serverCpu = 0;

/** The CPU every load tool (and this program) runs on. */
export const loadCpu = 1;

/** The open-file limit children ask for; the hard limit is used when it is lower. */
export const fileLimitWanted = 65_536;

/** Bytes in a megabyte: figures use decimal MB (10^6 bytes), the stricter reading of "MB". */
export const megabyte = 1_000_000;

/** Settings read from `BENCH_*` env vars. */
export interface Settings {
  /** wrk duration of each HTTP step, and the length of the SSE latency run. @default 10 */
  wrkSecs: number;
  /** Scenarios to run (`BENCH_ONLY`, comma separated); all when undefined. */
  only: ReadonlySet<string> | undefined;
  /** Records loaded over HTTP for the records scenario. @default 100000 */
  recordCount: number;
  /** Records prepared for the restart-time scenario. @default 1000000 */
  restartRecordCount: number;
  /**
   * Interleaved rounds of the HTTP scenario (`BENCH_ROUNDS`): every server is measured once per round; a
   * figure is its best round and a ratio the median of the rounds' ratios, so a burst of noise on a shared
   * host hits one round, not one server. The rounds share 2 × `wrkSecs` of measurement per figure.
   * @default 10
   */
  httpRounds: number;
  /** Where the results go (`BENCH_OUT`). @default bench/results.json in the repository */
  resultsPath: string;
}

/** Where a run writes its results unless `BENCH_OUT` says otherwise. */
export const defaultResultsPath: string = `${repositoryRoot}bench/results.json`;

function positiveIntegerFromEnv(name: string, fallback: number): number {
  const text = Deno.env.get(name);
  if (text === undefined || text.trim() === "") return fallback;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new Error(`${name} must be a positive integer, got "${text}"`);
  }
  return value;
}

/**
 * The settings of this run.
 *
 * @throws {Error} when a value is not a positive integer or `BENCH_ONLY` names an unknown scenario.
 */
export function readSettings(scenarioNames: readonly string[]): Settings {
  const onlyText = Deno.env.get("BENCH_ONLY")?.trim() ?? "";
  let only: Set<string> | undefined;
  if (onlyText !== "") {
    only = new Set(onlyText.split(",").map((name) => name.trim()).filter((name) => name !== ""));
    const unknown = [...only].filter((name) => !scenarioNames.includes(name));
    if (unknown.length > 0) {
      throw new Error(
        `BENCH_ONLY: unknown scenario ${unknown.join(", ")}; known: ${scenarioNames.join(", ")}`,
      );
    }
  }
  return {
    wrkSecs: positiveIntegerFromEnv("BENCH_SECS", 10),
    only,
    recordCount: positiveIntegerFromEnv("BENCH_RECORDS", 100_000),
    restartRecordCount: positiveIntegerFromEnv("BENCH_RESTART_RECORDS", 1_000_000),
    httpRounds: positiveIntegerFromEnv("BENCH_ROUNDS", 10),
    resultsPath: Deno.env.get("BENCH_OUT")?.trim() || defaultResultsPath,
  };
}

/** Resolves after `ms`; rejects at once when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted === true) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Options of {@linkcode waitUntil}. */
export interface WaitOptions {
  /** Give up after this long. */
  timeoutMs: number;
  /** Pause between checks. @default 50 */
  intervalMs?: number;
  /** What is awaited, for the error message. */
  what: string;
  signal?: AbortSignal;
}

/**
 * Calls `check` until it answers true; a check that throws counts as false.
 *
 * @throws {Error} naming `what` when `timeoutMs` passes first.
 */
export async function waitUntil(check: () => Promise<boolean>, options: WaitOptions): Promise<void> {
  const deadline = performance.now() + options.timeoutMs;
  let lastError = "";
  // Bounded by the deadline.
  while (performance.now() < deadline) {
    options.signal?.throwIfAborted();
    try {
      if (await check()) return;
    } catch (error) {
      lastError = ` (last error: ${error instanceof Error ? error.message : String(error)})`;
    }
    await sleep(options.intervalMs ?? 50, options.signal);
  }
  throw new Error(`${options.what} did not happen within ${options.timeoutMs} ms${lastError}`);
}

/** `signal` combined with a timeout of `timeoutMs`. */
export function deadlineSignal(timeoutMs: number, signal?: AbortSignal): AbortSignal {
  const timeout = AbortSignal.timeout(timeoutMs);
  return signal === undefined ? timeout : AbortSignal.any([signal, timeout]);
}

/** Quantiles of a sample, in the sample's unit. */
export interface Summary {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/** The nearest-rank quantiles of `values`; NaN for an empty sample. */
export function summarize(values: ArrayLike<number>): Summary {
  const sorted = Float64Array.from(values).sort();
  const at = (quantile: number) =>
    sorted.length === 0 ? NaN : sorted[Math.max(0, Math.ceil(quantile * sorted.length) - 1)]!;
  return { count: sorted.length, p50: at(0.5), p90: at(0.9), p99: at(0.99), max: at(1) };
}

/** Rounds to `digits` decimals, keeping NaN as null for JSON. */
export function round(value: number, digits = 2): number | null {
  if (!Number.isFinite(value)) return null;
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

/** Options of {@linkcode PinnedProcess.start}. */
export interface ProcessOptions {
  /** A short name for messages. */
  name: string;
  /** The CPU the process is pinned to (`taskset -c`). */
  cpu: number;
  command: string;
  args: readonly string[];
  /** Added to a copy of this environment without the node settings a user may have exported. */
  env?: Record<string, string>;
  /** @default repositoryRoot */
  cwd?: string;
}

const liveProcesses = new Set<PinnedProcess>();
const outputCharsMax = 1 << 20;
const stderrTailCharsMax = 4_096;
/** Env vars of a node that must not leak from the user's shell into the nodes measured. */
const nodeEnvPattern =
  /^(DYNA_|JWT_SECRET$|CLUSTER_SECRET$|REPLICATION_FACTOR$|WRITE_QUORUM$|SNAP_|RUST_LOG$)/;

function childEnv(extra: Record<string, string> | undefined): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(Deno.env.toObject())) {
    if (!nodeEnvPattern.test(name)) env[name] = value;
  }
  return { ...env, ...extra };
}

/**
 * A child process pinned to one CPU with a raised open-file limit: spawned as
 * `sh -c 'ulimit -n 65536 || ulimit -n <hard>; exec taskset -c CPU command args...'`, so its pid is the
 * command's own. Its stdout is kept (up to 1 MiB) and the tail of its stderr for error messages.
 */
export class PinnedProcess {
  readonly name: string;
  readonly child: Deno.ChildProcess;
  readonly pid: number;
  #stdout = "";
  #stderrTail = "";
  #exited = false;
  readonly #done: Promise<void>;

  private constructor(options: ProcessOptions) {
    this.name = options.name;
    const script = `ulimit -n ${fileLimitWanted} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; ` +
      'exec taskset -c "$0" "$@"';
    this.child = new Deno.Command("sh", {
      args: ["-c", script, String(options.cpu), options.command, ...options.args],
      cwd: options.cwd ?? repositoryRoot,
      env: childEnv(options.env),
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.pid = this.child.pid;
    const stdoutDone = this.#collect(this.child.stdout, (text) => {
      this.#stdout = (this.#stdout + text).slice(-outputCharsMax);
    });
    const stderrDone = this.#collect(this.child.stderr, (text) => {
      this.#stderrTail = (this.#stderrTail + text).slice(-stderrTailCharsMax);
    });
    this.#done = Promise.all([stdoutDone, stderrDone, this.child.status]).then(() => {
      this.#exited = true;
      liveProcesses.delete(this);
    });
  }

  /** Spawns and registers a process. */
  static start(options: ProcessOptions): PinnedProcess {
    const process = new PinnedProcess(options);
    liveProcesses.add(process);
    return process;
  }

  async #collect(stream: ReadableStream<Uint8Array>, append: (text: string) => void): Promise<void> {
    try {
      for await (const text of stream.pipeThrough(new TextDecoderStream())) append(text);
    } catch {
      // The stream breaks when the process is killed; what was read is kept.
    }
  }

  /** Everything printed on stdout so far (its last 1 MiB). */
  get stdout(): string {
    return this.#stdout;
  }

  /** The last 4 KiB printed on stderr, for error messages. */
  get stderrTail(): string {
    return this.#stderrTail;
  }

  /** Whether the process has exited and its output is read. */
  get exited(): boolean {
    return this.#exited;
  }

  /**
   * The first match of `pattern` in stdout.
   *
   * @throws {Error} when the process exits or `timeoutMs` passes first.
   */
  async waitForLine(pattern: RegExp, options: { timeoutMs: number }): Promise<RegExpExecArray> {
    const deadline = performance.now() + options.timeoutMs;
    // Bounded by the deadline.
    while (performance.now() < deadline) {
      const match = pattern.exec(this.#stdout);
      if (match !== null) return match;
      if (this.#exited) break;
      await sleep(20);
    }
    const why = this.#exited ? "exited" : `printed nothing matching ${pattern} in ${options.timeoutMs} ms`;
    throw new Error(`${this.name} ${why}; stderr: ${this.#stderrTail.trim().slice(-600)}`);
  }

  /**
   * Waits for the process to exit by itself.
   *
   * @throws {Error} after killing it, when `timeoutMs` passes first.
   */
  async waitForExit(options: { timeoutMs: number }): Promise<Deno.CommandStatus> {
    const timer = sleep(options.timeoutMs).then(() => "timeout" as const);
    const outcome = await Promise.race([this.#done.then(() => "exited" as const), timer]);
    if (outcome === "timeout") {
      await this.stop({ timeoutMs: 2_000 });
      throw new Error(`${this.name} did not finish within ${options.timeoutMs} ms`);
    }
    return await this.child.status;
  }

  /** Sends SIGTERM, then SIGKILL when it has not exited after `timeoutMs`; resolves once it exited. */
  async stop(options: { timeoutMs: number } = { timeoutMs: 15_000 }): Promise<void> {
    if (this.#exited) return;
    this.#signal("SIGTERM");
    const stopped = await Promise.race([
      this.#done.then(() => true),
      sleep(options.timeoutMs).then(() => false),
    ]);
    if (!stopped) {
      this.#signal("SIGKILL");
      await Promise.race([this.#done, sleep(5_000)]);
    }
  }

  #signal(signal: Deno.Signal): void {
    try {
      this.child.kill(signal);
    } catch {
      // It exited in the meantime.
    }
  }
}

/** Starts `deno run -A <serverV8Flags> <script> <args>` (a baseline server) pinned to the server CPU. */
export function startServerScript(
  options: { name: string; script: string; args: readonly string[] },
): PinnedProcess {
  return PinnedProcess.start({
    name: options.name,
    cpu: serverCpu,
    command: denoPath,
    args: ["run", "-A", serverV8Flags, options.script, ...options.args],
  });
}

/** Stops every process still running, all at once; for the end of a run and for Ctrl-C. */
export async function stopAllProcesses(): Promise<void> {
  await Promise.all([...liveProcesses].map((process) => process.stop({ timeoutMs: 5_000 })));
}

/** Whether `name` is a command on the PATH. */
export async function commandExists(name: string): Promise<boolean> {
  const result = await new Deno.Command("sh", {
    args: ["-c", 'command -v "$0"', name],
    stdout: "null",
    stderr: "null",
  }).output();
  return result.success;
}

/** The stdout of a short command (at most 10 s), or undefined when it cannot run. */
export async function commandOutput(command: string, args: readonly string[]): Promise<string | undefined> {
  try {
    const result = await new Deno.Command(command, {
      args: [...args],
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(10_000),
    }).output();
    const decoder = new TextDecoder();
    return decoder.decode(result.stdout) + decoder.decode(result.stderr);
  } catch {
    return undefined;
  }
}

/** A TCP port free on 127.0.0.1 right now. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Resident memory of a process in MB (VmRSS of `/proc/PID/status`). */
export function rssMb(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kilobytes = /VmRSS:\s+(\d+)/.exec(status)?.[1];
  if (kilobytes === undefined) throw new Error(`no VmRSS for process ${pid}`);
  return Number(kilobytes) * 1024 / megabyte;
}

/** The soft open-file limit of a running process, from `/proc/PID/limits`. */
export function fileLimitOf(pid: number): number | undefined {
  try {
    const limits = Deno.readTextFileSync(`/proc/${pid}/limits`);
    const soft = /Max open files\s+(\d+)/.exec(limits)?.[1];
    return soft === undefined ? undefined : Number(soft);
  } catch {
    return undefined;
  }
}

/** Bytes a directory takes (`du -sb`). */
export async function directoryBytes(dir: string): Promise<number> {
  const output = await commandOutput("du", ["-sb", dir]);
  const bytes = Number(output?.split("\t")[0]);
  if (!Number.isFinite(bytes)) throw new Error(`du -sb ${dir} failed: ${output}`);
  return bytes;
}

/** A fresh temporary directory for one server's data. */
export function makeDataDir(prefix: string): Promise<string> {
  return Deno.makeTempDir({ prefix: `dynarust_bench_${prefix}_` });
}

/** Removes a directory made by {@linkcode makeDataDir}; a failure is reported, not thrown. */
export async function removeDataDir(dir: string): Promise<void> {
  try {
    await Deno.remove(dir, { recursive: true });
  } catch (error) {
    console.error(`could not remove ${dir}: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/** The message of any thrown value. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Latency quantiles (ms) of one floor of this machine, measured by `probe.ts`. */
export interface ProbeFigures extends Summary {
  probe: "fsync" | "rtt";
}

/**
 * Runs `probe.ts` on the server CPU: `fsync` (one small append + fdatasync, 300 a second) or `rtt` (one
 * POST round trip between two Deno processes). About 6 s each.
 */
export async function measureFloor(probe: "fsync" | "rtt"): Promise<ProbeFigures> {
  const dataDir = await makeDataDir("probe");
  const process = PinnedProcess.start({
    name: `${probe} probe`,
    cpu: serverCpu,
    command: denoPath,
    args: ["run", "-A", "tools/bench/probe.ts", probe, dataDir],
  });
  try {
    const status = await process.waitForExit({ timeoutMs: 60_000 });
    const line = process.stdout.trim().split("\n").findLast((candidate) => candidate.startsWith("{"));
    if (!status.success || line === undefined) {
      throw new Error(`${probe} probe exited ${status.code}: ${process.stderrTail.slice(-500)}`);
    }
    return JSON.parse(line) as ProbeFigures;
  } finally {
    await process.stop();
    await removeDataDir(dataDir);
  }
}

/** A floor as a table figure: `p50 … · p99 …`. */
export function describeFloor(figures: ProbeFigures): string {
  return `p50 ${figures.p50.toFixed(2)} ms · p90 ${figures.p90.toFixed(2)} ms · p99 ${
    figures.p99.toFixed(2)
  } ms`;
}
