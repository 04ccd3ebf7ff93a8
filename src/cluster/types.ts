/**
 * The contract between the parts of the cluster module (membership, transport, ring, replication) and
 * the composition root. See DESIGN.md for the reasons and the formulas.
 */

/** States of a member as SWIM sees it. `left` is a graceful goodbye; `dead` a failure. */
export type MemberStatus = "alive" | "suspect" | "dead" | "left";

/** One member of the cluster as this node knows it. The id is the advertised `host:port`. */
export interface Member {
  readonly id: string;
  readonly status: MemberStatus;
  /** Raised only by the member itself, to refute suspicion or to announce a restart or a leave. */
  readonly incarnation: number;
  /** Last time (ms since the epoch, this node's clock) this node heard from the member directly. */
  readonly lastSeenMs: number;
  /** When the status last changed, on this node's clock. */
  readonly statusChangedMs: number;
}

/** Timing and placement settings; see `presets.ts` for the defaults and their formulas. */
export interface ClusterConfig {
  /** `CLUSTER_SECRET`: the key every node-to-node request is authenticated with. */
  secret: string;
  /** One SWIM probe per interval. */
  probeIntervalMs: number;
  /** How long a direct or indirect probe may take before it counts as failed. */
  probeTimeoutMs: number;
  /** Members asked to probe a target that did not answer a direct probe. */
  indirectProbeCount: number;
  /** `suspicionTimeoutMs = suspicionMult * max(1, log10(n + 1)) * probeIntervalMs`, at least 2 intervals. */
  suspicionMult: number;
  /** Nodes each key lives on; all nodes when the cluster is smaller. */
  replicationFactor: number;
  /** Points per member on the hash ring. */
  virtualNodeCount: number;
  /** Timeout of one node-to-node request that is not a probe. */
  requestTimeoutMs: number;
  /** Interval between anti-entropy rounds with one peer. */
  antiEntropyIntervalMs: number;
  /** Largest clock difference accepted on an authenticated request (replay window). */
  requestWindowMs: number;
}

/** A peer's answer, or the reason there is none. */
export type PeerFailure = "unreachable" | "interrupted" | "timeout" | "refused" | "invalid_reply";
