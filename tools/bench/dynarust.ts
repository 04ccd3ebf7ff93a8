/**
 * Starting dynarust nodes for the bench (pinned to the server CPU, logging errors only) and the few
 * HTTP calls the scenarios make against them: register a user, write a value, read one.
 *
 * @module
 */
import {
  deadlineSignal,
  denoPath,
  makeDataDir,
  PinnedProcess,
  removeDataDir,
  serverCpu,
  serverV8Flags,
  waitUntil,
} from "./lib.ts";

/** A running node. */
export interface DynarustNode {
  process: PinnedProcess;
  /** `http://127.0.0.1:PORT` */
  url: string;
  /** `127.0.0.1:PORT`, what another node joins. */
  address: string;
}

/** Options of {@linkcode startDynarust}. */
export interface NodeOptions {
  /** Name in messages. */
  name: string;
  dataDir: string;
  /** @default "127.0.0.1:0" (a free port) */
  listen?: string;
  /** A member to join. */
  join?: string;
  /** Node settings (`DYNA_*`, secrets); `DYNA_LOG` defaults to `error`. */
  env?: Record<string, string>;
  /** How long starting (listening, then `/health` 200) may take. @default 60000 */
  timeoutMs?: number;
  /** The source tree whose `main.ts` runs (`tools/bench/ab.ts` starts two). @default this repository */
  root?: string;
}

/** The arguments of `deno run` for a node. */
export function nodeArgs(options: { listen: string; join?: string; dataDir: string }): string[] {
  const join = options.join === undefined ? [] : [options.join];
  return ["run", "-A", serverV8Flags, "main.ts", options.listen, ...join, "--data-dir", options.dataDir];
}

/**
 * Starts a node pinned to the server CPU and waits until `/health` answers 200.
 *
 * @throws {Error} with the node's stderr when it exits or does not serve in time.
 */
export async function startDynarust(options: NodeOptions): Promise<DynarustNode> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const process = PinnedProcess.start({
    name: options.name,
    cpu: serverCpu,
    command: denoPath,
    args: nodeArgs({
      listen: options.listen ?? "127.0.0.1:0",
      dataDir: options.dataDir,
      ...(options.join === undefined ? {} : { join: options.join }),
    }),
    env: { DYNA_LOG: "error", ...options.env },
    ...(options.root === undefined ? {} : { cwd: options.root }),
  });
  try {
    const match = await process.waitForLine(/listening on (http:\/\/(\S+))/, { timeoutMs });
    const node = { process, url: match[1]!, address: match[2]! };
    await waitUntil(async () => {
      if (process.exited) throw new Error(`${options.name} exited: ${process.stderrTail.slice(-400)}`);
      const response = await fetch(`${node.url}/health`, { signal: AbortSignal.timeout(2_000) });
      await response.body?.cancel();
      return response.status === 200;
    }, { timeoutMs, what: `${options.name} serving`, intervalMs: 20 });
    return node;
  } catch (error) {
    await process.stop();
    throw error;
  }
}

/**
 * Registers `user` (or logs in when it exists) and returns its token.
 *
 * @throws {Error} on any answer other than 200 or 201.
 */
export async function registerUser(url: string, user: string, secret: string): Promise<string> {
  const response = await fetch(`${url}/auth/${user}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ secret }),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await response.text();
  if (response.status !== 200 && response.status !== 201) {
    throw new Error(`POST /auth/${user} answered ${response.status}: ${text.slice(0, 200)}`);
  }
  return (JSON.parse(text) as { token: string }).token;
}

/** Options of {@linkcode putValue}. */
export interface PutOptions {
  url: string;
  token: string;
  table: string;
  key: string;
  value: unknown;
  signal?: AbortSignal;
}

/** PUTs a value; returns the status and, on success, the new version. */
export async function putValue(options: PutOptions): Promise<{ status: number; version: number }> {
  const response = await fetch(`${options.url}/${options.table}/key/${options.key}`, {
    method: "PUT",
    headers: { authorization: `Bearer ${options.token}`, "content-type": "application/json" },
    body: JSON.stringify({ value: options.value }),
    signal: deadlineSignal(10_000, options.signal),
  });
  if (response.status !== 201 && response.status !== 200) {
    await response.body?.cancel();
    return { status: response.status, version: 0 };
  }
  const entry = await response.json() as { version: number };
  return { status: response.status, version: entry.version };
}

/** Writes `count` values with `concurrency` writers; `valueOf(index)` gives key and value. */
export async function writeMany(
  options: { url: string; token: string; table: string; count: number; concurrency: number },
  valueOf: (index: number) => { key: string; value: unknown },
  signal?: AbortSignal,
): Promise<{ errorCount: number }> {
  let next = 0;
  let errorCount = 0;
  const worker = async () => {
    // Bounded by `count`: each pass takes one index.
    while (next < options.count) {
      signal?.throwIfAborted();
      const { key, value } = valueOf(next++);
      const result = await putValue({ ...options, key, value, ...(signal === undefined ? {} : { signal }) });
      if (result.version === 0) errorCount += 1;
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  return { errorCount };
}

/** A node holding the keys `get.lua` and `put.lua` use, with the token of their owner. */
export interface PreloadedNode {
  url: string;
  /** The bearer token of the user `bench`, owner of every key. */
  token: string;
  pid: number;
  /** Stops the node and removes its data dir. */
  stop(): Promise<void>;
}

/**
 * Starts a node in its own data dir and writes the 1,000 keys `k0`..`k999` of table `t` that `get.lua`
 * and `put.lua` use. `root`: the source tree to run (`ab.ts` compares two). Stops the node if preloading
 * fails.
 */
export async function startPreloadedNode(
  options: { name: string; root?: string; signal?: AbortSignal; env?: Record<string, string> },
): Promise<PreloadedNode> {
  const { name, root, signal } = options;
  const dataDir = await makeDataDir(name);
  const node = await startDynarust({
    name,
    dataDir,
    ...(root === undefined ? {} : { root }),
    ...(options.env === undefined ? {} : { env: options.env }),
  });
  const stop = async () => {
    await node.process.stop();
    await removeDataDir(dataDir);
  };
  try {
    const token = await registerUser(node.url, "bench", "bench-secret");
    const preload = await writeMany(
      { url: node.url, token, table: "t", count: 1000, concurrency: 64 },
      (index) => ({ key: `k${index}`, value: { n: index, s: "hello" } }),
      signal,
    );
    if (preload.errorCount > 0) throw new Error(`${name}: ${preload.errorCount} of 1000 preload PUTs failed`);
    return { url: node.url, token, pid: node.process.pid, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
