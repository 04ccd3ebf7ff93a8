// Goal: tools/check_tidy.ts flags functions over 70 lines, lines over 110 characters and modules
// without tests, at max and max + 1, in src/, main.ts, tools/*.ts, tools/bench/**/*.ts and tests/**/*.ts,
// and is not fooled by braces inside strings, comments and regexes.
// Method: fixture trees in a temp dir, checked by running the script with --root.
import assert from "node:assert/strict";
import { findFunctions, maskText } from "../../../tools/check_tidy.ts";
import { runTool, withTempDir, writeTree } from "./fixture_tree.ts";

/** A function declaration spanning exactly `lineCount` lines, its body full of decoy braces. */
function functionOfLines(name: string, lineCount: number): string {
  const decoys = ['"}"', "'{'", "`}${'{'}`", "/[{]/.source", "/* } */ 0"];
  const body = Array.from(
    { length: lineCount - 3 },
    (_, index) => `  const v${index} = ${decoys[index % 5]};`,
  );
  return [`export function ${name}(): number {`, ...body, "  return 0; // }", "}", ""].join("\n");
}

/** A class method and an arrow function spanning exactly `lineCount` lines each. */
function membersOfLines(lineCount: number): string {
  const body = Array.from({ length: lineCount - 2 }, (_, index) => `    const v${index} = ${index};`);
  return [
    "export class Big {",
    "  async run(",
    "    options: { a: number },",
    "  ): Promise<{ b: string }> {",
    ...body.slice(2),
    "  }",
    "}",
    "export const big = async (x: number) => {",
    ...body,
    "};",
    "",
  ].join("\n");
}

const line110 = `// ${"x".repeat(107)}`;
const line111 = `// ${"x".repeat(108)}`;

const cleanTree: Record<string, string> = {
  "src/util/a.ts": functionOfLines("atMax", 70) + line110 + "\n" + membersOfLines(70),
  "src/store/mod.ts": "export const b = () => {\n  return 1;\n};\n",
  "tools/t.ts": functionOfLines("tool", 12),
  "main.ts": functionOfLines("main", 5),
  "tools/bench/deep/b.ts": functionOfLines("bench", 70),
  "tests/helpers/h.ts": functionOfLines("helper", 70) + line110 + "\n",
  "tests/unit/util/a_test.ts": "Deno.test('a', () => {});\n",
  "tests/integration/store_test.ts": 'import { b } from "../../src/store/mod.ts";\n',
};

Deno.test("check_tidy.ts passes a tree at every limit", async () => {
  await withTempDir(async (root) => {
    await writeTree(root, cleanTree);
    const result = await runTool("check_tidy.ts", root);
    assert.equal(result.stderr, "");
    assert.equal(result.stdout.trim(), "tidy ok");
    assert.equal(result.code, 0);
  });
});

Deno.test("check_tidy.ts reports functions, lines and untested modules one over the limit", async () => {
  await withTempDir(async (root) => {
    await writeTree(root, {
      ...cleanTree,
      "src/util/a.ts": functionOfLines("overMax", 71) + line111 + "\n" + membersOfLines(71),
      "tools/t.ts": functionOfLines("tool", 71),
      "tools/bench/deep/b.ts": functionOfLines("bench", 71),
      "tests/helpers/h.ts": functionOfLines("helper", 12) + line111 + "\n",
      "src/sse/mod.ts": "export const c = 1;\n",
      "tests/unit/sse/helper.ts": "export const notATest = 1;\n",
      "tests/integration/store_test.ts": "// names no module\n",
    });
    const result = await runTool("check_tidy.ts", root);
    assert.equal(result.code, 1);
    assert.deepEqual(result.stderr.trim().split("\n"), [
      "src/util/a.ts:1: overMax is 71 lines, limit is 70",
      "src/util/a.ts:72: line is 111 characters, limit is 110",
      "src/util/a.ts:74: run is 71 lines, limit is 70",
      "src/util/a.ts:146: arrow function is 71 lines, limit is 70",
      "tools/t.ts:1: tool is 71 lines, limit is 70",
      "tools/bench/deep/b.ts:1: bench is 71 lines, limit is 70",
      "tests/helpers/h.ts:13: line is 111 characters, limit is 110",
      "src/sse/: no test file under tests/unit/sse/ nor one in tests/integration/ naming src/sse/",
      "src/store/: no test file under tests/unit/store/ nor one in tests/integration/ naming src/store/",
      "9 tidy violation(s)",
    ]);
  });
});

Deno.test("maskText() blanks strings, comments, templates and regexes but keeps lines and offsets", () => {
  const text =
    'const a = "{"; // {\nconst b = `x${ {c: "}"}.c }y`; /* { */ const r = /[}]\\//g;\nconst d = 4 / 2;';
  const masked = maskText(text);
  assert.equal(masked.length, text.length);
  assert.equal(masked.split("\n").length, 3);
  assert.equal(
    masked.replace(/[^{}]/g, ""),
    "{{}}",
    "only the template's ${ } and the object literal remain",
  );
  assert.ok(masked.endsWith("const d = 4 / 2;"), "a division is not a regex");
});

Deno.test("findFunctions() skips calls, control flow and overloads", () => {
  const text = [
    "function overload(a: string): void;",
    "if (ok) {",
    "}",
    "run(options, {",
    "  key: 1,",
    "});",
    "const f = function named() {",
    "};",
  ].join("\n");
  assert.deepEqual(findFunctions(maskText(text)), [{ name: "named", startLine: 7, endLine: 8 }]);
});
