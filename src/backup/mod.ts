/**
 * Backups: `dynarust export --to FILE` and `dynarust import --from FILE`, of a running cluster through a
 * node (`--node`), or of a stopped node's data dir (`--data-dir`, through a read-only `Store`).
 *
 * @example
 * ```ts
 * import type { Store } from "../store/mod.ts";
 *
 * declare const clusterSecret: string; // CLUSTER_SECRET of the cluster
 *
 * const lines: string[] = [];
 * const target = { nodeUrl: "http://127.0.0.1:6660", clusterSecret };
 * const recordCount = await exportCluster(target, async (line) => void lines.push(line));
 * const other = { nodeUrl: "http://127.0.0.1:7770", clusterSecret };
 * const { restored, missed } = await importCluster(other, ReadableStream.from(lines));
 * // A stopped node: its store opened read-only (main.ts opens it with the build's key).
 * declare const store: Store; // opened with { readOnly: true }
 * await exportStore({ store, dataDir: "./data", nowMs: Date.now() }, async (line) => void lines.push(line));
 * ```
 * @module
 */
export {
  type BackupTarget,
  exportCluster,
  ExportLine,
  importCluster,
  type ImportResult,
  type Progress,
} from "./backup.ts";
export { exportStore, importStore, type StoreImportResult } from "./offline.ts";
export { type BackupCommand, linesOf, parseBackupCommand, progressDisplay } from "./cli.ts";
export { BackupError } from "./errors.ts";
