import { parseArgs } from "node:util";
import { KvError } from "../util/errors.ts";
import { type Config, ConfigSchema, limitEnvNames } from "./schema.ts";

/** Exit code for bad configuration (`EX_CONFIG` of sysexits.h). */
export const configExitCode = 78;

/** Bad configuration; `issues` lists every problem found, one line each. */
export class ConfigError extends KvError {
  readonly issues: readonly string[];
  constructor(issues: readonly string[]) {
    super("config_invalid", `invalid configuration: ${issues.join("; ")}`);
    this.issues = issues;
  }
}

/** Settings that come from an env var and a flag of the same meaning (SPEC §1). */
const envSettings = {
  jwtSecret: { env: ["JWT_SECRET"], flag: "jwt-secret" },
  clusterSecret: { env: ["CLUSTER_SECRET"], flag: "cluster-secret" },
  mode: { env: ["DYNA_MODE"], flag: "mode" },
  certPath: { env: ["DYNA_CERT"], flag: "cert" },
  keyPath: { env: ["DYNA_KEY"], flag: "key" },
  snapLimit: { env: ["SNAP_LIMIT"], flag: "snap-limit" },
  snapIntervalSecs: { env: ["SNAP_INTERVAL_SECS"], flag: "snap-interval-secs" },
  logLevel: { env: ["DYNA_LOG", "RUST_LOG"], flag: "log" },
  logFormat: { env: ["DYNA_LOG_FORMAT"], flag: "log-format" },
  advertise: { env: ["DYNA_ADVERTISE"], flag: "advertise" },
  clusterPreset: { env: ["DYNA_CLUSTER_PRESET"], flag: "cluster-preset" },
  replicationFactor: { env: ["REPLICATION_FACTOR"], flag: "replication-factor" },
  writeQuorum: { env: ["WRITE_QUORUM"], flag: "write-quorum" },
  joinTimeoutSecs: { env: ["DYNA_JOIN_TIMEOUT_SECS"], flag: "join-timeout-secs" },
  corsOrigins: { env: ["DYNA_CORS_ORIGINS"], flag: "cors-origins" },
} as const;

function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`);
}

/** Every environment variable the configuration reads (the node is granted these and no others). */
export function envNames(): string[] {
  return [
    ...Object.values(envSettings).flatMap((setting) => setting.env),
    ...Object.values(limitEnvNames),
    "DYNA_REPAIR",
  ];
}

/** The flags the CLI understands, for `--help` and the parser. */
export function flagNames(): string[] {
  return [
    "data-dir",
    ...Object.values(envSettings).map((setting) => setting.flag),
    ...Object.keys(limitEnvNames).map(kebab),
  ];
}

/** What the command line asked for. */
export type Invocation =
  | { kind: "help" }
  | { kind: "version" }
  | { kind: "run"; config: Readonly<Config> };

/**
 * Parses arguments and environment into a frozen `Config`: flags win over env, env over defaults.
 *
 * @throws {ConfigError} listing every problem found.
 */
export function loadConfig(
  options: { args: readonly string[]; env: Readonly<Record<string, string>> },
): Invocation {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...options.args],
      allowPositionals: true,
      strict: true,
      options: {
        help: { type: "boolean", short: "h" },
        version: { type: "boolean", short: "V" },
        repair: { type: "boolean" },
        ...Object.fromEntries(flagNames().map((name) => [name, { type: "string" as const }])),
      },
    });
  } catch (error) {
    throw new ConfigError([error instanceof Error ? error.message : String(error)]);
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  if (values.help === true) return { kind: "help" };
  if (values.version === true) return { kind: "version" };
  const positionals = parsed.positionals;
  if (positionals.length < 1) {
    throw new ConfigError(["LISTEN_ADDRESS is required (for example 127.0.0.1:6660)"]);
  }
  if (positionals.length > 2) throw new ConfigError([`unexpected argument "${positionals[2]}"`]);
  const pick = (flag: string, envNames: readonly string[]): string | undefined => {
    const fromFlag = values[flag];
    if (typeof fromFlag === "string") return fromFlag;
    for (const name of envNames) if (options.env[name] !== undefined) return options.env[name];
    return undefined;
  };
  const input: Record<string, unknown> = {
    listen: positionals[0],
    join: positionals[1],
    dataDir: values["data-dir"],
    repair: values.repair === true ? "true" : options.env.DYNA_REPAIR,
    limits: Object.fromEntries(
      Object.entries(limitEnvNames).map(([name, envName]) => [name, pick(kebab(name), [envName])]),
    ),
  };
  for (const [name, setting] of Object.entries(envSettings)) input[name] = pick(setting.flag, setting.env);
  const result = ConfigSchema.safeParse(input);
  if (!result.success) {
    throw new ConfigError(
      result.error.issues.map((issue) => `${describePath(issue.path)}: ${issue.message}`),
    );
  }
  const config = result.data;
  const issues = crossCheck(config);
  if (issues.length > 0) throw new ConfigError(issues);
  return { kind: "run", config: deepFreeze(config) };
}

const pathNames: Record<string, string> = {
  listen: "LISTEN_ADDRESS",
  join: "JOIN_ADDRESS",
  dataDir: "--data-dir",
  repair: "DYNA_REPAIR",
  ...Object.fromEntries(Object.entries(envSettings).map(([name, setting]) => [name, setting.env[0]])),
  ...limitEnvNames,
};

function describePath(path: readonly PropertyKey[]): string {
  const last = String(path[path.length - 1] ?? "config");
  return pathNames[last] ?? last;
}

/** True for addresses only this machine can reach. */
export function isLoopback(hostname: string): boolean {
  return hostname === "localhost" || hostname === "::1" || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

function crossCheck(config: Config): string[] {
  const issues: string[] = [];
  if (config.jwtSecret === undefined && !isLoopback(config.listen.hostname)) {
    issues.push(`JWT_SECRET is required when listening on ${config.listen.hostname} (not loopback)`);
  }
  if (config.join !== undefined && config.clusterSecret === undefined) {
    issues.push("CLUSTER_SECRET is required to join a cluster");
  }
  if (config.writeQuorum !== 0) {
    issues.push(
      "WRITE_QUORUM is no longer supported: every write needs a majority of its key's replicas, so that " +
        "no acknowledged write can be lost; unset it",
    );
  }
  return issues;
}

function deepFreeze<T>(value: T): Readonly<T> {
  if (typeof value === "object" && value !== null) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}

/** The `--help` text. */
export function helpText(): string {
  const envLines = Object.values(envSettings).map((setting) =>
    `  --${setting.flag.padEnd(22)} env ${setting.env.join(" or ")}`
  );
  const limitLines = Object.entries(limitEnvNames).map(([name, envName]) =>
    `  --${kebab(name).padEnd(22)} env ${envName}`
  );
  return [
    "dynarust: a distributed key -> JSON value store",
    "",
    "usage: dynarust <LISTEN_ADDRESS> [JOIN_ADDRESS] [flags]",
    "       dynarust export --to FILE [--node URL]     back up a running cluster (see export --help)",
    "       dynarust import --from FILE [--node URL]   restore a backup into a cluster (see import --help)",
    "",
    "  LISTEN_ADDRESS          host:port to serve on (port 0 picks a free port)",
    "  JOIN_ADDRESS            host:port of a live member to join",
    "  --data-dir DIR          where every file of this node lives (default: .)",
    "  --repair                env DYNA_REPAIR=1: repair damaged data files at start, keeping .broken copies",
    ...envLines,
    ...limitLines,
    "  --help, --version",
  ].join("\n");
}
