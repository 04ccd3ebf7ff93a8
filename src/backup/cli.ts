/**
 * The command lines of `dynarust export` and `dynarust import`: their flags, `--help` texts, and the
 * progress display (a bar on a terminal, a plain line every so often otherwise). `main.ts` runs them.
 */
import { parseArgs } from "node:util";
import { BackupError } from "./errors.ts";

/** A parsed backup command line: through a node of a running cluster, or in a stopped node's data dir. */
export type BackupCommand =
  | { kind: "help"; text: string }
  | {
    kind: "export" | "import";
    nodeUrl: string;
    /** The file written by export, read by import. */
    path: string;
    clusterSecret: string;
    /** A PEM file of CA certificates to trust for https. */
    caPath: string | undefined;
  }
  | {
    kind: "export" | "import";
    /** The data dir of a stopped node (`--data-dir`): read by export, written by import. */
    dataDir: string;
    path: string;
  };

const defaultNode = "http://127.0.0.1:6660";

const helpTexts = {
  export: [
    "usage: dynarust export --to FILE [--node URL] [--cluster-secret S] [--ca PEM]",
    "       dynarust export --to FILE --data-dir DIR",
    "",
    "Writes every record of a running cluster to FILE as JSON lines: a header line, the users (with their",
    "password hashes), then every key of every table with its value, version, timestamp and owner.",
    "With --data-dir it reads the files of a stopped node instead (no network, no CLUSTER_SECRET).",
    "",
    "  --to FILE               the file to write, 0600: replaced only once the export has succeeded",
    `  --node URL              a node of the cluster (default ${defaultNode})`,
    "  --cluster-secret S      env CLUSTER_SECRET: the cluster's secret (node-to-node reads need it)",
    "  --ca PEM                CA certificates to trust for an https node",
    "  --data-dir DIR          the data dir of a stopped node, read without changing a byte; refused",
    "                          while a node runs on it",
  ],
  import: [
    "usage: dynarust import --from FILE [--node URL] [--cluster-secret S] [--ca PEM]",
    "       dynarust import --from FILE --data-dir DIR",
    "",
    "Restores a file written by `dynarust export` into a running cluster: every record keeps its owner,",
    "version and timestamp; a key that already holds a newer version keeps it (the conflict rule).",
    "With --data-dir it writes into the data dir of a stopped node instead (created when missing).",
    "",
    "  --from FILE             the export to read",
    `  --node URL              a node of the cluster (default ${defaultNode})`,
    "  --cluster-secret S      env CLUSTER_SECRET: the cluster's secret",
    "  --ca PEM                CA certificates to trust for an https node",
    "  --data-dir DIR          the data dir of a stopped node (refused while a node runs on it)",
  ],
} as const;

/**
 * Parses `args` (after the subcommand word).
 *
 * @throws {BackupError} naming what is missing or unknown.
 */
export function parseBackupCommand(
  kind: "export" | "import",
  args: readonly string[],
  env: Readonly<Record<string, string>>,
): BackupCommand {
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({
      args: [...args],
      strict: true,
      allowPositionals: false,
      options: {
        help: { type: "boolean", short: "h" },
        to: { type: "string" },
        from: { type: "string" },
        node: { type: "string" },
        "cluster-secret": { type: "string" },
        ca: { type: "string" },
        "data-dir": { type: "string" },
      },
    }).values;
  } catch (error) {
    throw new BackupError(
      `${error instanceof Error ? error.message : String(error)} (see dynarust ${kind} --help)`,
    );
  }
  if (values.help === true) return { kind: "help", text: helpTexts[kind].join("\n") };
  const pathFlag = kind === "export" ? "to" : "from";
  const path = values[pathFlag];
  if (typeof path !== "string" || path === "") throw new BackupError(`--${pathFlag} FILE is required`);
  const dataDir = values["data-dir"];
  if (dataDir !== undefined) {
    if (typeof dataDir !== "string" || dataDir === "") throw new BackupError("--data-dir DIR is empty");
    const networkFlags = ["node", "cluster-secret", "ca"].filter((flag) => values[flag] !== undefined);
    if (networkFlags.length > 0) {
      throw new BackupError(
        `--data-dir works on a stopped node's files and takes no ${
          networkFlags.map((flag) => `--${flag}`)
            .join(", ")
        }: use one or the other (see dynarust ${kind} --help)`,
      );
    }
    return { kind, dataDir, path };
  }
  const clusterSecret = (values["cluster-secret"] as string | undefined) ?? env.CLUSTER_SECRET;
  if (clusterSecret === undefined || clusterSecret === "") {
    throw new BackupError(
      "CLUSTER_SECRET (or --cluster-secret) is required: node-to-node requests are signed (a single node " +
        "without one is backed up while stopped, with --data-dir DIR)",
    );
  }
  const nodeUrl = (values.node as string | undefined) ?? defaultNode;
  try {
    const url = new URL(nodeUrl);
    if (url.protocol !== "http:" && url.protocol !== "https:") throw new Error("not http(s)");
  } catch {
    throw new BackupError(`--node ${nodeUrl} is not an http:// or https:// URL`);
  }
  return { kind, nodeUrl, path, clusterSecret, caPath: values.ca as string | undefined };
}

/**
 * A progress display: on a terminal one bar redrawn in place, otherwise a plain line every `lineEvery`
 * records; `finish` ends it with a summary line.
 */
export function progressDisplay(options: {
  verb: string;
  terminal: boolean;
  write: (text: string) => void;
  lineEvery?: number;
}): { update: (done: number, total: number | undefined) => void; finish: (summary: string) => void } {
  const lineEvery = options.lineEvery ?? 10_000;
  let lastLine = 0;
  let lastDrawMs = 0;
  return {
    update(done, total) {
      if (!options.terminal) {
        if (done - lastLine >= lineEvery) {
          lastLine = done;
          options.write(`${options.verb} ${done} records\n`);
        }
        return;
      }
      const now = Date.now();
      if (now - lastDrawMs < 100) return;
      lastDrawMs = now;
      const width = 30;
      const share = total === undefined || total === 0 ? 0 : Math.min(done / total, 0.99);
      const filled = Math.round(share * width);
      const bar = `${"#".repeat(filled)}${".".repeat(width - filled)}`;
      options.write(
        `\r[${bar}] ${String(Math.round(share * 100)).padStart(2)}% ${options.verb} ${done} records`,
      );
    },
    finish(summary) {
      options.write(options.terminal ? `\r\x1b[K${summary}\n` : `${summary}\n`);
    },
  };
}

/** Splits a stream of text into lines (without their line breaks). */
export async function* linesOf(stream: ReadableStream<string>): AsyncGenerator<string> {
  let buffer = "";
  for await (const chunk of stream) {
    buffer += chunk;
    let end: number;
    while ((end = buffer.indexOf("\n")) !== -1) {
      yield buffer.slice(0, end).replace(/\r$/, "");
      buffer = buffer.slice(end + 1);
    }
  }
  if (buffer !== "") yield buffer;
}
