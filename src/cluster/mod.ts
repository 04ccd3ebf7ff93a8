/**
 * The cluster (SPEC §5): who is in it (SWIM membership over authenticated HTTP), where each key lives
 * (a consistent-hash ring), and the one seam to the network (`Transport`).
 *
 * It owns node-to-node authentication (an HMAC derived from `CLUSTER_SECRET` on every request), the wire
 * messages of membership, failure detection and the ring. It knows nothing of HTTP routing, hono, user
 * tokens or the store: the HTTP layer hands every `POST /_internal/<kind>` to an
 * {@linkcode InternalHandler}, and `main.ts` wires the parts together. Only `transport_http.ts` (through
 * `http1_client.ts`) opens connections to peers; time comes from the injected `Clock`.
 *
 * @example
 * ```ts
 * import { systemClock } from "../util/clock.ts";
 * import { createLogger } from "../util/log.ts";
 *
 * declare const secret: string; // CLUSTER_SECRET
 * const logger = createLogger({ level: "info" });
 * const config = lanClusterConfig(secret);
 * const self = "10.0.0.5:6660"; // the advertised host:port
 * const signer = await RequestSigner.create(config.secret);
 * const transport = new HttpTransport({ self, signer, clock: systemClock });
 * const windowMs = config.requestWindowMs;
 * const handler = new InternalHandler({ signer, clock: systemClock, self, windowMs });
 * const membership = new Membership({ self, config, transport, clock: systemClock, logger });
 * membership.registerHandlers(handler); // http: POST /_internal/:kind → handler.admit(), then serve(body)
 * await membership.join("10.0.0.4:6660"); // JoinRefusedError: exit with its message
 * membership.start();
 * const ring = new Ring({ memberIds: membership.ringIds(), virtualNodeCount: config.virtualNodeCount });
 * ring.replicasOf("users", "alice", config.replicationFactor); // ["10.0.0.5:6660", ...]
 * ```
 *
 * @module
 */
export type { ClusterConfig, Member, MemberStatus, PeerFailure } from "./types.ts";
export { ClusterAuthError, JoinRefusedError, PeerRequestError, UnknownKindError } from "./errors.ts";
export {
  bodyDigest,
  digestHeader,
  macHeader,
  nodeHeader,
  RequestSigner,
  sequenceHeader,
  targetHeader,
  timeHeader,
  type VerifiedHeaders,
} from "./mac.ts";
export {
  parseSequence,
  ReplayGuard,
  type ReplayGuardOptions,
  replayStreamsMax,
  type Sequence,
  SequenceSource,
  type SequenceStatus,
  SequenceWindow,
  sequenceWindowBits,
} from "./replay.ts";
export { guardStore } from "./store_guard.ts";
export {
  bodyMsPerMiB,
  clusterRequestBytesMax,
  type InternalAdmission,
  type InternalDoor,
  InternalHandler,
  type InternalHandlerOptions,
  internalJsonDepthMax,
  internalMessageBytesCeiling,
  internalMessageBytesMax,
  internalPath,
  type InternalRequestHandler,
  messageBytesMaxFor,
  parseInternalJson,
  type Transport,
} from "./transport.ts";
export { HttpTransport, type HttpTransportOptions } from "./transport_http.ts";
export { Membership, type MembershipOptions } from "./membership.ts";
export { fmix32, fnv1a32, hashText, keyHash, Ring, type RingOptions } from "./ring.ts";
export {
  assertClusterConfig,
  lanClusterConfig,
  localTestClusterConfig,
  suspicionTimeoutMs,
} from "./presets.ts";
export { isMemberId, memberIdCharsMax, MemberListWire, MemberWire, parseWire, peersMax } from "./wire.ts";
export { ClusterNode, type ClusterNodeOptions, type ClusterStats } from "./node.ts";
export { usersTable } from "./placement.ts";
export type { ChangeSink, EntryView, LocalStore, ReplicaEntry } from "./local_store.ts";
