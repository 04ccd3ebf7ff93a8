/**
 * The knobs of a chaos run, read once from the environment (the test's own, never the nodes'):
 * `CHAOS_SEED`, `CHAOS_SEEDS`, `CHAOS_SECS`, `CHAOS_NEMESIS`, `CHAOS_CLIENTS`, `CHAOS_KEYS`. README.md in
 * this folder says what each does.
 */

/** Every fault the nemesis knows; `CHAOS_NEMESIS` picks a subset. */
export const faultKinds = [
  "kill",
  "pause",
  "leave",
  "join",
  "isolate-one",
  "isolate-two",
  "split",
  "one-way",
  "bridge",
  "ring",
] as const;

/** One kind of fault. */
export type FaultKind = typeof faultKinds[number];

const clientCountDefault = 5;
const keyCountDefault = 5;

/** The settings of one run. */
export interface ChaosConfig {
  seed: number;
  /** How long the nemesis runs, in seconds (clients run as long, plus the set-up). */
  nemesisSecs: number;
  /** The kinds the nemesis may choose; empty for a run without faults. */
  kinds: readonly FaultKind[];
  clientCount: number;
  keyCount: number;
  /** Nodes of the cluster (not counting the 6th that joins and leaves). */
  nodeCount: number;
}

/** The configs of the seeds to run: `CHAOS_SEEDS` of them, the first `CHAOS_SEED` or random. */
export function chaosConfigsFromEnv(env: (name: string) => string | undefined): ChaosConfig[] {
  const seedCount = positiveInteger(env("CHAOS_SEEDS") ?? "1", "CHAOS_SEEDS");
  const given = env("CHAOS_SEED");
  const first = given === undefined ? Math.floor(Math.random() * 2 ** 32) : Number(given);
  if (!Number.isSafeInteger(first) || first < 0 || first >= 2 ** 32) {
    throw new Error(`CHAOS_SEED must be an integer in [0, 2^32), got ${JSON.stringify(given)}`);
  }
  const base = {
    nemesisSecs: positiveInteger(env("CHAOS_SECS") ?? "180", "CHAOS_SECS"),
    kinds: kindsOf(env("CHAOS_NEMESIS") ?? "all"),
    clientCount: positiveInteger(env("CHAOS_CLIENTS") ?? String(clientCountDefault), "CHAOS_CLIENTS"),
    keyCount: positiveInteger(env("CHAOS_KEYS") ?? String(keyCountDefault), "CHAOS_KEYS"),
    nodeCount: 5,
  };
  return Array.from({ length: seedCount }, (_, index) => ({ ...base, seed: (first + index) >>> 0 }));
}

function positiveInteger(text: string, name: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new Error(`${name} must be a positive integer: ${text}`);
  }
  return value;
}

/** `all`, `none`, or a comma list of kinds. */
function kindsOf(text: string): FaultKind[] {
  if (text === "all") return [...faultKinds];
  if (text === "none") return [];
  const kinds = text.split(",").map((kind) => kind.trim());
  for (const kind of kinds) {
    if (!(faultKinds as readonly string[]).includes(kind)) {
      throw new Error(`CHAOS_NEMESIS: unknown fault "${kind}"; use all, none or some of ${faultKinds}`);
    }
  }
  return kinds as FaultKind[];
}

/** The line that replays a seed (with every setting that differs from its default). */
export function replayLine(config: ChaosConfig): string {
  const settings = [`CHAOS_SEED=${config.seed}`, `CHAOS_SECS=${config.nemesisSecs}`];
  if (config.kinds.length !== faultKinds.length) {
    settings.push(`CHAOS_NEMESIS=${config.kinds.length === 0 ? "none" : config.kinds.join(",")}`);
  }
  if (config.clientCount !== clientCountDefault) settings.push(`CHAOS_CLIENTS=${config.clientCount}`);
  if (config.keyCount !== keyCountDefault) settings.push(`CHAOS_KEYS=${config.keyCount}`);
  return `${settings.join(" ")} deno task test:chaos`;
}
