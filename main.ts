/**
 * The composition root of a dynarust node: reads the command line and environment, opens the store,
 * builds the broker, the authenticator and the HTTP app, listens, and turns signals into a graceful stop.
 * Only this file reads `Deno.args`/`Deno.env`, listens, handles signals or exits.
 */
import { ConfigError, configExitCode, envNames, type Invocation, loadConfig } from "./src/config/load.ts";
import { helpText } from "./src/config/help.ts";
import type { Config } from "./src/config/schema.ts";
import { sleep, systemClock } from "./src/util/clock.ts";
import { KvError } from "./src/util/errors.ts";
import { createLogger, type Logger } from "./src/util/log.ts";
import { Auth, ReplicatedUsers, type UserDirectory, type UserRecord } from "./src/auth/mod.ts";
import { Broker } from "./src/sse/mod.ts";
import {
  BuildKeyError,
  ChangeLog,
  DataDirLockedError,
  DenoFs,
  type Encryption,
  type Failpoints,
  type Fs,
  loadBuildEncryption,
  loadOrCreateSecretFile,
  privateDirPermissions,
  privateFilePermissions,
  replaceFile,
  storageFileName,
  Store,
  walFileName,
} from "./src/store/mod.ts";
import {
  type App,
  createApp,
  fixedCorsHeaders,
  type NodeMetrics,
  type NodePhase,
  problemResponse,
} from "./src/http/mod.ts";
import {
  type ClusterConfig,
  ClusterNode,
  clusterRequestBytesMax,
  lanClusterConfig,
  localTestClusterConfig,
  messageBytesMaxFor,
  usersTable,
} from "./src/cluster/mod.ts";
import type { Transport } from "./src/cluster/mod.ts";
import { capacityOf, type Handler, raiseFdLimit, Server } from "./src/server/mod.ts";
import {
  BackupError,
  exportCluster,
  exportStore,
  importCluster,
  importStore,
  linesOf,
  parseBackupCommand,
  progressDisplay,
} from "./src/backup/mod.ts";
import { checkHealth, HealthUsageError, parseHealthCommand } from "./src/health/mod.ts";

/** The version `--version` prints. */
export const version = "0.1.0";

/** Exit code when the data on disk cannot be used (`EX_DATAERR`); deploy/dynarust.service won't restart. */
export const dataExitCode = 65;

/**
 * The variables among `names` that are set. Only these are read, so the node runs with
 * `--allow-env=<those names>` (deno.json's tasks) and never sees the rest of the environment.
 */
function readEnv(names: readonly string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of names) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  return env;
}

function parseInvocation(): Invocation | number {
  try {
    return loadConfig({ args: Deno.args, env: readEnv(envNames()) });
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    for (const issue of error.issues) console.error(`dynarust: ${issue}`);
    return configExitCode;
  }
}

/**
 * The users of this node: records in the store's users table, written through the cluster (replicated to
 * every member), and looked up on the other members when this node does not hold one yet.
 */
function userDirectory(store: Store, cluster: ClusterNode): UserDirectory {
  const recordOf = (json: string) => (JSON.parse(json) as { value: UserRecord }).value;
  return new ReplicatedUsers({
    read(user) {
      const entry = store.get(usersTable, user);
      return entry === undefined ? undefined : recordOf(entry.json);
    },
    async readElsewhere(user) {
      const entry = await cluster.findOnPeers(usersTable, user).catch(() => undefined);
      return entry === undefined ? undefined : recordOf(entry.json);
    },
    async create(user, record) {
      try {
        const conditions = { owner: user, ifVersion: 0 };
        await cluster.write({ op: "put", table: usersTable, key: user, value: record, conditions });
        return "created";
      } catch (error) {
        if (error instanceof KvError && error.code === "version_conflict") return "exists";
        throw error;
      }
    },
    onDurable(listener) {
      store.onChange((event) => {
        if (event.table === usersTable && event.kind === "Updated") listener(event.key);
      });
    },
  });
}

async function openStore(config: Config, options: { logger: Logger; disk: DiskOptions }) {
  const { logger } = options;
  const fs = options.disk.fs ?? new DenoFs();
  const encryption = options.disk.encryption ?? await loadBuildEncryption().catch((error) => {
    throw error instanceof BuildKeyError ? new ConfigError([error.message]) : error;
  });
  const store = await Store.open({
    dir: config.dataDir,
    fs,
    clock: systemClock,
    logger,
    limits: config.limits,
    encryption,
    snapshotLimit: config.snapLimit,
    snapshotIntervalSecs: config.snapIntervalSecs,
    repair: config.repair,
    ...(options.disk.failpoints === undefined ? {} : { failpoints: options.disk.failpoints }),
  });
  let jwtSecret = config.jwtSecret;
  if (jwtSecret === undefined) {
    const result = await loadOrCreateSecretFile({
      fs,
      path: `${config.dataDir}/jwt_secret`,
      encryption,
      create: () => btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(48)))),
    });
    jwtSecret = result.secret;
    logger.warn(
      result.created
        ? "JWT_SECRET is not set: generated one for this loopback node, stored encrypted in the data dir"
        : "JWT_SECRET is not set: using the one generated earlier in the data dir (loopback only)",
    );
  }
  return { store, jwtSecret, fs, encryption };
}

/** The members file in the data dir: the ring this node last knew, so a restart starts from it. */
const membersFileName = "members.json";

/**
 * The member list this node saved, for `ClusterNode`'s `knownMembers`; empty when none was saved. Ids are
 * `host:port` strings (not secret, not encrypted); anything else in the file is ignored.
 */
async function loadKnownMembers(fs: Fs, dataDir: string): Promise<string[]> {
  const bytes = await fs.readFile(`${dataDir}/${membersFileName}`);
  if (bytes === undefined) return [];
  try {
    const parsed: unknown = JSON.parse(new TextDecoder().decode(bytes));
    return Array.isArray(parsed) ? parsed.filter((id): id is string => typeof id === "string") : [];
  } catch {
    return [];
  }
}

/**
 * Whether the saved member list shows that this node left the cluster in its last life (gracefully: the
 * list saved before the leave was announced names every member but this one). Such a node rejoins: the
 * others moved its keys to replica sets without it, so its first view is a change from those (cluster
 * DESIGN.md, "Membership changes", the node that comes back).
 */
export function leftLastTime(known: readonly string[], self: string): boolean {
  return known.length > 0 && !known.includes(self);
}

/**
 * Saves the ring after each change of it, one write at a time (atomic and synced), so a restarted node never
 * believes itself alone or goes back to an older view of where keys live (cluster DESIGN.md). Returns what
 * saves the ring without this node, awaited before a graceful leave is announced: a node killed right after
 * announcing it still restarts knowing that it left.
 */
function saveMembersOnChange(
  options: { fs: Fs; dataDir: string; cluster: ClusterNode; logger: Logger },
): () => Promise<void> {
  const { fs, dataDir, cluster, logger } = options;
  let saving = Promise.resolve();
  const save = (ids: readonly string[]) => {
    const text = JSON.stringify(ids);
    saving = saving.then(() =>
      replaceFile({
        fs,
        path: `${dataDir}/${membersFileName}`,
        tmpPath: `${dataDir}/${membersFileName}.tmp`,
        permissions: privateFilePermissions,
      }, (file) => file.write(new TextEncoder().encode(text)))
    ).catch((error) => logger.error("could not save the member list", { error: String(error) }));
    return saving;
  };
  cluster.replicator.onPlacementChange((previous, next) => {
    if (previous.ringIds.join() === next.ringIds.join()) return;
    void save(next.ringIds);
  });
  return () => save(cluster.replicator.placement.ringIds.filter((id) => id !== cluster.self));
}

async function readTls(config: Config): Promise<{ cert: string; key: string } | undefined> {
  if (config.mode !== "https") return undefined;
  try {
    return { cert: await Deno.readTextFile(config.certPath), key: await Deno.readTextFile(config.keyPath) };
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

/** The cluster settings of this node, or undefined for a cluster of one without `CLUSTER_SECRET`. */
function clusterConfigOf(config: Config): ClusterConfig | undefined {
  if (config.clusterSecret === undefined) return undefined;
  const preset = config.clusterPreset === "local-test" ? localTestClusterConfig : lanClusterConfig;
  return {
    ...preset(config.clusterSecret),
    replicationFactor: config.replicationFactor,
  };
}

/** The `host:port` peers dial: DYNA_ADVERTISE, else the listen address with the real port. */
function advertisedAddress(config: Config, port: number): string {
  const chosen = config.advertise ?? config.listen;
  const wildcard = chosen.hostname === "0.0.0.0" || chosen.hostname === "::";
  const hostname = wildcard ? Deno.hostname() : chosen.hostname;
  const host = hostname.includes(":") ? `[${hostname}]` : hostname;
  return `${host}:${config.advertise?.port ?? port}`;
}

/** Everything a running node is made of. */
interface RunningNode {
  store: Store;
  /** The retention window of published changes that streams resume from. */
  changes: ChangeLog;
  broker: Broker;
  cluster: ClusterNode;
  app: App;
  /** Saves the member list without this node, before a graceful leave is announced (clustered only). */
  recordLeave?: () => Promise<void>;
}

/** The disk of a node; tests inject a fault-injecting file system and failpoints. */
interface DiskOptions {
  /** The file system every store file goes through. @default new DenoFs() */
  fs?: Fs;
  /** Named failpoints of the store. @default the inert ones */
  failpoints?: Failpoints;
  /** The at-rest key; tests bring their own. @default the build's, from src/store/encryption_key.ts */
  encryption?: Encryption;
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

interface BuildOptions {
  self: string;
  tls: { cert: string; key: string } | undefined;
  logger: Logger;
  phase: () => NodePhase;
  onFatal: (error: Error) => void;
  wrapTransport: ((transport: Transport, self: string) => Transport) | undefined;
  disk: DiskOptions;
  /** The listening door, whose counters `/stats` shows. */
  server: Server;
}

async function buildNode(config: Config, options: BuildOptions): Promise<RunningNode> {
  const { logger, self } = options;
  const { store, jwtSecret, fs, encryption } = await openStore(config, { logger, disk: options.disk });
  const changes = await ChangeLog.open({
    dir: config.dataDir,
    fs,
    encryption,
    clock: systemClock,
    logger,
    retention: {
      ageMs: config.limits.changeRetentionMs,
      recordsMax: config.limits.changeRetentionRecordsMax,
      bytesMax: config.limits.changeRetentionBytes,
    },
  });
  const broker = new Broker({ limits: config.limits, logger, history: changes });
  // Alone (no CLUSTER_SECRET) every store write is a client's, durable and final. In a cluster the store's
  // writes are a Paxos acceptor's, not yet chosen: the cluster publishes each write once it is committed.
  const clustered = config.clusterSecret !== undefined;
  store.onChange((event) => {
    if (!clustered || event.source === "local") broker.publish(event);
  });
  const known = clustered ? await loadKnownMembers(fs, config.dataDir) : [];
  const cluster = await ClusterNode.create({
    self,
    config: clusterConfigOf(config),
    store,
    sink: broker,
    clock: systemClock,
    logger,
    scheme: config.mode,
    // Nodes of one cluster share a certificate (or a CA); peers are trusted only when it signed theirs.
    ...(options.tls === undefined ? {} : { caCerts: [options.tls.cert] }),
    ...(options.wrapTransport === undefined ? {} : { wrapTransport: options.wrapTransport }),
    messageBytesMax: messageBytesMaxFor(config.limits.requestBytesMax),
    onStoreBroken: options.onFatal,
    knownMembers: known,
    joining: config.join !== undefined,
    rejoining: leftLastTime(known, self),
  });
  const recordLeave = clustered
    ? saveMembersOnChange({ fs, dataDir: config.dataDir, cluster, logger })
    : undefined;
  const auth = new Auth({
    secret: jwtSecret,
    limits: config.limits,
    clock: systemClock,
    users: userDirectory(store, cluster),
    // One hash per core: a burst of logins then leaves the event loop (gossip, replication) its share.
    hashConcurrencyMax: Math.max(1, navigator.hardwareConcurrency),
  });
  const app = createApp({
    kv: cluster,
    broker,
    auth,
    limits: config.limits,
    clock: systemClock,
    logger,
    membership: () => cluster.members(),
    nodeStats: () => nodeStats({ store, changes, broker, cluster, server: options.server }),
    nodeMetrics: () => nodeMetrics(store, broker, cluster),
    // The real disk, not the store's (a test may hand the store a faulty one): `/proc` for `/metrics`.
    processFiles: new DenoFs(),
    version,
    internal: cluster.door,
    phase: options.phase,
    corsOrigins: config.corsOrigins,
  });
  return { store, changes, broker, cluster, app, ...(recordLeave === undefined ? {} : { recordLeave }) };
}

function nodeStats(
  parts: { store: Store; changes: ChangeLog; broker: Broker; cluster: ClusterNode; server: Server },
) {
  const { store, changes, broker, cluster, server } = parts;
  const wal = store.stats();
  const replication = cluster.replicator.stats;
  return {
    tables: store.tableCounts(),
    activeSseConnections: broker.activeCount,
    extra: {
      dropped_sse_subscribers: broker.droppedCount,
      // The window streams resume from: every change after floor_seq is held (SPEC §4b).
      change_log: {
        records: changes.recordCount,
        bytes: changes.sizeBytes,
        floor_seq: changes.floorSeq,
        next_seq: changes.nextSeq,
      },
      connections: {
        open: server.connectionCount,
        accepted: server.stats.accepted,
        refused: server.stats.refused,
        accept_failures: server.stats.acceptFailures,
        timed_out: server.stats.timedOut,
      },
      sequence: wal.sequence,
      wal: {
        batches: wal.walBatchCount,
        records: wal.walRecordCount,
        bytes: wal.walBytes,
        checkpoints: wal.checkpointCount,
        snapshots: wal.snapshotCount,
      },
      cluster: {
        members: cluster.members().length,
        pipeline_backlog: cluster.replicator.pipelineBacklog(),
        hints: replication.hintCount,
        hints_dropped: replication.hintsDropped,
        forwarded_writes: replication.forwardedWrites,
        forwarded_reads: replication.forwardedReads,
        read_repairs: replication.readRepairs,
        fast_path_writes: replication.fastPathWrites,
        prepare_rounds: replication.prepareRounds,
        proposal_retries: replication.proposalRetries,
        rebalanced_keys: cluster.rebalancer.movedCount,
        purged_keys: cluster.rebalancer.purgedCount,
        anti_entropy_rounds: cluster.antiEntropy?.roundCount ?? 0,
        anti_entropy_pushed: cluster.antiEntropy?.pushedCount ?? 0,
        membership_changes_unsettled: cluster.replicator.transitionCount,
      },
      expired_keys: replication.expiredKeys,
      expiry: expiryStats(cluster),
    },
  };
}

/** The expiry sweeper's counters (cluster DESIGN.md, "Expiry (TTL)"), for `/stats`. */
function expiryStats(cluster: ClusterNode) {
  const stats = cluster.expirer.stats;
  return {
    proposed: stats.proposed,
    refused: stats.refused,
    failed: stats.failed,
    deferred: stats.deferred,
    in_flight: stats.inFlight,
  };
}

function nodeMetrics(store: Store, broker: Broker, cluster: ClusterNode): NodeMetrics {
  const stats = store.stats();
  const replication = cluster.replicator.stats;
  return {
    tables: store.tableCounts(),
    walBatchRecords: stats.wal.batchRecords,
    walSyncSeconds: stats.wal.syncSeconds,
    walBytes: stats.walBytes,
    sseConnections: broker.activeCount,
    sseDropped: broker.droppedCount,
    sseDeliverySeconds: broker.deliverySeconds,
    replicationBacklog: cluster.replicator.pipelineBacklog(),
    hintBacklog: replication.hintCount,
    hintsDropped: replication.hintsDropped,
    forwardedWrites: replication.forwardedWrites,
    paxosRounds: {
      fastPath: replication.fastPathWrites,
      prepare: replication.prepareRounds,
      retry: replication.proposalRetries,
    },
    expiredKeys: replication.expiredKeys,
  };
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

async function run(config: Config): Promise<number> {
  const handle = await startNode(config);
  // Printed once the node serves (after joining and catching up), so a script that waits for this line
  // can use the node at once.
  console.log(`listening on ${config.mode}://${handle.self}`);
  const stopped = Promise.withResolvers<number>();
  const stop = () => stopped.resolve(0);
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
  const code = await Promise.race([stopped.promise, handle.fatal]);
  await handle.stop({ graceful: code === 0 });
  return code;
}

function startingResponse(config: Config): Response {
  return problemResponse({ status: 503, code: "unavailable", detail: "node is starting" }, {
    "retry-after": "1",
    ...fixedCorsHeaders(config.corsOrigins),
  });
}

/**
 * Joins through `JOIN_ADDRESS`, retrying with backoff (250 ms doubling to 5 s) while the seed cannot be
 * reached or answers that it is not ready, for up to `DYNA_JOIN_TIMEOUT_SECS`: nodes of a cluster are
 * often started together, and the seed may not listen yet. A refusal (wrong `CLUSTER_SECRET`) is final.
 */
async function joinCluster(cluster: ClusterNode, config: Config, logger: Logger): Promise<void> {
  const seed = `${config.join!.hostname}:${config.join!.port}`;
  const deadlineMs = systemClock.monotonicMs() + config.joinTimeoutSecs * 1_000;
  let delayMs = joinRetryFirstMs;
  for (let attempt = 1;; attempt += 1) {
    try {
      await cluster.join(seed);
      return;
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      if (error instanceof KvError && error.code === "cluster_join_refused") {
        throw new JoinError(`join refused by ${seed}: CLUSTER_SECRET does not match (403)`);
      }
      if (error instanceof KvError && error.code === "invalid_request") throw new JoinError(reason);
      const remainingMs = deadlineMs - systemClock.monotonicMs();
      if (remainingMs <= 0) {
        throw new JoinError(
          `cannot join ${seed}: gave up after ${attempt} attempts in ${config.joinTimeoutSecs} s ` +
            `(DYNA_JOIN_TIMEOUT_SECS): ${reason}`,
        );
      }
      const waitMs = Math.min(delayMs, remainingMs);
      logger.warn(`cannot join ${seed} yet; retrying`, {
        attempt,
        reason,
        retry_in_ms: waitMs,
        gives_up_in_s: Math.ceil(remainingMs / 1_000),
      });
      await sleep(systemClock, waitMs);
      delayMs = Math.min(delayMs * 2, joinRetryMaxMs);
    }
  }
}

/** First pause between join attempts; each later one doubles, up to {@linkcode joinRetryMaxMs}. */
const joinRetryFirstMs = 250;
/** Longest pause between join attempts. */
const joinRetryMaxMs = 5_000;
/** The descriptor limit assumed when it cannot be read (no FFI): the common Linux default. */
const fallbackFdLimit = 1_024;

/** Joining the cluster failed; the node exits 1 with this message. */
class JoinError extends Error {}

async function stopNode(
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

/**
 * Writes the lines `produce` hands out into `path` through a temporary file next to it
 * (`<path>.tmp.<pid>`, 0600: an export holds password hashes), renamed over `path` only once every record
 * is written and synced; a failed export leaves the previous backup as it was.
 *
 * @throws {BackupError} from `produce` (naming the node's URL and the cause), or naming the file that
 * could not be written.
 */
async function exportToFile(
  path: string,
  produce: (write: (line: string) => Promise<void>) => Promise<number>,
): Promise<number> {
  const encoder = new TextEncoder();
  const options = {
    fs: new DenoFs(),
    path,
    tmpPath: `${path}.tmp.${Deno.pid}`,
    permissions: privateFilePermissions,
  };
  try {
    return await replaceFile(options, async (file) => {
      let pending: string[] = [];
      const flush = async () => {
        if (pending.length > 0) await file.write(encoder.encode(pending.join("")));
        pending = [];
      };
      const count = await produce(async (line) => {
        pending.push(`${line}\n`);
        if (pending.length >= 1_000) await flush();
      });
      await flush();
      return count;
    });
  } catch (error) {
    if (error instanceof BackupError) throw error;
    throw new BackupError(`cannot write ${path}: ${error instanceof Error ? error.message : String(error)}`, {
      cause: error,
    });
  }
}

/** The progress display of a backup on stderr: a bar on a terminal, plain lines otherwise. */
function backupDisplay(kind: "export" | "import") {
  const stderr = new TextEncoder();
  return progressDisplay({
    verb: kind === "export" ? "exported" : "imported",
    terminal: Deno.stderr.isTerminal(),
    write: (text) => Deno.stderr.writeSync(stderr.encode(text)),
  });
}

/** Ends a progress bar's line before an error's own line is printed. */
function endProgressLine(): void {
  if (Deno.stderr.isTerminal()) Deno.stderr.writeSync(new TextEncoder().encode("\n"));
}

/**
 * Opens the store of a stopped node's data dir for `dynarust export|import --data-dir`: read-only for an
 * export, to write for an import (the dir is created when missing), with the build's key and the limits
 * the node takes from the same DYNA_* variables. Its lock refuses a dir a node runs on.
 *
 * @throws {BackupError} saying what to do when a node runs on it, or why its files cannot be read.
 */
async function openDataDir(kind: "export" | "import", dataDir: string): Promise<Store> {
  const fs = new DenoFs();
  const holdsData = await fs.stat(`${dataDir}/${storageFileName}`) !== undefined ||
    await fs.stat(`${dataDir}/${walFileName}`) !== undefined;
  if (kind === "export" && !holdsData) {
    throw new BackupError(
      `--data-dir ${dataDir} holds no dynarust data (no ${storageFileName} or ${walFileName})`,
    );
  }
  try {
    const invocation = loadConfig({ args: ["127.0.0.1:0", "--data-dir", dataDir], env: readEnv(envNames()) });
    if (invocation.kind !== "run") throw new ConfigError(["unexpected --help or --version"]);
    const { config } = invocation;
    return await Store.open({
      dir: dataDir,
      fs,
      clock: systemClock,
      logger: createLogger({ level: "warn", format: config.logFormat }),
      limits: config.limits,
      encryption: await loadBuildEncryption(),
      snapshotLimit: config.snapLimit,
      snapshotIntervalSecs: 0,
      readOnly: kind === "export",
    });
  } catch (error) {
    if (error instanceof DataDirLockedError) {
      throw new BackupError(
        `${error.message}: stop the node first, or ${kind} through the running node with ` +
          "--node URL and CLUSTER_SECRET",
        { cause: error },
      );
    }
    if (error instanceof ConfigError) throw new BackupError(error.issues.join("; "), { cause: error });
    if (error instanceof KvError) throw new BackupError(error.message, { cause: error });
    throw error;
  }
}

/** `dynarust export|import --data-dir DIR ...`: a backup of a stopped node, from or into its files. */
async function runDataDirBackup(command: { kind: "export" | "import"; dataDir: string; path: string }) {
  const { kind, dataDir, path } = command;
  const display = backupDisplay(kind);
  if (kind === "export") {
    const store = await openDataDir(kind, dataDir);
    try {
      const source = { store, dataDir, nowMs: systemClock.nowMs() };
      const count = await exportToFile(path, (write) => exportStore(source, write, display.update))
        .catch((error) => {
          endProgressLine();
          throw error;
        });
      display.finish(`exported ${count} records from ${dataDir} to ${path}`);
    } finally {
      await store.close();
    }
    return 0;
  }
  // Opened before the store, so a missing file changes nothing in the data dir.
  const file = await Deno.open(path, { read: true });
  const store = await openDataDir(kind, dataDir).catch((error) => {
    file.close();
    throw error;
  });
  try {
    const lines = linesOf(file.readable.pipeThrough(new TextDecoderStream()));
    const result = await importStore(store, lines, display.update).catch((error) => {
      endProgressLine();
      throw error instanceof KvError && !(error instanceof BackupError)
        ? new BackupError(error.message, { cause: error })
        : error;
    });
    display.finish(
      `imported ${result.restored} records from ${path} into ${dataDir}` +
        (result.kept === 0
          ? ""
          : `; ${result.kept} kept the state the data dir already held (as new or newer)`),
    );
  } finally {
    await store.close();
  }
  return 0;
}

/**
 * `dynarust export|import ...`: a backup of a running cluster over HTTP, or of a stopped node's data dir
 * (`--data-dir`).
 */
async function runBackup(kind: "export" | "import", args: readonly string[]): Promise<number> {
  const command = parseBackupCommand(kind, args, readEnv(["CLUSTER_SECRET"]));
  if (command.kind === "help") {
    console.log(command.text);
    return 0;
  }
  if ("dataDir" in command) return await runDataDirBackup(command);
  const caCerts = command.caPath === undefined ? undefined : [await Deno.readTextFile(command.caPath)];
  const httpClient = caCerts === undefined ? undefined : Deno.createHttpClient({ caCerts });
  const target = {
    nodeUrl: command.nodeUrl,
    clusterSecret: command.clusterSecret,
    ...(caCerts === undefined ? {} : { caCerts }),
    ...(httpClient === undefined ? {} : {
      fetch: ((input, init) => fetch(input, { ...init, client: httpClient })) as typeof fetch,
    }),
  };
  const display = backupDisplay(kind);
  if (kind === "export") {
    const count = await exportToFile(
      command.path,
      (write) => exportCluster(target, write, display.update),
    ).catch((error) => {
      endProgressLine();
      throw error;
    });
    display.finish(`exported ${count} records to ${command.path}`);
    return 0;
  }
  const file = await Deno.open(command.path, { read: true });
  const result = await importCluster(
    target,
    linesOf(file.readable.pipeThrough(new TextDecoderStream())),
    display.update,
  );
  display.finish(
    `imported ${result.restored} records from ${command.path}` +
      (result.missed === 0 ? "" : `; ${result.missed} missed a replica that is down: run the import again`),
  );
  return result.missed === 0 ? 0 : 1;
}

/** `dynarust health [URL]`: 0 when the node at URL serves, 1 otherwise (a container's health check). */
async function runHealth(args: readonly string[]): Promise<number> {
  let command;
  try {
    command = parseHealthCommand(args);
  } catch (error) {
    if (!(error instanceof HealthUsageError)) throw error;
    console.error(`dynarust health: ${error.message}`);
    return 1;
  }
  if (command.kind === "help") {
    console.log(command.text);
    return 0;
  }
  let httpClient: Deno.HttpClient | undefined;
  try {
    if (command.caPath !== undefined) {
      httpClient = Deno.createHttpClient({ caCerts: [await Deno.readTextFile(command.caPath)] });
    }
  } catch (error) {
    console.error(`dynarust health: cannot read --ca ${command.caPath} (${(error as Error).name})`);
    return 1;
  }
  const client = httpClient;
  const result = await checkHealth({
    url: command.url,
    timeoutMs: command.timeoutMs,
    ...(client === undefined ? {} : {
      fetch: ((input, init) => fetch(input, { ...init, client })) as typeof fetch,
    }),
  });
  client?.close();
  if (result.healthy) console.log(`dynarust health: ${result.message}`);
  else console.error(`dynarust health: ${result.message}`);
  return result.healthy ? 0 : 1;
}

async function main(): Promise<number> {
  const subcommand = Deno.args[0];
  if (subcommand === "health") return await runHealth(Deno.args.slice(1));
  if (subcommand === "export" || subcommand === "import") {
    try {
      return await runBackup(subcommand, Deno.args.slice(1));
    } catch (error) {
      const known = error instanceof BackupError || error instanceof Deno.errors.NotFound ||
        error instanceof Deno.errors.PermissionDenied;
      console.error(`dynarust ${subcommand}: ${error instanceof Error ? error.message : String(error)}`);
      return known ? 1 : 70;
    }
  }
  const invocation = parseInvocation();
  if (typeof invocation === "number") return invocation;
  if (invocation.kind === "help") {
    console.log(helpText());
    return 0;
  }
  if (invocation.kind === "version") {
    console.log(`dynarust ${version}`);
    return 0;
  }
  try {
    return await run(invocation.config);
  } catch (error) {
    if (error instanceof ConfigError) {
      for (const issue of error.issues) console.error(`dynarust: ${issue}`);
      return configExitCode;
    }
    if (error instanceof DataDirLockedError) {
      // A second node on one data dir would interleave two WALs: the lock stops it before any file changes.
      console.error(`dynarust: ${error.message}; give each node its own --data-dir, or stop the other first`);
      return configExitCode;
    }
    if (error instanceof KvError && (error.code === "wrong_key" || error.code === "wal_corrupt")) {
      console.error(`dynarust: ${error.message}`);
      if (error.code === "wal_corrupt") {
        console.error(
          "dynarust: to start anyway, run with --repair (or DYNA_REPAIR=1): it keeps a <file>.broken.<ms> " +
            "copy, drops what follows the damage and logs what was lost",
        );
      }
      return error.code === "wrong_key" ? configExitCode : dataExitCode;
    }
    if (error instanceof JoinError) {
      console.error(`dynarust: ${error.message}`);
      return 1;
    }
    if (error instanceof Deno.errors.PermissionDenied || error instanceof Deno.errors.AddrInUse) {
      console.error(`dynarust: ${error.message}`);
      return configExitCode;
    }
    throw error;
  }
}

if (import.meta.main) {
  globalThis.addEventListener("unhandledrejection", (event) => {
    console.error(`dynarust: unhandled rejection: ${String(event.reason)}`);
    Deno.exit(70);
  });
  Deno.exit(await main());
}
