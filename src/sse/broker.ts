import type { Limits } from "../config/limits.ts";
import type { ChangeEvent, Entry } from "../store/types.ts";
import { assert } from "../util/assert.ts";
import { UnavailableError } from "../util/errors.ts";
import type { Logger } from "../util/log.ts";
import {
  encodeEntryFrame,
  encodeKeyFrame,
  encodeResyncFrame,
  encodeTableFrame,
  keepaliveFrame,
} from "./event_format.ts";
import { TooManySubscribersError } from "./errors.ts";
import { Histories } from "./histories.ts";
import type { Frame } from "./history.ts";
import { type CloseReason, Subscriber } from "./subscriber.ts";

/** One open event stream, as handed to the HTTP layer. */
export interface Subscription {
  /** The `text/event-stream` body. Cancelling it (the client went away) unregisters the subscriber. */
  readonly stream: ReadableStream<Uint8Array>;
  /** Ends the stream after the frames already queued. */
  close(): void;
}

/** Options of {@linkcode Broker}. */
export interface BrokerOptions {
  /**
   * Uses `subscribersMax`, `sseQueueDepthMax`, `sseHistoryDepth`, `sseHistoryKeysMax`,
   * `sseHistoryBytesMax` (one budget shared by key and table histories) and `sseKeepaliveMs`.
   */
  limits: Limits;
  logger: Logger;
}

/** Options of {@linkcode Broker.subscribeKey}. */
export interface SubscribeKeyOptions {
  /** The client's `Last-Event-ID` (a version), validated by the caller as a safe integer >= 0. */
  lastEventId?: number;
  /** The key's current entry, tombstones included, read just before this call. */
  current: Entry | undefined;
}

/** Options of {@linkcode Broker.subscribeTable}. */
export interface SubscribeTableOptions {
  /** The client's `Last-Event-ID` (a sequence of this node), validated by the caller as an integer >= 0. */
  lastEventId?: number;
  /** The store's sequence of the last durable change, read just before this call. */
  sequence: number;
}

type Subscribers = Map<string, Set<Subscriber>>;

/** Unambiguous map key of a (table, key) pair: the table's length fixes where the key starts. */
function topicOf(table: string, key: string): string {
  return `${table.length}:${table}${key}`;
}

/**
 * Fans durable changes out to SSE subscribers (SPEC §4). Each change is encoded once per stream kind and
 * the same bytes go to every subscriber and into a bounded history for `Last-Event-ID` replay.
 */
export class Broker {
  readonly #limits: Limits;
  readonly #logger: Logger;
  readonly #subscribers = new Set<Subscriber>();
  readonly #keySubscribers: Subscribers = new Map();
  readonly #tableSubscribers: Subscribers = new Map();
  /** Key histories by topic and table histories by table, within `sseHistory*` bounds. */
  readonly #histories: Histories;
  #keepaliveTimer: ReturnType<typeof setInterval> | undefined;
  #droppedCount = 0;
  #sequence = 0;
  #closed = false;

  constructor(options: BrokerOptions) {
    const limits = options.limits;
    assert(limits.subscribersMax >= 1);
    assert(limits.sseQueueDepthMax >= 1);
    assert(limits.sseHistoryDepth >= 1);
    assert(limits.sseHistoryKeysMax >= 1);
    assert(limits.sseHistoryBytesMax >= 0);
    assert(limits.sseKeepaliveMs >= 1);
    this.#limits = limits;
    this.#histories = new Histories({
      depthMax: limits.sseHistoryDepth,
      topicsMax: limits.sseHistoryKeysMax,
      bytesMax: limits.sseHistoryBytesMax,
    });
    this.#logger = options.logger;
  }

  /** Open subscriptions. */
  get activeCount(): number {
    return this.#subscribers.size;
  }

  /** True while the broker-wide keepalive timer runs: exactly when a subscription is open. */
  get keepaliveRunning(): boolean {
    return this.#keepaliveTimer !== undefined;
  }

  /** Subscribers disconnected for being too slow, since the broker started. */
  get droppedCount(): number {
    return this.#droppedCount;
  }

  /** Bytes of encoded frames held by all replay histories (key and table); at most `sseHistoryBytesMax`. */
  get historyBytes(): number {
    return this.#histories.frameBytes;
  }

  /**
   * Takes one durable change, in commit order: encodes its key-stream and table-stream frames once,
   * remembers them in the bounded histories and queues them to every subscriber of the key and table.
   */
  publish(event: ChangeEvent): void {
    assert(Number.isSafeInteger(event.sequence));
    assert(event.sequence > this.#sequence, "changes are published in commit order");
    this.#sequence = event.sequence;
    if (this.#closed) return;
    const topic = topicOf(event.table, event.key);
    const keyFrame: Frame = { id: event.version, bytes: encodeKeyFrame(event) };
    const tableFrame: Frame = { id: event.sequence, bytes: encodeTableFrame(event) };
    this.#histories.remember({ kind: "key", topic, frame: keyFrame });
    this.#histories.remember({ kind: "table", topic: event.table, frame: tableFrame });
    for (const subscriber of this.#keySubscribers.get(topic) ?? []) subscriber.send(keyFrame);
    for (const subscriber of this.#tableSubscribers.get(event.table) ?? []) subscriber.send(tableFrame);
  }

  /**
   * Opens a stream of the changes of one key. With `lastEventId`, first replays the remembered changes
   * after it, or, when the gap is older than the history, one frame of `current`.
   *
   * @throws {TooManySubscribersError} at `subscribersMax` open subscriptions.
   * @throws {UnavailableError} after {@linkcode Broker.close}.
   */
  subscribeKey(table: string, key: string, options: SubscribeKeyOptions): Subscription {
    const lastId = options.lastEventId ?? 0;
    const topic = topicOf(table, key);
    const subscriber = this.#register(this.#keySubscribers, topic, lastId);
    if (options.lastEventId === undefined) return this.#handOut(subscriber);
    const frames = this.#histories.history("key", topic)?.framesAfter(lastId);
    if (frames !== undefined) {
      for (const frame of frames) subscriber.replay(frame);
    } else if (options.current !== undefined && options.current.version > lastId) {
      subscriber.replay({ id: options.current.version, bytes: encodeEntryFrame(options.current) });
    }
    assert(subscriber.lastId >= lastId);
    return this.#handOut(subscriber);
  }

  /**
   * Opens a stream of the changes of every key of one table, with ids that are this node's sequences.
   * With `lastEventId`, first replays the remembered changes after it, or, when the gap is older than
   * the history, one `Resync` frame telling the client to re-read `/{table}/store`.
   *
   * @throws {TooManySubscribersError} at `subscribersMax` open subscriptions.
   * @throws {UnavailableError} after {@linkcode Broker.close}.
   */
  subscribeTable(table: string, options: SubscribeTableOptions): Subscription {
    assert(Number.isSafeInteger(options.sequence));
    assert(options.sequence >= 0);
    const lastId = options.lastEventId ?? 0;
    const subscriber = this.#register(this.#tableSubscribers, table, lastId);
    if (options.lastEventId === undefined) return this.#handOut(subscriber);
    const frames = this.#histories.history("table", table)?.framesAfter(lastId);
    if (frames !== undefined) {
      for (const frame of frames) subscriber.replay(frame);
    } else if (options.sequence > lastId) {
      subscriber.replay({ id: options.sequence, bytes: encodeResyncFrame(options.sequence) });
    }
    assert(subscriber.lastId >= lastId);
    return this.#handOut(subscriber);
  }

  /** Closes every stream after the frames already queued (graceful shutdown) and stops the keepalive. */
  close(): void {
    this.#closed = true;
    for (const subscriber of this.#subscribers) subscriber.close();
    this.#stopKeepalive();
    assert(this.#subscribers.size === 0);
    assert(this.#keySubscribers.size === 0 && this.#tableSubscribers.size === 0);
  }

  #register(registry: Subscribers, topic: string, lastId: number): Subscriber {
    if (this.#closed) throw new UnavailableError("Cannot subscribe: the node is shutting down");
    if (this.#subscribers.size >= this.#limits.subscribersMax) {
      throw new TooManySubscribersError({
        subscriberCount: this.#subscribers.size,
        subscribersMax: this.#limits.subscribersMax,
      });
    }
    assert(Number.isSafeInteger(lastId), "the caller validates Last-Event-ID");
    assert(lastId >= 0, "the caller validates Last-Event-ID");
    const subscriber = new Subscriber({
      queueDepthMax: this.#limits.sseQueueDepthMax,
      lastId,
      onClose: (closing, reason) => this.#unregister({ registry, topic, subscriber: closing, reason }),
    });
    let topicSubscribers = registry.get(topic);
    if (topicSubscribers === undefined) {
      topicSubscribers = new Set();
      registry.set(topic, topicSubscribers);
    }
    topicSubscribers.add(subscriber);
    this.#subscribers.add(subscriber);
    assert(this.#subscribers.size <= this.#limits.subscribersMax);
    this.#startKeepalive();
    return subscriber;
  }

  #unregister(
    options: { registry: Subscribers; topic: string; subscriber: Subscriber; reason: CloseReason },
  ) {
    const { registry, topic, subscriber, reason } = options;
    const topicSubscribers = registry.get(topic);
    assert(topicSubscribers !== undefined && topicSubscribers.has(subscriber), "a subscriber closes once");
    topicSubscribers.delete(subscriber);
    if (topicSubscribers.size === 0) registry.delete(topic);
    const deleted = this.#subscribers.delete(subscriber);
    assert(deleted);
    if (reason === "overflow") {
      this.#droppedCount += 1;
      this.#logger.debug("sse: disconnected a slow subscriber", {
        queueDepthMax: this.#limits.sseQueueDepthMax,
        droppedCount: this.#droppedCount,
      });
    }
    if (this.#subscribers.size === 0) this.#stopKeepalive();
  }

  #handOut(subscriber: Subscriber): Subscription {
    return Object.freeze({ stream: subscriber.stream, close: () => subscriber.close() });
  }

  #startKeepalive(): void {
    if (this.#keepaliveTimer !== undefined) return;
    this.#keepaliveTimer = setInterval(() => {
      for (const subscriber of this.#subscribers) subscriber.sendComment(keepaliveFrame);
    }, this.#limits.sseKeepaliveMs);
  }

  #stopKeepalive(): void {
    if (this.#keepaliveTimer === undefined) return;
    clearInterval(this.#keepaliveTimer);
    this.#keepaliveTimer = undefined;
  }
}
