/** What `/stats` and `/metrics` show of a running node: store, change log, streams, cluster, server. */
import type { Broker } from "../sse/mod.ts";
import type { ChangeLog, Store } from "../store/mod.ts";
import type { NodeMetrics } from "../http/mod.ts";
import type { ClusterNode } from "../cluster/mod.ts";
import type { Server } from "../server/mod.ts";

/** The parts of a node its counters come from. */
export interface StatsSources {
  store: Store;
  changes: ChangeLog;
  broker: Broker;
  cluster: ClusterNode;
  server: Server;
}

/** The body of `/stats`. */
export function nodeStats(parts: StatsSources) {
  const { store, changes, broker, cluster, server } = parts;
  const wal = store.stats();
  const replication = cluster.stats();
  return {
    tables: store.tableCounts(),
    activeSseConnections: broker.activeCount,
    extra: {
      dropped_sse_subscribers: broker.droppedCount,
      // The window streams resume from: every change after floor_seq is held (SPEC §4b).
      change_log: {
        records: changes.recordCount,
        bytes: changes.sizeBytes,
        floor_seq: changes.floorSeq,
        next_seq: changes.nextSeq,
      },
      connections: {
        open: server.connectionCount,
        accepted: server.stats.accepted,
        refused: server.stats.refused,
        accept_failures: server.stats.acceptFailures,
        timed_out: server.stats.timedOut,
      },
      sequence: wal.sequence,
      wal: {
        batches: wal.walBatchCount,
        records: wal.walRecordCount,
        bytes: wal.walBytes,
        checkpoints: wal.checkpointCount,
        snapshots: wal.snapshotCount,
      },
      cluster: {
        members: replication.members,
        pipeline_backlog: replication.pipelineBacklog,
        hints: replication.hints,
        hints_dropped: replication.hintsDropped,
        forwarded_writes: replication.forwardedWrites,
        forwarded_reads: replication.forwardedReads,
        read_repairs: replication.readRepairs,
        fast_path_writes: replication.fastPathWrites,
        prepare_rounds: replication.prepareRounds,
        proposal_retries: replication.proposalRetries,
        rebalanced_keys: replication.rebalancedKeys,
        purged_keys: replication.purgedKeys,
        anti_entropy_rounds: replication.antiEntropyRounds,
        anti_entropy_pushed: replication.antiEntropyPushed,
        membership_changes_unsettled: replication.membershipChangesUnsettled,
      },
      expired_keys: replication.expiredKeys,
      // The expiry sweeper's counters (cluster DESIGN.md, "Expiry (TTL)").
      expiry: {
        proposed: replication.expiry.proposed,
        refused: replication.expiry.refused,
        failed: replication.expiry.failed,
        deferred: replication.expiry.deferred,
        in_flight: replication.expiry.inFlight,
      },
    },
  };
}

/** The gauges and counters of `/metrics`. */
export function nodeMetrics(parts: Pick<StatsSources, "store" | "broker" | "cluster">): NodeMetrics {
  const { store, broker, cluster } = parts;
  const stats = store.stats();
  const replication = cluster.stats();
  return {
    tables: store.tableCounts(),
    walBatchRecords: stats.wal.batchRecords,
    walSyncSeconds: stats.wal.syncSeconds,
    walBytes: stats.walBytes,
    sseConnections: broker.activeCount,
    sseDropped: broker.droppedCount,
    sseDeliverySeconds: broker.deliverySeconds,
    replicationBacklog: replication.pipelineBacklog,
    hintBacklog: replication.hints,
    hintsDropped: replication.hintsDropped,
    forwardedWrites: replication.forwardedWrites,
    paxosRounds: {
      fastPath: replication.fastPathWrites,
      prepare: replication.prepareRounds,
      retry: replication.proposalRetries,
    },
    expiredKeys: replication.expiredKeys,
  };
}
