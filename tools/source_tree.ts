// Shared by the tools that read the source tree: the `--root` argument and a bounded directory walk.

/** The `--root` argument, or the working directory. */
export function parseRoot(args: readonly string[]): string {
  if (args.length === 0) return ".";
  if (args.length === 2 && args[0] === "--root" && args[1] !== undefined) return args[1];
  throw new Error(`usage: --root DIR; got: ${args.join(" ")}`);
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
