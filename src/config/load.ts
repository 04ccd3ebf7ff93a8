import { parseArgs } from "node:util";
import { KvError } from "../util/errors.ts";
import { type Config, ConfigSchema, configSettings, limitSettings } from "./schema.ts";

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

/** The flag of a limit: its name in kebab-case (`requestBytesMax` → `request-bytes-max`). */
export function limitFlag(name: string): string {
  return name.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`);
}

/** Every environment variable the configuration reads (the node is granted these and no others). */
export function envNames(): string[] {
  return [
    ...Object.values(configSettings).flatMap((setting) => setting.env),
    ...Object.values(limitSettings).map((setting) => setting.env),
  ];
}

/** The options `parseArgs` takes: `--help`, `--version` and the flag of every setting. */
function parserOptions(): Record<string, { type: "string" | "boolean"; short?: string }> {
  const options: Record<string, { type: "string" | "boolean"; short?: string }> = {
    help: { type: "boolean", short: "h" },
    version: { type: "boolean", short: "V" },
  };
  for (const setting of Object.values(configSettings)) {
    options[setting.flag] = { type: "value" in setting ? "string" : "boolean" };
  }
  for (const name of Object.keys(limitSettings)) options[limitFlag(name)] = { type: "string" };
  return options;
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
      options: parserOptions(),
    });
  } catch (error) {
    throw new ConfigError([error instanceof Error ? error.message : String(error)]);
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  if (values.help === true) return { kind: "help" };
  if (values.version === true) return { kind: "version" };
  const positionals = parsed.positionals;
  // DYNA_LISTEN stands for the first argument when there is none: `deno task start` sets it, so that an
  // address given to the task is the node's own (`task start 127.0.0.1:7150`), not a member to join.
  const listen = positionals[0] ?? options.env.DYNA_LISTEN;
  if (listen === undefined) {
    throw new ConfigError(["LISTEN_ADDRESS is required (for example 127.0.0.1:6660, or DYNA_LISTEN=...)"]);
  }
  if (positionals.length > 2) throw new ConfigError([`unexpected argument "${positionals[2]}"`]);
  // A flag wins over its env vars; a switch given (`--repair`) reads as "true".
  const pick = (flag: string, envNames: readonly string[]): string | undefined => {
    const fromFlag = values[flag];
    if (typeof fromFlag === "string") return fromFlag;
    if (fromFlag === true) return "true";
    for (const name of envNames) if (options.env[name] !== undefined) return options.env[name];
    return undefined;
  };
  const input: Record<string, unknown> = {
    listen,
    join: positionals[1],
    limits: Object.fromEntries(
      Object.entries(limitSettings).map(([name, setting]) => [name, pick(limitFlag(name), [setting.env])]),
    ),
  };
  for (const [name, setting] of Object.entries(configSettings)) input[name] = pick(setting.flag, setting.env);
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

/** The name a problem is reported under: the setting's first env var, else its flag. */
const pathNames: Record<string, string> = {
  listen: "LISTEN_ADDRESS",
  join: "JOIN_ADDRESS",
  ...Object.fromEntries(
    Object.entries(configSettings).map((
      [name, setting],
    ) => [name, setting.env[0] ?? `--${setting.flag}`]),
  ),
  ...Object.fromEntries(Object.entries(limitSettings).map(([name, setting]) => [name, setting.env])),
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
