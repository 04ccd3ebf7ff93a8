/**
 * A node's life: listen, build, join and catch up, serve; then stop, gracefully (leave, hand off,
 * checkpoint) or abruptly. Signals and exit codes are main.ts's: this module only starts and stops.
 */
import { ConfigError } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import { systemClock } from "../util/clock.ts";
import { createLogger, type Logger } from "../util/log.ts";
import { DenoFs, privateDirPermissions, privateFilePermissions, type Store } from "../store/mod.ts";
import { fixedCorsHeaders, type NodePhase, problemResponse } from "../http/mod.ts";
import { type ClusterNode, clusterRequestBytesMax, type Transport } from "../cluster/mod.ts";
import { capacityOf, type Handler, raiseFdLimit, Server } from "../server/mod.ts";
import { buildNode, type DiskOptions, type RunningNode } from "./build.ts";
import { joinCluster } from "./join.ts";

async function readTls(config: Config): Promise<{ cert: string; key: string } | undefined> {
  if (config.mode !== "https") return undefined;
  const fs = new DenoFs();
  try {
    return { cert: await fs.readTextFile(config.certPath), key: await fs.readTextFile(config.keyPath) };
  } catch (error) {
    throw new ConfigError([
      `DYNA_CERT/DYNA_KEY: cannot read ${config.certPath} or ${config.keyPath} (${(error as Error).name})`,
    ]);
  }
}

/** Creates the data dir owner-only (0700) when missing and checks that a file can be written in it. */
async function checkDataDir(dir: string): Promise<void> {
  const fs = new DenoFs();
  const probe = `${dir}/.write_probe`;
  try {
    await fs.mkdir(dir, { permissions: privateDirPermissions });
    const file = await fs.createFile(probe, { permissions: privateFilePermissions });
    try {
      await file.write(new Uint8Array(1));
    } finally {
      file.close();
    }
    await fs.remove(probe);
  } catch (error) {
    throw new ConfigError([`--data-dir ${dir}: not a writable data directory (${(error as Error).name})`]);
  }
}

/** The `host:port` peers dial: DYNA_ADVERTISE, else the listen address with the real port. */
function advertisedAddress(config: Config, port: number): string {
  const chosen = config.advertise ?? config.listen;
  const wildcard = chosen.hostname === "0.0.0.0" || chosen.hostname === "::";
  const hostname = wildcard ? Deno.hostname() : chosen.hostname;
  const host = hostname.includes(":") ? `[${hostname}]` : hostname;
  return `${host}:${config.advertise?.port ?? port}`;
}

/** Options of {@linkcode startNode}; tests inject a logger, a fault-injecting transport and disk. */
export interface StartOptions extends DiskOptions {
  logger?: Logger;
  /** Wraps the node-to-node transport (a faulty transport in tests). */
  wrapTransport?: (transport: Transport, self: string) => Transport;
  /** Called once the address is known, before joining. */
  onListening?: (address: string) => void;
}

/** A running node. */
export interface NodeHandle {
  readonly self: string;
  readonly url: string;
  readonly store: Store;
  readonly cluster: ClusterNode;
  /** Resolves with an exit code when the node must stop on its own (a broken invariant). */
  readonly fatal: Promise<number>;
  /** Stops the node: gracefully (leave, hand off, checkpoint) or abruptly (no goodbye, as a crash). */
  stop(options: { graceful: boolean }): Promise<void>;
}

/**
 * Starts a node: listens (so port 0 resolves and the address is known), opens the store, builds the
 * cluster and the app, joins `JOIN_ADDRESS` when given (retrying while the seed cannot be reached), catches
 * up, and serves. It resolves once `/health` answers 200.
 *
 * @throws {ConfigError}, the store's WrongKeyError/WalCorruptError, or JoinError.
 */
export async function startNode(config: Config, options: StartOptions = {}): Promise<NodeHandle> {
  if (config.clusterSecret !== undefined && config.limits.requestBytesMax > clusterRequestBytesMax) {
    // Every value travels between nodes in one message, which the HTTP layer caps.
    throw new ConfigError([
      `DYNA_REQUEST_BYTES_MAX ${config.limits.requestBytesMax} is more than a cluster can replicate ` +
      `(${clusterRequestBytesMax} with CLUSTER_SECRET set)`,
    ]);
  }
  const logger = options.logger ?? createLogger({ level: config.logLevel, format: config.logFormat });
  const tls = await readTls(config);
  await checkDataDir(config.dataDir);
  const startedMs = systemClock.nowMs();
  const fatal = Promise.withResolvers<number>();
  const { config: sized, fdLimit } = withCapacity(config, logger);
  let phase: NodePhase = "starting";
  let node: RunningNode | undefined;
  // The server listens first so port 0 is resolved; it answers 503 until the node is built.
  const server = listenFor(sized, {
    tls,
    logger,
    fdLimit,
    handler: (request, info) =>
      node === undefined ? startingResponse(config) : node.app.handle(request, info),
  });
  const self = advertisedAddress(config, server.port);
  try {
    node = await buildNode(sized, {
      self,
      tls,
      logger,
      phase: () => phase,
      wrapTransport: options.wrapTransport,
      disk: options, // its DiskOptions part: fs, failpoints, encryption
      server,
      onFatal: (error) => {
        logger.error("internal invariant broken; stopping so recovery starts from the disk", {
          error: String(error),
        });
        fatal.resolve(70);
      },
    });
    options.onListening?.(self);
    if (config.join !== undefined) {
      await joinCluster(node.cluster, config, logger);
      // Coordinating writes with stale keys would order them before what the others hold: catch up first.
      await node.cluster.catchUp(config.limits.shutdownMsMax);
    }
  } catch (error) {
    node?.cluster.stop();
    await node?.changes.close();
    await node?.store.close();
    await server.shutdown();
    throw error;
  }
  node.cluster.start();
  phase = "serving";
  logger.info("serving", { address: self, startup_ms: systemClock.nowMs() - startedMs });
  const running = node;
  return {
    self,
    url: `${config.mode}://${self}`,
    store: running.store,
    cluster: running.cluster,
    fatal: fatal.promise,
    stop: async ({ graceful }) => {
      phase = "draining";
      await stopNode({ node: running, server, config, logger, graceful });
    },
  };
}

/** Listens on the configured address with the node's connection cap and request timeout. */
function listenFor(
  config: Config,
  options: {
    tls: { cert: string; key: string } | undefined;
    logger: Logger;
    handler: Handler;
    fdLimit: number;
  },
): Server {
  return Server.listen({
    hostname: config.listen.hostname,
    port: config.listen.port,
    ...(options.tls === undefined ? {} : { tls: options.tls }),
    connectionsMax: config.limits.connectionsMax,
    requestTimeoutMs: config.limits.requestTimeoutMs,
    logger: options.logger,
    handler: options.handler,
    descriptorsMax: options.fdLimit,
    answerHeaders: fixedCorsHeaders(config.corsOrigins),
  });
}

/**
 * The configuration with its connection and subscriber caps lowered to fit the file-descriptor limit,
 * after raising the soft limit to the hard one; says what it chose, as one log line.
 */
function withCapacity(config: Config, logger: Logger): { config: Config; fdLimit: number } {
  const fds = raiseFdLimit({ fallbackFds: fallbackFdLimit });
  const capacity = capacityOf({
    fdLimit: fds.soft,
    connectionsMax: config.limits.connectionsMax,
    subscribersMax: config.limits.subscribersMax,
  });
  const fields = {
    fd_limit: fds.soft,
    fd_limit_before: fds.softBefore,
    fd_hard_limit: fds.hard,
    connections_max: capacity.connectionsMax,
    subscribers_max: capacity.subscribersMax,
    reserved_fds: capacity.reservedFds,
  };
  if (fds.problem === undefined) logger.info("capacity", fields);
  else logger.warn(`capacity: ${fds.problem}; assuming a limit of ${fallbackFdLimit} descriptors`, fields);
  const limits = {
    ...config.limits,
    connectionsMax: capacity.connectionsMax,
    subscribersMax: capacity.subscribersMax,
  };
  return { config: { ...config, limits }, fdLimit: fds.soft };
}
function startingResponse(config: Config): Response {
  return problemResponse({ status: 503, code: "unavailable", detail: "node is starting" }, {
    "retry-after": "1",
    ...fixedCorsHeaders(config.corsOrigins),
  });
}

const fallbackFdLimit = 1_024;

export async function stopNode(
  options: { node: RunningNode; server: Server; config: Config; logger: Logger; graceful: boolean },
): Promise<void> {
  const { node, server, config, logger } = options;
  logger.info(
    options.graceful ? "shutting down: leaving the cluster, finishing accepted writes" : "stopping abruptly",
  );
  node.broker.close();
  if (options.graceful) {
    await node.recordLeave?.();
    await node.cluster.leave(config.limits.shutdownMsMax / 2);
  } else {
    node.cluster.stop();
  }
  const deadline = AbortSignal.timeout(config.limits.shutdownMsMax);
  await Promise.race([
    server.shutdown(),
    new Promise((resolve) => deadline.addEventListener("abort", resolve)),
  ]);
  await node.changes.close({ clean: options.graceful });
  await node.store.close();
  logger.info("stopped");
}
