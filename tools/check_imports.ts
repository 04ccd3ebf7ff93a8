// Enforces STYLE.md B2 ("Which way dependencies point") over `src/**/*.ts` and `main.ts`.
//
// Usage: deno run --allow-read tools/check_imports.ts [--root DIR]   (default: the working directory; --help)
// Prints `file:line: rule` for each violation and exits 1, or prints "imports ok" and exits 0.
//
// Import and export-from specifiers are found with regular expressions anchored at the start of a
// line, so examples inside doc comments (` * import ...`) are not taken for imports. The rules:
// - each module imports only the modules and packages its row of the B2 table allows;
// - code outside a module imports only its `mod.ts`, except the leaf utilities `src/util/*.ts` and
//   `src/config/*.ts`, and `src/store/types.ts` with `import type`; `sse` imports `store` only as types;
// - `filter` (the `where=` language) is a leaf beside `config`: it imports `util` and zod only, and `sse`
//   and `http` may import it, so listings and filtered streams share one parser and one evaluator;
// - one door per side effect: within `src/`, only `src/store/fs.ts` touches the disk, only
//   `src/cluster/http1_client.ts` connects to peers (the cluster's transport; `fetch` is only the client
//   library's), only `src/server/listener.ts` listens and only
//   `src/server/fd_limit.ts` loads a native library; nothing serves, reads args or env, handles signals,
//   spawns or exits (that is `main.ts`'s job); side-effecting `node:` built-ins likewise;
// - no import cycle among the files of `src/` and `main.ts`;
// - `cluster` and `sse` take time from the injected `Clock`, not `setTimeout`/`setInterval` (three named
//   files excepted).
import { runTool } from "./cli.ts";
import { listFiles, parseRoot, sourceTreeCommand } from "./source_tree.ts";

/** One broken rule. */
export interface Violation {
  file: string;
  line: number;
  rule: string;
}

interface ImportRef {
  specifier: string;
  line: number;
  typeOnly: boolean;
}

const moduleRules: Record<string, { modules: readonly string[]; packages: readonly string[] }> = {
  util: { modules: [], packages: [] },
  config: { modules: ["util"], packages: ["zod"] },
  store: { modules: ["util", "config"], packages: [] },
  auth: { modules: ["util", "config"], packages: ["jose"] },
  sse: { modules: ["util", "config", "store", "filter"], packages: [] },
  cluster: { modules: ["util", "config"], packages: ["zod"] },
  http: {
    modules: ["util", "config", "store", "auth", "sse", "cluster", "server", "filter"],
    packages: ["hono", "zod"],
  },
  // The `where=` filter language: a leaf that listings (http) and filtered streams (sse) share.
  filter: { modules: ["util"], packages: ["zod"] },
  // The listening door: accepts connections and hands them to a handler it knows nothing about.
  server: { modules: ["util"], packages: [] },
  // Runs in browsers and Node as well: the web platform only.
  client: { modules: [], packages: [] },
  // `dynarust export` / `import`: a client of the public API and of the node-to-node one, or (`--data-dir`)
  // a reader and writer of a stopped node's store, which main.ts opens and hands in.
  backup: { modules: ["util", "config", "cluster", "client", "store"], packages: ["zod"] },
  // `dynarust health`: a container's health check, a client of the public API like `backup`.
  health: { modules: ["util", "client"], packages: [] },
  // The node's wiring, split out of main.ts: it builds every module into a running node and stops it, so it
  // may import them all; reading args and env, signals and exiting stay main.ts's (the one-door rules below
  // hold here as everywhere in src/), so main.ts reads as the table of contents of a node's life.
  node: {
    modules: [
      "util",
      "config",
      "store",
      "auth",
      "sse",
      "cluster",
      "http",
      "filter",
      "server",
      "client",
      "backup",
      "health",
    ],
    packages: [],
  },
};
/** Modules another module may reach only with `import type`. */
const typeOnlyModules: Record<string, readonly string[]> = { sse: ["store"] };
/** Leaf utilities whose files may be imported directly. */
const leafModules = new Set(["util", "config"]);
const sideEffectBuiltins = new Set([
  "child_process",
  "cluster",
  "dgram",
  "fs",
  "fs/promises",
  "http",
  "http2",
  "https",
  "net",
  "process",
  "tls",
  "worker_threads",
]);

const fsCallNames = [
  "open",
  "create",
  "writeFile",
  "readFile",
  "rename",
  "remove",
  "mkdir",
  "readDir",
  "truncate",
  "ftruncate",
  "stat",
  "lstat",
  "writeTextFile",
  "readTextFile",
  "makeTempDir",
  "makeTempFile",
  "chmod",
  "chown",
  "fsync",
  "fdatasync",
  "copyFile",
  "link",
  "symlink",
  "realPath",
  "readLink",
  "utime",
];
const mainOnlyCallNames = [
  "serve",
  "exit",
  "env",
  "args",
  "addSignalListener",
  "removeSignalListener",
  "listen",
  "listenTls",
  "connect",
  "connectTls",
  "Command",
  "kill",
];
/**
 * Calls only one file of `src/` may make: the server listens, loads libc for the descriptor limit, and the
 * cluster's transport connects to peers.
 */
const callDoors: Record<string, string> = {
  listen: "src/server/listener.ts",
  listenTls: "src/server/listener.ts",
  dlopen: "src/server/fd_limit.ts",
  connect: "src/cluster/http1_client.ts",
  connectTls: "src/cluster/http1_client.ts",
};
/**
 * Time in `cluster` and `sse` goes through the injected `Clock` (`setTimer`), so tests drive it; the files
 * that keep a system timer, and why: socket deadlines on real I/O, a 0 ms yield to the event loop during a
 * long scan, and the Paxos proposer's retry backoff (its rounds' deadlines are the system clock's too).
 */
const systemTimerDoors = new Set([
  "src/cluster/http1_client.ts",
  "src/cluster/anti_entropy.ts",
  "src/cluster/proposer.ts",
]);
const systemTimerCall = /(?:^|[^.\w$])(setTimeout|setInterval)\s*\(/;
const fsCall = new RegExp(`\\bDeno\\.(${fsCallNames.join("|")})(Sync)?\\b`);
const mainOnlyCall = new RegExp(`\\bDeno\\.(${[...mainOnlyCallNames, "dlopen"].join("|")})\\b`);
const fetchCall = /(?:^|[^.\w$])fetch\s*\(|\bglobalThis\.fetch\b/;
/** The file that may call `fetch`: the client library (peers are reached through `http1_client.ts`). */
const fetchDoors = new Set(["src/client/mod.ts"]);

/** Every import and export-from of `text`, with its line and whether it imports types only. */
export function findImports(text: string): ImportRef[] {
  const found: ImportRef[] = [];
  const lineOf = (index: number) => text.slice(0, index).split("\n").length;
  const staticForm = /^[ \t]*(?:import|export)\s+(type\s+)?([\w\s{},*$]*?)\s*\bfrom\s*["']([^"'\n]+)["']/gm;
  for (const match of text.matchAll(staticForm)) {
    const typeOnly = match[1] !== undefined || isTypeOnlyClause(match[2]!);
    found.push({ specifier: match[3]!, line: lineOf(match.index), typeOnly });
  }
  for (const match of text.matchAll(/^[ \t]*import\s*["']([^"'\n]+)["']/gm)) {
    found.push({ specifier: match[1]!, line: lineOf(match.index), typeOnly: false });
  }
  for (const match of text.matchAll(/\bimport\s*\(\s*["']([^"'\n]+)["']\s*\)/g)) {
    found.push({ specifier: match[1]!, line: lineOf(match.index), typeOnly: false });
  }
  return found.sort((left, right) => left.line - right.line);
}

/** `{ type A, type B as C }`: every name imported as a type. */
function isTypeOnlyClause(clause: string): boolean {
  const braces = /^\{([^}]*)\}$/.exec(clause.trim());
  if (braces === null) return false;
  const names = braces[1]!.split(",").map((name) => name.trim()).filter((name) => name.length > 0);
  return names.length > 0 && names.every((name) => /^type\s/.test(name));
}

/** `from` joined with a relative `specifier`, normalized; `undefined` when it leaves the root. */
export function resolveRelative(from: string, specifier: string): string | undefined {
  const segments = from.split("/").slice(0, -1);
  for (const segment of specifier.split("/")) {
    if (segment === "..") {
      if (segments.length === 0) return undefined;
      segments.pop();
    } else if (segment !== "." && segment !== "") {
      segments.push(segment);
    }
  }
  return segments.join("/");
}

/** The module of a path under `src/` (`src/store/wal.ts` → `store`), or `undefined`. */
function moduleOf(path: string): string | undefined {
  const parts = path.split("/");
  return parts[0] === "src" && parts.length >= 3 ? parts[1] : undefined;
}

/** The package a bare specifier names: `hono/streaming` → `hono`, `npm:zod@4` → `zod`, `node:fs` as is. */
function packageOf(specifier: string): string {
  if (specifier.startsWith("node:")) return specifier;
  const bare = specifier.replace(/^(npm|jsr):\/?/, "");
  const parts = bare.split("/");
  const name = bare.startsWith("@") ? `${parts[0]}/${parts[1] ?? ""}` : parts[0]!;
  return name.replace(/(.)@.*$/, "$1");
}

/** The rule a relative import from `file` to `target` breaks, if any. */
function checkModuleImport(file: string, target: string | undefined, ref: ImportRef): string | undefined {
  const source = moduleOf(file);
  if (target === undefined) return `import "${ref.specifier}" leaves the project`;
  const reached = moduleOf(target);
  if (reached === undefined) {
    return source === undefined ? undefined : `src/${source} may not import ${target} (outside src/)`;
  }
  if (reached === source) return undefined;
  if (source !== undefined) {
    if (!moduleRules[source]!.modules.includes(reached)) {
      return `${source} may not import ${reached} (STYLE.md B2)`;
    }
    if (typeOnlyModules[source]?.includes(reached) === true && !ref.typeOnly) {
      return `${source} may import ${reached} only with "import type" (STYLE.md B2)`;
    }
  }
  if (leafModules.has(reached) || target === `src/${reached}/mod.ts`) return undefined;
  if (target === "src/store/types.ts" && ref.typeOnly) return undefined;
  return `import src/${reached}/mod.ts, not ${target} (mod.ts is a module's only entry point)`;
}

/** The rule a package import from `file` breaks, if any. */
function checkPackageImport(file: string, specifier: string): string | undefined {
  const source = moduleOf(file);
  if (/^https?:/.test(specifier)) return `import "${specifier}": remote imports are not allowed`;
  if (source === undefined) return undefined;
  const name = packageOf(specifier);
  if (name.startsWith("node:")) {
    const builtin = name.slice("node:".length);
    if (!sideEffectBuiltins.has(builtin)) return undefined;
    if (file === "src/store/fs.ts" && builtin.startsWith("fs")) return undefined;
    return `${source} may not import ${name}: one door per side effect (STYLE.md B2)`;
  }
  if (moduleRules[source]!.packages.includes(name)) return undefined;
  return `${source} may not import package "${name}" (STYLE.md B2)`;
}

/** The side-effect rules a line of `file` breaks. */
function checkCalls(file: string, line: string): string[] {
  const code = stripLineComment(line);
  if (code === undefined) return [];
  const rules: string[] = [];
  const fs = fsCall.exec(code);
  if (fs !== null && file !== "src/store/fs.ts") {
    rules.push(`Deno.${fs[1]}: only src/store/fs.ts touches the disk`);
  }
  const mainOnly = mainOnlyCall.exec(code);
  if (mainOnly !== null && callDoors[mainOnly[1]!] !== file) {
    const door = callDoors[mainOnly[1]!];
    rules.push(
      door === undefined
        ? `Deno.${mainOnly[1]}: only main.ts may serve, read args/env, signal or exit`
        : `Deno.${mainOnly[1]}: only ${door} may call it (one door per side effect)`,
    );
  }
  const timer = systemTimerCall.exec(code);
  const clocked = file.startsWith("src/cluster/") || file.startsWith("src/sse/");
  if (timer !== null && clocked && !systemTimerDoors.has(file)) {
    rules.push(`${timer[1]}: cluster and sse time goes through util/clock.ts (Clock.setTimer)`);
  }
  if (fetchCall.test(code) && !fetchDoors.has(file)) {
    rules.push(
      "fetch: only src/client/mod.ts (clients) calls fetch; peers are reached by src/cluster/http1_client.ts",
    );
  }
  return rules;
}

/** The code of a line without a trailing `//` comment; `undefined` for a comment line. */
function stripLineComment(line: string): string | undefined {
  const trimmed = line.trimStart();
  if (trimmed.startsWith("//") || trimmed.startsWith("*") || trimmed.startsWith("/*")) return undefined;
  const comment = /(^|\s)\/\/.*$/.exec(line);
  if (comment === null) return line;
  const before = line.slice(0, comment.index);
  const quotes = (before.match(/["'`]/g) ?? []).length;
  return quotes % 2 === 0 ? before : line;
}

/** Every violation of B2 in one file, `file` being its path relative to the root. */
export function checkFile(file: string, text: string): Violation[] {
  const violations: Violation[] = [];
  const source = moduleOf(file);
  if (file.startsWith("src/") && (source === undefined || moduleRules[source] === undefined)) {
    violations.push({ file, line: 1, rule: `src/${source ?? ""} is not a module of STYLE.md B2` });
    return violations;
  }
  for (const ref of findImports(text)) {
    const relative = ref.specifier.startsWith("./") || ref.specifier.startsWith("../");
    const rule = relative
      ? checkModuleImport(file, resolveRelative(file, ref.specifier), ref)
      : checkPackageImport(file, ref.specifier);
    if (rule !== undefined) violations.push({ file, line: ref.line, rule });
  }
  if (source === undefined) return violations;
  text.split("\n").forEach((line, index) => {
    for (const rule of checkCalls(file, line)) violations.push({ file, line: index + 1, rule });
  });
  return violations;
}

/**
 * One violation per import cycle among `files` (path to text): files that import each other, directly or
 * through others, cannot be read or tested one at a time. Each cycle is named by its files, smallest first,
 * at the import that closes it. Type-only imports count too: they tie the files' meanings together.
 */
export function findCycles(files: ReadonlyMap<string, string>): Violation[] {
  const edges = new Map<string, Array<{ target: string; line: number }>>();
  for (const [file, text] of files) {
    const targets = findImports(text)
      .filter((ref) => ref.specifier.startsWith("./") || ref.specifier.startsWith("../"))
      .map((ref) => ({ target: resolveRelative(file, ref.specifier) ?? "", line: ref.line }))
      .filter((edge) => files.has(edge.target));
    edges.set(file, targets);
  }
  const violations: Violation[] = [];
  const seen = new Set<string>();
  const state = new Map<string, "open" | "done">();
  const path: string[] = [];
  // Depth-first; a path back to a file still open is a cycle. Bounded: each file is opened once.
  const visit = (file: string): void => {
    state.set(file, "open");
    path.push(file);
    for (const { target, line } of edges.get(file) ?? []) {
      if (state.get(target) === "open") {
        const cycle = path.slice(path.indexOf(target));
        const key = [...cycle].sort().join(" ");
        if (!seen.has(key)) {
          seen.add(key);
          violations.push({ file, line, rule: `import cycle: ${[...cycle, target].join(" -> ")}` });
        }
      } else if (state.get(target) === undefined) {
        visit(target);
      }
    }
    path.pop();
    state.set(file, "done");
  };
  for (const file of [...files.keys()].sort()) if (state.get(file) === undefined) visit(file);
  return violations;
}

const command = sourceTreeCommand({
  script: "check_imports.ts",
  summary: [
    "Checks the dependency rules of STYLE.md B2 over src/**/*.ts and main.ts: which module may import which",
    "module or package, mod.ts as the only entry point, and one door per side effect. Prints each",
    'violation as file:line: rule and exits 1, or prints "imports ok" and exits 0.',
  ],
});

/** Checks the tree at `root`; returns the exit code. */
async function checkTree(root: string): Promise<number> {
  const files = (await listFiles(root, "src", { recursive: true })).filter((path) => path.endsWith(".ts"));
  const hasMain = await Deno.stat(`${root}/main.ts`).then(() => true, () => false);
  if (hasMain) files.push("main.ts");
  const violations: Violation[] = [];
  const texts = new Map<string, string>();
  for (const file of files) texts.set(file, await Deno.readTextFile(`${root}/${file}`));
  for (const [file, text] of texts) violations.push(...checkFile(file, text));
  violations.push(...findCycles(texts));
  for (const violation of violations) console.error(`${violation.file}:${violation.line}: ${violation.rule}`);
  if (violations.length > 0) {
    console.error(`${violations.length} import rule violation(s)`);
    return 1;
  }
  console.log("imports ok");
  return 0;
}

if (import.meta.main) {
  Deno.exit(
    await runTool({
      name: "check_imports",
      args: Deno.args,
      parse: (args) => parseRoot(command, args),
      run: checkTree,
    }),
  );
}
