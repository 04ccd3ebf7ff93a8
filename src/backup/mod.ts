/**
 * Backups: `dynarust export --to FILE` and `dynarust import --from FILE`, of a running cluster through a
 * node (`--node`), or of a stopped node's data dir (`--data-dir`, through a read-only `Store`).
 *
 * @example
 * ```ts
 * const lines: string[] = [];
 * const target = { nodeUrl: "http://127.0.0.1:6660", clusterSecret };
 * await exportCluster(target, async (line) => void lines.push(line));
 * await importCluster({ nodeUrl: "http://127.0.0.1:7770", clusterSecret }, toAsync(lines));
 * // A stopped node: its store opened read-only (main.ts opens it with the build's key).
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
