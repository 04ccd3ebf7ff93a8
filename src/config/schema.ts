import { z } from "zod";
import { defaultLimits, type Limits } from "./limits.ts";
import { logFormats, logLevels } from "../util/log.ts";

/** `host:port`, with `[v6]:port` for IPv6. Port 0 picks a free port. */
export const HostPort = z.string().transform((text, context) => {
  const match = /^(?:\[([^\]]+)\]|([^:\s\/]+)):(\d{1,5})$/.exec(text);
  const port = match === null ? NaN : Number(match[3]);
  if (match === null || !(port >= 0 && port <= 65535)) {
    context.addIssue({ code: "custom", message: `"${text}" is not host:port (for example 127.0.0.1:6660)` });
    return z.NEVER;
  }
  return { hostname: match[1] ?? match[2]!, port };
});
export type HostPort = z.output<typeof HostPort>;

/**
 * A serialized origin as browsers send it in `Origin`: `scheme://host[:port]`, nothing after. Host names,
 * IPv4 and bracketed IPv6 addresses; compared lower-case.
 */
const originPattern =
  /^[a-z][a-z0-9+.-]*:\/\/(?:\[[0-9a-f:.]+\]|[a-z0-9-]+(?:\.[a-z0-9-]+)*)(?::(\d{1,5}))?$/;

/**
 * `DYNA_CORS_ORIGINS`: the origins whose pages may use the public routes (SPEC §3), a comma list of
 * `scheme://host[:port]`, or `*` for any origin (safe: authentication is a bearer token, never a cookie).
 * An empty list allows no other origin. Output: `"*"`, or the origins lower-cased.
 */
export const CorsOrigins = z.string().transform((text, context): "*" | readonly string[] => {
  if (text.trim() === "") return [];
  const entries = text.split(",").map((entry) => entry.trim().toLowerCase());
  if (entries.includes("*")) {
    if (entries.length === 1) return "*";
    context.addIssue({ code: "custom", message: "* allows every origin: give it alone, not in a list" });
    return z.NEVER;
  }
  for (const entry of entries) {
    const match = originPattern.exec(entry);
    if (match === null || Number(match[1] ?? 0) > 65535) {
      context.addIssue({
        code: "custom",
        message: `"${entry}" is not an origin: scheme://host[:port], e.g. https://app.example.com`,
      });
    }
  }
  return entries;
});

const secret = z.string().refine((text) => new TextEncoder().encode(text).length >= 32, {
  message: "must be at least 32 bytes",
});

const positiveInt = z.coerce.number().int().positive();

/**
 * How a setting is given on the command line and in the environment, and what `--help` says of it. The
 * README's configuration table lists the same flags and env vars (a test compares them).
 */
export interface Setting {
  /** The flag, without its leading `--`. */
  readonly flag: string;
  /** The env vars that set it, the first one set winning; none for `--data-dir`. */
  readonly env: readonly string[];
  /** What the flag takes, as `--help` shows it (`SECRET`, `N`); absent for a switch (`--repair`). */
  readonly value?: string;
  /** What it does, one phrase in plain text. */
  readonly meaning: string;
  /** The default in words, where the schema's own value would not say it (a secret, a derived address). */
  readonly defaultText?: string;
  /** Gone, and still read only so that a node given it refuses to start; `--help` lists it apart. */
  readonly removed?: boolean;
}

/** A limit settable from the outside: its env var and meaning (its flag: the same name, kebab-case). */
export interface LimitSetting {
  readonly env: string;
  readonly meaning: string;
}

/** Limits settable from the outside (SPEC §7), in the order `--help` lists them. */
export const limitSettings = {
  requestBytesMax: {
    env: "DYNA_REQUEST_BYTES_MAX",
    meaning: "largest request body; with CLUSTER_SECRET at most 33,521,664 (every value must fit one " +
      "node-to-node message)",
  },
  valueDepthMax: { env: "DYNA_VALUE_DEPTH_MAX", meaning: "deepest nesting of a value" },
  nameBytesMax: { env: "DYNA_NAME_BYTES_MAX", meaning: "longest table, key or user name (UTF-8 bytes)" },
  batchKeysMax: { env: "DYNA_BATCH_KEYS_MAX", meaning: "keys in one batch read" },
  tokenLifetimeSecs: { env: "DYNA_TOKEN_LIFETIME_SECS", meaning: "token lifetime" },
  loginFailuresMax: {
    env: "DYNA_LOGIN_FAILURES_MAX",
    meaning: "failed logins a minute for one user from one client address",
  },
  loginAddressFailuresMax: {
    env: "DYNA_LOGIN_ADDRESS_FAILURES_MAX",
    meaning: "failed logins a minute from one client address across all users; over it that address is " +
      "refused for every user",
  },
  subscribersMax: {
    env: "DYNA_SUBSCRIBERS_MAX",
    meaning: "SSE subscribers per node; lowered at start to fit the descriptor limit",
  },
  connectionsMax: {
    env: "DYNA_CONNECTIONS_MAX",
    meaning: "open connections per node; lowered at start to the descriptor limit less a reserve",
  },
  requestTimeoutMs: {
    env: "DYNA_REQUEST_TIMEOUT_MS",
    meaning: "a connection with no request in progress this long (a request head not finished, or " +
      "idle), or with a request body not whole this long after its head, is closed; at least 100",
  },
  sseQueueDepthMax: {
    env: "DYNA_SSE_QUEUE_DEPTH_MAX",
    meaning: "events queued for one subscriber before it is dropped",
  },
  sseKeepaliveMs: { env: "DYNA_SSE_KEEPALIVE_MS", meaning: "keepalive comment interval; at most 15000" },
  walCheckpointBytes: { env: "DYNA_WAL_CHECKPOINT_BYTES", meaning: "WAL size that triggers a checkpoint" },
  changeRetentionBytes: {
    env: "DYNA_CHANGE_RETENTION_BYTES",
    meaning: "bytes of the change log on disk that streams resume from (with 10 minutes and 100,000 " +
      "changes, whichever is less)",
  },
} as const satisfies Partial<Record<keyof Limits, LimitSetting>>;

/** Upper bounds of settable limits; the store's frame size (256 MiB) caps one record. */
const limitMaxima: Partial<Record<keyof typeof limitSettings, number>> = {
  requestBytesMax: 64 << 20,
  nameBytesMax: 4096,
  valueDepthMax: 10_000,
};

const limitsShape = Object.fromEntries(
  Object.keys(limitSettings).map((name) => {
    const maximum = limitMaxima[name as keyof typeof limitSettings];
    return [name, (maximum === undefined ? positiveInt : positiveInt.max(maximum)).optional()];
  }),
) as Record<keyof typeof limitSettings, z.ZodOptional<typeof positiveInt>>;

/** The one schema of a node's configuration (SPEC §1, §7). Input is strings, as from flags and env. */
export const ConfigSchema = z.object({
  listen: HostPort,
  join: HostPort.optional(),
  dataDir: z.string().min(1).default("."),
  jwtSecret: secret.optional(),
  clusterSecret: secret.optional(),
  mode: z.enum(["http", "https"]).default("http"),
  certPath: z.string().min(1).default("cert/cert.pem"),
  keyPath: z.string().min(1).default("cert/key.pem"),
  snapLimit: z.coerce.number().int().min(1).default(100),
  snapIntervalSecs: positiveInt.default(3600),
  logLevel: z.enum(logLevels).default("info"),
  /** `text` lines for people, `json` lines (one object each) for log shippers. */
  logFormat: z.enum(logFormats).default("text"),
  /** The `host:port` other nodes reach this one at; default: the listen address. */
  advertise: HostPort.optional(),
  /** Cluster timing preset: `lan` (default) or `local-test` (short intervals for tests on one machine). */
  clusterPreset: z.enum(["lan", "local-test"]).default("lan"),
  /** Nodes each key lives on (all nodes when fewer). */
  replicationFactor: z.coerce.number().int().min(1).max(16).default(3),
  /**
   * Removed (2026-12): every write needs a majority of its key's replicas. Still read, so that a node
   * started with it set refuses to start instead of silently running with a different guarantee.
   */
  writeQuorum: z.coerce.number().int().min(0).max(16).default(0),
  /**
   * Repair damaged data files at start instead of refusing them (`--repair`, `DYNA_REPAIR=1`): keeps a
   * `.broken.<ms>` copy and drops what follows the damage, logging what was lost. Off: the node exits 65.
   */
  repair: z.stringbool().default(false),
  /**
   * How long a node started with `JOIN_ADDRESS` keeps trying to reach it (it may be starting at the same
   * moment) before it gives up and exits 1. A refusal (wrong `CLUSTER_SECRET`) is final at once.
   */
  joinTimeoutSecs: z.coerce.number().int().min(0).max(86_400).default(60),
  /** Origins whose browser pages may use the public routes (CORS, SPEC §3); `*` for any. */
  corsOrigins: CorsOrigins.default("*"),
  limits: z.object(limitsShape).default({}).transform((given): Limits => {
    const merged: Limits = { ...defaultLimits };
    for (const [name, value] of Object.entries(given)) {
      if (value !== undefined) merged[name as keyof Limits] = value;
    }
    return merged;
  }),
}).superRefine((config, context) => {
  if (config.limits.requestTimeoutMs < 100) {
    context.addIssue({
      code: "custom",
      path: ["limits", "requestTimeoutMs"],
      message: "must be at least 100",
    });
  }
  if (config.limits.sseKeepaliveMs > 15_000) {
    context.addIssue({
      code: "custom",
      path: ["limits", "sseKeepaliveMs"],
      message: "must be at most 15000",
    });
  }
});

/** A node's configuration after validation. */
export type Config = z.output<typeof ConfigSchema>;

/** The settings that flags and env vars give: every field of the schema but the two addresses and limits. */
export type SettingName = Exclude<keyof z.input<typeof ConfigSchema>, "listen" | "join" | "limits">;

/**
 * Every setting of {@linkcode ConfigSchema} but the positional addresses and the limits, in the order
 * `--help` lists them. A field added to the schema without its entry here does not compile.
 */
export const configSettings = {
  dataDir: { flag: "data-dir", env: [], value: "DIR", meaning: "where every file of the node lives" },
  jwtSecret: {
    flag: "jwt-secret",
    env: ["JWT_SECRET"],
    value: "SECRET",
    meaning: "HMAC key of user tokens, at least 32 bytes",
    defaultText: "required off loopback; generated on loopback",
  },
  clusterSecret: {
    flag: "cluster-secret",
    env: ["CLUSTER_SECRET"],
    value: "SECRET",
    meaning: "secret shared by cluster nodes, at least 32 bytes",
    defaultText: "required with JOIN_ADDRESS",
  },
  mode: { flag: "mode", env: ["DYNA_MODE"], value: "http|https", meaning: "http or https" },
  certPath: { flag: "cert", env: ["DYNA_CERT"], value: "FILE", meaning: "PEM certificate for https" },
  keyPath: { flag: "key", env: ["DYNA_KEY"], value: "FILE", meaning: "PEM private key for https" },
  snapLimit: { flag: "snap-limit", env: ["SNAP_LIMIT"], value: "N", meaning: "snapshots kept" },
  snapIntervalSecs: {
    flag: "snap-interval-secs",
    env: ["SNAP_INTERVAL_SECS"],
    value: "SECS",
    meaning: "seconds between snapshots",
  },
  logLevel: {
    flag: "log",
    env: ["DYNA_LOG", "RUST_LOG"],
    value: "LEVEL",
    meaning: `one of ${logLevels.join(", ")}`,
  },
  logFormat: {
    flag: "log-format",
    env: ["DYNA_LOG_FORMAT"],
    value: "text|json",
    meaning: "text (one TIME LEVEL message key=value line per event) or json (one object per line: " +
      "time, level, msg and the fields), for log shippers",
  },
  replicationFactor: {
    flag: "replication-factor",
    env: ["REPLICATION_FACTOR"],
    value: "N",
    meaning: "nodes each key lives on (all when fewer), 1 to 16",
  },
  advertise: {
    flag: "advertise",
    env: ["DYNA_ADVERTISE"],
    value: "HOST:PORT",
    meaning: "host:port peers dial to reach this node; for a listen address of 0.0.0.0, its host name",
    defaultText: "the listen address",
  },
  joinTimeoutSecs: {
    flag: "join-timeout-secs",
    env: ["DYNA_JOIN_TIMEOUT_SECS"],
    value: "SECS",
    meaning: "how long a node keeps trying to reach JOIN_ADDRESS (it may be starting too) before it " +
      "exits 1; a refusal is final at once",
  },
  corsOrigins: {
    flag: "cors-origins",
    env: ["DYNA_CORS_ORIGINS"],
    value: "ORIGINS",
    meaning: "comma list of origins (scheme://host[:port]) whose pages may call the public routes, * for " +
      "any, empty for none",
  },
  clusterPreset: {
    flag: "cluster-preset",
    env: ["DYNA_CLUSTER_PRESET"],
    value: "lan|local-test",
    meaning: "gossip timing: lan, or local-test (short intervals, for tests on one machine)",
  },
  repair: {
    flag: "repair",
    env: ["DYNA_REPAIR"],
    meaning: "start despite a damaged WAL or storage.db: keep a .broken.<ms> copy, cut the WAL at the " +
      "last whole frame (or rebuild from the newest snapshot plus the WAL) and log what was lost",
  },
  writeQuorum: {
    flag: "write-quorum",
    env: ["WRITE_QUORUM"],
    value: "N",
    meaning: "removed: every write needs a majority of its key's replicas",
    removed: true,
  },
} as const satisfies Record<SettingName, Setting>;
