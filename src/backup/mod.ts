/**
 * Backups of a running cluster: `dynarust export --to FILE` and `dynarust import --from FILE`.
 *
 * @example
 * ```ts
 * declare const clusterSecret: string; // CLUSTER_SECRET of the cluster
 *
 * const lines: string[] = [];
 * const target = { nodeUrl: "http://127.0.0.1:6660", clusterSecret };
 * const recordCount = await exportCluster(target, async (line) => void lines.push(line));
 * const other = { nodeUrl: "http://127.0.0.1:7770", clusterSecret };
 * const { restored, missed } = await importCluster(other, ReadableStream.from(lines));
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
export { type BackupCommand, linesOf, parseBackupCommand, progressDisplay } from "./cli.ts";
export { BackupError } from "./errors.ts";
