// Helpers for the tools tests: write a small fixture tree into a temp dir and run a tool over it.

/** Writes `files` (path relative to `root` → text) under `root`, creating directories. */
export async function writeTree(root: string, files: Record<string, string>): Promise<void> {
  for (const [path, text] of Object.entries(files)) {
    const slash = path.lastIndexOf("/");
    if (slash > 0) await Deno.mkdir(`${root}/${path.slice(0, slash)}`, { recursive: true });
    await Deno.writeTextFile(`${root}/${path}`, text);
  }
}

/** Runs `tools/<script>` with `--root root` and read-only permission. */
export async function runTool(script: string, root: string) {
  return await runToolWith(script, { root, args: ["--root", root] });
}

/** Runs `tools/<script>` with `args`, allowed to read `root` only. */
export async function runToolWith(script: string, options: { root: string; args: readonly string[] }) {
  const scriptPath = new URL(`../../../tools/${script}`, import.meta.url).pathname;
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", `--allow-read=${options.root}`, scriptPath, ...options.args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: output.code, stdout: decoder.decode(output.stdout), stderr: decoder.decode(output.stderr) };
}

/** Runs `body` with a fresh temp dir that is removed afterwards. */
export async function withTempDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
