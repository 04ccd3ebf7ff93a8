/**
 * The subcommands besides running a node: `dynarust export|import` (a backup of a running cluster over
 * HTTP, or of a stopped node's data dir) and `dynarust health` (a container's health check). main.ts
 * dispatches to them and turns what they return or throw into exit codes; what only main.ts may do (read
 * the environment, call `fetch` with a client that trusts a CA) it hands in as {@linkcode CommandIo}.
 */
import { ConfigError, envNames, loadConfig } from "../config/load.ts";
import { systemClock } from "../util/clock.ts";
import { KvError } from "../util/errors.ts";
import { createLogger } from "../util/log.ts";
import {
  DataDirLockedError,
  DenoFs,
  loadBuildEncryption,
  privateFilePermissions,
  replaceFile,
  storageFileName,
  Store,
  walFileName,
} from "../store/mod.ts";
import {
  BackupError,
  exportCluster,
  exportStore,
  importCluster,
  importStore,
  linesOf,
  parseBackupCommand,
  progressDisplay,
} from "../backup/mod.ts";
import { checkHealth, HealthUsageError, parseHealthCommand } from "../health/mod.ts";

/** What the subcommands need from main.ts, the only file that reads the environment or calls `fetch`. */
export interface CommandIo {
  /** The variables among `names` that are set. */
  env(names: readonly string[]): Record<string, string>;
  /** A `fetch` that trusts `caCerts` (https with a private CA), and what releases its connections. */
  trustingFetch(caCerts: string[]): { fetch: typeof fetch; close(): void };
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
async function openDataDir(
  kind: "export" | "import",
  dataDir: string,
  env: Record<string, string>,
): Promise<Store> {
  const fs = new DenoFs();
  const holdsData = await fs.stat(`${dataDir}/${storageFileName}`) !== undefined ||
    await fs.stat(`${dataDir}/${walFileName}`) !== undefined;
  if (kind === "export" && !holdsData) {
    throw new BackupError(
      `--data-dir ${dataDir} holds no dynarust data (no ${storageFileName} or ${walFileName})`,
    );
  }
  try {
    const invocation = loadConfig({ args: ["127.0.0.1:0", "--data-dir", dataDir], env });
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
async function runDataDirBackup(
  command: { kind: "export" | "import"; dataDir: string; path: string },
  env: Record<string, string>,
) {
  const { kind, dataDir, path } = command;
  const display = backupDisplay(kind);
  if (kind === "export") {
    const store = await openDataDir(kind, dataDir, env);
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
  const file = await new DenoFs().openStream(path);
  const store = await openDataDir(kind, dataDir, env).catch(async (error) => {
    await file.cancel();
    throw error;
  });
  try {
    const lines = linesOf(file.pipeThrough(new TextDecoderStream()));
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
export async function runBackup(
  kind: "export" | "import",
  args: readonly string[],
  io: CommandIo,
): Promise<number> {
  const command = parseBackupCommand(kind, args, io.env(["CLUSTER_SECRET"]));
  if (command.kind === "help") {
    console.log(command.text);
    return 0;
  }
  if ("dataDir" in command) return await runDataDirBackup(command, io.env(envNames()));
  const caCerts = command.caPath === undefined
    ? undefined
    : [await new DenoFs().readTextFile(command.caPath)];
  const trusting = caCerts === undefined ? undefined : io.trustingFetch(caCerts);
  const target = {
    nodeUrl: command.nodeUrl,
    clusterSecret: command.clusterSecret,
    ...(caCerts === undefined ? {} : { caCerts }),
    ...(trusting === undefined ? {} : { fetch: trusting.fetch }),
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
  const file = await new DenoFs().openStream(command.path);
  const result = await importCluster(
    target,
    linesOf(file.pipeThrough(new TextDecoderStream())),
    display.update,
  );
  display.finish(
    `imported ${result.restored} records from ${command.path}` +
      (result.missed === 0 ? "" : `; ${result.missed} missed a replica that is down: run the import again`),
  );
  return result.missed === 0 ? 0 : 1;
}

/** `dynarust health [URL]`: 0 when the node at URL serves, 1 otherwise (a container's health check). */
export async function runHealth(args: readonly string[], io: CommandIo): Promise<number> {
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
  let trusting: { fetch: typeof fetch; close(): void } | undefined;
  try {
    if (command.caPath !== undefined) {
      trusting = io.trustingFetch([await new DenoFs().readTextFile(command.caPath)]);
    }
  } catch (error) {
    console.error(`dynarust health: cannot read --ca ${command.caPath} (${(error as Error).name})`);
    return 1;
  }
  const result = await checkHealth({
    url: command.url,
    timeoutMs: command.timeoutMs,
    ...(trusting === undefined ? {} : { fetch: trusting.fetch }),
  });
  trusting?.close();
  if (result.healthy) console.log(`dynarust health: ${result.message}`);
  else console.error(`dynarust health: ${result.message}`);
  return result.healthy ? 0 : 1;
}
