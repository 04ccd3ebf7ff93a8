/**
 * Prepares a data dir holding N records for the restart-time scenario without HTTP: it opens the data
 * dir with dynarust's own store (`src/store/mod.ts`, the build's encryption key, default limits), writes
 * the records of `lorem.ts` with many puts in flight (group-committed into WAL batches, each fsynced),
 * and closes the store, which checkpoints into `storage.db` as a node's graceful stop does. The files
 * are the ones a node writes; loading 1,000,000 records over HTTP would take minutes.
 *
 * Usage: `deno run -A tools/bench/records_prepare.ts <data dir> <record count>`; prints
 * `{"recordCount":N,"writeMs":ms,"closeMs":ms}`.
 *
 * @module
 */
import { DenoFs, loadBuildEncryption, Store } from "../../src/store/mod.ts";
import { defaultLimits } from "../../src/config/limits.ts";
import { systemClock } from "../../src/util/clock.ts";
import { createLogger } from "../../src/util/log.ts";
import { recordOf, recordTable } from "./lorem.ts";

/** Puts awaited together: one or a few WAL batches. */
const putsInFlight = 4_096;

async function prepare(dir: string, recordCount: number): Promise<void> {
  const store = await Store.open({
    dir,
    fs: new DenoFs(),
    clock: systemClock,
    logger: createLogger({ level: "warn" }),
    limits: { ...defaultLimits },
    encryption: await loadBuildEncryption(),
    snapshotLimit: 100,
    snapshotIntervalSecs: 3600,
  });
  const startedMs = performance.now();
  for (let start = 0; start < recordCount; start += putsInFlight) {
    const puts: Promise<unknown>[] = [];
    for (let index = start; index < Math.min(recordCount, start + putsInFlight); index += 1) {
      const { key, value } = recordOf(index);
      puts.push(store.put(recordTable, key, value, { owner: "bench" }));
    }
    await Promise.all(puts);
  }
  const writeMs = performance.now() - startedMs;
  await store.close();
  const closeMs = performance.now() - startedMs - writeMs;
  console.log(JSON.stringify({ recordCount, writeMs: Math.round(writeMs), closeMs: Math.round(closeMs) }));
}

if (import.meta.main) {
  const [dir, countText] = Deno.args;
  const recordCount = Number(countText);
  if (dir === undefined || !Number.isSafeInteger(recordCount) || recordCount < 1) {
    console.error("usage: records_prepare.ts <data dir> <record count>");
    Deno.exit(64);
  }
  await prepare(dir, recordCount);
}
