// Shared by the tools' command lines (cert, gen_key, check_imports, check_tidy): flags parsed with
// `node:util`'s `parseArgs`, as main.ts's are (`--name value` and `--name=value` both work), a `--help`
// that lists every flag with its meaning and default, and a command line the tool cannot use refused
// with exit 64 (EX_USAGE, sysexits.h) and a message naming the flag.
import { parseArgs } from "node:util";

/** The exit code of a command line the tool cannot use: an unknown flag, a missing or bad value. */
export const usageExitCode = 64;

/** One flag of a tool, as `--help` shows it. */
export interface FlagSpec {
  /** `"string"` takes a value (`--name value` or `--name=value`); `"boolean"` takes none. */
  type: "string" | "boolean";
  /** The value's placeholder in the help, for a string flag: `DIR`, `N`. */
  valueName?: string;
  /** What the flag does, one line. */
  meaning: string;
  /** The value or behaviour when the flag is absent, as the help shows it. */
  defaultText: string;
}

/** A tool's command line: its usage line, what it does, and its flags (`--help` is added). */
export interface CommandSpec {
  /** `deno task cert [--dir DIR] ...`, without the leading `usage: `. */
  usage: string;
  /** What the tool does, as lines of the help. */
  summary: readonly string[];
  flags: Readonly<Record<string, FlagSpec>>;
}

/** The command line cannot be used; the message names the flag and what is wrong with it. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** A parsed command line: print the help, or run with these options. */
export type Invocation<Options> = { kind: "help"; text: string } | { kind: "run"; options: Options };

/** Flag values by name: a string for a string flag, `true` for a boolean one, absent when not given. */
export type FlagValues = Readonly<Record<string, string | boolean | undefined>>;

/** The `--help` text of `spec`: usage, summary, then each flag with its meaning and default. */
export function helpTextOf(spec: CommandSpec): string {
  const flagLines = Object.entries(spec.flags).flatMap(([name, flag]) => {
    const left = `--${name}${flag.valueName === undefined ? "" : ` ${flag.valueName}`}`;
    return [`  ${left.padEnd(20)} ${flag.meaning}`, `  ${"".padEnd(20)} default: ${flag.defaultText}`];
  });
  return [
    `usage: ${spec.usage}`,
    "",
    ...spec.summary,
    "",
    "flags (a value goes after a space or an =, as in --name value or --name=value):",
    ...flagLines,
    `  ${"-h, --help".padEnd(20)} print this help and exit`,
  ].join("\n");
}

/**
 * Parses `args` against `spec`'s flags and `--help`/`-h`. Every flag is checked before any value is
 * used, so an unknown flag is reported even next to a bad value.
 *
 * @throws {UsageError} for an unknown flag (named, with the known ones), a string flag without a value,
 * a boolean flag with one, or a positional argument.
 */
export function parseCommand(
  spec: CommandSpec,
  args: readonly string[],
): { kind: "help"; text: string } | { kind: "run"; values: FlagValues } {
  const options = Object.fromEntries(
    Object.entries(spec.flags).map(([name, flag]) => [name, { type: flag.type }]),
  ) as Record<string, { type: "string" | "boolean"; short?: string }>;
  options.help = { type: "boolean", short: "h" };
  const { tokens } = parseArgs({
    args: [...args],
    options,
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  for (const token of tokens) {
    if (token.kind === "option" && !Object.hasOwn(options, token.name)) {
      const known = Object.keys(options).map((name) => `--${name}`).join(", ");
      throw new UsageError(`unknown flag ${token.rawName}; the flags are ${known}`);
    }
  }
  let values: FlagValues;
  try {
    values = parseArgs({ args: [...args], options, strict: true, allowPositionals: false }).values;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new UsageError(message.replaceAll("\n", " "), { cause: error });
  }
  if (values.help === true) return { kind: "help", text: helpTextOf(spec) };
  return { kind: "run", values };
}

/**
 * Runs a tool's `main`: parses `args` with `parse`, prints the help (exit 0) or the usage error (exit
 * {@linkcode usageExitCode}, on stderr, prefixed by `name`), else returns what `run` returns.
 */
export async function runTool<Options>(options: {
  name: string;
  args: readonly string[];
  parse: (args: readonly string[]) => Invocation<Options>;
  run: (options: Options) => Promise<number>;
}): Promise<number> {
  let invocation: Invocation<Options>;
  try {
    invocation = options.parse(options.args);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`${options.name}: ${error.message} (see --help)`);
    return usageExitCode;
  }
  if (invocation.kind === "help") {
    console.log(invocation.text);
    return 0;
  }
  return await options.run(invocation.options);
}
