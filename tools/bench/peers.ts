/**
 * The peers a user would pick instead of dynarust, started by the bench itself on 127.0.0.1 and pinned
 * to the server CPU: a single-node etcd 3.x (temp data dir, measured through its v3 JSON gateway with
 * wrk), redis with `appendonly yes appendfsync always` (measured with redis-benchmark pinned to the
 * load CPU), and Deno KV behind the same Hono routes as the baselines (`denokv_peer.ts`, measured with wrk).
 *
 * @module
 */
import {
  denoPath,
  freePort,
  loadCpu,
  makeDataDir,
  PinnedProcess,
  removeDataDir,
  serverCpu,
  serverV8Flags,
  waitUntil,
} from "./lib.ts";

/** A running peer and its data dir; `stop` kills it and removes the dir. */
export interface Peer {
  process: PinnedProcess;
  url: string;
  port: number;
  stop(): Promise<void>;
}

/** Starts a single-node etcd with a fresh data dir and waits for `/health`. */
export async function startEtcd(): Promise<Peer> {
  const dataDir = await makeDataDir("etcd");
  const port = freePort();
  const peerPort = freePort();
  const url = `http://127.0.0.1:${port}`;
  const peerUrl = `http://127.0.0.1:${peerPort}`;
  const process = PinnedProcess.start({
    name: "etcd",
    cpu: serverCpu,
    command: "etcd",
    args: [
      ...["--name", "bench", "--data-dir", dataDir],
      ...["--listen-client-urls", url, "--advertise-client-urls", url],
      ...["--listen-peer-urls", peerUrl, "--initial-advertise-peer-urls", peerUrl],
      ...["--initial-cluster", `bench=${peerUrl}`, "--log-level", "warn"],
    ],
  });
  const stop = async () => {
    await process.stop();
    await removeDataDir(dataDir);
  };
  try {
    await waitUntil(async () => {
      if (process.exited) throw new Error(`etcd exited: ${process.stderrTail.slice(-400)}`);
      const response = await fetch(`${url}/health`, { signal: AbortSignal.timeout(2_000) });
      return (await response.text()).includes("true");
    }, { timeoutMs: 30_000, what: "etcd healthy", intervalMs: 100 });
  } catch (error) {
    await stop();
    throw error;
  }
  return { process, url, port, stop };
}

/**
 * Starts `denokv_peer.ts` (Deno KV in a fresh data dir, `k0`..`k999` of table `t` written) with
 * `--unstable-kv` and the V8 flags of every server, and waits until it listens.
 *
 * @throws {Error} with its stderr when it exits or does not listen within 30 s.
 */
export async function startDenoKv(): Promise<Peer> {
  const dataDir = await makeDataDir("denokv");
  const port = freePort();
  const process = PinnedProcess.start({
    name: "denokv_peer.ts",
    cpu: serverCpu,
    command: denoPath,
    args: ["run", "-A", "--unstable-kv", serverV8Flags, "tools/bench/denokv_peer.ts", String(port), dataDir],
  });
  const stop = async () => {
    await process.stop();
    await removeDataDir(dataDir);
  };
  try {
    const match = await process.waitForLine(/listening on (\S+)/, { timeoutMs: 30_000 });
    return { process, url: match[1]!, port, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

async function redisPing(port: number): Promise<boolean> {
  const connection = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await connection.write(new TextEncoder().encode("PING\r\n"));
    const buffer = new Uint8Array(64);
    const read = await Promise.race([
      connection.read(buffer),
      new Promise<null>((resolve) => setTimeout(() => resolve(null), 1_000)),
    ]);
    return read !== null && new TextDecoder().decode(buffer.subarray(0, read)).startsWith("+PONG");
  } finally {
    connection.close();
  }
}

/** Starts redis with every write fsynced to its append-only file (`appendfsync always`). */
export async function startRedis(): Promise<Peer> {
  const dataDir = await makeDataDir("redis");
  const port = freePort();
  const process = PinnedProcess.start({
    name: "redis-server",
    cpu: serverCpu,
    command: "redis-server",
    args: [
      ...["--bind", "127.0.0.1", "--port", String(port), "--save", "", "--dir", dataDir],
      ...["--appendonly", "yes", "--appendfsync", "always", "--daemonize", "no"],
    ],
  });
  const stop = async () => {
    await process.stop();
    await removeDataDir(dataDir);
  };
  try {
    await waitUntil(async () => {
      if (process.exited) throw new Error(`redis-server exited: ${process.stdout.slice(-400)}`);
      return await redisPing(port);
    }, { timeoutMs: 20_000, what: "redis answering PING", intervalMs: 100 });
  } catch (error) {
    await stop();
    throw error;
  }
  return { process, url: `redis://127.0.0.1:${port}`, port, stop };
}

/** What redis-benchmark measured for one command. */
export interface RedisFigures {
  requestsPerSec: number;
  p50Ms: number;
  p99Ms: number;
}

/**
 * `redis-benchmark -t set,get -c 64 -n N --csv` pinned to the load CPU.
 *
 * @throws {Error} when it fails or prints no figures for SET and GET.
 */
export async function runRedisBenchmark(
  options: { port: number; requestCount: number; timeoutMs: number },
): Promise<{ set: RedisFigures; get: RedisFigures }> {
  const benchmark = PinnedProcess.start({
    name: "redis-benchmark",
    cpu: loadCpu,
    command: "redis-benchmark",
    args: [
      ...["-h", "127.0.0.1", "-p", String(options.port), "-t", "set,get"],
      ...["-n", String(options.requestCount), "-c", "64", "--csv"],
    ],
  });
  const status = await benchmark.waitForExit({ timeoutMs: options.timeoutMs });
  if (!status.success) throw new Error(`redis-benchmark exited ${status.code}: ${benchmark.stderrTail}`);
  const figuresOf = (test: string): RedisFigures => {
    const line = benchmark.stdout.split("\n").find((candidate) => candidate.startsWith(`"${test}"`));
    if (line === undefined) throw new Error(`redis-benchmark printed no ${test} line: ${benchmark.stdout}`);
    const fields = line.split(",").map((field) => Number(field.replaceAll('"', "")));
    return { requestsPerSec: fields[1]!, p50Ms: fields[4]!, p99Ms: fields[6]! };
  };
  return { set: figuresOf("SET"), get: figuresOf("GET") };
}
