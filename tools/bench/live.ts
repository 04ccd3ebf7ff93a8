/**
 * The live-state scenarios of `deno task bench` besides `live-filter` (`live_filter.ts`): each starts its
 * own dynarust node pinned to CPU0 and reads its streams from this process (pinned to CPU1) with the
 * raw-TCP reader of `live_stream.ts`. Node memory is the node process's VmRSS (`/proc/<pid>/status`), so
 * the clients' memory never counts.
 *
 * - `live-snapshot`: BENCH_RECORDS records (default 100,000) prepared with dynarust's store
 *   (`records_prepare.ts`); a node started on them; after 3 s idle its RSS (median of 10 samples), then one
 *   `GET /lorem/subscribe?snapshot=true` read at full speed until `Synced` while the RSS is sampled every
 *   10 ms: the peak above idle, the time to `Synced`, the records counted. Then the same again on that node,
 *   whose store now holds the table's pages inflated (see `ReadPair`): the peak above idle of that second
 *   read is the target's figure, the stream's own memory. The first read's growth is reported beside it:
 *   the store inflating its cold pages for good, which any first full read pays (the listing's figure shows
 *   it). Baseline: the same two reads on a fresh node with `GET /lorem/store` (the listing the snapshot
 *   pages through).
 * - `live-resume`: two table streams on a fresh node get 100 warm-up changes; one disconnects, 10,000
 *   changes are written (64 writers, 1,000 keys), and it reconnects with `Last-Event-ID` = its last id: the
 *   time from reconnecting to the 10,000th replayed change, checked to be exactly the ids the other stream
 *   got live, in order, with no `Resync`. Baseline: the time the live stream took to get them (first PUT
 *   sent → 10,000th event).
 * - `live-multiplex`: 1,000 streams each multiplexing 10 keys (`/subscribe?key=t/k1&...&key=t/k10`), and
 *   1,000 single-key streams (`/t/subscribe/k1`), each set on a fresh node, in two rounds (single first,
 *   then multiplexed first): the node's RSS 2 s after all are open minus its RSS before (medians of 10
 *   samples), then one write to `t/k1` that every stream must deliver.
 *
 * @module
 */
import { attemptStep, type BenchContext, type Scenario } from "./context.ts";
import { type DynarustNode, registerUser, startDynarust, writeMany } from "./dynarust.ts";
import { deadlineSignal, makeDataDir, removeDataDir, rssMb, sleep, waitUntil } from "./lib.ts";
import { recordTable } from "./lorem.ts";
import { prepareRecords } from "./records.ts";
import { formatCount, formatMs, formatRatio } from "./report.ts";
import { eventNameOf, EventStream, parseFrame } from "./live_stream.ts";

// ---- shared ----

/** A node in a fresh (or given) data dir and the token of the user `bench`. */
interface LiveNode {
  node: DynarustNode;
  token: string;
  pid: number;
  url: string;
}

/**
 * Runs `use` on a node started on `dataDir` (a fresh one when undefined, removed afterwards); the node is
 * stopped whatever happens.
 */
async function withNode<T>(
  options: { name: string; dataDir?: string; env?: Record<string, string> },
  use: (node: LiveNode) => Promise<T>,
): Promise<T> {
  const dataDir = options.dataDir ?? await makeDataDir(options.name);
  try {
    const node = await startDynarust({
      name: options.name,
      dataDir,
      ...(options.env === undefined ? {} : { env: options.env }),
    });
    try {
      const token = await registerUser(node.url, "bench", "bench-secret");
      return await use({ node, token, pid: node.process.pid, url: node.url });
    } finally {
      await node.process.stop();
    }
  } finally {
    if (options.dataDir === undefined) await removeDataDir(dataDir);
  }
}

/** The median of `count` RSS samples (MB) of a process, `intervalMs` apart. */
async function medianRssMb(pid: number, options = { count: 10, intervalMs: 50 }): Promise<number> {
  const samples: number[] = [];
  for (let index = 0; index < options.count; index += 1) {
    if (index > 0) await sleep(options.intervalMs);
    samples.push(rssMb(pid));
  }
  samples.sort((a, b) => a - b);
  const middle = samples.length >> 1;
  return samples.length % 2 === 1 ? samples[middle]! : (samples[middle - 1]! + samples[middle]!) / 2;
}

/** Samples a process's RSS every `intervalMs` until stopped; `stop()` returns the peak (MB). */
function sampleRssPeak(pid: number, intervalMs: number): { stop(): number } {
  let peak = rssMb(pid);
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, rssMb(pid));
    } catch {
      // The process exited: the step fails on its own.
    }
  }, intervalMs);
  return {
    stop: () => {
      clearInterval(timer);
      try {
        peak = Math.max(peak, rssMb(pid));
      } catch {
        // As above.
      }
      return peak;
    },
  };
}

/** Resolves once `done()` is true, checking every 5 ms; rejects after `timeoutMs` naming `what`. */
function waitFor(done: () => boolean, options: { timeoutMs: number; what: string; signal?: AbortSignal }) {
  return waitUntil(() => Promise.resolve(done()), { ...options, intervalMs: 5 });
}

// ---- live-snapshot ----

/** What reading a table once took: node RSS before and at peak (MB), time, records, bytes. */
interface ReadFigures {
  idleRssMb: number;
  peakRssMb: number;
  growthMb: number;
  ms: number;
  recordCount: number;
}

/** How long the node idles after starting before its idle RSS is read. */
const settleMs = 3_000;
/** RSS sampling interval during a read. */
const rssSampleMs = 10;
const snapshotTarget = "the stream's RSS growth ≤ 20 MB";
const snapshotGrowthMbMax = 20;

/** Measures `read` on a node: idle RSS (after `settleMs`), then the RSS peak while `read` runs. */
async function measureRead(
  node: LiveNode,
  read: () => Promise<{ ms: number; recordCount: number }>,
): Promise<ReadFigures> {
  await sleep(settleMs);
  const idleRssMb = await medianRssMb(node.pid);
  const sampler = sampleRssPeak(node.pid, rssSampleMs);
  let peakRssMb = NaN;
  let result: { ms: number; recordCount: number };
  try {
    result = await read();
  } finally {
    peakRssMb = sampler.stop();
  }
  return { idleRssMb, peakRssMb, growthMb: peakRssMb - idleRssMb, ...result };
}

/**
 * A table read twice on one node. The store keeps records in pages that are deflated ("cold") after a
 * restart and inflated at their first read, then kept inflated (`src/store/DESIGN.md`): the first read
 * pays for that, the second shows the read's own memory.
 */
interface ReadPair {
  first: ReadFigures;
  second: ReadFigures;
}

async function measureReadPair(
  node: LiveNode,
  read: () => Promise<{ ms: number; recordCount: number }>,
): Promise<ReadPair> {
  const first = await measureRead(node, read);
  const second = await measureRead(node, read);
  return { first, second };
}

/** `GET /{table}/subscribe?snapshot=true` to `Synced`: the time from connecting and the records counted. */
async function readSnapshot(url: string, signal: AbortSignal): Promise<{ ms: number; recordCount: number }> {
  let recordCount = 0;
  let syncedMs = NaN;
  const startedMs = performance.now();
  const stream = await EventStream.open({
    url,
    path: `/${recordTable}/subscribe?snapshot=true`,
    timeoutMs: 30_000,
    readBytes: 1 << 18,
    onFrame: (text, receivedMs) => {
      const frame = parseFrame(text);
      const name = eventNameOf(frame);
      if (name === "Updated" && frame.id === undefined && Number.isNaN(syncedMs)) recordCount += 1;
      if (name === "Synced" && Number.isNaN(syncedMs)) syncedMs = receivedMs;
    },
  });
  try {
    await waitFor(() => !Number.isNaN(syncedMs), { timeoutMs: 300_000, what: "Synced", signal });
  } finally {
    stream.close();
  }
  return { ms: syncedMs - startedMs, recordCount };
}

/** `GET /{table}/store` read to its end: the time and the records counted (`"version":` members). */
async function readListing(url: string, signal: AbortSignal): Promise<{ ms: number; recordCount: number }> {
  const startedMs = performance.now();
  const response = await fetch(`${url}/${recordTable}/store`, { signal: deadlineSignal(300_000, signal) });
  if (response.status !== 200) {
    await response.body?.cancel();
    throw new Error(`GET /${recordTable}/store answered ${response.status}`);
  }
  const decoder = new TextDecoder();
  const member = '"version":';
  let recordCount = 0;
  let tail = "";
  for await (const bytes of response.body!) {
    const text = tail + decoder.decode(bytes, { stream: true });
    for (let at = text.indexOf(member); at >= 0; at = text.indexOf(member, at + member.length)) {
      recordCount += 1;
    }
    // A member cut between two reads is found in the next one; one whole in the tail was counted.
    tail = text.slice(-(member.length - 1));
  }
  return { ms: performance.now() - startedMs, recordCount };
}

function describeRead(figures: ReadFigures): string {
  return `RSS +${figures.growthMb.toFixed(1)} MB (idle ${figures.idleRssMb.toFixed(0)} → peak ${
    figures.peakRssMb.toFixed(0)
  } MB) · ${formatMs(figures.ms)} · ${formatCount(figures.recordCount)} records`;
}

async function runSnapshot(context: BenchContext): Promise<void> {
  const { settings, report } = context;
  const count = settings.recordCount;
  const label = `live: snapshot of ${formatCount(count)} records (50 words each), read at full speed`;
  const dataDir = await makeDataDir("live_snapshot");
  try {
    const prepared = await attemptStep(
      context,
      { name: `live-snapshot: prepare ${formatCount(count)} records`, expectedSecs: count / 12_000 + 3 },
      () => prepareRecords(dataDir, count),
    );
    if (prepared === undefined) {
      report.unmeasured({ scenario: label, target: snapshotTarget, why: "not measured: step failed" });
      return;
    }
    const readSecs = snapshotReadSecs(count);
    const listing = await attemptStep(
      context,
      { name: "live-snapshot: baseline, GET /lorem/store to its end", expectedSecs: readSecs },
      (signal) =>
        withNode(
          { name: "live-listing", dataDir },
          (node) => measureReadPair(node, () => readListing(node.url, signal)),
        ),
    );
    const snapshot = await attemptStep(
      context,
      { name: "live-snapshot: GET /lorem/subscribe?snapshot=true to Synced", expectedSecs: readSecs },
      (signal) =>
        withNode(
          { name: "live-snapshot", dataDir },
          (node) => measureReadPair(node, () => readSnapshot(node.url, signal)),
        ),
    );
    reportSnapshot(context, { label, count, listing, snapshot });
  } finally {
    await removeDataDir(dataDir);
  }
}

/** Seconds of one node's two reads: its start, two settles, two reads (~50,000 records/s), margin. */
function snapshotReadSecs(recordCount: number): number {
  return 2 * settleMs / 1000 + recordCount * 0.04 / 1000 + recordCount / 50_000 + 2;
}

function reportSnapshot(
  context: BenchContext,
  figures: {
    label: string;
    count: number;
    listing: ReadPair | undefined;
    snapshot: ReadPair | undefined;
  },
): void {
  const { report } = context;
  const { label, count, listing, snapshot } = figures;
  report.record("live-snapshot", { recordCount: count, settleMs, rssSampleMs, listing, snapshot });
  if (snapshot === undefined) {
    report.unmeasured({ scenario: label, target: snapshotTarget, why: "not measured: step failed" });
    return;
  }
  const { first, second } = snapshot;
  report.check({
    scenario: `${label}: the stream's node RSS growth, time to Synced (store pages inflated by a first read)`,
    figure: `${describeRead(second)} · idle RSS ${retainedMb(snapshot)} after the first`,
    ...(listing === undefined ? {} : {
      baseline: `GET /lorem/store, same: ${describeRead(listing.second)} · idle RSS ${
        retainedMb(listing)
      } after the first`,
      ratio: `RSS ${formatRatio(second.growthMb, listing.second.growthMb)} · time ${
        formatRatio(second.ms, listing.second.ms)
      }`,
    }),
    target: snapshotTarget,
    value: second.growthMb,
    unit: "MB",
    met: second.growthMb <= snapshotGrowthMbMax && second.recordCount === count &&
      first.recordCount === count,
  });
  report.info({
    scenario: `${label}: the first read after the node started (the store inflates its cold pages for good)`,
    figure: describeRead(first),
    ...(listing === undefined ? { baseline: "—", ratio: "—" } : {
      baseline: `GET /lorem/store, same: ${describeRead(listing.first)}`,
      ratio: `RSS ${formatRatio(first.growthMb, listing.first.growthMb)} · time ${
        formatRatio(first.ms, listing.first.ms)
      }`,
    }),
  });
}

/** How the idle RSS moved across the first read: `+41.0 MB`. */
function retainedMb(pair: ReadPair): string {
  const retained = pair.second.idleRssMb - pair.first.idleRssMb;
  return `${retained < 0 ? "" : "+"}${retained.toFixed(1)} MB`;
}

/** Scenario `live-snapshot`; see the module doc. */
export const liveSnapshotScenario: Scenario = {
  name: "live-snapshot",
  title: "table snapshot of BENCH_RECORDS records to Synced: node RSS growth and time, vs the listing",
  expectedSecs: (settings) => settings.recordCount / 12_000 + 3 + 2 * snapshotReadSecs(settings.recordCount),
  run: runSnapshot,
};

// ---- live-resume ----

const resumeTable = "res";
const resumeChangeCount = 10_000;
const resumeWarmupCount = 100;
const resumeTarget = "resume of 10,000 changes ≤ 1 s";
const resumeMsMax = 1_000;

/** A table stream that keeps the ids of its `Updated` events and notes a `Resync`. */
class TableListener {
  readonly ids: number[] = [];
  readonly receivedMs: number[] = [];
  resyncCount = 0;
  outOfOrderCount = 0;
  stream: EventStream | undefined;

  /** Opens `GET /res/subscribe` (resuming after `lastEventId` when given). */
  async open(url: string, lastEventId?: number): Promise<void> {
    this.stream = await EventStream.open({
      url,
      path: `/${resumeTable}/subscribe`,
      ...(lastEventId === undefined ? {} : { headers: { "Last-Event-ID": String(lastEventId) } }),
      timeoutMs: 10_000,
      readBytes: 1 << 16,
      onFrame: (text, receivedMs) => this.#onFrame(text, receivedMs),
    });
  }

  #onFrame(text: string, receivedMs: number): void {
    const frame = parseFrame(text);
    const name = eventNameOf(frame);
    if (name === "Resync") this.resyncCount += 1;
    if (name !== "Updated" || frame.id === undefined) return;
    if (this.ids.length > 0 && !(frame.id > this.ids.at(-1)!)) this.outOfOrderCount += 1;
    this.ids.push(frame.id);
    this.receivedMs.push(receivedMs);
  }
}

/** What the resume step measured. */
interface ResumeFigures {
  /** First PUT sent → the live stream's 10,000th event. */
  liveMs: number;
  /** Reconnect started → the 10,000th replayed event. */
  resumeMs: number;
  writeErrorCount: number;
  replayedCount: number;
  /** The replayed ids are the live stream's ids, in the same order. */
  sameIds: boolean;
  resyncCount: number;
  outOfOrderCount: number;
}

async function measureResume(node: LiveNode, signal: AbortSignal): Promise<ResumeFigures> {
  const live = new TableListener();
  const leaving = new TableListener();
  const resumed = new TableListener();
  try {
    await live.open(node.url);
    await leaving.open(node.url);
    const write = (count: number, valueOf: (index: number) => { key: string; value: unknown }) =>
      writeMany(
        { url: node.url, token: node.token, table: resumeTable, count, concurrency: 64 },
        valueOf,
        signal,
      );
    await write(resumeWarmupCount, (index) => ({ key: `w${index}`, value: { warmup: index } }));
    const warmedUp = () => live.ids.length >= resumeWarmupCount && leaving.ids.length >= resumeWarmupCount;
    await waitFor(warmedUp, { timeoutMs: 10_000, what: "the warm-up changes", signal });
    const lastEventId = leaving.ids.at(-1)!;
    leaving.stream?.close();
    const startedMs = performance.now();
    const { errorCount } = await write(resumeChangeCount, (index) => ({
      key: `k${index % 1_000}`,
      value: { n: index },
    }));
    const total = resumeWarmupCount + resumeChangeCount - errorCount;
    await waitFor(() => live.ids.length >= total, { timeoutMs: 30_000, what: "the live changes", signal });
    const liveMs = live.receivedMs[total - 1]! - startedMs;
    // The change log writes its batch within 20 ms: the replay reads the log, not unwritten records.
    await sleep(500);
    const expected = live.ids.slice(resumeWarmupCount);
    const resumeStartedMs = performance.now();
    await resumed.open(node.url, lastEventId);
    const replayed = () => resumed.ids.length >= expected.length || resumed.resyncCount > 0;
    await waitFor(replayed, { timeoutMs: 30_000, what: "the replay", signal });
    const resumeMs = (resumed.receivedMs[expected.length - 1] ?? NaN) - resumeStartedMs;
    const got = resumed.ids.slice(0, expected.length);
    return {
      liveMs,
      resumeMs,
      writeErrorCount: errorCount,
      replayedCount: resumed.ids.length,
      sameIds: got.length === expected.length && got.every((id, index) => id === expected[index]),
      resyncCount: resumed.resyncCount,
      outOfOrderCount: resumed.outOfOrderCount + live.outOfOrderCount,
    };
  } finally {
    for (const listener of [live, leaving, resumed]) listener.stream?.close();
  }
}

async function runResume(context: BenchContext): Promise<void> {
  const { report } = context;
  const label = `live: table stream resumed with Last-Event-ID after ${
    formatCount(resumeChangeCount)
  } changes`;
  const figures = await attemptStep(
    context,
    { name: `live-resume: ${formatCount(resumeChangeCount)} changes missed, then resumed`, expectedSecs: 5 },
    (signal) => withNode({ name: "live-resume" }, (node) => measureResume(node, signal)),
  );
  if (figures === undefined) {
    report.unmeasured({ scenario: label, target: resumeTarget, why: "not measured: step failed" });
    return;
  }
  report.record("live-resume", {
    changeCount: resumeChangeCount,
    warmupCount: resumeWarmupCount,
    ...figures,
  });
  const exact = figures.sameIds && figures.resyncCount === 0 && figures.outOfOrderCount === 0 &&
    figures.replayedCount === resumeChangeCount - figures.writeErrorCount && figures.writeErrorCount === 0;
  const check = exact
    ? "exact: the live stream's ids, in order"
    : `NOT exact: ${formatCount(figures.replayedCount)} replayed, same ids ${figures.sameIds}, ` +
      `${figures.resyncCount} Resync, ${figures.outOfOrderCount} out of order, ` +
      `${figures.writeErrorCount} PUT errors`;
  report.check({
    scenario: `${label}: reconnect → last missed change received`,
    figure: `${formatMs(figures.resumeMs)} · ${check}`,
    baseline: `received live: ${formatMs(figures.liveMs)} (first PUT sent → last event)`,
    ratio: formatRatio(figures.resumeMs, figures.liveMs),
    target: resumeTarget,
    value: figures.resumeMs,
    unit: "ms",
    met: figures.resumeMs <= resumeMsMax && exact,
  });
}

/** Scenario `live-resume`; see the module doc. */
export const liveResumeScenario: Scenario = {
  name: "live-resume",
  title: "a table stream resumed with Last-Event-ID after 10,000 changes, vs receiving them live",
  expectedSecs: () => 5,
  run: runResume,
};

// ---- live-multiplex ----

const multiplexStreamCount = 1_000;
const multiplexKeyCount = 10;
const multiplexTarget = "multiplexed RSS ≤ 1.2× single-key RSS";
const multiplexRatioMax = 1.2;
/** Rounds of the two modes: single first, then multiplexed first. */
const multiplexRounds = 2;
const multiplexTable = "t";

type StreamMode = "single" | "multiplexed";

/** What one set of 1,000 streams cost the node. */
interface StreamSetFigures {
  mode: StreamMode;
  idleRssMb: number;
  openRssMb: number;
  growthMb: number;
  openMs: number;
  serverStreamCount: number | null;
  deliveredCount: number;
}

function streamPath(mode: StreamMode): string {
  if (mode === "single") return `/${multiplexTable}/subscribe/k1`;
  const keys = Array.from({ length: multiplexKeyCount }, (_, index) => `key=${multiplexTable}/k${index + 1}`);
  return `/subscribe?${keys.join("&")}`;
}

async function serverStreamCount(url: string): Promise<number | null> {
  try {
    const response = await fetch(`${url}/stats`, { signal: AbortSignal.timeout(5_000) });
    return (await response.json() as { active_sse_connections?: number }).active_sse_connections ?? null;
  } catch {
    return null;
  }
}

/** Opens `multiplexStreamCount` streams of `mode`, 100 at a time; each counts `ready` and `Updated`. */
async function openStreams(
  url: string,
  mode: StreamMode,
  counts: { ready: number; updated: number[] },
): Promise<EventStream[]> {
  const streams: EventStream[] = [];
  const path = streamPath(mode);
  for (let start = 0; start < multiplexStreamCount; start += 100) {
    const batch = Array.from({ length: Math.min(100, multiplexStreamCount - start) }, (_, offset) => {
      const index = start + offset;
      return EventStream.open({
        url,
        path,
        timeoutMs: 10_000,
        readBytes: 4_096,
        onFrame: (text) => {
          const frame = parseFrame(text);
          if (frame.event === "ready") counts.ready += 1;
          else if (eventNameOf(frame) === "Updated") counts.updated[index]! += 1;
        },
      });
    });
    const opened = await Promise.allSettled(batch);
    for (const outcome of opened) if (outcome.status === "fulfilled") streams.push(outcome.value);
    const failed = opened.find((outcome) => outcome.status === "rejected");
    if (failed !== undefined) {
      for (const stream of streams) stream.close();
      throw (failed as PromiseRejectedResult).reason;
    }
  }
  return streams;
}

async function measureStreamSet(
  node: LiveNode,
  mode: StreamMode,
  signal: AbortSignal,
): Promise<StreamSetFigures> {
  const preload = await writeMany(
    { url: node.url, token: node.token, table: multiplexTable, count: multiplexKeyCount, concurrency: 10 },
    (index) => ({ key: `k${index + 1}`, value: { n: index } }),
    signal,
  );
  if (preload.errorCount > 0) throw new Error(`${preload.errorCount} preload PUTs failed`);
  await sleep(settleMs);
  const idleRssMb = await medianRssMb(node.pid);
  const counts = { ready: 0, updated: new Array<number>(multiplexStreamCount).fill(0) };
  const startedMs = performance.now();
  const streams = await openStreams(node.url, mode, counts);
  try {
    await waitFor(() => counts.ready >= multiplexStreamCount, { timeoutMs: 30_000, what: "ready", signal });
    const openMs = performance.now() - startedMs;
    await sleep(2_000);
    const openRssMb = await medianRssMb(node.pid);
    const streamCount = await serverStreamCount(node.url);
    await writeMany(
      { url: node.url, token: node.token, table: multiplexTable, count: 1, concurrency: 1 },
      () => ({ key: "k1", value: { n: -1 } }),
      signal,
    );
    const deliveredCount = () => counts.updated.filter((count) => count > 0).length;
    await waitFor(() => deliveredCount() === multiplexStreamCount, { timeoutMs: 10_000, what: "k1", signal })
      .catch(() => {});
    return {
      mode,
      idleRssMb,
      openRssMb,
      growthMb: openRssMb - idleRssMb,
      openMs,
      serverStreamCount: streamCount,
      deliveredCount: deliveredCount(),
    };
  } finally {
    for (const stream of streams) stream.close();
  }
}

function averageGrowthMb(sets: readonly StreamSetFigures[]): number {
  return sets.reduce((sum, set) => sum + set.growthMb, 0) / sets.length;
}

function describeStreamSets(sets: readonly StreamSetFigures[]): string {
  const growth = averageGrowthMb(sets);
  const perStreamKb = growth * 1_000 / multiplexStreamCount;
  const delivered = sets.map((set) => set.deliveredCount).join(", ");
  return `RSS +${growth.toFixed(1)} MB (${perStreamKb.toFixed(1)} KB a stream; rounds ${
    sets.map((set) => `+${set.growthMb.toFixed(1)}`).join(", ")
  } MB) · write to k1 delivered to ${delivered} of ${formatCount(multiplexStreamCount)}`;
}

async function runMultiplex(context: BenchContext): Promise<void> {
  const { report } = context;
  const sets: Record<StreamMode, StreamSetFigures[]> = { single: [], multiplexed: [] };
  let failed = false;
  for (let round = 0; round < multiplexRounds; round += 1) {
    const order: StreamMode[] = round % 2 === 0 ? ["single", "multiplexed"] : ["multiplexed", "single"];
    for (const mode of order) {
      const figures = await attemptStep(
        context,
        { name: `live-multiplex: ${formatCount(multiplexStreamCount)} ${mode} streams`, expectedSecs: 8 },
        (signal) => withNode({ name: `live-${mode}` }, (node) => measureStreamSet(node, mode, signal)),
      );
      if (figures === undefined) failed = true;
      else sets[mode].push(figures);
    }
  }
  report.record("live-multiplex", {
    streamCount: multiplexStreamCount,
    keyCount: multiplexKeyCount,
    ...sets,
  });
  const label = `live: ${formatCount(multiplexStreamCount)} streams of ${multiplexKeyCount} keys each ` +
    `(/subscribe?key=…) vs 1 key each, node RSS above idle (mean of ${multiplexRounds} fresh nodes)`;
  if (failed) {
    report.unmeasured({ scenario: label, target: multiplexTarget, why: "not measured: step failed" });
    return;
  }
  const single = averageGrowthMb(sets.single);
  const multiplexed = averageGrowthMb(sets.multiplexed);
  const allDelivered = [...sets.single, ...sets.multiplexed].every((set) =>
    set.deliveredCount === multiplexStreamCount
  );
  report.check({
    scenario: label,
    figure: `multiplexed ${describeStreamSets(sets.multiplexed)}`,
    baseline: `single-key ${describeStreamSets(sets.single)}`,
    ratio: formatRatio(multiplexed, single),
    target: multiplexTarget,
    value: multiplexed / single,
    unit: "× single-key RSS growth",
    met: multiplexed / single <= multiplexRatioMax && allDelivered,
  });
}

/** Scenario `live-multiplex`; see the module doc. */
export const liveMultiplexScenario: Scenario = {
  name: "live-multiplex",
  title: "1,000 streams multiplexing 10 keys each vs 1,000 single-key streams: node RSS",
  expectedSecs: () => 2 * multiplexRounds * 8,
  run: runMultiplex,
};
