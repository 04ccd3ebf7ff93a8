// `deno task compile`: builds the one executable with `deno compile` and the node's permissions. `deno
// compile` downloads Deno's runtime (denort) from Deno's servers unless DENORT_BIN names a local one; when
// that fails, Deno prints a raw DNS or TLS error and a backtrace. This says instead what failed and what to
// do (set DENORT_BIN, or build where the download works), and exits 69 (EX_UNAVAILABLE, sysexits.h).
//
// Usage: deno run -A tools/compile.ts [--output PATH]   (--help lists the flags)
import { stripVTControlCharacters } from "node:util";
import { libcPaths } from "../src/server/mod.ts";
import { type CommandSpec, type Invocation, parseCommand, runTool, UsageError } from "./cli.ts";

/** Exit code when the runtime could not be had: the download failed, or DENORT_BIN names no file. */
export const unavailableExitCode = 69;

/** The environment variables the node may read, as `task start` runs it. */
const envNames =
  "JWT_SECRET,CLUSTER_SECRET,DYNA_*,SNAP_LIMIT,SNAP_INTERVAL_SECS,RUST_LOG,REPLICATION_FACTOR," +
  "WRITE_QUORUM";

/** `deno compile`'s arguments for an executable at `output`. */
export function compileArgs(output: string): string[] {
  return [
    "compile",
    "--v8-flags=--max-semi-space-size=8,--heap-growing-percent=100",
    "--allow-net",
    "--allow-read",
    "--allow-write",
    `--allow-ffi=${libcPaths.join(",")}`,
    `--allow-env=${envNames}`,
    "--output",
    output,
    "main.ts",
  ];
}

const compileCommand: CommandSpec = {
  usage: "deno task compile [--output PATH]",
  summary: [
    "Builds ./dynarust: the node, this checkout's encryption key and the dashboard in one executable.",
    "deno compile downloads Deno's runtime (denort) once, or takes the file DENORT_BIN names.",
  ],
  flags: {
    output: {
      type: "string",
      valueName: "PATH",
      meaning: "where to write the executable",
      defaultText: "dynarust",
    },
  },
};

/** The output path asked for, or the help. @throws {UsageError} for an unknown flag or an empty path. */
export function parseCompileArgs(args: readonly string[]): Invocation<{ output: string }> {
  const parsed = parseCommand(compileCommand, args);
  if (parsed.kind === "help") return parsed;
  const { output } = parsed.values;
  if (output === "") throw new UsageError("--output must name a file; got an empty value");
  return { kind: "run", options: { output: typeof output === "string" ? output : "dynarust" } };
}

/**
 * What to tell the user when `deno compile` failed with `stderr`, or undefined when the failure is not
 * about getting the runtime (then Deno's own message is the one to read).
 */
export function runtimeAdvice(stderr: string, denortBin: string | undefined): string | undefined {
  if (denortBin !== undefined && !/dns error|failed to lookup|error sending request|connect/i.test(stderr)) {
    if (!/denort|DENORT_BIN|No such file|not found|os error 2/i.test(stderr)) return undefined;
    return `deno compile could not use the runtime DENORT_BIN names (${denortBin}): ` +
      `${failureOf(stderr)}. Point DENORT_BIN at the denort binary of Deno 2.9.6 for this platform ` +
      "(from denort-<target>.zip of the 2.9.6 release), or unset it to download it.";
  }
  if (
    !/dns error|failed to lookup|error sending request|download|connect|certificate|timed out/i.test(stderr)
  ) {
    return undefined;
  }
  return "deno compile could not download Deno's runtime (denort) from Deno's servers: " +
    `${failureOf(stderr)}. Without network access, download denort-<target>.zip of Deno 2.9.6 ` +
    "elsewhere (https://dl.deno.land/release/v2.9.6/denort-x86_64-unknown-linux-gnu.zip for Linux x86-64), " +
    "unzip it here and run: DENORT_BIN=$PWD/denort deno task compile";
}

/**
 * What failed, from Deno's message: the cause that names it (Deno prints "error: Writing ... Caused by:
 * 0: ..., 1: ..." and a backtrace), without colours.
 */
export function failureOf(stderr: string): string {
  const lines = stripVTControlCharacters(stderr).split("\n").map((line) => line.trim());
  const causes = lines.filter((line) => /^\d+: /.test(line)).map((line) => line.replace(/^\d+: /, ""));
  const dns = causes.find((cause) => /dns error/i.test(cause));
  const found = (dns === undefined ? undefined : dns.slice(dns.search(/dns error/i))) ??
    causes.find((cause) => /could not find denort/i.test(cause)) ??
    causes.find((cause) => /error sending request|timed out|certificate/i.test(cause)) ??
    lines.find((line) => /^error:/i.test(line))?.replace(/^error:\s*/i, "") ?? "";
  return found.slice(0, 300);
}

async function compile(options: { output: string }): Promise<number> {
  const result = await new Deno.Command(Deno.execPath(), {
    args: compileArgs(options.output),
    stdout: "inherit",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(result.stderr);
  if (result.success) {
    await Deno.stderr.write(result.stderr);
    return 0;
  }
  const advice = runtimeAdvice(stderr, Deno.env.get("DENORT_BIN"));
  if (advice === undefined) {
    await Deno.stderr.write(result.stderr);
    return result.code === 0 ? 1 : result.code;
  }
  console.error(`compile: ${advice}`);
  return unavailableExitCode;
}

if (import.meta.main) {
  Deno.exit(await runTool({ name: "compile", args: Deno.args, parse: parseCompileArgs, run: compile }));
}
