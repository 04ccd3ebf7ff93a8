// Goal: issue 4 item 1 and SPEC §6: a node SIGKILLed at random moments under concurrent write load loses no
// acknowledged write, never rolls a key back to an older version, never resurrects an acknowledged delete,
// and recovers in bounded time.
// Method: one data dir, `KV_FAULT_KILLS` rounds (default 50). Each round starts `main.ts` as a child, checks
// with GETs every key against a model of what was acknowledged, then 16 writers PUT, PATCH and DELETE random
// keys among a few hundred while a seeded delay (0–300 ms) runs out, and the child is SIGKILLed. An 8 KiB
// WAL checkpoint size puts checkpoints and WAL truncations inside the kill windows. A key has at most one
// write in flight, so the check is exact: the last acknowledged state, or what the one unanswered write
// would have made. Seeded with `KV_TEST_SEED`; recovery time is spawn → `/health` 200.
import assert from "node:assert/strict";
import { NodeProcess, tokenFor } from "../helpers/node_process.ts";
import { Random } from "../helpers/seed.ts";
import { waitFor } from "../helpers/wait_for.ts";

const table = "crash";
const user = "crasher";
const keyCount = 300;
const writerCount = 16;
const killDelayMsMax = 300;
const nodeEnv: Record<string, string> = {
  // Fixed, so the token of the first start stays valid after every restart.
  JWT_SECRET: "crash-loop-test-jwt-secret-0123456789abcdef",
  DYNA_LOG: "error",
  // A checkpoint every few dozen writes, so most kill windows hold one (the default is 64 MiB).
  DYNA_REQUEST_BYTES_MAX: "4096",
  DYNA_WAL_CHECKPOINT_BYTES: "8192",
};

/** Kills per run: `KV_FAULT_KILLS`, default 50. */
function killsFromEnv(): number {
  const given = Deno.env.get("KV_FAULT_KILLS");
  if (given === undefined || given === "") return 50;
  const kills = Number(given);
  if (!Number.isInteger(kills) || kills < 1) {
    throw new Error(`KV_FAULT_KILLS=${given}: expected an integer ≥ 1`);
  }
  return kills;
}

type OpKind = "put" | "patch" | "delete";

/** What the client last saw acknowledged for one key. `op` names the write whose value is live. */
type KeyState =
  | { live: true; version: number; op: number }
  | { live: false; versionAtLeast: number };

/** A write whose connection broke before an answer: it may or may not have been applied. */
interface Unknown {
  kind: OpKind;
  op: number;
}

interface Totals {
  acknowledged: Record<OpKind, number>;
  keyChecks: number;
  lost: number;
  recoveryMs: number[];
}

/** A round's failure, fatal for the run. */
class Violation extends Error {}

function keyName(index: number): string {
  return `k${index.toString().padStart(3, "0")}`;
}

function describe(state: KeyState | undefined): string {
  if (state === undefined) return "never written";
  return state.live
    ? `live v${state.version} op ${state.op}`
    : `deleted (tombstone ≥ v${state.versionAtLeast})`;
}

function versionOf(response: Response): number {
  const etag = response.headers.get("etag");
  const version = etag === null ? NaN : Number(etag.replaceAll('"', ""));
  if (!Number.isInteger(version)) throw new Violation(`no version in ETag ${etag}`);
  return version;
}

/** Starts a node on `dataDir` and returns it with spawn → `/health` 200 in ms. */
async function startNode(dataDir: string): Promise<{ node: NodeProcess; recoveryMs: number }> {
  const started = performance.now();
  const node = await NodeProcess.start({ dataDir, env: nodeEnv });
  await waitFor(async () => {
    const response = await node.fetch("/health");
    await response.body?.cancel();
    return response.status === 200;
  }, { timeoutMs: 30_000, intervalMs: 5, what: "/health 200 after restart" });
  return { node, recoveryMs: performance.now() - started };
}

/**
 * Reads every key the model knows, or that had a write in flight at the kill, and compares it with what
 * was acknowledged. Returns the violations; updates the model to what the node holds.
 */
async function checkRound(
  node: NodeProcess,
  model: Map<string, KeyState>,
  unknown: Map<string, Unknown>,
  totals: Totals,
): Promise<string[]> {
  const keys = [...new Set([...model.keys(), ...unknown.keys()])].sort();
  const violations: string[] = [];
  let next = 0;
  const readers = Array.from({ length: writerCount }, async () => {
    while (next < keys.length) {
      const key = keys[next++]!;
      const response = await node.fetch(`/${table}/key/${key}`);
      const acknowledged = model.get(key);
      const maybe = unknown.get(key);
      totals.keyChecks += 1;
      let observed: KeyState;
      let observedText: string;
      if (response.status === 404) {
        await response.body?.cancel();
        const floor = acknowledged === undefined
          ? 0
          : acknowledged.live
          ? acknowledged.version + 1
          : acknowledged.versionAtLeast;
        observed = { live: false, versionAtLeast: floor };
        observedText = "404";
      } else if (response.status === 200) {
        const body = await response.json() as { value: { op?: number }; version: number; owner: string };
        observed = { live: true, version: body.version, op: Number(body.value.op) };
        observedText = `live v${body.version} op ${body.value.op} owner ${body.owner}`;
        if (body.owner !== user || versionOf(response) !== body.version) {
          violations.push(`${key}: bad entry ${JSON.stringify(body)} (ETag ${response.headers.get("etag")})`);
        }
      } else {
        violations.push(`${key}: GET answered ${response.status}: ${await response.text()}`);
        continue;
      }
      if (!allowed(acknowledged, maybe, observed)) {
        totals.lost += 1;
        const inFlight = maybe === undefined ? "none" : `${maybe.kind} op ${maybe.op}`;
        violations.push(
          `${key}: acknowledged ${describe(acknowledged)}, in flight at the kill ${inFlight}, ` +
            `node holds ${observedText}`,
        );
      }
      model.set(key, observed);
    }
  });
  await Promise.all(readers);
  unknown.clear();
  // A key never written and still absent needs no state.
  for (const [key, state] of model) if (!state.live && state.versionAtLeast === 0) model.delete(key);
  return violations;
}

/** Whether `observed` is what an acknowledged state plus at most the one unanswered write can give. */
function allowed(
  acknowledged: KeyState | undefined,
  maybe: Unknown | undefined,
  observed: KeyState,
): boolean {
  const floor = acknowledged === undefined
    ? 0
    : acknowledged.live
    ? acknowledged.version
    : acknowledged.versionAtLeast;
  if (!observed.live) {
    // Absent: fine if it was deleted (or never written), or if the unanswered write was a delete.
    return acknowledged === undefined || !acknowledged.live || maybe?.kind === "delete";
  }
  if (acknowledged?.live === true && observed.op === acknowledged.op) {
    return observed.version === acknowledged.version;
  }
  if (maybe !== undefined && maybe.kind !== "delete" && observed.op === maybe.op) {
    // A patch of an absent key is a 404 and changes nothing.
    if (maybe.kind === "patch" && acknowledged?.live !== true) return false;
    return observed.version > floor;
  }
  return false;
}

/**
 * One burst: `writerCount` writers on disjoint keys (a key has at most one write in flight, so what was
 * acknowledged last is well defined) until the node is killed after `delayMs`.
 */
async function burst(options: {
  node: NodeProcess;
  token: string;
  random: Random;
  delayMs: number;
  model: Map<string, KeyState>;
  unknown: Map<string, Unknown>;
  totals: Totals;
  nextOp: () => number;
}): Promise<string[]> {
  const { node, token, random, model, unknown, totals } = options;
  const violations: string[] = [];
  const busy = new Set<string>();
  let stopped = false;
  const writers = Array.from({ length: writerCount }, async () => {
    while (!stopped) {
      let key = keyName(random.int(keyCount));
      while (busy.has(key)) key = keyName(random.int(keyCount));
      busy.add(key);
      const roll = random.next();
      const kind: OpKind = roll < 0.6 ? "put" : roll < 0.8 ? "patch" : "delete";
      const op = options.nextOp();
      const value = kind === "put"
        ? { op, pad: "x".repeat(random.int(200)) }
        : { op, patched: random.int(1000) };
      let response: Response;
      try {
        response = await node.fetch(`/${table}/key/${key}`, {
          method: kind.toUpperCase(),
          headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
          ...(kind === "delete" ? {} : { body: JSON.stringify({ value }) }),
        });
      } catch {
        unknown.set(key, { kind, op }); // the node died under this write; the key stays busy
        return;
      }
      await response.body?.cancel().catch(() => {});
      const before = model.get(key);
      if ((kind === "put" || kind === "patch") && response.status === 201) {
        const version = versionOf(response);
        const floor = before === undefined ? 0 : before.live ? before.version : before.versionAtLeast;
        if (version <= floor) {
          violations.push(`${key}: ${kind} op ${op} acknowledged v${version} after ${describe(before)}`);
        }
        model.set(key, { live: true, version, op });
        totals.acknowledged[kind] += 1;
      } else if (kind === "delete" && response.status === 200) {
        if (before?.live !== true) violations.push(`${key}: delete acknowledged on ${describe(before)}`);
        const versionAtLeast = before === undefined
          ? 1
          : before.live
          ? before.version + 1
          : before.versionAtLeast;
        model.set(key, { live: false, versionAtLeast });
        totals.acknowledged.delete += 1;
      } else if ((kind === "patch" || kind === "delete") && response.status === 404) {
        if (before?.live === true) violations.push(`${key}: ${kind} op ${op} got 404 on ${describe(before)}`);
      } else {
        violations.push(`${key}: ${kind} op ${op} answered ${response.status}`);
      }
      busy.delete(key);
    }
  });
  await new Promise((resolve) => setTimeout(resolve, options.delayMs));
  stopped = true; // no new write starts; the ones in flight race the kill
  await node.stop("SIGKILL");
  await Promise.all(writers);
  return violations;
}

function percentile(sorted: number[], fraction: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))]!;
}

/** `heading`, then the first 20 of `violations`, one a line, and how many more there are. */
function listed(heading: string, violations: string[]): string {
  return `${heading}:\n  ${violations.slice(0, 20).join("\n  ")}` +
    (violations.length > 20 ? `\n  ... and ${violations.length - 20} more` : "");
}

/** Prints the run's seed, kills, acknowledged writes, key checks, losses, recovery times and runtime. */
function printSummary(seed: number, kills: number, totals: Totals, startedAt: number): void {
  const acknowledged = totals.acknowledged.put + totals.acknowledged.patch + totals.acknowledged.delete;
  const sorted = [...totals.recoveryMs].sort((a, b) => a - b);
  const seconds = ((performance.now() - startedAt) / 1000).toFixed(1);
  console.log(
    `crash loop: KV_TEST_SEED=${seed} kills=${kills} acknowledged writes=${acknowledged} ` +
      `(put ${totals.acknowledged.put}, patch ${totals.acknowledged.patch}, ` +
      `delete ${totals.acknowledged.delete}) ` +
      `key checks=${totals.keyChecks} lost=${totals.lost} recovery ms min/p50/max=` +
      `${sorted[0]!.toFixed(0)}/${percentile(sorted, 0.5).toFixed(0)}/${sorted.at(-1)!.toFixed(0)} ` +
      `runtime=${seconds}s`,
  );
}

Deno.test("crash loop: SIGKILL at random moments under write load loses no acknowledged write", async () => {
  const random = Random.fromEnv("crash loop");
  // Kill delays get their own stream, so a replay kills at the same moments whatever the writers drew.
  const delays = new Random(random.seed ^ 0x9e3779b9);
  const kills = killsFromEnv();
  const replay = `KV_TEST_SEED=${random.seed} KV_FAULT_KILLS=${kills}`;
  const dataDir = await Deno.makeTempDir({ prefix: "dynarust_crash_loop_" });
  const model = new Map<string, KeyState>();
  const unknown = new Map<string, Unknown>();
  const totals: Totals = {
    acknowledged: { put: 0, patch: 0, delete: 0 },
    keyChecks: 0,
    lost: 0,
    recoveryMs: [],
  };
  let op = 0;
  const startedAt = performance.now();
  let token = "";
  try {
    for (let round = 0; round <= kills; round += 1) {
      const { node, recoveryMs } = await startNode(dataDir);
      try {
        if (round > 0) totals.recoveryMs.push(recoveryMs);
        if (round === 0) token = await tokenFor(node, user);
        const checked = await checkRound(node, model, unknown, totals);
        if (checked.length > 0) {
          throw new Violation(listed(`after kill ${round} of ${kills} (${replay})`, checked));
        }
        if (round === kills) {
          assert.equal((await node.stop("SIGTERM")).code, 0, `final SIGTERM exits 0 (${replay})`);
          break;
        }
        const delayMs = delays.int(killDelayMsMax + 1);
        const seen = await burst({
          node,
          token,
          random,
          delayMs,
          model,
          unknown,
          totals,
          nextOp: () => ++op,
        });
        if (seen.length > 0) {
          throw new Violation(`during burst ${round + 1} (${replay}):\n  ${seen.slice(0, 20).join("\n  ")}`);
        }
      } catch (error) {
        await node.stop("SIGKILL");
        const stderr = (await node.stderrText().catch(() => "")).slice(-4000);
        if (stderr !== "") console.error(`node stderr (start ${round + 1}):\n${stderr}`);
        throw error;
      } finally {
        await node[Symbol.asyncDispose]();
      }
    }
  } catch (error) {
    console.error(`crash loop FAILED; replay with ${replay}`);
    throw error;
  } finally {
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
  const acknowledged = totals.acknowledged.put + totals.acknowledged.patch + totals.acknowledged.delete;
  printSummary(random.seed, kills, totals, startedAt);
  assert.equal(totals.lost, 0, `lost acknowledged writes (${replay})`);
  assert.ok(
    acknowledged >= kills,
    `the load acknowledged ${acknowledged} writes over ${kills} kills (${replay})`,
  );
});
