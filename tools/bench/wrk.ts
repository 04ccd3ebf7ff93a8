/**
 * Runs wrk pinned to the load CPU (`taskset -c 1 wrk -t1 -c64 --latency`) after a warm-up run of the
 * same script, and reads its figures.
 *
 * @module
 */
import { benchDir, loadCpu, PinnedProcess } from "./lib.ts";

/** What one wrk run measured. */
export interface HttpFigures {
  requestsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** Responses outside 2xx and 3xx. */
  non2xxCount: number;
  /** Connect, read, write errors and timeouts together. */
  socketErrorCount: number;
  requestCount: number;
}

/** Options of {@linkcode runWrk}. */
export interface WrkOptions {
  /** `http://127.0.0.1:PORT` */
  url: string;
  /** A file name under `tools/bench/`. */
  script: string;
  /** Measured duration. */
  secs: number;
  /** Duration of the warm-up run before it (JIT, caches, keys created); 0 for none. */
  warmupSecs: number;
  /** Concurrent connections. @default 64 */
  connectionCount?: number;
  /** Env for the script, e.g. `BENCH_TOKEN`. */
  env?: Record<string, string>;
}

/** A wrk duration such as `1.23ms`, `850.00us` or `1.02s` in ms. */
export function parseWrkDurationMs(text: string): number {
  const match = /^([\d.]+)(us|ms|s|m)$/.exec(text.trim());
  if (match === null) return NaN;
  const value = Number(match[1]);
  const scale = { us: 0.001, ms: 1, s: 1000, m: 60_000 }[match[2] as "us" | "ms" | "s" | "m"];
  return value * scale;
}

/**
 * The figures of wrk's `--latency` output.
 *
 * @throws {Error} when the output holds no `Requests/sec` line.
 */
export function parseWrkOutput(text: string): HttpFigures {
  const requestsPerSec = /Requests\/sec:\s+([\d.]+)/.exec(text)?.[1];
  if (requestsPerSec === undefined) throw new Error(`wrk gave no figures: ${text.slice(-800)}`);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const socketErrorCount = socket === null
    ? 0
    : socket.slice(1).reduce((sum, count) => sum + Number(count), 0);
  return {
    requestsPerSec: Number(requestsPerSec),
    p50Ms: parseWrkDurationMs(/^\s+50%\s+(\S+)/m.exec(text)?.[1] ?? ""),
    p99Ms: parseWrkDurationMs(/^\s+99%\s+(\S+)/m.exec(text)?.[1] ?? ""),
    non2xxCount: Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(text)?.[1] ?? 0),
    socketErrorCount,
    requestCount: Number(/(\d+) requests in/.exec(text)?.[1] ?? 0),
  };
}

async function runWrkOnce(options: WrkOptions, secs: number): Promise<string> {
  const wrk = PinnedProcess.start({
    name: `wrk ${options.script}`,
    cpu: loadCpu,
    command: "wrk",
    args: [
      "-t1",
      `-c${options.connectionCount ?? 64}`,
      `-d${secs}s`,
      "--latency",
      "-s",
      `${benchDir}${options.script}`,
      options.url,
    ],
    ...(options.env === undefined ? {} : { env: options.env }),
  });
  const status = await wrk.waitForExit({ timeoutMs: (secs + 20) * 1000 });
  if (!status.success) throw new Error(`wrk exited ${status.code}: ${wrk.stderrTail.slice(-400)}`);
  return wrk.stdout;
}

/** A warm-up run, then the measured run; see {@linkcode WrkOptions}. */
export async function runWrk(options: WrkOptions): Promise<HttpFigures> {
  if (options.warmupSecs > 0) await runWrkOnce(options, options.warmupSecs);
  return parseWrkOutput(await runWrkOnce(options, options.secs));
}

/** `120,345 req/s · p50 0.41 ms · p99 1.20 ms · 0 non-2xx`. */
export function describeHttp(figures: HttpFigures): string {
  const errors = figures.socketErrorCount > 0 ? ` · ${figures.socketErrorCount} socket errors` : "";
  return `${Math.round(figures.requestsPerSec).toLocaleString("en-US")} req/s · p50 ${
    figures.p50Ms.toFixed(2)
  } ms · p99 ${figures.p99Ms.toFixed(2)} ms · ${figures.non2xxCount} non-2xx${errors}`;
}
