import { assert } from "../util/assert.ts";

/** How many connections and event-stream subscribers a node takes, under its file-descriptor limit. */
export interface Capacity {
  /** Most open client and peer connections; the next is answered 503. */
  connectionsMax: number;
  /** Most event-stream subscribers; the next subscribe is answered 503 while requests still get through. */
  subscribersMax: number;
  /** Descriptors kept for what is not a served connection. */
  reservedFds: number;
}

/**
 * Descriptors kept for everything but served connections: stdio, the runtime's own (event loop, threads),
 * the WAL and checkpoint files, snapshots being written, connections to peers, and connections being
 * refused. The larger of 128 and a tenth of the limit.
 */
export function reservedFdsOf(fdLimit: number): number {
  return Math.max(128, Math.ceil(fdLimit / 10));
}

/**
 * The caps a node runs with: the configured ones, lowered to fit its file-descriptor limit. Connections
 * stop at the limit less {@linkcode reservedFdsOf}; subscribers stop 5% (at least 32) below connections,
 * so that when streams fill the node, a `GET /health` or a write still gets a connection and a subscriber
 * over the cap gets a 503 rather than no answer.
 */
export function capacityOf(
  options: { fdLimit: number; connectionsMax: number; subscribersMax: number },
): Capacity {
  assert(Number.isSafeInteger(options.fdLimit));
  assert(options.fdLimit >= 1);
  const reservedFds = reservedFdsOf(options.fdLimit);
  const connectionsMax = Math.max(1, Math.min(options.connectionsMax, options.fdLimit - reservedFds));
  const subscriberRoom = Math.max(32, Math.ceil(connectionsMax / 20));
  const subscribersMax = Math.max(1, Math.min(options.subscribersMax, connectionsMax - subscriberRoom));
  assert(connectionsMax <= options.connectionsMax);
  assert(subscribersMax <= options.subscribersMax);
  return { connectionsMax, subscribersMax, reservedFds };
}
