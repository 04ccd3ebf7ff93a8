/**
 * Backups of a stopped node's data dir, without the network or `CLUSTER_SECRET`: `dynarust export
 * --data-dir DIR` reads a read-only store (the build's key decrypts it) into the same JSON lines as a
 * cluster's export, and `dynarust import --data-dir DIR` applies an export to a store by the same conflict
 * rule as a cluster's `restore`. `main.ts` opens the store (its lock keeps a running node's dir out) and
 * the files; this module only moves records.
 */
import { assert } from "../util/assert.ts";
import { usersTable } from "../cluster/mod.ts";
import type { ReplicaEntry, ReplicaResult, Store } from "../store/mod.ts";
import { exportHeader, exportItems, type Progress } from "./backup.ts";

/** Items per `applyReplicas` call of an offline import: one WAL batch (and one sync) or a few. */
const applyBatch = 500;

/**
 * Writes the header, every user, then every live record of every table (keys in code-unit order) of
 * `store`, one JSON object per `write`, as `exportCluster` writes them. A state whose lifetime ended by
 * `nowMs` is left out, as a node's listing leaves it out.
 *
 * @returns the number of records written (users included).
 */
export async function exportStore(
  source: { store: Store; dataDir: string; nowMs: number },
  write: (line: string) => Promise<void>,
  progress: Progress = () => {},
): Promise<number> {
  const { store, nowMs } = source;
  const counts = store.tableCounts();
  const estimate = [...counts.values()].reduce((sum, count) => sum + count, 0);
  const exportedAt = new Date(nowMs).toISOString();
  await write(JSON.stringify({ ...exportHeader, data_dir: source.dataDir, exported_at: exportedAt }));
  const tables = [...counts.keys()].filter((table) => table !== usersTable).sort();
  let done = 0;
  for (const table of [usersTable, ...tables]) {
    const entries = store.entries(table, { limit: Number.MAX_SAFE_INTEGER, liveAtMs: nowMs });
    for (const [key, entry] of entries) {
      // `Entry.json` is `{"value":...,"version":...,...}`: the line is its fields after table and key, the
      // value's bytes as they were stored.
      assert(entry.json.startsWith('{"value":'), "a live entry's JSON starts with its value");
      await write(`{"table":${JSON.stringify(table)},"key":${JSON.stringify(key)},${entry.json.slice(1)}`);
      done += 1;
      progress(done, Math.max(estimate, done));
    }
  }
  return done;
}

/** What an offline import did. */
export interface StoreImportResult {
  /** Records written into the store. */
  restored: number;
  /** Records the store already held at that version, or at a state that wins by the conflict rule. */
  kept: number;
}

/**
 * Applies the records of an export to `store` as replicas at the zero ballot (`Store.applyReplicas`):
 * a key whose state wins by the conflict rule (a newer version; at one version the later timestamp) keeps
 * it, as in a cluster's `restore`. The first line must be the export header.
 *
 * @throws {BackupError} on a line that is not a record (naming it).
 * @throws {InvalidRequestError} from the store when a record breaks one of its limits (naming the key).
 */
export async function importStore(
  store: Store,
  lines: AsyncIterable<string>,
  progress: Progress = () => {},
): Promise<StoreImportResult> {
  const result: StoreImportResult = { restored: 0, kept: 0 };
  let batch: Array<{ table: string; key: string; entry: ReplicaEntry }> = [];
  const flush = async () => {
    if (batch.length === 0) return;
    const outcomes: ReplicaResult[] = await store.applyReplicas(batch);
    assert(outcomes.length === batch.length, "one outcome per record");
    for (const outcome of outcomes) {
      if (outcome === "applied") result.restored += 1;
      else result.kept += 1;
    }
    batch = [];
    progress(result.restored + result.kept, undefined);
  };
  for await (const item of exportItems(lines)) {
    if (batch.length === applyBatch) await flush();
    batch.push(item);
  }
  await flush();
  return result;
}
