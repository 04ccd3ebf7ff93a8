// Enforces the mechanical parts of STYLE.md B8 and B1 over `src/**/*.ts`, `main.ts`, `tools/*.ts`,
// `tools/bench/**/*.ts` and `tests/**/*.ts`:
// - a function spans at most 70 lines, from the line that opens it to its closing brace;
// - a line is at most 110 characters (deno.json's fmt lineWidth);
// - every `src/<module>/` has a test: a test file under `tests/unit/<module>/`, or one under
//   `tests/integration/` whose text names `src/<module>/`.
//
// Usage: deno run --allow-read tools/check_tidy.ts [--root DIR]   (default: the working directory; --help)
// Prints each violation and exits 1, or prints "tidy ok" and exits 0.
//
// Functions are found by a heuristic scan, not a parser: comments, strings, template literals and
// regular expression literals are blanked first, so braces inside them do not count; then `function`
// declarations and expressions, methods (a line that starts with a name, its parameters, an optional
// return type and `{`) and arrow functions with a block body are matched to their closing brace.
import { runTool } from "./cli.ts";
import { listFiles, parseRoot, sourceTreeCommand } from "./source_tree.ts";

/** One broken rule; `line` is 0 for a rule about a whole directory. */
export interface TidyViolation {
  file: string;
  line: number;
  rule: string;
}

/** A function found by {@linkcode findFunctions}; lines are 1-based and inclusive. */
export interface FunctionSpan {
  name: string;
  startLine: number;
  endLine: number;
}

const functionLinesMax = 70;
const lineCharsMax = 110;
const regexAfterWords = new Set([
  "return",
  "typeof",
  "case",
  "do",
  "else",
  "in",
  "of",
  "new",
  "delete",
  "void",
  "throw",
  "yield",
  "await",
  "instanceof",
]);
const notMethodNames = new Set([
  "if",
  "for",
  "while",
  "switch",
  "catch",
  "with",
  "return",
  "function",
  "new",
  "typeof",
  "await",
  "yield",
  "delete",
  "void",
  "throw",
  "super",
  "import",
  "else",
  "do",
  "case",
]);

/**
 * `text` with the insides of comments, strings, template literals and regular expression literals
 * replaced by spaces; newlines, quotes and the code in `${...}` are kept, so offsets and lines still match.
 */
export function maskText(text: string): string {
  const out = text.split("");
  const templateDepths: number[] = [];
  let braceDepth = 0;
  let index = 0;
  // Each pass consumes at least one character.
  while (index < text.length) {
    const char = text[index]!;
    const next = text[index + 1];
    if (char === "/" && next === "/") index = blankUntil(text, out, index + 2, "\n");
    else if (char === "/" && next === "*") index = blankUntil(text, out, index + 2, "*/") + 2;
    else if (char === '"' || char === "'") index = blankString(text, out, index);
    else if (char === "/" && regexMayStart(out, index)) index = blankRegex(text, out, index);
    else if (char === "`") index = blankTemplate(text, out, index + 1, templateDepths, braceDepth);
    else if (char === "{") {
      braceDepth += 1;
      index += 1;
    } else if (char === "}" && templateDepths.at(-1) === braceDepth) {
      templateDepths.pop();
      index = blankTemplate(text, out, index + 1, templateDepths, braceDepth);
    } else {
      if (char === "}") braceDepth -= 1;
      index += 1;
    }
  }
  return out.join("");
}

/** Blanks from `start` up to `end` (exclusive); returns the index of `end`, or the text's length. */
function blankUntil(text: string, out: string[], start: number, end: string): number {
  const found = text.indexOf(end, start);
  const stop = found === -1 ? text.length : found;
  for (let index = start; index < stop; index += 1) if (out[index] !== "\n") out[index] = " ";
  return stop;
}

function blankString(text: string, out: string[], start: number): number {
  const quote = text[start];
  let index = start + 1;
  while (index < text.length && text[index] !== quote && text[index] !== "\n") {
    if (text[index] === "\\") out[index++] = " ";
    if (out[index] !== "\n") out[index] = " ";
    index += 1;
  }
  return index + 1;
}

/** Blanks a template literal from `start` (after a backtick or a closing `}`) to its end or its next `${`. */
function blankTemplate(
  text: string,
  out: string[],
  start: number,
  templateDepths: number[],
  braceDepth: number,
): number {
  let index = start;
  while (index < text.length) {
    const char = text[index]!;
    if (char === "`") return index + 1;
    if (char === "$" && text[index + 1] === "{") {
      templateDepths.push(braceDepth);
      return index + 2;
    }
    if (char === "\\") out[index++] = " ";
    if (index < text.length && out[index] !== "\n") out[index] = " ";
    index += 1;
  }
  return index;
}

/** Whether a `/` at `index` starts a regular expression, not a division, judging by what precedes it. */
function regexMayStart(out: string[], index: number): boolean {
  let back = index - 1;
  while (back >= 0 && /\s/.test(out[back]!)) back -= 1;
  if (back < 0) return true;
  const previous = out[back]!;
  if ("(,=:[!&|?{};+-*%<>~^".includes(previous)) return true;
  if (!/[\w$]/.test(previous)) return false;
  let wordStart = back;
  while (wordStart > 0 && /[\w$]/.test(out[wordStart - 1]!)) wordStart -= 1;
  return regexAfterWords.has(out.slice(wordStart, back + 1).join(""));
}

function blankRegex(text: string, out: string[], start: number): number {
  let index = start + 1;
  let inClass = false;
  while (index < text.length && text[index] !== "\n") {
    const char = text[index]!;
    if (char === "/" && !inClass) break;
    if (char === "\\") out[index++] = " ";
    else if (char === "[") inClass = true;
    else if (char === "]") inClass = false;
    out[index] = " ";
    index += 1;
  }
  return index + 1;
}

/** The index of the bracket matching the opening one at `open` in masked text, or -1. */
function matchForward(masked: string, open: number): number {
  const opening = masked[open]!;
  const closing = opening === "(" ? ")" : opening === "[" ? "]" : "}";
  let depth = 0;
  for (let index = open; index < masked.length; index += 1) {
    if (masked[index] === opening) depth += 1;
    else if (masked[index] === closing && --depth === 0) return index;
  }
  return -1;
}

function previousNonSpace(masked: string, index: number): string {
  let back = index - 1;
  while (back >= 0 && /\s/.test(masked[back]!)) back -= 1;
  return back < 0 ? "" : masked[back]!;
}

/**
 * The index of the body `{` after a parameter list closing at `closeParen`: directly, or after a return
 * type (whose own `{...}` types follow `:`, `|`, `&`, `<`, `,` or `(`). -1 when there is no body.
 */
function findBody(masked: string, closeParen: number): number {
  let index = closeParen + 1;
  while (index < masked.length && /\s/.test(masked[index]!)) index += 1;
  if (masked[index] === "{") return index;
  if (masked[index] !== ":") return -1;
  let depth = 0;
  for (index += 1; index < masked.length; index += 1) {
    const char = masked[index]!;
    const arrow = char === "=" && masked[index + 1] === ">";
    if (arrow) index += 1;
    else if ("([<".includes(char)) depth += 1;
    else if (")]>".includes(char)) depth -= 1;
    else if (char === "{" && depth === 0 && !":|&<,(".includes(previousNonSpace(masked, index))) return index;
    else if (char === "{") index = matchForward(masked, index);
    else if (depth === 0 && (char === ";" || char === "=" || char === "}")) return -1;
    if (depth < 0 || index < 0) return -1;
  }
  return -1;
}

/** Every function of a masked text with a block body: `function`s, methods and arrow functions. */
export function findFunctions(masked: string): FunctionSpan[] {
  const lineStarts = [0];
  for (let index = 0; index < masked.length; index += 1) {
    if (masked[index] === "\n") lineStarts.push(index + 1);
  }
  const lineOf = (offset: number) => {
    let low = 0;
    let high = lineStarts.length - 1;
    while (low < high) {
      const middle = Math.ceil((low + high) / 2);
      if (lineStarts[middle]! <= offset) low = middle;
      else high = middle - 1;
    }
    return low + 1;
  };
  const spans = new Map<number, FunctionSpan>();
  const add = (name: string, start: number, body: number) => {
    const end = body < 0 ? -1 : matchForward(masked, body);
    if (end >= 0 && !spans.has(body)) {
      spans.set(body, { name, startLine: lineOf(start), endLine: lineOf(end) });
    }
  };
  const declaration = /\bfunction\b[\s*]*([\w$]*)\s*(?:<[^>(]*>)?\s*\(/g;
  const modifiers = "(?:(?:public|private|protected|static|async|override|readonly|get|set|accessor)\\s+)*";
  const method = new RegExp(`^[ \\t]*${modifiers}(#?[\\w$]+)\\s*(?:<[^>(]*>)?\\s*\\(`, "gm");
  for (const pattern of [declaration, method]) {
    for (const match of masked.matchAll(pattern)) {
      const name = match[1] || "function";
      if (pattern === method && notMethodNames.has(name)) continue;
      const closeParen = matchForward(masked, match.index + match[0].length - 1);
      if (closeParen >= 0) add(name, match.index, findBody(masked, closeParen));
    }
  }
  for (const match of masked.matchAll(/=>\s*\{/g)) {
    const before = match.index;
    const closeParenBefore = previousNonSpace(masked, before) === ")" ? masked.lastIndexOf(")", before) : -1;
    add("arrow function", openParenOf(masked, closeParenBefore) ?? before, match.index + match[0].length - 1);
  }
  return [...spans.values()].sort((left, right) => left.startLine - right.startLine);
}

/** The index of the `(` matching the `)` at `close`, scanning backwards; undefined when there is none. */
function openParenOf(masked: string, close: number): number | undefined {
  if (close < 0) return undefined;
  let depth = 0;
  for (let index = close; index >= 0; index -= 1) {
    if (masked[index] === ")") depth += 1;
    else if (masked[index] === "(" && --depth === 0) return index;
  }
  return undefined;
}

/** The line-length and function-length violations of one file. */
export function checkTidyFile(file: string, text: string): TidyViolation[] {
  const violations: TidyViolation[] = [];
  text.split("\n").forEach((line, index) => {
    const chars = [...line].length;
    if (chars > lineCharsMax) {
      violations.push({
        file,
        line: index + 1,
        rule: `line is ${chars} characters, limit is ${lineCharsMax}`,
      });
    }
  });
  for (const span of findFunctions(maskText(text))) {
    const lines = span.endLine - span.startLine + 1;
    if (lines > functionLinesMax) {
      const rule = `${span.name} is ${lines} lines, limit is ${functionLinesMax}`;
      violations.push({ file, line: span.startLine, rule });
    }
  }
  return violations.sort((left, right) => left.line - right.line);
}

function isTestFile(path: string): boolean {
  return /(^|\/)([^/]*[_.])?test\.(ts|tsx|js|mjs|jsx)$/.test(path);
}

/** One violation for each `src/<module>/` without a unit test directory or an integration test naming it. */
async function checkModulesTested(root: string): Promise<TidyViolation[]> {
  const modules = new Set<string>();
  for (const path of await listFiles(root, "src", { recursive: true })) {
    const parts = path.split("/");
    if (parts.length >= 3 && path.endsWith(".ts")) modules.add(parts[1]!);
  }
  const unitTests = (await listFiles(root, "tests/unit", { recursive: true })).filter(isTestFile);
  const integrationTexts: string[] = [];
  for (const path of (await listFiles(root, "tests/integration", { recursive: true })).filter(isTestFile)) {
    integrationTexts.push(await Deno.readTextFile(`${root}/${path}`));
  }
  const violations: TidyViolation[] = [];
  for (const module of [...modules].sort()) {
    if (unitTests.some((path) => path.startsWith(`tests/unit/${module}/`))) continue;
    if (integrationTexts.some((text) => text.includes(`src/${module}/`))) continue;
    const rule =
      `no test file under tests/unit/${module}/ nor one in tests/integration/ naming src/${module}/`;
    violations.push({ file: `src/${module}/`, line: 0, rule });
  }
  return violations;
}

const command = sourceTreeCommand({
  script: "check_tidy.ts",
  summary: [
    "Checks the tidy rules over src/**/*.ts, main.ts, tools/*.ts, tools/bench/**/*.ts and tests/**/*.ts:",
    "a function spans at most 70 lines, a line at most 110 characters, and every src/<module>/ has a test.",
    'Prints each violation and exits 1, or prints "tidy ok" and exits 0.',
  ],
});

/** Checks the tree at `root`; returns the exit code. */
async function checkTree(root: string): Promise<number> {
  const files = [
    ...(await listFiles(root, "src", { recursive: true })),
    ...(await listFiles(root, "tools", { recursive: false })),
    ...(await listFiles(root, "tools/bench", { recursive: true })),
    ...(await listFiles(root, "tests", { recursive: true })),
  ].filter((path) => path.endsWith(".ts"));
  if (await Deno.stat(`${root}/main.ts`).then(() => true, () => false)) files.push("main.ts");
  const violations: TidyViolation[] = [];
  for (const file of files) {
    violations.push(...checkTidyFile(file, await Deno.readTextFile(`${root}/${file}`)));
  }
  violations.push(...(await checkModulesTested(root)));
  for (const { file, line, rule } of violations) {
    console.error(line > 0 ? `${file}:${line}: ${rule}` : `${file}: ${rule}`);
  }
  if (violations.length > 0) {
    console.error(`${violations.length} tidy violation(s)`);
    return 1;
  }
  console.log("tidy ok");
  return 0;
}

if (import.meta.main) {
  Deno.exit(
    await runTool({
      name: "check_tidy",
      args: Deno.args,
      parse: (args) => parseRoot(command, args),
      run: checkTree,
    }),
  );
}
