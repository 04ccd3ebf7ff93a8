// Goal: the process_* figures are read right from Linux's /proc texts, and left out (never zero) where
// /proc is missing, a line is missing or a limit is unlimited. Method: ProcessCollector over files
// served from a map, holding texts copied from a real /proc (a command name with spaces and parentheses
// in /proc/self/stat, as a renamed thread may have).
import assert from "node:assert/strict";
import {
  maxFdsOf,
  ProcessCollector,
  type ProcessMetrics,
  statFields,
  writeProcessMetrics,
} from "../../../src/http/process_metrics.ts";
import type { ProcessFiles } from "../../../src/http/deps.ts";
import { silentLogger } from "../../../src/util/log.ts";
import { MetricsText } from "../../../src/util/metrics.ts";
import { parseExposition, valueOf } from "../../helpers/prometheus.ts";

const encoder = new TextEncoder();

// utime 250, stime 50 (3 s of CPU at 100 ticks a second); starttime 1,367,750 ticks after boot.
const stat = "16543 (deno (main) x) R 16542 16460 9587 0 -1 4194304 2616 0 0 0 250 50 0 0 20 0 6 0 " +
  "1367750 1062531072 8146 18446744073709551615 1 1 0 0 0 0 0 16781312 17642 0 0 0 17 1 0 0 0 0 0\n";
const status = "Name:\tdeno\nVmPeak:\t 1100000 kB\nVmRSS:\t   32584 kB\nRssAnon:\t   20000 kB\n";
const limits = "Limit                     Soft Limit           Hard Limit           Units     \n" +
  "Max cpu time              unlimited            unlimited            seconds   \n" +
  "Max open files            20000                1048576              files     \n";
const procStat = "cpu  1 2 3 4\nintr 5\nbtime 1767225600\nprocesses 42\n";

function filesOf(texts: Record<string, string>, fdNames: string[] = ["0", "1", "2", "7"]): ProcessFiles {
  return {
    readFile: (path) => Promise.resolve(path in texts ? encoder.encode(texts[path]) : undefined),
    readDir: (path) => Promise.resolve(path === "/proc/self/fd" && "/proc/self/stat" in texts ? fdNames : []),
  };
}

const linux = {
  "/proc/self/stat": stat,
  "/proc/self/status": status,
  "/proc/self/limits": limits,
  "/proc/stat": procStat,
};

Deno.test(
  "ProcessCollector.collect() reads RSS, descriptors, their soft limit, CPU and start time from /proc",
  async () => {
    const collector = new ProcessCollector({ files: filesOf(linux), logger: silentLogger });
    assert.deepEqual(
      await collector.collect(),
      {
        residentBytes: 32584 * 1024,
        openFds: 4,
        maxFds: 20000,
        cpuSeconds: 3,
        startTimeSeconds: 1767225600 + 13677.5,
      } satisfies ProcessMetrics,
    );
    assert.equal(statFields(stat)[0], "R", "the command name ends at its last parenthesis");
  },
);

Deno.test(
  "ProcessCollector.collect() gives nothing without /proc, and leaves out a figure it cannot read",
  async () => {
    assert.equal(
      await new ProcessCollector({ files: filesOf({}), logger: silentLogger }).collect(),
      undefined,
    );
    const partial = filesOf({ "/proc/self/stat": "16543 (deno) R 1 2" });
    const metrics = await new ProcessCollector({ files: partial, logger: silentLogger }).collect();
    assert.deepEqual(metrics, {
      residentBytes: undefined,
      openFds: 4,
      maxFds: undefined,
      cpuSeconds: undefined,
      startTimeSeconds: undefined,
    });
    const text = new MetricsText();
    writeProcessMetrics(text, metrics);
    const families = parseExposition(text.text());
    assert.deepEqual([...families.keys()], ["process_open_fds"], "absent, not zero");
    assert.equal(maxFdsOf(limits.replace("20000 ", "unlimited ")), undefined);
  },
);

Deno.test("ProcessCollector.collect() gives nothing when /proc refuses to be read", async () => {
  const refused: ProcessFiles = {
    readFile: () => Promise.reject(new Deno.errors.NotCapable("no read permission")),
    readDir: () => Promise.resolve([]),
  };
  assert.equal(await new ProcessCollector({ files: refused, logger: silentLogger }).collect(), undefined);
});

Deno.test("writeProcessMetrics() writes the conventional families and units", () => {
  const text = new MetricsText();
  writeProcessMetrics(text, {
    residentBytes: 1024,
    openFds: 4,
    maxFds: 20000,
    cpuSeconds: 3,
    startTimeSeconds: 1767239277.5,
  });
  const families = parseExposition(text.text());
  assert.equal(families.get("process_cpu_seconds_total")?.type, "counter");
  assert.equal(valueOf(families, "process_start_time_seconds"), 1767239277.5);
  assert.equal(valueOf(families, "process_max_fds"), 20000);
});
