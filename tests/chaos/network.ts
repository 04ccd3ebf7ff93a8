/**
 * Partitions between node processes, made at each node's proxy: a directed link `A>B` is blocked when the
 * proxy in front of B refuses (and closes) every connection that A's process opened. Node-to-node traffic is
 * HTTP, one request and its reply on a connection that its sender opened, so blocking `A>B` means A's
 * requests to B fail while B's requests to A still succeed, replies included. That is the unit the nemesis
 * composes: a symmetric cut blocks both directions, a one-way cut one of them.
 *
 * What it cannot express: losing only the replies of a link (a request that arrives and is applied, but whose
 * answer never comes: only a cut or pause at the right moment does that), packet-level loss or reordering,
 * or cutting clients off from nodes (clients connect directly). Blocking is at connection level: an open
 * connection that becomes blocked is closed, which a real partition would turn into a timeout instead.
 */
import { SocketOwners } from "../helpers/socket_owners.ts";
import type { ChaosCluster } from "./cluster.ts";

/** Which node may open connections to which; nodes in no group reach everyone. */
export interface PartitionSpec {
  /** Nodes reach each other only when some group holds both (groups may overlap: a bridge). */
  groups?: readonly (readonly string[])[];
  /** Directed links `[source, target]` blocked on top of `groups`. */
  blocked?: readonly (readonly [string, string])[];
}

/** The links of the cluster and the partition now in force. */
export class Network {
  readonly #cluster: ChaosCluster;
  readonly #owners: SocketOwners;
  #blocked = new Set<string>();

  constructor(cluster: ChaosCluster) {
    this.#cluster = cluster;
    this.#owners = new SocketOwners(() => cluster.pids());
  }

  /** True where this host can tell which process opened a connection (Linux `/proc`). */
  static available(): boolean {
    return SocketOwners.available();
  }

  /** Blocked links `source>target`, for the log. */
  blockedLinks(): string[] {
    return [...this.#blocked].sort();
  }

  /** Replaces the partition in force with `spec` over `names` and closes what it now blocks. */
  async partition(names: readonly string[], spec: PartitionSpec): Promise<void> {
    this.#blocked = blockedLinksOf(names, spec);
    await Promise.all(names.map((target) => this.#enforce(target)));
  }

  /** Lifts every block. */
  heal(names: readonly string[]): void {
    this.#blocked.clear();
    for (const name of names) this.#cluster.proxyOf(name).heal();
  }

  async #enforce(target: string): Promise<void> {
    const proxy = this.#cluster.proxyOf(target);
    const sources = [...this.#blocked].filter((link) => link.endsWith(`>${target}`));
    if (sources.length === 0) {
      proxy.filter = undefined;
      return;
    }
    const admit = async (clientPort: number) => {
      const pid = await this.#owners.ownerOf({ clientPort, serverPort: proxy.port });
      const source = pid === undefined ? undefined : this.#cluster.nameOfPid(pid);
      // A connection nobody can be found to own (its socket closed meanwhile) is dropped.
      return source !== undefined && !this.#blocked.has(`${source}>${target}`);
    };
    proxy.filter = admit;
    await proxy.closeWhere(async (clientPort) => !(await admit(clientPort)));
  }
}

/** The directed links `source>target` a spec blocks among `names`. */
export function blockedLinksOf(names: readonly string[], spec: PartitionSpec): Set<string> {
  const blocked = new Set<string>();
  const groups = spec.groups ?? [];
  const grouped = new Set(groups.flat());
  for (const source of names) {
    for (const target of names) {
      if (source === target || !grouped.has(source) || !grouped.has(target)) continue;
      if (!groups.some((group) => group.includes(source) && group.includes(target))) {
        blocked.add(`${source}>${target}`);
      }
    }
  }
  for (const [source, target] of spec.blocked ?? []) blocked.add(`${source}>${target}`);
  return blocked;
}
