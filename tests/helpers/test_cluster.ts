/**
 * A cluster of real node processes on 127.0.0.1, each with its own data dir, started as the README says
 * (`main.ts <listen> [join]`) with the fast local-test timing preset. `await using cluster = await
 * TestCluster.start({ nodeCount: 3 })` stops every node and removes the dirs.
 */
import { HttpTransport, RequestSigner } from "../../src/cluster/mod.ts";
import { systemClock } from "../../src/util/clock.ts";
import { type NodeOptions, NodeProcess } from "./node_process.ts";
import { waitFor } from "./wait_for.ts";

/** The secrets every test cluster shares. */
export const clusterSecret = "test-cluster-secret-0123456789abcdef";
export const jwtSecret = "test-jwt-secret-0123456789abcdef-0123";

/**
 * One node slot: its data dir and port survive restarts of the process in it. The port is 0 until the
 * first process bound one: a port probed free beforehand can be taken by a parallel test before the
 * node binds it ("Address already in use").
 */
interface Slot {
  dataDir: string;
  port: number;
  process: NodeProcess | undefined;
}

/** A test cluster of node processes. */
export class TestCluster implements AsyncDisposable {
  readonly #slots: Slot[] = [];
  readonly #env: Record<string, string>;
  #transport: HttpTransport | undefined;

  private constructor(env: Record<string, string>) {
    this.#env = env;
  }

  /** Starts `nodeCount` nodes, each joining the first, and waits until all see all alive. */
  static async start(options: { nodeCount: number; env?: Record<string, string> }): Promise<TestCluster> {
    const cluster = new TestCluster({
      CLUSTER_SECRET: clusterSecret,
      JWT_SECRET: jwtSecret,
      DYNA_CLUSTER_PRESET: "local-test",
      ...(options.env ?? {}),
    });
    try {
      for (let index = 0; index < options.nodeCount; index += 1) await cluster.add();
      await cluster.waitConverged();
    } catch (error) {
      await cluster[Symbol.asyncDispose]();
      throw error;
    }
    return cluster;
  }

  /** Adds a node that joins the first live one; returns its index. */
  async add(options: NodeOptions = {}): Promise<number> {
    const dataDir = await Deno.makeTempDir({ prefix: "dynarust_cluster_" });
    this.#slots.push({ dataDir, port: 0, process: undefined });
    const index = this.#slots.length - 1;
    await this.restart(index, options);
    return index;
  }

  /** (Re)starts the process of slot `index` on its port and data dir, joining a live node. */
  async restart(index: number, options: NodeOptions = {}): Promise<NodeProcess> {
    const slot = this.#slots[index]!;
    const seed = this.#slots.find((other, otherIndex) => otherIndex !== index && other.process !== undefined);
    const process = await NodeProcess.start({
      dataDir: slot.dataDir,
      listen: `127.0.0.1:${slot.port}`,
      env: { ...this.#env, ...(options.env ?? {}) },
      args: [...(seed === undefined ? [] : [`127.0.0.1:${seed.port}`]), ...(options.args ?? [])],
    });
    slot.process = process;
    slot.port = Number(new URL(process.baseUrl).port);
    // The node prints its address before it joins and catches up; it serves once /health says so.
    await waitFor(async () => {
      const response = await process.fetch("/health");
      await response.body?.cancel();
      return response.status === 200;
    }, { timeoutMs: 30_000, intervalMs: 20, what: `node ${index} to serve` });
    return process;
  }

  /** The running process of slot `index`. */
  node(index: number): NodeProcess {
    const process = this.#slots[index]?.process;
    if (process === undefined) throw new Error(`node ${index} is not running`);
    return process;
  }

  /** The `host:port` id of slot `index`. */
  id(index: number): string {
    return `127.0.0.1:${this.#slots[index]!.port}`;
  }

  /** Indexes of running nodes. */
  running(): number[] {
    return this.#slots.flatMap((slot, index) => slot.process === undefined ? [] : [index]);
  }

  /** Stops slot `index` with `signal` (its data dir stays). */
  async stop(index: number, signal: Deno.Signal = "SIGTERM"): Promise<Deno.CommandStatus> {
    const process = this.node(index);
    this.#slots[index]!.process = undefined;
    const status = await process.stop(signal);
    await process.stderrText().catch(() => "");
    return status;
  }

  /** Members and their status as node `index` sees them. */
  async membership(index: number): Promise<Map<string, string>> {
    const response = await this.node(index).fetch("/membership");
    const body = await response.json();
    if (response.status !== 200) return new Map();
    return new Map(body.nodes.map((node: { id: string; status: string }) => [node.id, node.status]));
  }

  /** Waits until every running node sees every running node alive. */
  async waitConverged(timeoutMs = 10_000): Promise<void> {
    const ids = this.running().map((index) => this.id(index));
    await waitFor(async () => {
      for (const index of this.running()) {
        const view = await this.membership(index);
        if (!ids.every((id) => view.get(id) === "alive")) return false;
      }
      return true;
    }, { timeoutMs, what: "membership to converge" });
  }

  /** A signed node-to-node request, as a peer would send it (to read one node's local copy). */
  async internal(index: number, kind: string, body: unknown): Promise<unknown> {
    if (this.#transport === undefined) {
      const signer = await RequestSigner.create(clusterSecret);
      this.#transport = new HttpTransport({ self: "127.0.0.1:1", signer, clock: systemClock });
    }
    return await this.#transport.request(this.id(index), kind, body, { timeoutMs: 5_000 });
  }

  /** Node `index`'s own copy of a key (tombstones included), without forwarding. */
  async localEntry(
    index: number,
    table: string,
    key: string,
  ): Promise<{ json: string; version: number } | null> {
    const reply = await this.internal(index, "read", { table, key }) as {
      entry: { json: string; version: number } | null;
    };
    return reply.entry;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Promise.all(this.#slots.map(async (slot) => {
      if (slot.process !== undefined) await slot.process[Symbol.asyncDispose]().catch(() => {});
      slot.process = undefined;
      await Deno.remove(slot.dataDir, { recursive: true }).catch(() => {});
    }));
    this.#transport?.close();
  }
}
