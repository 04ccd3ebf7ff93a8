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

/** Limits settable from the outside, with the env var that sets each (flag: the same name, kebab-case). */
export const limitEnvNames = {
  requestBytesMax: "DYNA_REQUEST_BYTES_MAX",
  valueDepthMax: "DYNA_VALUE_DEPTH_MAX",
  nameBytesMax: "DYNA_NAME_BYTES_MAX",
  batchKeysMax: "DYNA_BATCH_KEYS_MAX",
  tokenLifetimeSecs: "DYNA_TOKEN_LIFETIME_SECS",
  loginFailuresMax: "DYNA_LOGIN_FAILURES_MAX",
  loginAddressFailuresMax: "DYNA_LOGIN_ADDRESS_FAILURES_MAX",
  subscribersMax: "DYNA_SUBSCRIBERS_MAX",
  connectionsMax: "DYNA_CONNECTIONS_MAX",
  requestTimeoutMs: "DYNA_REQUEST_TIMEOUT_MS",
  sseQueueDepthMax: "DYNA_SSE_QUEUE_DEPTH_MAX",
  sseKeepaliveMs: "DYNA_SSE_KEEPALIVE_MS",
  walCheckpointBytes: "DYNA_WAL_CHECKPOINT_BYTES",
  changeRetentionBytes: "DYNA_CHANGE_RETENTION_BYTES",
} as const satisfies Partial<Record<keyof Limits, string>>;

/** Upper bounds of settable limits; the store's frame size (256 MiB) caps one record. */
const limitMaxima: Partial<Record<keyof typeof limitEnvNames, number>> = {
  requestBytesMax: 64 << 20,
  nameBytesMax: 4096,
  valueDepthMax: 10_000,
};

const limitsShape = Object.fromEntries(
  Object.keys(limitEnvNames).map((name) => {
    const maximum = limitMaxima[name as keyof typeof limitEnvNames];
    return [name, (maximum === undefined ? positiveInt : positiveInt.max(maximum)).optional()];
  }),
) as Record<keyof typeof limitEnvNames, z.ZodOptional<typeof positiveInt>>;

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
