/** Joining a cluster through `JOIN_ADDRESS`, retrying while the seed cannot be reached yet. */
import type { Config } from "../config/schema.ts";
import type { ClusterNode } from "../cluster/mod.ts";
import { sleep, systemClock } from "../util/clock.ts";
import { KvError } from "../util/errors.ts";
import type { Logger } from "../util/log.ts";

/**
 * Joins through `JOIN_ADDRESS`, retrying with backoff (250 ms doubling to 5 s) while the seed cannot be
 * reached or answers that it is not ready, for up to `DYNA_JOIN_TIMEOUT_SECS`: nodes of a cluster are
 * often started together, and the seed may not listen yet. A refusal (wrong `CLUSTER_SECRET`) is final.
 */
export async function joinCluster(cluster: ClusterNode, config: Config, logger: Logger): Promise<void> {
  const seed = `${config.join!.hostname}:${config.join!.port}`;
  const deadlineMs = systemClock.monotonicMs() + config.joinTimeoutSecs * 1_000;
  let delayMs = joinRetryFirstMs;
  for (let attempt = 1;; attempt += 1) {
    try {
      await cluster.join(seed);
      return;
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      if (error instanceof KvError && error.code === "cluster_join_refused") {
        throw new JoinError(`join refused by ${seed}: CLUSTER_SECRET does not match (403)`);
      }
      if (error instanceof KvError && error.code === "invalid_request") throw new JoinError(reason);
      const remainingMs = deadlineMs - systemClock.monotonicMs();
      if (remainingMs <= 0) {
        throw new JoinError(
          `cannot join ${seed}: gave up after ${attempt} attempts in ${config.joinTimeoutSecs} s ` +
            `(DYNA_JOIN_TIMEOUT_SECS): ${reason}`,
        );
      }
      const waitMs = Math.min(delayMs, remainingMs);
      logger.warn(`cannot join ${seed} yet; retrying`, {
        attempt,
        reason,
        retry_in_ms: waitMs,
        gives_up_in_s: Math.ceil(remainingMs / 1_000),
      });
      await sleep(systemClock, waitMs);
      delayMs = Math.min(delayMs * 2, joinRetryMaxMs);
    }
  }
}

/** First pause between join attempts; each later one doubles, up to {@linkcode joinRetryMaxMs}. */
const joinRetryFirstMs = 250;
/** Longest pause between join attempts. */
const joinRetryMaxMs = 5_000;

/** Joining the cluster failed; the node exits 1 with this message. */
export class JoinError extends Error {}
