// Goal: the tools that read the source tree (check_imports.ts, check_tidy.ts) take their one flag through
// tools/source_tree.ts: `--root DIR` and `--root=DIR` both work, `--help` lists it with its meaning and
// default, and an unknown flag, a missing value or a stray argument exit 64 naming what is wrong.
// Method: spawn each script, allowed to read only a temp dir holding one violation, so a `--root` the
// script ignored would fail on permissions instead of reporting that violation.
import assert from "node:assert/strict";
import { runToolWith, withTempDir, writeTree } from "./fixture_tree.ts";

const violations = {
  "check_imports.ts": {
    tree: { "src/util/clock.ts": 'import { limits } from "../config/limits.ts";\n' },
    report: "src/util/clock.ts:1: util may not import config (STYLE.md B2)",
  },
  "check_tidy.ts": {
    tree: { "src/util/a.ts": `// ${"x".repeat(108)}\n`, "tests/unit/util/a_test.ts": "" },
    report: "src/util/a.ts:1: line is 111 characters, limit is 110",
  },
};

for (const [script, { tree, report }] of Object.entries(violations)) {
  Deno.test(`${script} --help lists --root with its meaning and default, and exits 0`, async () => {
    await withTempDir(async (root) => {
      const result = await runToolWith(script, { root, args: ["--help"] });
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stderr, "");
      assert.match(
        result.stdout,
        new RegExp(`^usage: deno run --allow-read tools/${script} \\[--root DIR\\]`),
      );
      assert.match(result.stdout, /--root DIR +the repository to check/);
      assert.match(result.stdout, /default: the working directory/);
      assert.match(result.stdout, /-h, --help +print this help and exit/);
    });
  });

  Deno.test(`${script} reads the tree of --root=DIR as of --root DIR`, async () => {
    await withTempDir(async (root) => {
      await writeTree(root, tree);
      for (const args of [[`--root=${root}`], ["--root", root]]) {
        const result = await runToolWith(script, { root, args });
        assert.equal(result.code, 1, result.stderr);
        assert.equal(result.stderr.split("\n")[0], report, args.join(" "));
      }
    });
  });

  Deno.test(
    `${script} refuses an unknown flag, a missing value or a stray argument ` +
      "with exit 64",
    async () => {
      await withTempDir(async (root) => {
        const cases = [
          { args: ["--rot", root], message: /unknown flag --rot; the flags are --root, --help/ },
          { args: [`--root=${root}`, "-r"], message: /unknown flag -r; the flags are --root, --help/ },
          { args: ["--root"], message: /--root <value>' argument missing/ },
          { args: [root], message: /Unexpected argument/ },
        ];
        for (const { args, message } of cases) {
          const result = await runToolWith(script, { root, args });
          assert.equal(result.code, 64, `${args.join(" ")}: ${result.stderr}`);
          assert.equal(result.stdout, "");
          assert.match(result.stderr, message);
          assert.match(result.stderr, /\(see --help\)\n$/);
        }
      });
    },
  );
}
