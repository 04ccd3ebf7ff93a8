import { assert } from "../util/assert.ts";
import type { Libc } from "./fd_limit.ts";

/** `AF_INET` and `AF_INET6` on Linux. */
const familyInet = 2;
const familyInet6 = 10;
/** `SHUT_RDWR`: no more reads or writes on the socket. */
const shutdownBoth = 2;
/** Bytes of the largest socket address read (`sockaddr_in6` is 28). */
const sockaddrBytes = 128;

/** A TCP peer as Deno names it: `remoteAddr.hostname` and `remoteAddr.port`. */
export interface Peer {
  hostname: string;
  port: number;
}

/**
 * Ends TCP connections that Deno can no longer close: a TLS connection whose handshake never started or
 * never finished keeps its socket in a pending handshake after `close()` (Deno 2.9.6). Each such socket is
 * found among this process's descriptors by its local port (the node's) and its peer address, and shut down
 * with `shutdown(SHUT_RDWR)`: the descriptor stays Deno's, whose pending read then ends and closes it. A
 * scan reads each descriptor up to `fdMax` once, for every peer given.
 */
export function shutdownPeers(
  libc: Libc,
  options: { localPort: number; peers: readonly Peer[]; fdMax: number },
): number {
  assert(Number.isSafeInteger(options.fdMax));
  assert(options.fdMax >= 0);
  if (options.peers.length === 0) return 0;
  const wanted = new Set(options.peers.map((peer) => peerKey(peer.hostname, peer.port)));
  const address = new Uint8Array(sockaddrBytes);
  const length = new Uint32Array(1);
  let shutCount = 0;
  for (let fd = 0; fd < options.fdMax && wanted.size > 0; fd += 1) {
    length[0] = sockaddrBytes;
    if (libc.symbols.getsockname(fd, address, length) !== 0) continue;
    if (portOf(address) !== options.localPort) continue;
    length[0] = sockaddrBytes;
    if (libc.symbols.getpeername(fd, address, length) !== 0) continue;
    const key = keyOfAddress(address);
    if (key === undefined || !wanted.has(key)) continue;
    wanted.delete(key);
    if (libc.symbols.shutdown(fd, shutdownBoth) === 0) shutCount += 1;
  }
  assert(shutCount <= options.peers.length);
  return shutCount;
}

/** The port of a `sockaddr_in` or `sockaddr_in6` (network byte order), or -1 for another family. */
function portOf(address: Uint8Array): number {
  const family = address[0]! | (address[1]! << 8);
  if (family !== familyInet && family !== familyInet6) return -1;
  return (address[2]! << 8) | address[3]!;
}

/** The peer key of a socket address, or undefined for a family other than IPv4 and IPv6. */
function keyOfAddress(address: Uint8Array): string | undefined {
  const family = address[0]! | (address[1]! << 8);
  const port = portOf(address);
  if (family === familyInet) return peerKey(Array.from(address.subarray(4, 8)).join("."), port);
  if (family !== familyInet6) return undefined;
  const groups: string[] = [];
  for (let index = 8; index < 24; index += 2) {
    groups.push(((address[index]! << 8) | address[index + 1]!).toString(16));
  }
  return `[${groups.join(":")}]:${port}`;
}

/** A comparable key of a peer: `a.b.c.d:port`, or the eight full groups of an IPv6 address. */
export function peerKey(hostname: string, port: number): string {
  if (!hostname.includes(":")) return `${hostname}:${port}`;
  return `[${expandIpv6(hostname).join(":")}]:${port}`;
}

/** The eight hexadecimal groups of an IPv6 address, without leading zeros (`::1` → 0,…,0,1). */
function expandIpv6(text: string): string[] {
  const bare = text.replace(/^\[|\]$/g, "").replace(/%.*$/, "");
  const [head, tail] = bare.includes("::") ? bare.split("::") : [bare, undefined];
  const front = head === "" ? [] : head!.split(":");
  const back = tail === undefined || tail === "" ? [] : tail.split(":");
  const missing = 8 - front.length - back.length;
  const groups = [...front, ...Array(Math.max(0, missing)).fill("0"), ...back];
  return groups.map((group) => parseInt(group, 16).toString(16));
}
