/**
 * The nemesis: a seeded schedule of faults, one episode after another until the run's time is up. An
 * episode is one fault (sometimes two on different nodes, overlapping), held for a drawn time, healed, then
 * a quiet spell. At most a minority of the core nodes is cut off, paused or down at any moment, so a correct
 * cluster can always make progress; every fault is healed before `run` returns. The seed fixes the
 * schedule (kinds, targets, durations); the timing of the nodes and clients around it is not replayable.
 */
import type { Random } from "../helpers/seed.ts";
import type { ChaosCluster } from "./cluster.ts";
import type { FaultKind } from "./config.ts";
import type { Network, PartitionSpec } from "./network.ts";

/** A fault as it happened, for the report and the availability split. */
export interface FaultSpan {
  kind: FaultKind;
  nodes: string[];
  detail: string;
  startMs: number;
  /** Undefined while the fault lasts. */
  endMs: number | undefined;
}

/** A planned fault: what it does to which nodes, for how long. */
interface Fault {
  kind: FaultKind;
  /** The nodes it cuts off, pauses or stops (counted against the minority bound). */
  nodes: string[];
  holdMs: number;
  detail: string;
  /** Involves every node (a bridge, a ring): nothing else runs beside it. */
  whole: boolean;
  start(): Promise<void>;
  heal(): Promise<void>;
}

const processKinds: readonly FaultKind[] = ["kill", "pause", "leave"];
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Runs faults against a cluster. */
export class Nemesis {
  readonly spans: FaultSpan[] = [];
  /** Failures of the cluster the nemesis saw: a restart that failed, a leave that did not exit 0. */
  readonly problems: string[] = [];
  /** Things worth knowing that are not failures (slow recovery). */
  readonly notes: string[] = [];
  readonly #cluster: ChaosCluster;
  readonly #network: Network;
  readonly #random: Random;
  readonly #kinds: readonly FaultKind[];
  readonly #log: (line: string) => void;
  readonly #faulty = new Set<string>();
  #seedCount = 0;
  readonly #startMs = performance.now();

  constructor(options: {
    cluster: ChaosCluster;
    network: Network;
    random: Random;
    kinds: readonly FaultKind[];
    log: (line: string) => void;
  }) {
    this.#cluster = options.cluster;
    this.#network = options.network;
    this.#random = options.random;
    this.#kinds = options.kinds;
    this.#log = options.log;
  }

  /** Faults active at `atMs` (performance.now() time), by kind. */
  activeAt(atMs: number): FaultKind[] {
    return this.spans.filter((span) => span.startMs <= atMs && (span.endMs ?? Infinity) > atMs)
      .map((span) => span.kind);
  }

  /** Runs episodes for `durationMs`; with no kinds, only waits. Everything is healed when it returns. */
  async run(durationMs: number): Promise<void> {
    const deadline = performance.now() + durationMs;
    if (this.#kinds.length === 0) return await sleep(durationMs);
    while (performance.now() < deadline) await this.#episode();
  }

  async #episode(): Promise<void> {
    const primary = this.#plan(this.#random.pick(this.#kinds), []);
    const faults: Array<{ fault: Fault; delayMs: number }> = [];
    if (primary !== undefined) faults.push({ fault: primary, delayMs: 0 });
    const extraKinds = this.#kinds.filter((kind) => processKinds.includes(kind));
    if (primary !== undefined && !primary.whole && extraKinds.length > 0 && this.#random.next() < 0.3) {
      const secondary = this.#plan(this.#random.pick(extraKinds), primary.nodes);
      const delayMs = this.#random.int(Math.max(1, primary.holdMs / 2));
      if (secondary !== undefined) faults.push({ fault: secondary, delayMs });
    }
    const quietMs = 1_000 + this.#random.int(3_000);
    await Promise.all(faults.map(({ fault, delayMs }) => this.#runFault(fault, delayMs)));
    await this.#cluster.waitMembership(30_000).catch(() => {
      this.notes.push(`${this.#clock()} membership not converged 30 s after ${primary?.kind}`);
    });
    await sleep(quietMs);
  }

  async #runFault(fault: Fault, delayMs: number): Promise<void> {
    if (delayMs > 0) await sleep(delayMs);
    const span: FaultSpan = {
      kind: fault.kind,
      nodes: fault.nodes,
      detail: fault.detail,
      startMs: performance.now(),
      endMs: undefined,
    };
    this.spans.push(span);
    for (const node of fault.nodes) this.#faulty.add(node);
    this.#log(`${this.#clock()} + ${fault.kind} ${fault.detail} for ${fault.holdMs} ms`);
    try {
      await fault.start();
      await sleep(fault.holdMs);
    } catch (error) {
      this.problems.push(`${fault.kind} ${fault.detail}: could not start: ${messageOf(error)}`);
    } finally {
      await fault.heal().catch((error) => {
        this.problems.push(`${fault.kind} ${fault.detail}: could not heal: ${messageOf(error)}`);
      });
      span.endMs = performance.now();
      for (const node of fault.nodes) this.#faulty.delete(node);
      this.#log(`${this.#clock()} - ${fault.kind} ${fault.detail}`);
    }
  }

  /** A fault of `kind` on nodes outside `exclude`, or undefined when the minority bound leaves no room. */
  #plan(kind: FaultKind, exclude: readonly string[]): Fault | undefined {
    const core = this.#cluster.coreNames();
    const live = this.#cluster.liveNames();
    const down = core.filter((name) => !live.includes(name)).length;
    const room = Math.floor((core.length - 1) / 2) - down - exclude.length;
    const candidates = this.#shuffle(core.filter((name) => live.includes(name) && !exclude.includes(name)));
    const holdMs = (minMs: number, maxMs: number) => minMs + this.#random.int(maxMs - minMs);
    switch (kind) {
      case "kill":
      case "pause":
      case "leave":
        if (room < 1 || candidates.length === 0) return undefined;
        return this.#processFault(kind, candidates[0]!, holdMs(1_000, 8_000));
      case "join":
        if (exclude.length > 0) return undefined;
        return this.#joinFault(holdMs(5_000, 15_000));
      case "isolate-one":
      case "one-way":
      case "isolate-two":
      case "split":
        return this.#minorityFault({ kind, candidates, room, holdMs: holdMs(2_000, 10_000) });
      case "bridge":
      case "ring":
        if (exclude.length > 0 || down > 0 || candidates.length < 5) return undefined;
        return this.#wholeFault(kind, candidates, holdMs(2_000, 10_000));
    }
  }

  #processFault(kind: FaultKind, node: string, holdMs: number): Fault {
    const cluster = this.#cluster;
    const stop = async () => {
      if (kind === "pause") return cluster.pause(node);
      if (kind === "kill") return await cluster.kill(node);
      const code = await cluster.terminate(node);
      if (code !== 0) this.problems.push(`leave ${node}: SIGTERM ended it with exit code ${code}, not 0`);
    };
    const heal = async () => {
      if (kind === "pause") return cluster.resume(node);
      if (cluster.liveNames().includes(node)) return; // never stopped
      await this.#restart(node);
    };
    return { kind, nodes: [node], holdMs, detail: node, whole: false, start: stop, heal };
  }

  /** Starts `node` again, through a healthy seed; each failed attempt is a problem, up to three. */
  async #restart(node: string): Promise<void> {
    for (let attempt = 1; attempt <= 3; attempt += 1) {
      try {
        return await this.#cluster.restart(node, this.#seed([node]));
      } catch (error) {
        this.problems.push(`restart of ${node} failed (attempt ${attempt}): ${messageOf(error)}`);
      }
    }
  }

  #joinFault(holdMs: number): Fault {
    let joiner: string | undefined;
    return {
      kind: "join",
      nodes: [],
      holdMs,
      detail: "of a new node",
      whole: false,
      start: async () => {
        joiner = await this.#cluster.addJoiner(this.#seed([]));
        this.#log(`${this.#clock()}   ${joiner} joined`);
      },
      heal: async () => {
        if (joiner === undefined) return;
        const code = await this.#cluster.removeJoiner(joiner);
        if (code !== 0) this.problems.push(`removal of ${joiner}: SIGTERM ended it with exit code ${code}`);
      },
    };
  }

  #minorityFault(options: {
    kind: FaultKind;
    candidates: string[];
    room: number;
    holdMs: number;
  }): Fault | undefined {
    const { kind, candidates, room } = options;
    const size = kind === "isolate-two" || kind === "split" ? 2 : 1;
    if (room < size || candidates.length < size) return undefined;
    const nodes = candidates.slice(0, size);
    const rest = this.#cluster.coreNames().filter((name) => !nodes.includes(name));
    let spec: PartitionSpec;
    let detail: string;
    if (kind === "one-way") {
      const inbound = this.#random.next() < 0.5;
      spec = {
        blocked: rest.map((other) => inbound ? [other, nodes[0]!] as const : [nodes[0]!, other] as const),
      };
      detail = inbound ? `nothing reaches ${nodes[0]}` : `${nodes[0]} reaches nothing`;
    } else {
      spec = { groups: kind === "split" ? [nodes, rest] : [...nodes.map((node) => [node]), rest] };
      detail = spec.groups!.map((group) => `{${group.join(",")}}`).join("|");
    }
    return this.#partitionFault({ kind, nodes, spec, detail, holdMs: options.holdMs });
  }

  #wholeFault(kind: FaultKind, order: string[], holdMs: number): Fault {
    // A bridge: two minorities that each see the node between them, which sees both. A ring: each node
    // sees only its two neighbours. Every node still reaches a majority (itself included) in both.
    const groups = kind === "bridge"
      ? [order.slice(0, 3), order.slice(2, 5)]
      : order.map((node, index) => [node, order[(index + 1) % order.length]!]);
    const detail = kind === "bridge"
      ? `{${order.slice(0, 2)}}-${order[2]}-{${order.slice(3)}}`
      : `${order.join("-")}-${order[0]}`;
    const fault = this.#partitionFault({ kind, nodes: order, spec: { groups }, detail, holdMs });
    return { ...fault, whole: true };
  }

  #partitionFault(options: {
    kind: FaultKind;
    nodes: string[];
    spec: PartitionSpec;
    detail: string;
    holdMs: number;
  }): Fault {
    const names = this.#cluster.coreNames();
    return {
      kind: options.kind,
      nodes: options.nodes,
      holdMs: options.holdMs,
      detail: options.detail,
      whole: false,
      start: () => this.#network.partition(names, options.spec),
      heal: () => Promise.resolve(this.#network.heal(names)),
    };
  }

  /** A live, unpaused core node outside every fault (and `exclude`) to join through. */
  #seed(exclude: readonly string[]): string {
    const live = this.#cluster.liveNames();
    const healthy = this.#cluster.coreNames().filter((name) =>
      live.includes(name) && !this.#faulty.has(name) && !exclude.includes(name)
    );
    if (healthy.length === 0) throw new Error("no healthy node to join through");
    this.#seedCount += 1;
    return healthy[this.#seedCount % healthy.length]!;
  }

  #shuffle(names: string[]): string[] {
    const shuffled = [...names];
    for (let index = shuffled.length - 1; index > 0; index -= 1) {
      const other = this.#random.int(index + 1);
      [shuffled[index], shuffled[other]] = [shuffled[other]!, shuffled[index]!];
    }
    return shuffled;
  }

  #clock(): string {
    return `[${((performance.now() - this.#startMs) / 1_000).toFixed(1).padStart(6)} s]`;
  }
}

function messageOf(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).slice(0, 600);
}
