/**
 * Builds a node from its configuration: opens the store and the change log, and wires the broker, the
 * cluster, the authenticator and the HTTP app together, with the adapters each module declares it needs.
 */
import { ConfigError } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import { systemClock } from "../util/clock.ts";
import { KvError } from "../util/errors.ts";
import type { Logger } from "../util/log.ts";
import { Auth, ReplicatedUsers, type UserDirectory, type UserRecord } from "../auth/mod.ts";
import { Broker } from "../sse/mod.ts";
import {
  BuildKeyError,
  ChangeLog,
  DenoFs,
  type Encryption,
  type Failpoints,
  type Fs,
  loadBuildEncryption,
  loadOrCreateSecretFile,
  Store,
} from "../store/mod.ts";
import { type App, createApp, type NodePhase } from "../http/mod.ts";
import {
  type ClusterConfig,
  ClusterNode,
  lanClusterConfig,
  localTestClusterConfig,
  messageBytesMaxFor,
  usersTable,
} from "../cluster/mod.ts";
import type { Transport } from "../cluster/mod.ts";
import type { Server } from "../server/mod.ts";
import { leftLastTime, loadKnownMembers, saveMembersOnChange } from "./members.ts";
import { nodeMetrics, nodeStats } from "./stats.ts";

/** The version `--version` prints and `/health` reports. */
export const version = "0.1.0";

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

export async function openStore(config: Config, options: { logger: Logger; disk: DiskOptions }) {
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

/** The cluster settings of this node, or undefined for a cluster of one without `CLUSTER_SECRET`. */
export function clusterConfigOf(config: Config): ClusterConfig | undefined {
  if (config.clusterSecret === undefined) return undefined;
  const preset = config.clusterPreset === "local-test" ? localTestClusterConfig : lanClusterConfig;
  return {
    ...preset(config.clusterSecret),
    replicationFactor: config.replicationFactor,
  };
}

/** Everything a running node is made of. */
export interface RunningNode {
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
export interface DiskOptions {
  /** The file system every store file goes through. @default new DenoFs() */
  fs?: Fs;
  /** Named failpoints of the store. @default the inert ones */
  failpoints?: Failpoints;
  /** The at-rest key; tests bring their own. @default the build's, from src/store/encryption_key.ts */
  encryption?: Encryption;
}

export interface BuildOptions {
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

export async function buildNode(config: Config, options: BuildOptions): Promise<RunningNode> {
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
    nodeMetrics: () => nodeMetrics({ store, broker, cluster }),
    // The real disk, not the store's (a test may hand the store a faulty one): `/proc` for `/metrics`.
    processFiles: new DenoFs(),
    version,
    internal: cluster.door,
    phase: options.phase,
    corsOrigins: config.corsOrigins,
  });
  return { store, changes, broker, cluster, app, ...(recordLeave === undefined ? {} : { recordLeave }) };
}
