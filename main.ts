/**
 * The composition root of a dynarust node, and the table of contents of its life: read the invocation,
 * dispatch to a subcommand (export, import, health) or start the node (src/node), turn SIGTERM/SIGINT into
 * a graceful stop, and errors into exit codes. Only this file reads `Deno.args`/`Deno.env`, handles signals
 * or exits.
 */
import { ConfigError, configExitCode, envNames, type Invocation, loadConfig } from "./src/config/load.ts";
import { helpText } from "./src/config/help.ts";
import type { Config } from "./src/config/schema.ts";
import { KvError } from "./src/util/errors.ts";
import { DataDirLockedError } from "./src/store/mod.ts";
import { BackupError } from "./src/backup/mod.ts";
import { type CommandIo, JoinError, runBackup, runHealth, startNode, version } from "./src/node/mod.ts";

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

/** What subcommands get only from here: the environment, and a `fetch` through a client trusting a CA. */
const commandIo: CommandIo = {
  env: readEnv,
  trustingFetch(caCerts) {
    const client = Deno.createHttpClient({ caCerts });
    return {
      fetch: ((input, init) => fetch(input, { ...init, client })) as typeof fetch,
      close: () => client.close(),
    };
  },
};

async function main(): Promise<number> {
  const subcommand = Deno.args[0];
  if (subcommand === "health") return await runHealth(Deno.args.slice(1), commandIo);
  if (subcommand === "export" || subcommand === "import") {
    try {
      return await runBackup(subcommand, Deno.args.slice(1), commandIo);
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
