// Goal: every example in a doc comment (each module's `@example`, the store's, the bench helpers') compiles
// against the current API, so the docs cannot drift from the code unnoticed.
// Method: spawn the real `deno check --doc-only` on main.ts, src/ and tools/ from the repository root; it
// type-checks each fenced `ts` block of a JSDoc comment as a module of its own (the file's exports imported).
import assert from "node:assert/strict";

const repositoryRoot = new URL("../../", import.meta.url).pathname;

/** Runs `deno check --doc-only` on `paths` in `cwd`: its exit code and its output (without colours). */
async function checkDocs(cwd: string, paths: string[]): Promise<{ code: number; text: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["check", "--doc-only", ...paths],
    cwd,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  const text = decoder.decode(output.stdout) + decoder.decode(output.stderr);
  return { code: output.code, text };
}

Deno.test(
  "deno check --doc-only: every doc comment example of main.ts, src/ and tools/ compiles",
  async () => {
    const { code, text } = await checkDocs(repositoryRoot, ["main.ts", "src/", "tools/"]);
    assert.equal(code, 0, `deno check --doc-only failed:\n${text}`);
  },
);

Deno.test("deno check --doc-only: an example that does not compile fails the check", async () => {
  // The control: without it, a check that no longer looks at examples would pass the test above.
  const dir = await Deno.makeTempDir({ prefix: "doc_examples_" });
  try {
    const example = "```ts\n * const count: number = double(2);\n * ```";
    await Deno.writeTextFile(
      `${dir}/mod.ts`,
      `/**\n * Doubles.\n *\n * ${example}\n */\n` +
        `export function double(n: number): string {\n  return String(n * 2);\n}\n`,
    );
    const { code, text } = await checkDocs(dir, ["mod.ts"]);
    assert.notEqual(code, 0, `the broken example passed:\n${text}`);
    assert.match(text, /TS2322 \[ERROR\]: Type 'string' is not assignable to type 'number'/);
    assert.match(text, /mod\.ts#\d+-\d+\.ts/, "the error names the example's lines");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
