import { limitFlag } from "./load.ts";
import { ConfigSchema, configSettings, limitSettings, type Setting } from "./schema.ts";

/** The widest `--help` line: readable in a 100-column terminal. */
export const helpColumnsMax = 100;

/** One flag as `--help` shows it, built from the schema's settings. */
export interface HelpEntry {
  /** The flag, without its leading `--`. */
  flag: string;
  /** What the flag takes (`N`, `SECRET`); empty for a switch. */
  value: string;
  /** The env vars that set it; empty for `--data-dir`. */
  env: readonly string[];
  meaning: string;
  /** The default as `--help` prints it: the schema's value, or the setting's words for it. */
  defaultText: string;
  removed: boolean;
}

/** What a flag of a limit takes, from the unit its name ends in. */
function limitValue(name: string): string {
  if (name.endsWith("Bytes") || name.endsWith("BytesMax")) return "BYTES";
  if (name.endsWith("Ms")) return "MS";
  if (name.endsWith("Secs")) return "SECS";
  return "N";
}

/** A default value as words: a switch that is off is "off", a list is comma-separated. */
function describeValue(value: unknown): string {
  if (value === false) return "off";
  if (value === true) return "on";
  if (Array.isArray(value)) return value.length === 0 ? "none" : value.join(",");
  return String(value);
}

/**
 * Every flag of the schema with its env vars, meaning and default, in `--help`'s order: the settings,
 * then the limits. Defaults are read from the schema itself (a config parsed from a listen address alone),
 * so `--help` never states one the node does not use.
 */
export function helpEntries(): HelpEntry[] {
  const defaults = ConfigSchema.parse({ listen: "127.0.0.1:0" });
  const settings: HelpEntry[] = Object.entries(configSettings).map(([name, setting]: [string, Setting]) => ({
    flag: setting.flag,
    value: setting.value ?? "",
    env: setting.env,
    meaning: setting.meaning,
    defaultText: setting.defaultText ?? describeValue(defaults[name as keyof typeof configSettings]),
    removed: setting.removed === true,
  }));
  const limits = Object.entries(limitSettings).map(([name, setting]) => ({
    flag: limitFlag(name),
    value: limitValue(name),
    env: [setting.env],
    meaning: setting.meaning,
    defaultText: describeValue(defaults.limits[name as keyof typeof limitSettings]),
    removed: false,
  }));
  return [...settings, ...limits];
}

/** `chunks` (words, or phrases kept whole) on lines of at most `width` characters, each after `indent`. */
function wrap(chunks: readonly string[], options: { indent: string; width: number }): string[] {
  const lines: string[] = [];
  let line = "";
  for (const chunk of chunks) {
    if (line !== "" && options.indent.length + line.length + 1 + chunk.length > options.width) {
      lines.push(options.indent + line);
      line = chunk;
    } else {
      line = line === "" ? chunk : `${line} ${chunk}`;
    }
  }
  if (line !== "") lines.push(options.indent + line);
  return lines;
}

/** The lines of one flag: `--flag VALUE` and its env vars, then its meaning and default, indented. */
function entryLines(entry: HelpEntry): string[] {
  const head = `  --${entry.flag}${entry.value === "" ? "" : ` ${entry.value}`}`;
  const env = entry.env.length === 0 ? "" : `env ${entry.env.join(" or ")}`;
  const first = env === "" ? head : `${head.padEnd(35)} ${env}`;
  // The default stays on one line, so that it reads (and is searched for) whole.
  const chunks = [...entry.meaning.split(" "), ...(entry.removed ? [] : [`(default: ${entry.defaultText})`])];
  return [first, ...wrap(chunks, { indent: "      ", width: helpColumnsMax })];
}

/** The `--help` text: usage, the two addresses, then every flag with its env vars, meaning and default. */
export function helpText(): string {
  const entries = helpEntries();
  const isLimit = new Set(Object.keys(limitSettings).map(limitFlag));
  const section = (title: string, chosen: HelpEntry[]) => ["", title, ...chosen.flatMap(entryLines)];
  return [
    "dynarust: a distributed key -> JSON value store",
    "",
    "usage: dynarust <LISTEN_ADDRESS> [JOIN_ADDRESS] [flags]   run a node",
    "       dynarust export --to FILE [--node URL]             back up a running cluster",
    "       dynarust import --from FILE [--node URL]           restore a backup into a cluster",
    "       dynarust health [URL]                              exit 0 when the node at URL serves",
    "       dynarust export|import|health --help               a command's own flags",
    "",
    "  LISTEN_ADDRESS   host:port to serve on (port 0 picks a free port); DYNA_LISTEN when absent",
    "  JOIN_ADDRESS     host:port of a live member to join",
    ...section(
      "Settings (each flag may be given by its env var instead; the flag wins):",
      entries.filter((entry) => !entry.removed && !isLimit.has(entry.flag)),
    ),
    ...section("Limits:", entries.filter((entry) => isLimit.has(entry.flag))),
    ...section(
      "Removed (a node given one refuses to start):",
      entries.filter((entry) => entry.removed),
    ),
    "",
    "  -h, --help       this text",
    "  -V, --version    the version",
  ].join("\n");
}
