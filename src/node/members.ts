/**
 * The members file in the data dir: the ring this node last knew, so a restart starts from it and a node
 * that left gracefully knows it left.
 */
import type { ClusterNode } from "../cluster/mod.ts";
import type { Logger } from "../util/log.ts";
import { type Fs, privateFilePermissions, replaceFile } from "../store/mod.ts";

/** The members file in the data dir: the ring this node last knew, so a restart starts from it. */
const membersFileName = "members.json";

/**
 * The member list this node saved, for `ClusterNode`'s `knownMembers`; empty when none was saved. Ids are
 * `host:port` strings (not secret, not encrypted); anything else in the file is ignored.
 */
export async function loadKnownMembers(fs: Fs, dataDir: string): Promise<string[]> {
  const bytes = await fs.readFile(`${dataDir}/${membersFileName}`);
  if (bytes === undefined) return [];
  try {
    const parsed: unknown = JSON.parse(new TextDecoder().decode(bytes));
    return Array.isArray(parsed) ? parsed.filter((id): id is string => typeof id === "string") : [];
  } catch {
    return [];
  }
}

/**
 * Whether the saved member list shows that this node left the cluster in its last life (gracefully: the
 * list saved before the leave was announced names every member but this one). Such a node rejoins: the
 * others moved its keys to replica sets without it, so its first view is a change from those (cluster
 * DESIGN.md, "Membership changes", the node that comes back).
 */
export function leftLastTime(known: readonly string[], self: string): boolean {
  return known.length > 0 && !known.includes(self);
}

/**
 * Saves the ring after each change of it, one write at a time (atomic and synced), so a restarted node never
 * believes itself alone or goes back to an older view of where keys live (cluster DESIGN.md). Returns what
 * saves the ring without this node, awaited before a graceful leave is announced: a node killed right after
 * announcing it still restarts knowing that it left.
 */
export function saveMembersOnChange(
  options: { fs: Fs; dataDir: string; cluster: ClusterNode; logger: Logger },
): () => Promise<void> {
  const { fs, dataDir, cluster, logger } = options;
  let saving = Promise.resolve();
  const save = (ids: readonly string[]) => {
    const text = JSON.stringify(ids);
    saving = saving.then(() =>
      replaceFile({
        fs,
        path: `${dataDir}/${membersFileName}`,
        tmpPath: `${dataDir}/${membersFileName}.tmp`,
        permissions: privateFilePermissions,
      }, (file) => file.write(new TextEncoder().encode(text)))
    ).catch((error) => logger.error("could not save the member list", { error: String(error) }));
    return saving;
  };
  cluster.onRingChange((ids) => void save(ids));
  return () => save(cluster.ringIds().filter((id) => id !== cluster.self));
}
