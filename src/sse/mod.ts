/**
 * Live updates (SPEC §4): the broker that fans durable changes out to server-sent-event streams, one per
 * key (`GET /{table}/subscribe/{key}`) or per table (`GET /{table}/subscribe`).
 *
 * It owns the wire format of the events, the bounded per-subscriber queues, the `Last-Event-ID` replay
 * histories (every table's; a key's from its first subscription on this node), the keepalive timer (on the
 * injected clock, armed only while a stream is open), and the timing of each frame from its change's
 * publication to its hand-over to a stream (`deliverySeconds`).
 * Every stream starts with a ready block (`event: ready`, `id: <position>`, `data: {"event":"Ready"}`,
 * SPEC §4b), so a client that reconnects before any change still resumes from its position.
 * It knows nothing of HTTP, hono or the cluster: the HTTP layer turns a {@linkcode Subscription}'s stream
 * into a `text/event-stream` response, and `main.ts` forwards each store `ChangeEvent`, and each change a
 * coordinator forwards for a key this node does not replicate, to {@linkcode Broker.publish}, which drops
 * a version already published for its key. Table-stream ids are the broker's own, starting at
 * `clock.nowMs() * 1000`.
 *
 * No silent gaps (SPEC §4b): where a stream would jump over versions of a key that it never showed (this
 * node missed them, or no longer remembers them), it first sends the key's Resync, an unnamed event
 * without an id, `data: {"event":"Resync","table":"t","key":"k"}`, then the key's state at the new
 * version. The client's last event id stays at the last version (or table id) it really has.
 *
 * @example
 * ```ts
 * import { defaultLimits } from "../config/limits.ts";
 * import { createLogger } from "../util/log.ts";
 * import type { ChangeEvent, Entry } from "../store/mod.ts";
 *
 * declare const event: ChangeEvent; // main.ts: from the store's onChange, or a change forwarded to this node
 * declare const current: Entry | undefined; // http: the key's entry, read from the store just before
 *
 * const broker = new Broker({ limits: defaultLimits, logger: createLogger({ level: "info" }) });
 * broker.publish(event); // duplicates dropped, skips announced
 * // http: GET /users/subscribe/alice with `Last-Event-ID: 7` (a fresh subscribe reads `current` too: the
 * // key's current version is the stream's position)
 * const subscription = broker.subscribeKey("users", "alice", { lastEventId: 7, current });
 * const response = new Response(subscription.stream, { headers: { "content-type": "text/event-stream" } });
 * ```
 *
 * @module
 */
export {
  Broker,
  type BrokerOptions,
  type MultiSources,
  multiSourcesMax,
  type SnapshotRecord,
  type SubscribeKeyOptions,
  type SubscribeMultiOptions,
  type SubscribeTableOptions,
  type Subscription,
  type TableSnapshot,
} from "./broker.ts";
export { SubscriberTooSlowError, TooManySubscribersError } from "./errors.ts";
