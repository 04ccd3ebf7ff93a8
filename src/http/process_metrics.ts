/**
 * The process metrics every Prometheus exporter gives (`process_resident_memory_bytes`, `process_open_fds`,
 * `process_max_fds`, `process_cpu_seconds_total`, `process_start_time_seconds`), read from Linux's
 * `/proc` through the disk door `main.ts` passes in. Where `/proc` is missing (another system) they are
 * absent, never zero; a figure that cannot be read or parsed is left out alone.
 */
import type { Logger } from "../util/log.ts";
import type { MetricsText } from "../util/metrics.ts";
import type { ProcessFiles } from "./deps.ts";

/**
 * Clock ticks per second of the times in `/proc/<pid>/stat` (`USER_HZ`): 100 on every Linux architecture
 * Deno runs on, part of the kernel's ABI whatever the kernel's own tick rate (`getconf CLK_TCK`).
 */
export const userHz = 100;

/** One reading of this process's figures; a figure `/proc` did not give is undefined. */
export interface ProcessMetrics {
  residentBytes: number | undefined;
  openFds: number | undefined;
  /** The soft limit on open descriptors; undefined when unlimited. */
  maxFds: number | undefined;
  cpuSeconds: number | undefined;
  /** When the process started, in seconds since the Unix epoch. */
  startTimeSeconds: number | undefined;
}

const decoder = new TextDecoder();

/** A non-negative number, or undefined for anything else (a field missing or not a number). */
function countOf(text: string | undefined): number | undefined {
  if (text === undefined || !/^\d+$/.test(text)) return undefined;
  const value = Number(text);
  return Number.isSafeInteger(value) ? value : undefined;
}

/**
 * The fields of `/proc/self/stat` after the command name, which is in parentheses and may itself hold
 * spaces and parentheses: index 0 is field 3 (`state`), as numbered in proc(5).
 */
export function statFields(text: string): string[] {
  const end = text.lastIndexOf(")");
  if (end < 0) return [];
  return text.slice(end + 1).trim().split(/\s+/);
}

/** CPU seconds (user and system) from `/proc/self/stat`: fields 14 (`utime`) and 15 (`stime`). */
export function cpuSecondsOf(stat: readonly string[]): number | undefined {
  const user = countOf(stat[14 - 3]);
  const system = countOf(stat[15 - 3]);
  if (user === undefined || system === undefined) return undefined;
  return (user + system) / userHz;
}

/** The start time since boot, in ticks, from `/proc/self/stat`: field 22 (`starttime`). */
export function startTicksOf(stat: readonly string[]): number | undefined {
  return countOf(stat[22 - 3]);
}

/** The boot time in seconds since the epoch: the `btime` line of `/proc/stat`. */
export function bootTimeSecondsOf(text: string): number | undefined {
  return countOf(/^btime\s+(\d+)\s*$/m.exec(text)?.[1]);
}

/** The resident set in bytes: the `VmRSS` line of `/proc/self/status`, given in KiB. */
export function residentBytesOf(text: string): number | undefined {
  const kibibytes = countOf(/^VmRSS:\s+(\d+)\s+kB\s*$/m.exec(text)?.[1]);
  return kibibytes === undefined ? undefined : kibibytes * 1024;
}

/** The soft limit of the `Max open files` line of `/proc/self/limits`; undefined when `unlimited`. */
export function maxFdsOf(text: string): number | undefined {
  return countOf(/^Max open files\s+(\S+)\s+\S+\s+files\s*$/m.exec(text)?.[1]);
}

/** Reads this process's figures from `/proc` at each scrape; the start time once. */
export class ProcessCollector {
  readonly #files: ProcessFiles;
  readonly #logger: Logger;
  /** Read once: a process starts once. Undefined until read, or when it could not be. */
  #startTimeSeconds: number | undefined;
  #warned = false;

  constructor(options: { files: ProcessFiles; logger: Logger }) {
    this.#files = options.files;
    this.#logger = options.logger;
  }

  /** This process's figures; undefined where `/proc/self` does not exist or cannot be read. */
  async collect(): Promise<ProcessMetrics | undefined> {
    try {
      const [stat, status, limits, fds] = await Promise.all([
        this.#files.readFile("/proc/self/stat"),
        this.#files.readFile("/proc/self/status"),
        this.#files.readFile("/proc/self/limits"),
        this.#files.readDir("/proc/self/fd"),
      ]);
      if (stat === undefined) return undefined;
      const fields = statFields(decoder.decode(stat));
      return {
        residentBytes: status === undefined ? undefined : residentBytesOf(decoder.decode(status)),
        // The directory read holds a descriptor of its own while it lists, as every exporter's does.
        openFds: fds.length === 0 ? undefined : fds.length,
        maxFds: limits === undefined ? undefined : maxFdsOf(decoder.decode(limits)),
        cpuSeconds: cpuSecondsOf(fields),
        startTimeSeconds: this.#startTimeSeconds ??= await this.#startTime(fields),
      };
    } catch (error) {
      // Not found is undefined above: this is a read refused (no --allow-read for /proc), said once.
      if (!this.#warned) {
        this.#warned = true;
        this.#logger.warn("metrics: /proc could not be read; the process_* metrics are left out", {
          error: error instanceof Error ? error.message : String(error),
        });
      }
      return undefined;
    }
  }

  async #startTime(stat: readonly string[]): Promise<number | undefined> {
    const ticks = startTicksOf(stat);
    const proc = await this.#files.readFile("/proc/stat");
    const bootSeconds = proc === undefined ? undefined : bootTimeSecondsOf(decoder.decode(proc));
    if (ticks === undefined || bootSeconds === undefined) return undefined;
    return bootSeconds + ticks / userHz;
  }
}

/** Writes the process families; a figure not read is left out, family and all. */
export function writeProcessMetrics(text: MetricsText, metrics: ProcessMetrics | undefined): void {
  if (metrics === undefined) return;
  const gauge = (name: string, help: string, value: number | undefined) => {
    if (value !== undefined) text.gauge(name, help, [[{}, value]]);
  };
  gauge("process_resident_memory_bytes", "Resident memory size in bytes.", metrics.residentBytes);
  gauge("process_open_fds", "Number of open file descriptors.", metrics.openFds);
  gauge("process_max_fds", "Maximum number of open file descriptors.", metrics.maxFds);
  if (metrics.cpuSeconds !== undefined) {
    text.counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", [
      [{}, metrics.cpuSeconds],
    ]);
  }
  gauge(
    "process_start_time_seconds",
    "Start time of the process since unix epoch in seconds.",
    metrics.startTimeSeconds,
  );
}
