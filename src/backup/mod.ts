/**
 * Backups of a running cluster: `dynarust export --to FILE` and `dynarust import --from FILE`.
 *
 * @example
 * ```ts
 * const lines: string[] = [];
 * const target = { nodeUrl: "http://127.0.0.1:6660", clusterSecret };
 * await exportCluster(target, async (line) => void lines.push(line));
 * await importCluster({ nodeUrl: "http://127.0.0.1:7770", clusterSecret }, toAsync(lines));
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
