/**
 * Backups: `dynarust export` writes every record of a running cluster as JSON lines, `dynarust import`
 * restores them into a cluster with their owners, versions and timestamps (users included, with their
 * password hashes, so everyone logs in again with the same secret).
 *
 * Export reads the tables through the public API of one node (its listing gathers every replica), learns
 * the table names from every live member's `/stats`, and reads the users through the node-to-node `list`
 * (every node holds every user). Import sends `restore` requests, which store each state on its replicas
 * by the conflict rule. Both sign node-to-node requests with `CLUSTER_SECRET`. This module touches no file:
 * `main.ts` opens them and hands in lines.
 *
 * @module
 */
import { z } from "zod";
import { DynaClient, DynaError } from "../client/mod.ts";
import { HttpTransport, PeerRequestError, RequestSigner, usersTable } from "../cluster/mod.ts";
import { systemClock } from "../util/clock.ts";
import { BackupError } from "./errors.ts";

/** The first line of an export. */
export const exportHeader = { dynarust_export: 1 } as const;

/** One record of an export, after the header line. */
export const ExportLine = z.object({
  table: z.string().min(1),
  key: z.string().min(1),
  value: z.json(),
  version: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
  timestamp: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  owner: z.string().min(1),
  /** The key's lifetime (ms since the epoch), when it was written with `ttl_secs`: restored with it. */
  expires_at: z.number().int().positive().max(Number.MAX_SAFE_INTEGER).optional(),
});
export type ExportLine = z.output<typeof ExportLine>;

/** Where a backup talks to. */
export interface BackupTarget {
  /** A node of the cluster, e.g. `http://127.0.0.1:6660`. */
  nodeUrl: string;
  clusterSecret: string;
  /** PEM CA certificates to trust for https. */
  caCerts?: string[];
  /** The `fetch` for public requests (one that trusts `caCerts` for https). */
  fetch?: typeof fetch;
}

/** Progress: records so far, and the expected total when known. */
export type Progress = (done: number, total: number | undefined) => void;

const pageSize = 1_000;
const restoreBatch = 500;
/** Bytes of one `restore` request's items at most: node-to-node messages stop at 4 MiB. */
const restoreBatchBytes = 3 << 20;
const encoder = new TextEncoder();
const timeoutMs = 30_000;

async function transportOf(target: BackupTarget): Promise<{ transport: HttpTransport; node: string }> {
  const url = new URL(target.nodeUrl);
  const signer = await RequestSigner.create(target.clusterSecret);
  const transport = new HttpTransport({
    self: "backup-cli:0",
    signer,
    clock: systemClock,
    scheme: url.protocol === "https:" ? "https" : "http",
    ...(target.caCerts === undefined ? {} : { caCerts: target.caCerts }),
  });
  return { transport, node: url.host };
}

function clientOf(target: BackupTarget, baseUrl = target.nodeUrl): DynaClient {
  return new DynaClient({ baseUrl, ...(target.fetch === undefined ? {} : { fetch: target.fetch }) });
}

/** The message at the end of `error`'s cause chain, after its last `: ` (fetch nests the OS error there). */
function innermostMessage(error: unknown): string {
  let innermost = error;
  // Bounded: at most 8 links of a cause chain are followed.
  for (let depth = 0; depth < 8; depth += 1) {
    if (!(innermost instanceof Error) || !(innermost.cause instanceof Error)) break;
    innermost = innermost.cause;
  }
  const message = innermost instanceof Error ? innermost.message : String(innermost);
  return message.split(": ").at(-1) ?? message;
}

/** What happened to a failed request, e.g. `refused the request: CLUSTER_SECRET does not match (403)`. */
function describeFailure(error: unknown): string {
  if (error instanceof PeerRequestError) {
    switch (error.failure) {
      case "refused":
        return `refused the request: CLUSTER_SECRET does not match (${error.status})`;
      case "timeout":
        return `did not answer in time (${timeoutMs} ms)`;
      case "invalid_reply": {
        const code = error.remoteCode === undefined ? "" : ` (${error.remoteCode})`;
        return `failed the request: HTTP ${error.status ?? "reply not valid"}${code}`;
      }
      case "unreachable":
      case "interrupted":
        return `cannot be reached: ${innermostMessage(error.cause ?? error)}`;
    }
  }
  if (error instanceof DynaError) {
    const refused = error.status === 401 || error.status === 403;
    return `${refused ? "refused" : "failed"} the request: ${error.message}`;
  }
  return `cannot be reached: ${innermostMessage(error)}`;
}

/**
 * Runs `request` against `url`; a failure becomes a BackupError naming the URL and the cause, e.g.
 * `http://127.0.0.1:7150 refused the request: CLUSTER_SECRET does not match (403)`.
 */
async function askNode<T>(url: string, request: () => Promise<T>): Promise<T> {
  try {
    return await request();
  } catch (error) {
    if (error instanceof BackupError) throw error;
    throw new BackupError(`${url} ${describeFailure(error)}`, { cause: error });
  }
}

/** The table names of every live member, and the most keys one member holds (a floor of the total). */
async function tablesOf(target: BackupTarget): Promise<{ tables: Set<string>; estimate: number }> {
  const scheme = new URL(target.nodeUrl).protocol;
  const tables = new Set<string>();
  let estimate = 0;
  const members = await askNode(target.nodeUrl, () => clientOf(target).membership());
  for (const member of members) {
    if (member.status !== "alive") continue;
    const memberUrl = `${scheme}//${member.address}`;
    const stats = await askNode(memberUrl, () => clientOf(target, memberUrl).stats());
    for (const table of Object.keys(stats.tables)) tables.add(table);
    estimate = Math.max(estimate, stats.total_keys);
  }
  return { tables, estimate };
}

/**
 * Writes the header, every user, then every record of every table, one JSON object per `write`.
 *
 * @returns the number of records written (users included).
 * @throws {BackupError} naming the node's URL and the cause when a member cannot be reached or the node
 * refuses the cluster secret.
 */
export async function exportCluster(
  target: BackupTarget,
  write: (line: string) => Promise<void>,
  progress: Progress = () => {},
): Promise<number> {
  const client = clientOf(target);
  const { transport, node } = await transportOf(target);
  const { tables, estimate } = await tablesOf(target);
  await write(JSON.stringify({ ...exportHeader, node, exported_at: new Date().toISOString() }));
  let done = 0;
  const emit = async (line: Omit<ExportLine, "value"> & { value: unknown }) => {
    await write(JSON.stringify(line));
    done += 1;
    progress(done, Math.max(estimate, done));
  };
  let after: string | undefined;
  for (;;) {
    const reply = await askNode(target.nodeUrl, () =>
      transport.request(node, "list", {
        table: usersTable,
        limit: pageSize,
        ...(after === undefined ? {} : { after }),
      }, { timeoutMs }));
    const { entries } = reply as { entries: Array<{ key: string; json: string }> };
    for (const { key, json } of entries) {
      const entry = JSON.parse(json);
      await emit({ table: usersTable, key, ...entry });
    }
    if (entries.length < pageSize) break;
    after = entries[entries.length - 1]!.key;
  }
  for (const table of [...tables].sort()) {
    const entries = client.table(table).entries({ pageSize })[Symbol.asyncIterator]();
    // Bounded by the table's keys; each step is one request (or a buffered entry of the last one).
    for (;;) {
      const next = await askNode(target.nodeUrl, () => entries.next());
      if (next.done === true) break;
      const [key, entry] = next.value;
      await emit({ table, key, ...entry });
    }
  }
  return done;
}

/** What an import did. */
export interface ImportResult {
  restored: number;
  /** States that missed a replica (down, or it failed): run the import again once every node is up. */
  missed: number;
}

/** One record of an export as a key's state: what a cluster's `restore` and `Store.applyReplicas` take. */
export interface ExportItem {
  table: string;
  key: string;
  entry: {
    version: number;
    timestamp: number;
    owner: string;
    deleted: false;
    valueJson: string;
    expiresAt?: number;
  };
}

/**
 * The records of an export, checked line by line; the first line must be the export header.
 *
 * @throws {BackupError} on a line that is not a record (naming it), or an empty file.
 */
export async function* exportItems(lines: AsyncIterable<string>): AsyncGenerator<ExportItem> {
  let lineNumber = 0;
  for await (const text of lines) {
    lineNumber += 1;
    if (text.trim() === "") continue;
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new BackupError(`line ${lineNumber} is not JSON`);
    }
    if (lineNumber === 1) {
      if ((parsed as Record<string, unknown>)?.dynarust_export !== exportHeader.dynarust_export) {
        throw new BackupError(
          "line 1 is not a dynarust export header; was this file made by `dynarust export`?",
        );
      }
      continue;
    }
    const line = ExportLine.safeParse(parsed);
    if (!line.success) {
      throw new BackupError(`line ${lineNumber} is not a record: ${line.error.issues[0]?.message ?? ""}`);
    }
    const { table, key, value, version, timestamp, owner, expires_at: expiresAt } = line.data;
    const entry = { version, timestamp, owner, deleted: false as const, valueJson: JSON.stringify(value) };
    yield { table, key, entry: expiresAt === undefined ? entry : { ...entry, expiresAt } };
  }
  if (lineNumber === 0) throw new BackupError("the file is empty");
}

/**
 * Restores the records of an export, in batches; the first line must be the export header.
 *
 * @throws {BackupError} on a line that is not a record (naming it), or when the node refuses.
 */
export async function importCluster(
  target: BackupTarget,
  lines: AsyncIterable<string>,
  progress: Progress = () => {},
): Promise<ImportResult> {
  const { transport, node } = await transportOf(target);
  const result: ImportResult = { restored: 0, missed: 0 };
  let batch: ExportItem[] = [];
  let batchBytes = 0;
  const flush = async () => {
    if (batch.length === 0) return;
    const reply = await askNode(
      target.nodeUrl,
      () => transport.request(node, "restore", { items: batch }, { timeoutMs }),
    ) as ImportResult;
    result.restored += reply.restored;
    result.missed += reply.missed;
    batch = [];
    batchBytes = 0;
    progress(result.restored + result.missed, undefined);
  };
  for await (const item of exportItems(lines)) {
    const itemBytes = encoder.encode(JSON.stringify(item)).length;
    if (batch.length === restoreBatch || batchBytes + itemBytes > restoreBatchBytes) await flush();
    batch.push(item);
    batchBytes += itemBytes;
  }
  await flush();
  return result;
}
