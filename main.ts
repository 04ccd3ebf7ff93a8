/**
 * The composition root of a dynarust node: reads the command line and environment, dispatches to a
 * subcommand or starts the node (src/node), and turns signals into a graceful stop and errors into exit
 * codes. Only this file reads `Deno.args`/`Deno.env`, handles signals or exits.
 */
import { ConfigError, configExitCode, envNames, type Invocation, loadConfig } from "./src/config/load.ts";
import { helpText } from "./src/config/help.ts";
import type { Config } from "./src/config/schema.ts";
import { systemClock } from "./src/util/clock.ts";
import { KvError } from "./src/util/errors.ts";
import { createLogger } from "./src/util/log.ts";
import {
  DataDirLockedError,
  DenoFs,
  loadBuildEncryption,
  privateFilePermissions,
  replaceFile,
  storageFileName,
  Store,
  walFileName,
} from "./src/store/mod.ts";
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
import { JoinError, startNode, version } from "./src/node/mod.ts";

export { leftLastTime, type NodeHandle, startNode, type StartOptions, version } from "./src/node/mod.ts";

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
