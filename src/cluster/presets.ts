import { assert } from "../util/assert.ts";
import type { ClusterConfig } from "./types.ts";

/**
 * Settings for nodes on one LAN or data centre (round trips under a few ms). With them a dead node is
 * marked dead within 5 s; DESIGN.md ("Detection time") shows the arithmetic.
 */
export function lanClusterConfig(secret: string): ClusterConfig {
  return {
    secret,
    // One probe per 0.5 s: a 5-node cluster sends ~10 small requests a second and detects within 5 s.
    probeIntervalMs: 500,
    // 100× a LAN round trip, yet short enough that direct plus indirect probing (3× this) ends in 0.9 s.
    probeTimeoutMs: 300,
    // Three helpers make a false suspicion from one lossy link unlikely (memberlist's default).
    indirectProbeCount: 3,
    // 3 intervals (1.5 s) for a suspect to refute before it is declared dead, for clusters up to 9 nodes.
    suspicionMult: 3,
    // Three copies survive the loss of any two nodes (SPEC §5 default).
    replicationFactor: 3,
    // A majority of the replicas: two of three.
    // 64 points per member keep each member's share of keys within about ±25% of fair.
    virtualNodeCount: 64,
    // A replica write or a forwarded request on a LAN takes ms; 2 s covers an fsync under load.
    requestTimeoutMs: 2_000,
    // Replicas compare digests every 10 s: cheap, and a missed write heals in seconds, not hours.
    antiEntropyIntervalMs: 10_000,
    // Accept requests whose clock is up to 30 s off ours: NTP keeps LANs far closer, replays need a copy.
    requestWindowMs: 30_000,
  };
}

/**
 * Short intervals for clusters of a few nodes on one machine (integration tests): detection in about
 * half a second, and a reaped dead node within 3 s, so a test waits seconds, not minutes.
 */
export function localTestClusterConfig(secret: string): ClusterConfig {
  return {
    ...lanClusterConfig(secret),
    // Five probes a second: loopback round trips are sub-millisecond, yet a CI machine running many
    // test processes on two cores stalls a node for tens of milliseconds at a time.
    probeIntervalMs: 200,
    // Under the interval, and long enough that such a stall is not taken for a failure.
    probeTimeoutMs: 150,
    // 2 intervals, the floor of the formula: a suspect is dead 400 ms after it is suspected.
    suspicionMult: 2,
    // A dead node leaves the ring after 3 s, so tests of re-replication finish quickly.
    // Anti-entropy every 0.5 s, so a node that missed writes catches up within a test's patience.
    antiEntropyIntervalMs: 500,
    // 1 s: a CI machine may stall, yet a test of a dead peer should not wait long.
    requestTimeoutMs: 1_000,
  };
}

/**
 * How long a suspect has to refute before it is declared dead, for `memberCount` live members:
 * `suspicionMult * max(1, log10(memberCount + 1)) * probeIntervalMs`, at least 2 probe intervals, rounded up.
 * Larger clusters wait a little longer because suspicion takes longer to reach the suspect (memberlist).
 */
export function suspicionTimeoutMs(config: ClusterConfig, memberCount: number): number {
  assert(Number.isSafeInteger(memberCount));
  assert(memberCount >= 0);
  const scale = Math.max(1, Math.log10(memberCount + 1));
  return Math.ceil(
    Math.max(2 * config.probeIntervalMs, config.suspicionMult * scale * config.probeIntervalMs),
  );
}

/** Checks the relations between cluster settings that the rest of the module relies on. */
export function assertClusterConfig(config: ClusterConfig): void {
  for (const name of ["probeIntervalMs", "probeTimeoutMs", "requestTimeoutMs"] as const) {
    assert(Number.isSafeInteger(config[name]), `${name} must be an integer`);
    assert(config[name] > 0, `${name} must be positive`);
  }
  assert(config.probeTimeoutMs < config.probeIntervalMs, "probeTimeoutMs must be under probeIntervalMs");
  assert(Number.isSafeInteger(config.indirectProbeCount));
  assert(config.indirectProbeCount >= 0);
  assert(config.suspicionMult >= 1);
  assert(Number.isSafeInteger(config.virtualNodeCount));
  assert(config.virtualNodeCount >= 1);
  assert(config.replicationFactor >= 1);
  assert(config.requestWindowMs > 0);
  assert(config.secret.length > 0, "CLUSTER_SECRET must not be empty");
}
