import { KvError } from "../util/errors.ts";
import type { PeerFailure } from "./types.ts";

/**
 * A node-to-node request failed authentication: a header is missing, its time is outside the validity
 * window, its MAC or body digest does not match, it is a replay, or it is addressed to another node. The
 * message never holds the secret, the MAC or the body.
 */
export class ClusterAuthError extends KvError {
  constructor(target: { path: string; reason: string; headers?: Record<string, string> }) {
    super(
      "cluster_unauthorized",
      `Cannot authenticate the cluster request to ${target.path}: ${target.reason}`,
      target.headers === undefined ? {} : { headers: target.headers },
    );
  }
}

/** The seed answered a join with 401 or 403: this node's `CLUSTER_SECRET` is not the cluster's. */
export class JoinRefusedError extends KvError {
  /** The seed that refused. */
  readonly seed: string;

  constructor(seed: string, options: { cause?: unknown } = {}) {
    super(
      "cluster_join_refused",
      `Cannot join the cluster through ${seed}: the seed refused this node's CLUSTER_SECRET ` +
        "(it must be the same on every node)",
      options,
    );
    this.seed = seed;
  }
}

/** Describes each failure in a sentence for {@linkcode PeerRequestError}'s message. */
const failureReasons: Record<PeerFailure, string> = {
  unreachable: "the peer could not be reached",
  interrupted: "the connection failed after the request was sent: the peer may have run it",
  timeout: "the peer did not answer in time",
  refused: "the peer refused this node's credentials",
  invalid_reply: "the peer's reply was not a valid answer",
};

/** A request to another node got no usable answer; `failure` says why. */
export class PeerRequestError extends KvError {
  /** The `host:port` asked. */
  readonly target: string;
  /** The request kind (`ping`, `join`, ...). */
  readonly kind: string;
  /** Why there is no answer. */
  readonly failure: PeerFailure;
  /** The HTTP status of the reply, when there was one. */
  readonly status: number | undefined;
  /** The `code` of the peer's problem+json reply, when it sent one. */
  readonly remoteCode: string | undefined;

  constructor(
    options: {
      target: string;
      kind: string;
      failure: PeerFailure;
      detail?: string;
      status?: number;
      remoteCode?: string;
      cause?: unknown;
    },
  ) {
    const detail = options.detail === undefined ? "" : ` (${options.detail})`;
    super(
      "peer_unavailable",
      `Cannot send "${options.kind}" to ${options.target}: ${failureReasons[options.failure]}${detail}`,
      options.cause === undefined ? {} : { cause: options.cause },
    );
    this.target = options.target;
    this.kind = options.kind;
    this.failure = options.failure;
    this.status = options.status;
    this.remoteCode = options.remoteCode;
  }
}

/** An authenticated internal request named a kind no handler is registered for. */
export class UnknownKindError extends KvError {
  constructor(kind: string) {
    super("not_found", `Cannot handle the cluster request "${kind.slice(0, 64)}": no such kind`);
  }
}
