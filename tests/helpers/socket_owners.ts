/**
 * Which process opened a loopback TCP connection, read from Linux's `/proc`: the client end of a
 * connection to 127.0.0.1:`serverPort` from port `clientPort` is the line of `/proc/net/tcp` with that local
 * and remote port; its inode is a `socket:[inode]` link in `/proc/<pid>/fd` of the process that holds it.
 *
 * Every node process connects from 127.0.0.1 and an ephemeral port, so a TCP proxy cannot tell its
 * clients apart by address; this lets it (see `TcpProxy.filter`), which is what makes partitions by group
 * possible between processes on one host. Lookups that arrive together are answered by one scan.
 */

/** One connection, as the proxy that accepted it sees it. */
export interface SocketEnds {
  /** The connecting side's port (the proxy's `remoteAddr.port`). */
  clientPort: number;
  /** The port it connected to (the proxy's listening port). */
  serverPort: number;
}

interface PendingLookup {
  ends: SocketEnds;
  resolve: (pid: number | undefined) => void;
}

/** Looks up the owners of client sockets among a set of candidate processes. */
export class SocketOwners {
  readonly #candidatePids: () => readonly number[];
  #pending: PendingLookup[] = [];
  #scheduled = false;

  /** `candidatePids` names the processes that may own a socket (the nodes), asked at each scan. */
  constructor(candidatePids: () => readonly number[]) {
    this.#candidatePids = candidatePids;
  }

  /** True where `/proc/net/tcp` can be read (Linux). */
  static available(): boolean {
    try {
      Deno.readTextFileSync("/proc/net/tcp");
      return true;
    } catch {
      return false;
    }
  }

  /** The pid of the candidate process holding the client end, or undefined (closed already, or none). */
  ownerOf(ends: SocketEnds): Promise<number | undefined> {
    const { promise, resolve } = Promise.withResolvers<number | undefined>();
    this.#pending.push({ ends, resolve });
    if (!this.#scheduled) {
      this.#scheduled = true;
      // One scan for every lookup made in this turn of the event loop.
      setTimeout(() => this.#scan(), 0);
    }
    return promise;
  }

  #scan(): void {
    const pending = this.#pending;
    this.#pending = [];
    this.#scheduled = false;
    let owners = new Map<number, number>();
    try {
      const inodes = clientInodes(Deno.readTextFileSync("/proc/net/tcp"));
      const wanted = new Set(pending.flatMap(({ ends }) => inodes.get(endsKey(ends)) ?? []));
      owners = ownersOfInodes(wanted, this.#candidatePids());
      for (const lookup of pending) {
        const inode = inodes.get(endsKey(lookup.ends));
        lookup.resolve(inode === undefined ? undefined : owners.get(inode));
      }
    } catch {
      for (const lookup of pending) lookup.resolve(undefined);
    }
  }
}

function endsKey(ends: SocketEnds): string {
  return `${ends.clientPort}>${ends.serverPort}`;
}

const loopbackHex = "0100007F"; // 127.0.0.1 as /proc/net/tcp writes it (little-endian)

/** `clientPort>serverPort` → inode, for every connection between two loopback ports. */
function clientInodes(table: string): Map<string, number> {
  const inodes = new Map<string, number>();
  for (const line of table.split("\n").slice(1)) {
    const fields = line.trim().split(/\s+/);
    const [localHost, localPort] = (fields[1] ?? "").split(":");
    const [remoteHost, remotePort] = (fields[2] ?? "").split(":");
    const inode = Number(fields[9]);
    if (localHost !== loopbackHex || remoteHost !== loopbackHex || !(inode > 0)) continue;
    inodes.set(`${parseInt(localPort!, 16)}>${parseInt(remotePort!, 16)}`, inode);
  }
  return inodes;
}

/** inode → pid for the wanted socket inodes held by the candidate processes. */
function ownersOfInodes(wanted: ReadonlySet<number>, pids: readonly number[]): Map<number, number> {
  const owners = new Map<number, number>();
  if (wanted.size === 0) return owners;
  for (const pid of pids) {
    let entries: Iterable<Deno.DirEntry>;
    try {
      entries = Deno.readDirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // the process is gone
    }
    for (const entry of entries) {
      let link: string;
      try {
        link = Deno.readLinkSync(`/proc/${pid}/fd/${entry.name}`);
      } catch {
        continue; // closed while we looked
      }
      const match = /^socket:\[(\d+)\]$/.exec(link);
      if (match !== null && wanted.has(Number(match[1]))) owners.set(Number(match[1]), pid);
    }
    if (owners.size === wanted.size) break;
  }
  return owners;
}
