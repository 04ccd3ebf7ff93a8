/**
 * One chaos run, start to verdict: start the cluster, register the users, subscribe on every node, create the
 * keys, run the clients while the nemesis works, heal, wait for convergence, then check the history and the
 * streams and print the report.
 */
import { Random } from "../helpers/seed.ts";
import { waitFor } from "../helpers/wait_for.ts";
import { ChaosCluster } from "./cluster.ts";
import { chaosTable, Workload } from "./clients.ts";
import { type ChaosConfig, replayLine } from "./config.ts";
import { checkHistory, checkStream, type FinalState, isStringList, type StreamCheck } from "./checker.ts";
import { Nemesis } from "./nemesis.ts";
import { Network } from "./network.ts";
import { formatReport, streamSentencesMax } from "./report.ts";
import { type KeySubscriber, subscribeAll } from "./subscribers.ts";

/** The verdict of a run. */
export interface ChaosResult {
  report: string;
  failures: string[];
  lostCount: number;
  acknowledgedCount: number;
}

/** Runs one seed; `log` gets the nemesis's running commentary. */
export async function runChaos(config: ChaosConfig, log: (line: string) => void): Promise<ChaosResult> {
  if (!Network.available()) {
    throw new Error("the chaos suite needs Linux /proc/net/tcp to tell which node opened a connection");
  }
  const startedMs = performance.now();
  await using cluster = await ChaosCluster.start(config.nodeCount);
  const keys = Array.from({ length: config.keyCount }, (_, index) => `k${index}`);
  const workload = new Workload(cluster, keys);
  await workload.register();
  const subscribers = subscribeAll(cluster, { nodes: cluster.coreNames(), keys });
  try {
    await waitFor(() => subscribers.every((subscriber) => subscriber.ready()), {
      timeoutMs: 30_000,
      what: "every subscriber's ready block",
    });
    await workload.createKeys(await workload.loginAs({ intruder: false, node: cluster.coreNames()[0]! }));
    const nemesis = new Nemesis({
      cluster,
      network: new Network(cluster),
      random: new Random(config.seed),
      kinds: config.kinds,
      log,
    });
    await runLoad({ config, cluster, workload, nemesis });
    const converged = await converge(cluster, keys);
    await waitFor(() => subscribers.every((subscriber) => caughtUp(subscriber, converged.finals)), {
      timeoutMs: 30_000,
      what: "every subscriber to be shown its key's final version",
    }).catch(() => {}); // checkStream reports who was not
    const result = verdict({ config, cluster, workload, nemesis, subscribers, converged, startedMs });
    if (result.failures.length > 0) {
      const path = await dumpRecords({ config, workload, nemesis, subscribers, finals: converged.finals });
      result.report += `\n  records of this run: ${path}`;
    }
    return result;
  } finally {
    for (const subscriber of subscribers) subscriber.close();
  }
}

/** Clients (one of them the intruder) run while the nemesis does; they stop once it has healed all. */
async function runLoad(options: {
  config: ChaosConfig;
  cluster: ChaosCluster;
  workload: Workload;
  nemesis: Nemesis;
}): Promise<void> {
  const { config, cluster, workload } = options;
  const core = cluster.coreNames();
  const stop = new AbortController();
  const names = Array.from({ length: config.clientCount + 1 }, (_, index) => `c${index + 1}`);
  const tokens = await Promise.all(
    names.map((_, index) =>
      workload.loginAs({ intruder: index === config.clientCount, node: core[index % core.length]! })
    ),
  );
  const clients = names.map((name, index) =>
    workload.runClient({
      name: index === config.clientCount ? "intruder" : name,
      random: new Random((config.seed ^ Math.imul(index + 1, 0x9e3779b9)) >>> 0),
      token: tokens[index]!,
      intruder: index === config.clientCount,
      stop: stop.signal,
    })
  );
  try {
    await options.nemesis.run(config.nemesisSecs * 1_000);
  } finally {
    stop.abort();
    await Promise.all(clients);
  }
}

/** Final states once every node agrees; problems when membership or a key did not converge in time. */
interface Converged {
  finals: Map<string, FinalState>;
  problems: string[];
}

async function converge(cluster: ChaosCluster, keys: readonly string[]): Promise<Converged> {
  const problems: string[] = [];
  await cluster.waitMembership(60_000).catch(() => problems.push("membership did not converge within 60 s"));
  const finals = new Map<string, FinalState>();
  for (const key of keys) {
    let views: Array<string | undefined> = [];
    const agreed = await waitFor(async () => {
      views = await Promise.all(
        cluster.liveNames().flatMap((node) => [
          readFinal(cluster, { node, key, consistent: false }),
          readFinal(cluster, { node, key, consistent: true }),
        ]),
      );
      return views[0] !== undefined && views.every((view) => view === views[0]);
    }, { timeoutMs: 60_000, intervalMs: 200, what: `${key} to converge` }).then(() => true, () => false);
    if (!agreed) problems.push(`${key} did not converge within 60 s: ${[...new Set(views)].join(" | ")}`);
    const chosen = mostCommon(views.filter((view) => view !== undefined));
    if (chosen !== undefined) finals.set(key, JSON.parse(chosen));
  }
  return { finals, problems };
}

/** A node's answer for `key` as the JSON of a FinalState, or undefined when it gave none. */
async function readFinal(
  cluster: ChaosCluster,
  options: { node: string; key: string; consistent: boolean },
): Promise<string | undefined> {
  const query = options.consistent ? "?consistent=true" : "";
  try {
    const response = await cluster.fetch(options.node, `/${chaosTable}/key/${options.key}${query}`, {
      timeoutMs: 5_000,
    });
    if (response.status === 404) {
      await response.body?.cancel();
      return JSON.stringify({ version: 0, writes: [] });
    }
    if (response.status !== 200) {
      await response.body?.cancel();
      return undefined;
    }
    const body = await response.json();
    const writes = body?.value?.writes;
    return isStringList(writes) ? JSON.stringify({ version: body.version, writes }) : undefined;
  } catch {
    return undefined;
  }
}

function mostCommon(values: readonly string[]): string | undefined {
  const counts = new Map<string, number>();
  for (const value of values) counts.set(value, (counts.get(value) ?? 0) + 1);
  return [...counts].sort((a, b) => b[1] - a[1])[0]?.[0];
}

function caughtUp(subscriber: KeySubscriber, finals: ReadonlyMap<string, FinalState>): boolean {
  const final = finals.get(subscriber.key);
  return final === undefined || (subscriber.lastVersion() ?? 0) >= final.version;
}

function verdict(options: {
  config: ChaosConfig;
  cluster: ChaosCluster;
  workload: Workload;
  nemesis: Nemesis;
  subscribers: readonly KeySubscriber[];
  converged: Converged;
  startedMs: number;
}): ChaosResult {
  const { cluster, workload, nemesis, converged } = options;
  const history = checkHistory(workload.attempts, converged.finals);
  const failures = [...nemesis.problems, ...converged.problems, ...history.findings.texts];
  const streams: StreamCheck[] = [];
  for (const subscriber of options.subscribers) {
    const check = checkStream(subscriber.entries, converged.finals.get(subscriber.key));
    streams.push(check);
    const label = `SSE ${subscriber.node}/${subscriber.key}`;
    const texts = check.findings.texts;
    failures.push(...texts.slice(0, streamSentencesMax).map((text) => `${label}: ${text}`));
    const more = texts.length - streamSentencesMax;
    if (more > 0) failures.push(`${label}: … and ${more} more violations`);
  }
  for (const exit of cluster.unexpectedExits) {
    failures.push(`${exit.name} exited unexpectedly (code ${exit.code}, ${exit.signal}): ${exit.stderrTail}`);
  }
  for (const name of cluster.coreNames()) {
    if (!cluster.liveNames().includes(name)) failures.push(`${name} is not running at the end`);
  }
  if (history.acknowledged === 0) failures.push("no write was acknowledged: the run checked nothing");
  const report = formatReport({
    replay: replayLine(options.config),
    spans: nemesis.spans,
    attempts: workload.attempts,
    history,
    readFailures: workload.readFailures,
    streams,
    failures,
    notes: nemesis.notes,
    elapsedSecs: (performance.now() - options.startedMs) / 1_000,
  });
  return { report, failures, lostCount: history.lost.length, acknowledgedCount: history.acknowledged };
}

/** Writes everything recorded to a JSON file for a post-mortem; returns its path. */
export async function dumpRecords(options: {
  config: ChaosConfig;
  workload: Workload;
  nemesis: Nemesis;
  subscribers: readonly KeySubscriber[];
  finals: ReadonlyMap<string, FinalState>;
}): Promise<string> {
  const dir = Deno.env.get("CHAOS_DUMP_DIR") ?? await Deno.makeTempDir({ prefix: "dynarust_chaos_dump_" });
  const path = `${dir}/chaos_${options.config.seed}.json`;
  await Deno.writeTextFile(
    path,
    JSON.stringify({
      config: options.config,
      finals: Object.fromEntries(options.finals),
      spans: options.nemesis.spans,
      attempts: options.workload.attempts,
      streams: options.subscribers.map((subscriber) => ({
        node: subscriber.node,
        key: subscriber.key,
        entries: subscriber.entries,
      })),
    }),
  );
  return path;
}
