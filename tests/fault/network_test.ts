// Goal: issue #4 item 3: network faults between real node processes (a one-way cut, a cut node, delays,
// a node paused with SIGSTOP) while clients write; after healing, all replicas converge, no acknowledged
// write is lost, and the history shows versions of each key only grow.
// Method: three node processes, each reached by its peers through its own TcpProxy (DYNA_ADVERTISE names
// the proxy), so cutting a proxy cuts the traffic towards that node; clients talk to nodes directly.
// Writes use a seeded Random; the seed is printed as KV_TEST_SEED for replay.
import assert from "node:assert/strict";
import { History } from "../helpers/history.ts";
import { NodeProcess } from "../helpers/node_process.ts";
import { Random } from "../helpers/seed.ts";
import { TcpProxy } from "../helpers/tcp_proxy.ts";
import { clusterSecret, jwtSecret } from "../helpers/test_cluster.ts";
import { freePort } from "../helpers/free_port.ts";
import { waitFor } from "../helpers/wait_for.ts";

const env = { CLUSTER_SECRET: clusterSecret, JWT_SECRET: jwtSecret, DYNA_CLUSTER_PRESET: "local-test" };

/** Three nodes whose peer traffic goes through one proxy per node. */
class ProxiedCluster implements AsyncDisposable {
  readonly nodes: NodeProcess[] = [];
  readonly proxies: TcpProxy[] = [];
  readonly ports: number[] = [];

  static async start(nodeCount: number): Promise<ProxiedCluster> {
    const cluster = new ProxiedCluster();
    try {
      for (let index = 0; index < nodeCount; index += 1) {
        const port = freePort();
        const proxy = TcpProxy.start(port);
        cluster.ports.push(port);
        cluster.proxies.push(proxy);
        const seed = index === 0 ? [] : [`127.0.0.1:${cluster.proxies[0]!.port}`];
        cluster.nodes.push(
          await NodeProcess.start({
            listen: `127.0.0.1:${port}`,
            env: { ...env, DYNA_ADVERTISE: `127.0.0.1:${proxy.port}` },
            args: seed,
          }),
        );
        await cluster.waitServing(index);
      }
      await cluster.waitAllAlive();
    } catch (error) {
      await cluster[Symbol.asyncDispose]();
      throw error;
    }
    return cluster;
  }

  /** `fetch` straight to node `index`, not through its proxy. */
  fetch(index: number, path: string, init: RequestInit = {}): Promise<Response> {
    return fetch(`http://127.0.0.1:${this.ports[index]}${path}`, {
      ...init,
      signal: AbortSignal.timeout(10_000),
    });
  }

  async waitServing(index: number): Promise<void> {
    await waitFor(async () => {
      const response = await this.fetch(index, "/health").catch(() => undefined);
      await response?.body?.cancel();
      return response?.status === 200;
    }, { timeoutMs: 20_000, intervalMs: 20, what: `node ${index} to serve` });
  }

  async waitAllAlive(timeoutMs = 20_000): Promise<void> {
    await waitFor(async () => {
      for (const index of this.nodes.keys()) {
        const response = await this.fetch(index, "/membership");
        const body = await response.json();
        if (response.status !== 200) return false;
        const statuses = body.nodes.map((node: { status: string }) => node.status);
        if (statuses.length !== this.nodes.length || statuses.some((status: string) => status !== "alive")) {
          return false;
        }
      }
      return true;
    }, { timeoutMs, intervalMs: 50, what: "every node to see every node alive" });
  }

  /** Every node's copy of `keys` must be equal; returns the agreed state. */
  async waitConverged(
    keys: readonly string[],
  ): Promise<Map<string, { version: number; value: unknown } | undefined>> {
    let agreed = new Map<string, { version: number; value: unknown } | undefined>();
    await waitFor(async () => {
      const views = await Promise.all(this.nodes.map(async (_, index) => {
        const response = await this.fetch(index, "/data/keys", {
          method: "POST",
          body: JSON.stringify(keys),
        });
        return await response.json() as Record<string, { version: number; value: unknown }>;
      }));
      const text = views.map((view) =>
        JSON.stringify(keys.map((key) => [view[key]?.version, view[key]?.value]))
      );
      if (!text.every((view) => view === text[0])) return false;
      agreed = new Map(keys.map((key) => [key, views[0]![key]]));
      return true;
    }, { timeoutMs: 30_000, intervalMs: 100, what: "all replicas to converge" });
    return agreed;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const node of this.nodes) await node[Symbol.asyncDispose]().catch(() => {});
    for (const proxy of this.proxies) await proxy[Symbol.asyncDispose]().catch(() => {});
  }
}

async function tokenOf(cluster: ProxiedCluster): Promise<string> {
  const response = await cluster.fetch(0, "/auth/alice", { method: "POST", body: '{"secret":"pw"}' });
  return (await response.json()).token;
}

/** Writes from 8 clients to random nodes and keys until `stop` resolves. */
async function writeLoad(options: {
  cluster: ProxiedCluster;
  history: History;
  random: Random;
  token: string;
  keys: readonly string[];
  stop: Promise<void>;
}): Promise<void> {
  let stopped = false;
  void options.stop.then(() => stopped = true);
  let next = 0;
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (!stopped) {
      const value = next++;
      const key = options.random.pick(options.keys);
      const node = options.random.int(options.cluster.nodes.length);
      await options.history.put(key, value, () =>
        options.cluster.fetch(node, `/data/key/${key}`, {
          method: "PUT",
          headers: { authorization: `Bearer ${options.token}` },
          body: JSON.stringify({ value }),
        }));
    }
  }));
}

async function faultScenario(
  label: string,
  fault: (cluster: ProxiedCluster) => Promise<void>,
): Promise<void> {
  const random = Random.fromEnv(label);
  await using cluster = await ProxiedCluster.start(3);
  const token = await tokenOf(cluster);
  const keys = Array.from({ length: 12 }, (_, index) => `n${index}`);
  const history = new History();
  const faultDone = Promise.withResolvers<void>();
  const load = writeLoad({ cluster, history, random, token, keys, stop: faultDone.promise });
  try {
    await fault(cluster);
  } finally {
    faultDone.resolve();
  }
  await load;
  await cluster.waitAllAlive();
  const final = await cluster.waitConverged(keys);
  const acknowledged = history.acknowledged().length;
  console.log(`${label}: ${history.writes.length} writes, ${acknowledged} acknowledged, 0 lost`);
  assert.ok(acknowledged > 0);
  history.checkVersionsGrow();
  history.checkFinal(final);
}

/** Waits until `observer` sees `target` in another state than alive (or alive again). */
async function waitStatus(
  cluster: ProxiedCluster,
  options: { observer: number; target: number; alive: boolean },
) {
  const id = `127.0.0.1:${cluster.proxies[options.target]!.port}`;
  await waitFor(async () => {
    const response = await cluster.fetch(options.observer, "/membership");
    const body = await response.json();
    const status = body.nodes?.find((node: { id: string }) => node.id === id)?.status;
    return options.alive ? status === "alive" : status !== undefined && status !== "alive";
  }, {
    timeoutMs: 15_000,
    intervalMs: 25,
    what: `node ${options.target} to be seen ${options.alive ? "alive" : "down"}`,
  });
}

Deno.test("network: a node nobody can reach (a one-way cut) heals and converges, nothing lost", async () => {
  await faultScenario("one-way cut", async (cluster) => {
    cluster.proxies[2]!.cut(); // node 2 still reaches the others; nothing reaches node 2
    await waitStatus(cluster, { observer: 0, target: 2, alive: false });
    await waitStatus(cluster, { observer: 1, target: 2, alive: false });
    cluster.proxies[2]!.heal();
    await waitStatus(cluster, { observer: 0, target: 2, alive: true });
  });
});

Deno.test("network: delays on every link slow writes but lose nothing", async () => {
  await faultScenario("delays", async (cluster) => {
    for (const proxy of cluster.proxies) proxy.delayMs = 20;
    const before = Date.now();
    await waitFor(() => Date.now() - before > 1_500, { timeoutMs: 3_000, what: "load under delay" });
    for (const proxy of cluster.proxies) proxy.heal();
  });
});

Deno.test("network: a node paused with SIGSTOP is suspected, resumes, refutes and catches up", async () => {
  await faultScenario("SIGSTOP", async (cluster) => {
    Deno.kill(cluster.nodes[1]!.pid, "SIGSTOP");
    try {
      await waitStatus(cluster, { observer: 0, target: 1, alive: false });
    } finally {
      Deno.kill(cluster.nodes[1]!.pid, "SIGCONT");
    }
    await waitStatus(cluster, { observer: 0, target: 1, alive: true });
  });
});
