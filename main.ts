/**
 * The composition root of a dynarust node: reads the command line and environment, opens the store,
 * builds the broker, the authenticator and the HTTP app, listens, and turns signals into a graceful stop.
 * Only this file reads `Deno.args`/`Deno.env`, listens, handles signals or exits.
 */
import { ConfigError, configExitCode, helpText, type Invocation, loadConfig } from "./src/config/load.ts";
import type { Config } from "./src/config/schema.ts";
import { systemClock } from "./src/util/clock.ts";
import { KvError } from "./src/util/errors.ts";
import { createLogger, type Logger } from "./src/util/log.ts";
import { Auth, type UserDirectory, type UserRecord } from "./src/auth/mod.ts";
import { Broker } from "./src/sse/mod.ts";
import {
  DenoFs,
  encryptionKeyBase64,
  importEncryptionKey,
  loadOrCreateSecretFile,
  Store,
  VersionConflictError,
} from "./src/store/mod.ts";
import { createApp, type NodePhase } from "./src/http/mod.ts";

/** The version `--version` prints. */
export const version = "0.1.0";

/** Exit code when the data on disk cannot be used (`EX_DATAERR`). */
const dataExitCode = 65;

/** The reserved table that holds users. */
const usersTable = "_users";

function parseInvocation(): Invocation | number {
  try {
    return loadConfig({ args: Deno.args, env: Deno.env.toObject() });
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    for (const issue of error.issues) console.error(`dynarust: ${issue}`);
    return configExitCode;
  }
}

function userDirectory(store: Store): UserDirectory {
  return {
    get(user) {
      const entry = store.get(usersTable, user);
      return entry === undefined ? undefined : (JSON.parse(entry.json) as { value: UserRecord }).value;
    },
    async create(user, record) {
      try {
        await store.put(usersTable, user, record, { owner: user, ifVersion: 0 });
        return "created";
      } catch (error) {
        if (error instanceof VersionConflictError) return "exists";
        throw error;
      }
    },
  };
}

async function openStore(config: Config, logger: Logger) {
  const fs = new DenoFs();
  const encryption = await importEncryptionKey(encryptionKeyBase64);
  const store = await Store.open({
    dir: config.dataDir,
    fs,
    clock: systemClock,
    logger,
    limits: config.limits,
    encryption,
    snapshotLimit: config.snapLimit,
    snapshotIntervalSecs: config.snapIntervalSecs,
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
  return { store, jwtSecret };
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

async function checkDataDir(dir: string): Promise<void> {
  const probe = `${dir}/.write_probe`;
  try {
    await Deno.mkdir(dir, { recursive: true });
    await Deno.writeFile(probe, new Uint8Array(1), { mode: 0o600 });
    await Deno.remove(probe);
  } catch (error) {
    throw new ConfigError([`--data-dir ${dir}: not a writable data directory (${(error as Error).name})`]);
  }
}

async function run(config: Config): Promise<number> {
  const logger = createLogger({ level: config.logLevel });
  const tls = await readTls(config);
  await checkDataDir(config.dataDir);
  const { store, jwtSecret } = await openStore(config, logger);
  const broker = new Broker({ limits: config.limits, logger });
  store.onChange((event) => broker.publish(event));
  const auth = new Auth({
    secret: jwtSecret,
    limits: config.limits,
    clock: systemClock,
    users: userDirectory(store),
  });
  let phase: NodePhase = "starting";
  let address = `${config.listen.hostname}:${config.listen.port}`;
  const startedMs = systemClock.nowMs();
  const stopped = Promise.withResolvers<number>();
  const app = createApp({
    store,
    broker,
    auth,
    limits: config.limits,
    clock: systemClock,
    logger,
    membership:
      () => [{ id: address, address, status: "alive", incarnation: 0, lastSeenMs: systemClock.nowMs() }],
    phase: () => phase,
    onFatal: (error) => {
      logger.error("internal invariant broken; stopping so that recovery starts from the disk", {
        error: String(error),
      });
      stopped.resolve(70);
    },
  });
  const server = Deno.serve({
    hostname: config.listen.hostname,
    port: config.listen.port,
    ...(tls ?? {}),
    onListen: ({ hostname, port }) => {
      address = `${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`;
      console.log(`listening on ${config.mode}://${address}`);
    },
  }, app.fetch);
  phase = "serving";
  logger.info("serving", {
    address,
    startup_ms: systemClock.nowMs() - startedMs,
    keys: store.stats().sequence,
  });

  const stop = () => stopped.resolve(0);
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
  const code = await stopped.promise;
  phase = "draining";
  logger.info("shutting down: refusing new requests, finishing accepted writes");
  broker.close();
  const deadline = AbortSignal.timeout(config.limits.shutdownMsMax);
  await Promise.race([
    server.shutdown(),
    new Promise((resolve) => deadline.addEventListener("abort", resolve)),
  ]);
  await store.close();
  logger.info("stopped");
  return code;
}

async function main(): Promise<number> {
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
    if (error instanceof KvError && (error.code === "wrong_key" || error.code === "wal_corrupt")) {
      console.error(`dynarust: ${error.message}`);
      return error.code === "wrong_key" ? configExitCode : dataExitCode;
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
