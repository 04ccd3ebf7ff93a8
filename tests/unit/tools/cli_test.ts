// Goal: tools/cli.ts parses a tool's flags with node:util parseArgs: `--name value` and `--name=value`,
// `--help`/`-h` listing each flag with its meaning and default, and a UsageError naming the flag for an
// unknown one (inherited names such as --constructor included), a missing value, a value given to a
// boolean flag or a positional argument. runTool maps help to exit 0 and a UsageError to exit 64.
// Method: direct calls on a small spec; the tools' own command lines are run in their tests.
import assert from "node:assert/strict";
import {
  type CommandSpec,
  helpTextOf,
  parseCommand,
  runTool,
  UsageError,
  usageExitCode,
} from "../../../tools/cli.ts";

const spec: CommandSpec = {
  usage: "deno task demo [--dir DIR] [--force]",
  summary: ["Demonstrates the flags."],
  flags: {
    dir: { type: "string", valueName: "DIR", meaning: "where the files go", defaultText: "out" },
    force: { type: "boolean", meaning: "replace what is there", defaultText: "off" },
  },
};

Deno.test("parseCommand() takes --name value and --name=value, and booleans without a value", () => {
  const empty = parseCommand(spec, []);
  assert.deepEqual(empty.kind === "run" && { ...empty.values }, {});
  for (const args of [["--dir", "a b"], ["--dir=a b"], ["--dir", "x", "--dir=a b"]]) {
    const parsed = parseCommand(spec, args);
    assert.equal(parsed.kind === "run" && parsed.values.dir, "a b", args.join(" "));
  }
  const parsed = parseCommand(spec, ["--force", "--dir=x=y"]);
  assert.deepEqual(parsed.kind === "run" && { ...parsed.values }, { force: true, dir: "x=y" });
  assert.equal(parseCommand(spec, ["--dir="]).kind === "run", true, "an empty value is the tool's to judge");
});

Deno.test("parseCommand() answers --help and -h with every flag, its meaning and its default", () => {
  const help = parseCommand(spec, ["--dir", "x", "--help"]);
  assert.deepEqual(help, { kind: "help", text: helpTextOf(spec) });
  assert.deepEqual(parseCommand(spec, ["-h"]), help);
  const lines = helpTextOf(spec).split("\n");
  assert.equal(lines[0], "usage: deno task demo [--dir DIR] [--force]");
  assert.ok(lines.includes("Demonstrates the flags."));
  const at = (prefix: string) => lines.findIndex((line) => line.startsWith(prefix));
  assert.match(lines[at("  --dir DIR ")]!, /^ {2}--dir DIR +where the files go$/);
  assert.match(lines[at("  --dir DIR ") + 1]!, /^ {23}default: out$/);
  assert.match(lines[at("  --force ")]!, /^ {2}--force +replace what is there$/);
  assert.match(lines[at("  --force ") + 1]!, /^ {23}default: off$/);
  assert.match(lines.at(-1)!, /^ {2}-h, --help +print this help and exit$/);
});

Deno.test("parseCommand() names an unknown flag and lists the known ones", () => {
  const cases = [
    [["--out", "x"], "--out"],
    [["--dir=x", "--Dir=y"], "--Dir"],
    [["-x"], "-x"],
    [["--constructor"], "--constructor"],
    [["--__proto__=1"], "--__proto__"],
    [["--dir", "x", "--days", "-3"], "--days"],
  ] as const;
  for (const [args, flag] of cases) {
    assert.throws(
      () => parseCommand(spec, args),
      (error) => {
        assert.ok(error instanceof UsageError);
        assert.equal(error.message, `unknown flag ${flag}; the flags are --dir, --force, --help`);
        return true;
      },
      args.join(" "),
    );
  }
});

Deno.test("parseCommand() refuses a missing value, a value for a boolean and a positional argument", () => {
  const cases = [
    [["--dir"], /^Option '--dir <value>' argument missing$/],
    [["--dir", "-3"], /^Option '--dir' argument is ambiguous\. .*'--dir=-XYZ'/],
    [["--force=yes"], /^Option '--force' does not take an argument$/],
    [["extra"], /^Unexpected argument 'extra'/],
    [["--", "--dir"], /^Unexpected argument '--dir'/],
  ] as const;
  for (const [args, message] of cases) {
    assert.throws(() => parseCommand(spec, args), (error) => {
      assert.ok(error instanceof UsageError);
      assert.match(error.message, message);
      assert.ok(!error.message.includes("\n"), "one line");
      return true;
    }, args.join(" "));
  }
});

Deno.test(
  "runTool() prints the help (exit 0), a usage error (exit 64) or runs with the options",
  async () => {
    const printed: string[] = [];
    const { log, error } = console;
    console.log = (text: string) => printed.push(`out: ${text}`);
    console.error = (text: string) => printed.push(`err: ${text}`);
    try {
      const parse = (args: readonly string[]) => {
        const parsed = parseCommand(spec, args);
        return parsed.kind === "help" ? parsed : { kind: "run" as const, options: parsed.values };
      };
      const ran: unknown[] = [];
      const run = (args: string[]) =>
        runTool({ name: "demo", args, parse, run: (options) => Promise.resolve(ran.push(options) + 6) });
      assert.equal(await run(["--help"]), 0);
      assert.equal(await run(["--bad"]), usageExitCode);
      assert.equal(usageExitCode, 64);
      assert.equal(await run(["--dir=d"]), 7);
      assert.deepEqual(ran.map((options) => ({ ...options as object })), [{ dir: "d" }]);
      assert.deepEqual(printed, [
        `out: ${helpTextOf(spec)}`,
        "err: demo: unknown flag --bad; the flags are --dir, --force, --help (see --help)",
      ]);
    } finally {
      console.log = log;
      console.error = error;
    }
  },
);
