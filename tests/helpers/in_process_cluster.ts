/**
 * A cluster of real nodes inside the test process (`startNode` from main.ts), each on 127.0.0.1 with its
 * own data dir, talking HTTP to each other through a FaultyNetwork, so partitions can be made and healed.
 */
import { loadConfig } from "../../src/config/load.ts";
import { createLogger } from "../../src/util/log.ts";
import { type NodeHandle, startNode } from "../../main.ts";
import { testEncryption } from "./test_key.ts";
import { FaultyNetwork } from "./faulty_transport.ts";
import { clusterSecret, jwtSecret } from "./test_cluster.ts";
import { waitFor } from "./wait_for.ts";
import type { Random } from "./seed.ts";

interface Slot {
  dataDir: string;
  port: number;
  handle: NodeHandle | undefined;
}

/** Nodes in this process; `await using` stops them and removes their dirs. */
export class InProcessCluster implements AsyncDisposable {
  readonly network: FaultyNetwork;
  readonly #slots: Slot[] = [];

  private constructor(random: Random | undefined) {
    this.network = new FaultyNetwork(random);
  }

  /** Starts `nodeCount` nodes joined into one cluster. */
  static async start(options: { nodeCount: number; random?: Random }): Promise<InProcessCluster> {
    const cluster = new InProcessCluster(options.random);
    try {
      for (let index = 0; index < options.nodeCount; index += 1) {
        cluster.#slots.push({
          dataDir: await Deno.makeTempDir({ prefix: "dynarust_inproc_" }),
          port: 0,
          handle: undefined,
        });
        await cluster.restart(index);
      }
      await cluster.waitConverged();
    } catch (error) {
      await cluster[Symbol.asyncDispose]();
      throw error;
    }
    return cluster;
  }

  /**
   * (Re)starts node `index` on its port and data dir, joining the first running node that answers.
   *
   * @throws when no running node could be joined (for example all are partitioned away).
   */
  async restart(index: number, options: { joinTimeoutSecs?: number } = {}): Promise<void> {
    const slot = this.#slots[index]!;
    const seeds = this.#slots.filter((other) => other !== slot && other.handle !== undefined);
    let lastError: unknown;
    for (const seed of seeds.length === 0 ? [undefined] : seeds) {
      try {
        slot.handle = await this.#startSlot(slot, seed?.handle?.self, options.joinTimeoutSecs);
        return;
      } catch (error) {
        lastError = error;
      }
    }
    throw lastError;
  }

  async #startSlot(slot: Slot, seed: string | undefined, joinTimeoutSecs?: number): Promise<NodeHandle> {
    const joinFlags = joinTimeoutSecs === undefined ? [] : ["--join-timeout-secs", String(joinTimeoutSecs)];
    const invocation = loadConfig({
      args: [
        `127.0.0.1:${slot.port}`,
        ...(seed === undefined ? [] : [seed]),
        "--data-dir",
        slot.dataDir,
        ...joinFlags,
      ],
      env: { CLUSTER_SECRET: clusterSecret, JWT_SECRET: jwtSecret, DYNA_CLUSTER_PRESET: "local-test" },
    });
    if (invocation.kind !== "run") throw new Error("unexpected invocation");
    return await startNode(invocation.config, {
      logger: createLogger({ level: "error" }),
      encryption: testEncryption,
      wrapTransport: (inner, self) => this.network.wrap(self)(inner),
      onListening: (address) => {
        slot.port = Number(address.split(":")[1]);
      },
    });
  }

  /** Stops node `index` abruptly (no leave, no hand-off), as a crash would; its data dir stays. */
  async crash(index: number): Promise<void> {
    const handle = this.#slots[index]!.handle;
    this.#slots[index]!.handle = undefined;
    await handle?.stop({ graceful: false });
  }

  /** Stops node `index` gracefully (SIGTERM: it leaves the cluster and hands off); its data dir stays. */
  async leave(index: number): Promise<void> {
    const handle = this.#slots[index]!.handle;
    this.#slots[index]!.handle = undefined;
    await handle?.stop({ graceful: true });
  }

  /** The data dir of node `index`, running or not. */
  dataDir(index: number): string {
    return this.#slots[index]!.dataDir;
  }

  /** The handle of a running node. */
  node(index: number): NodeHandle {
    const handle = this.#slots[index]!.handle;
    if (handle === undefined) throw new Error(`node ${index} is not running`);
    return handle;
  }

  /** Indexes of running nodes. */
  running(): number[] {
    return this.#slots.flatMap((slot, index) => slot.handle === undefined ? [] : [index]);
  }

  /** The id (`host:port`) of node `index`. */
  id(index: number): string {
    return `127.0.0.1:${this.#slots[index]!.port}`;
  }

  /** `fetch` against node `index`. */
  fetch(index: number, path: string, init?: RequestInit): Promise<Response> {
    return fetch(`${this.node(index).url}${path}`, init);
  }

  /** Waits until every running node sees every running node alive. */
  async waitConverged(timeoutMs = 15_000): Promise<void> {
    await waitFor(() => {
      const ids = this.running().map((index) => this.id(index));
      return this.running().every((index) => {
        const view = new Map(this.node(index).cluster.members().map((member) => [member.id, member.status]));
        return ids.every((id) => view.get(id) === "alive");
      });
    }, { timeoutMs, intervalMs: 20, what: "in-process membership to converge" });
  }

  /**
   * Waits until no running node still counts a membership change as unsettled: until then some keys need
   * a quorum of their old replica set too (cluster DESIGN.md, "Membership changes").
   */
  async waitSettled(timeoutMs = 30_000): Promise<void> {
    await waitFor(
      () => this.running().every((index) => this.node(index).cluster.replicator.transitionCount === 0),
      {
        timeoutMs,
        intervalMs: 50,
        what: "membership changes to settle",
      },
    );
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const slot of this.#slots) {
      await slot.handle?.stop({ graceful: false }).catch(() => {});
      slot.handle = undefined;
      await Deno.remove(slot.dataDir, { recursive: true }).catch(() => {});
    }
  }
}
