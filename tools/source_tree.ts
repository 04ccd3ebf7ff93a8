// Shared by the tools that read the source tree: the `--root` flag and a bounded directory walk.
import { type CommandSpec, type Invocation, parseCommand, UsageError } from "./cli.ts";

/**
 * The command line of a tool that reads the source tree: `--root DIR`, default the working directory.
 * `script` is the tool's file name in `tools/`; `summary` says what it checks.
 */
export function sourceTreeCommand(options: { script: string; summary: readonly string[] }): CommandSpec {
  return {
    usage: `deno run --allow-read tools/${options.script} [--root DIR]`,
    summary: options.summary,
    flags: {
      root: {
        type: "string",
        valueName: "DIR",
        meaning: "the repository to check (src/, tests/, tools/ and main.ts under it)",
        defaultText: "the working directory",
      },
    },
  };
}

/**
 * The `--root` of `args` (the working directory, ".", when absent), or the help text (`--help`).
 *
 * @throws {UsageError} for an unknown flag, or `--root` without a directory.
 */
export function parseRoot(command: CommandSpec, args: readonly string[]): Invocation<string> {
  const parsed = parseCommand(command, args);
  if (parsed.kind === "help") return parsed;
  const root = parsed.values.root;
  if (root === "") throw new UsageError("--root must name a directory; got an empty value");
  return { kind: "run", options: typeof root === "string" ? root : "." };
}

/** Files under `root/dir` (paths relative to `root`), sorted; a missing `dir` has none. */
export async function listFiles(
  root: string,
  dir: string,
  options: { recursive: boolean },
): Promise<string[]> {
  const files: string[] = [];
  const pending = [dir];
  // Bounded by the number of directories under `dir`.
  while (pending.length > 0) {
    const current = pending.pop()!;
    let entries: Deno.DirEntry[];
    try {
      entries = await Array.fromAsync(Deno.readDir(`${root}/${current}`));
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) continue;
      throw error;
    }
    for (const entry of entries) {
      const path = `${current}/${entry.name}`;
      if (entry.isDirectory && options.recursive) pending.push(path);
      else if (entry.isFile) files.push(path);
    }
  }
  return files.sort();
}
