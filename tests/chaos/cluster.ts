/**
 * The cluster under test: real node processes on 127.0.0.1, each in a slot that keeps its port, data dir
 * and proxy across restarts. Peers reach a node only through its proxy (`DYNA_ADVERTISE` names it), and
 * clients talk to its port directly, so cutting proxies partitions the nodes from each other but never
 * from the clients. Every exit the nemesis did not cause is recorded as unexpected.
 */
import { NodeProcess } from "../helpers/node_process.ts";
import { TcpProxy } from "../helpers/tcp_proxy.ts";
import { clusterSecret, jwtSecret } from "../helpers/test_cluster.ts";
import { freePort } from "../helpers/free_port.ts";
import { waitFor } from "../helpers/wait_for.ts";

/** One node's place: its port, proxy and data dir outlive the processes started in it. */
interface Slot {
  name: string;
  port: number;
  proxy: TcpProxy;
  dataDir: string;
  process: NodeProcess | undefined;
  paused: boolean;
  /** A joiner that left for good: no longer started, offered to clients or checked. */
  removed: boolean;
}

/** A node process that exited while nobody had asked it to. */
export interface UnexpectedExit {
  name: string;
  code: number;
  signal: string | null;
  stderrTail: string;
}

const nodeEnv = {
  CLUSTER_SECRET: clusterSecret,
  JWT_SECRET: jwtSecret,
  DYNA_CLUSTER_PRESET: "local-test",
};

/** Options of a request to a node. */
export type NodeRequest = RequestInit & { timeoutMs?: number };

/** The chaos cluster. */
export class ChaosCluster implements AsyncDisposable {
  readonly #slots: Slot[] = [];
  readonly #namesByPid = new Map<number, string>();
  /** Processes the nemesis stopped on purpose: their exit is expected. */
  readonly #expectedExits = new Set<NodeProcess>();
  readonly unexpectedExits: UnexpectedExit[] = [];
  #joinerCount = 0;

  /** Starts `nodeCount` nodes (`n1`…), each joining the first, and waits until all see all alive. */
  static async start(nodeCount: number): Promise<ChaosCluster> {
    const cluster = new ChaosCluster();
    try {
      for (let index = 1; index <= nodeCount; index += 1) {
        const slot = await cluster.#addSlot(`n${index}`);
        await cluster.#startProcess(slot, cluster.#slots[0] === slot ? undefined : "n1");
      }
      await cluster.waitMembership(30_000);
    } catch (error) {
      await cluster[Symbol.asyncDispose]();
      throw error;
    }
    return cluster;
  }

  /** Names of the first `nodeCount` nodes, which are never removed. */
  coreNames(): string[] {
    return this.#slots.filter((slot) => !slot.name.startsWith("j")).map((slot) => slot.name);
  }

  /** Nodes with a process (running or paused) that have not left for good. */
  liveNames(): string[] {
    return this.#slots.filter((slot) => slot.process !== undefined && !slot.removed).map((slot) => slot.name);
  }

  /** The member id peers know node `name` by: its proxy's address. */
  memberId(name: string): string {
    return `127.0.0.1:${this.#slot(name).proxy.port}`;
  }

  /** The proxy in front of node `name`. */
  proxyOf(name: string): TcpProxy {
    return this.#slot(name).proxy;
  }

  /** The node a process id belongs to, while that process runs (or starts). */
  nameOfPid(pid: number): string | undefined {
    return this.#namesByPid.get(pid);
  }

  /** Pids of every node process, started or starting. */
  pids(): number[] {
    return [...this.#namesByPid.keys()];
  }

  /** The client port of node `name` (a direct connection, never through its proxy). */
  port(name: string): number {
    return this.#slot(name).port;
  }

  /** `fetch` straight to node `name`, bounded by `timeoutMs` (default 10 s). */
  fetch(name: string, path: string, init: NodeRequest = {}): Promise<Response> {
    const { timeoutMs, ...rest } = init;
    return fetch(`http://127.0.0.1:${this.port(name)}${path}`, {
      ...rest,
      signal: AbortSignal.timeout(timeoutMs ?? 10_000),
    });
  }

  /** Kills node `name` with SIGKILL (its data dir stays) and waits for the exit. */
  async kill(name: string): Promise<void> {
    await this.#stop(name, "SIGKILL");
  }

  /** Stops node `name` with SIGTERM (a graceful leave); returns its exit code. */
  async terminate(name: string): Promise<number> {
    return (await this.#stop(name, "SIGTERM")).code;
  }

  /** Starts node `name` again on its port and data dir, joining through `joinVia`. */
  async restart(name: string, joinVia: string): Promise<void> {
    const slot = this.#slot(name);
    if (slot.process !== undefined) throw new Error(`${name} is running`);
    await this.#startProcess(slot, joinVia);
  }

  /** SIGSTOP: the process keeps its sockets but answers nothing until `resume`. */
  pause(name: string): void {
    const slot = this.#slot(name);
    slot.process?.signal("SIGSTOP");
    slot.paused = true;
  }

  /** SIGCONT after `pause`. */
  resume(name: string): void {
    const slot = this.#slot(name);
    slot.process?.signal("SIGCONT");
    slot.paused = false;
  }

  /** Adds a node (`j1`, `j2`, …) with its own proxy and data dir, joining through `joinVia`. */
  async addJoiner(joinVia: string): Promise<string> {
    this.#joinerCount += 1;
    const slot = await this.#addSlot(`j${this.#joinerCount}`);
    await this.#startProcess(slot, joinVia);
    return slot.name;
  }

  /** Stops a joiner with SIGTERM for good; returns its exit code. */
  async removeJoiner(name: string): Promise<number> {
    const slot = this.#slot(name);
    slot.removed = true;
    return slot.process === undefined ? 0 : await this.terminate(name);
  }

  /**
   * Waits until every live node, asked directly, sees every live node `alive` (nodes that left may show as
   * `left`, dead or be forgotten). Throws after `timeoutMs`.
   */
  async waitMembership(timeoutMs: number): Promise<void> {
    await waitFor(async () => {
      const names = this.liveNames().filter((name) => !this.#slot(name).paused);
      const ids = names.map((name) => this.memberId(name));
      for (const name of names) {
        const view = await this.#membership(name);
        if (view === undefined || !ids.every((id) => view.get(id) === "alive")) return false;
      }
      return true;
    }, { timeoutMs, intervalMs: 100, what: "every live node to see every live node alive" });
  }

  async #membership(name: string): Promise<Map<string, string> | undefined> {
    try {
      const response = await this.fetch(name, "/membership", { timeoutMs: 2_000 });
      if (response.status !== 200) {
        await response.body?.cancel();
        return undefined;
      }
      const body = await response.json() as { nodes: Array<{ id: string; status: string }> };
      return new Map(body.nodes.map((node) => [node.id, node.status]));
    } catch {
      return undefined;
    }
  }

  #slot(name: string): Slot {
    const slot = this.#slots.find((candidate) => candidate.name === name);
    if (slot === undefined) throw new Error(`no node ${name}`);
    return slot;
  }

  async #addSlot(name: string): Promise<Slot> {
    const port = freePort();
    const slot: Slot = {
      name,
      port,
      proxy: TcpProxy.start(port),
      dataDir: await Deno.makeTempDir({ prefix: `dynarust_chaos_${name}_` }),
      process: undefined,
      paused: false,
      removed: false,
    };
    this.#slots.push(slot);
    return slot;
  }

  async #startProcess(slot: Slot, joinVia: string | undefined): Promise<void> {
    let pid: number | undefined;
    try {
      const process = await NodeProcess.start({
        dataDir: slot.dataDir,
        listen: `127.0.0.1:${slot.port}`,
        env: { ...nodeEnv, DYNA_ADVERTISE: `127.0.0.1:${slot.proxy.port}` },
        args: joinVia === undefined ? [] : [this.memberId(joinVia)],
        onSpawn: (spawned) => {
          pid = spawned;
          this.#namesByPid.set(spawned, slot.name);
        },
      });
      slot.process = process;
      slot.paused = false;
      void process.exited.then((status) => this.#exited(slot, process, status));
    } catch (error) {
      if (pid !== undefined) this.#namesByPid.delete(pid);
      throw error;
    }
  }

  async #exited(slot: Slot, process: NodeProcess, status: Deno.CommandStatus): Promise<void> {
    this.#namesByPid.delete(process.pid);
    if (slot.process === process) slot.process = undefined;
    if (this.#expectedExits.delete(process)) return;
    const stderr = await process.stderrText().catch(() => "");
    this.unexpectedExits.push({
      name: slot.name,
      code: status.code,
      signal: status.signal,
      stderrTail: stderr.slice(-2_000),
    });
  }

  async #stop(name: string, signal: Deno.Signal): Promise<Deno.CommandStatus> {
    const slot = this.#slot(name);
    const process = slot.process;
    if (process === undefined) throw new Error(`${name} is not running`);
    this.#expectedExits.add(process);
    if (slot.paused) process.signal("SIGCONT"); // a stopped process does not act on SIGTERM
    slot.paused = false;
    const status = await process.stop(signal);
    slot.process = undefined;
    return status;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Promise.all(this.#slots.map(async (slot) => {
      const process = slot.process;
      if (process !== undefined) {
        this.#expectedExits.add(process);
        process.signal("SIGCONT");
        await process[Symbol.asyncDispose]().catch(() => {});
      }
      await slot.proxy[Symbol.asyncDispose]().catch(() => {});
      await Deno.remove(slot.dataDir, { recursive: true }).catch(() => {});
    }));
  }
}
