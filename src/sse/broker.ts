import type { Limits } from "../config/limits.ts";
import type { ChangeEvent, Entry } from "../store/types.ts";
import { assert } from "../util/assert.ts";
import { type Clock, systemClock } from "../util/clock.ts";
import { UnavailableError } from "../util/errors.ts";
import type { Logger } from "../util/log.ts";
import { changeFrames, encodeEntryFrame, encodeResyncFrame, keepaliveFrame } from "./event_format.ts";
import { TooManySubscribersError } from "./errors.ts";
import { Histories, notNewer } from "./histories.ts";
import { frameOf } from "./history.ts";
import { type CloseReason, Subscriber } from "./subscriber.ts";

/** One open event stream, as handed to the HTTP layer. */
export interface Subscription {
  /** The `text/event-stream` body. Cancelling it (the client went away) unregisters the subscriber. */
  readonly stream: ReadableStream<Uint8Array>;
  /** Ends the stream after the frames already queued. */
  close(): void;
  /** Calls `listener` once the stream has stopped, for any reason; one listener per subscription. */
  onEnd(listener: () => void): void;
}

/** Options of {@linkcode Broker}. */
export interface BrokerOptions {
  /**
   * Uses `subscribersMax`, `sseQueueDepthMax`, `sseHistoryDepth`, `sseHistoryKeysMax`,
   * `sseHistoryBytesMax` (one budget shared by key and table histories) and `sseKeepaliveMs`.
   */
  limits: Limits;
  logger: Logger;
  /**
   * Sets the first table-stream id: `clock.nowMs() * 1000`, so ids keep growing across restarts as
   * long as the wall clock does not go back and fewer than 1000 changes a millisecond were published.
   * @default systemClock
   */
  clock?: Clock;
}

/** Options of {@linkcode Broker.subscribeKey}. */
export interface SubscribeKeyOptions {
  /** The client's `Last-Event-ID` (a version), validated by the caller as a safe integer >= 0. */
  lastEventId?: number;
  /**
   * The key's current entry, tombstones included, read just before this call; undefined when the key
   * does not exist, or could not be read (then a fresh stream's position is what this node published).
   */
  current: Entry | undefined;
}

/** Options of {@linkcode Broker.subscribeTable}. */
export interface SubscribeTableOptions {
  /** The client's `Last-Event-ID` (a table-stream id), validated by the caller as a safe integer >= 0. */
  lastEventId?: number;
  /**
   * Ignored: table-stream ids are the broker's own, not store sequences. Kept so that callers written
   * for the old signature still compile.
   */
  sequence?: number;
}

type Subscribers = Map<string, Set<Subscriber>>;

/**
 * Bytes a remembered frame takes besides its payload, counted against `sseHistoryBytesMax`: the frame
 * object and its slot in the history. Measured as about 300 bytes in a heap snapshot of 10,000 key
 * histories when frames were held as bytes (object, `Uint8Array`, `ArrayBuffer`, backing store); a frame
 * held as its change's text takes less, so the figure stays a bound.
 */
export const historyFrameOverheadBytes = 256;

/** Unambiguous map key of a (table, key) pair: the table's length fixes where the key starts. */
function topicOf(table: string, key: string): string {
  return `${table.length}:${table}${key}`;
}

/**
 * Fans changes out to SSE subscribers (SPEC §4). Each change becomes one frame per stream kind, kept as
 * text in a bounded history for `Last-Event-ID` replay and encoded once, when a subscriber first needs it;
 * the same bytes then go to every subscriber. A table's frames are always remembered, a key's from its
 * first subscription on this node (see `Histories`): resuming a key here without ever having subscribed
 * here gets its current value.
 *
 * Changes come from the local store and, for keys this node does not replicate, forwarded by their
 * coordinator; the same change may come both ways, and late. So a change is published only when its
 * version is above the highest already published for its key, and table streams are numbered by the
 * broker itself, not by store sequences.
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
  /** Id of the newest table-stream frame, or the starting id before the first. */
  #tableId: number;
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
      frameOverheadBytes: historyFrameOverheadBytes,
    });
    this.#logger = options.logger;
    this.#tableId = Math.floor((options.clock ?? systemClock).nowMs()) * 1000;
    assert(Number.isSafeInteger(this.#tableId), "table-stream ids must be safe integers");
    assert(this.#tableId >= 1, "a Resync before the first change needs an id >= 1");
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

  /** Keys whose highest published version is remembered; at most `sseHistoryKeysMax`. */
  get publishedVersionCount(): number {
    return this.#histories.topicCount("key");
  }

  /**
   * Bytes counted for the frames of all replay histories (key and table): each frame's encoded bytes plus
   * {@linkcode historyFrameOverheadBytes}; at most `sseHistoryBytesMax`.
   */
  get historyBytes(): number {
    return this.#histories.frameBytes;
  }

  /**
   * Takes one change, local or forwarded: unless its key already had this version or a higher one
   * published, gives it the next table-stream id, builds its key-stream and table-stream frames once,
   * remembers them in the bounded histories and queues them to every subscriber of the key and table.
   * `event.sequence` is ignored.
   */
  publish(event: ChangeEvent): void {
    assert(Number.isSafeInteger(event.version));
    assert(event.version >= 1);
    if (this.#closed) return;
    const topic = topicOf(event.table, event.key);
    // Kept as text until a subscriber needs the bytes: most frames are only remembered.
    const { key: keyFrame, table: tableFrame } = changeFrames(event, this.#tableId + 1);
    // The key's history also knows its newest published version, when it holds no frames.
    const keySubscribers = this.#keySubscribers.get(topic);
    const watched = keySubscribers !== undefined;
    if (this.#histories.remember({ kind: "key", topic, frame: keyFrame, watched }) === notNewer) return;
    this.#tableId += 1;
    assert(Number.isSafeInteger(this.#tableId));
    this.#histories.remember({ kind: "table", topic: event.table, frame: tableFrame });
    for (const subscriber of keySubscribers ?? []) subscriber.send(keyFrame);
    for (const subscriber of this.#tableSubscribers.get(event.table) ?? []) subscriber.send(tableFrame);
  }

  /**
   * Opens a stream of the changes of one key. It starts with a ready block whose id is the stream's
   * position, and sends every change with a higher version (SPEC §4b):
   *
   * - fresh (no `lastEventId`): the position is the newest version this node knows, `current`'s or one
   *   published since the caller read it (0 for a key that never existed);
   * - resumed within what this node knows: the position is `lastEventId`; the remembered changes after
   *   it follow, or, when the gap is older than the history, one frame of `current` and the remembered
   *   changes newer than it (published after the caller read it);
   * - resumed from beyond the newest version this node knows (a newer node's, or not a version at all):
   *   the position is just below `current`, which follows, so the client learns the current state
   *   instead of waiting silently for a version it claims to have.
   *
   * @throws {TooManySubscribersError} at `subscribersMax` open subscriptions.
   * @throws {UnavailableError} after {@linkcode Broker.close}.
   */
  subscribeKey(table: string, key: string, options: SubscribeKeyOptions): Subscription {
    const topic = topicOf(table, key);
    const { current, lastEventId } = options;
    const currentVersion = current?.version ?? 0;
    const knownVersion = Math.max(currentVersion, this.#histories.newestId("key", topic) ?? 0);
    const ahead = lastEventId !== undefined && lastEventId > knownVersion;
    let position = lastEventId ?? knownVersion;
    if (ahead) position = Math.max(currentVersion - 1, 0);
    const subscriber = this.#register(this.#keySubscribers, topic, position);
    // Its changes are remembered from now on, for this client's own resumption.
    this.#histories.watch("key", topic);
    if (lastEventId === undefined) return this.#handOut(subscriber);
    const frames = ahead ? undefined : this.#histories.history("key", topic)?.framesAfter(position);
    if (frames !== undefined) {
      for (const frame of frames) subscriber.replay(frame);
    } else {
      this.#replayCurrent(subscriber, { topic, current });
    }
    assert(subscriber.lastId >= position);
    if (ahead) assert(subscriber.lastId >= currentVersion);
    return this.#handOut(subscriber);
  }

  /**
   * Opens a stream of the changes of every key of one table, with ids that are this broker's own. It
   * starts with a ready block whose id is the stream's position: the newest id when fresh, else
   * `lastEventId`. With `lastEventId`, first replays the remembered changes after it; when the gap is
   * older than the history, or `lastEventId` is beyond the newest id (another node's, or from before a
   * clock went back), sends one `Resync` frame telling the client to re-read `/{table}/store` (the
   * position is then just below the newest id). `options.sequence` is ignored.
   *
   * @throws {TooManySubscribersError} at `subscribersMax` open subscriptions.
   * @throws {UnavailableError} after {@linkcode Broker.close}.
   */
  subscribeTable(table: string, options: SubscribeTableOptions): Subscription {
    const lastEventId = options.lastEventId;
    const tableId = this.#tableId;
    if (lastEventId === undefined) {
      return this.#handOut(this.#register(this.#tableSubscribers, table, tableId));
    }
    const ahead = lastEventId > tableId;
    // A client ahead of this broker starts just below the newest id, so that the Resync and every
    // later frame pass the subscriber's increasing-id check.
    const lastId = ahead ? tableId - 1 : lastEventId;
    const subscriber = this.#register(this.#tableSubscribers, table, lastId);
    const frames = ahead ? undefined : this.#histories.history("table", table)?.framesAfter(lastId);
    if (frames !== undefined) {
      for (const frame of frames) subscriber.replay(frame);
    } else if (tableId > lastId) {
      subscriber.replay(frameOf(tableId, encodeResyncFrame(tableId)));
    }
    if (ahead) assert(subscriber.lastId === tableId);
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

  /**
   * Resumes a key stream whose gap is older than the history: one frame of `current`, then the
   * remembered frames with a higher version, which were published after the caller read `current`.
   */
  #replayCurrent(subscriber: Subscriber, options: { topic: string; current: Entry | undefined }): void {
    const current = options.current;
    if (current !== undefined) {
      subscriber.replay(frameOf(current.version, encodeEntryFrame(current)));
    }
    const newer = this.#histories.history("key", options.topic)?.framesHeldAfter(current?.version ?? 0);
    for (const frame of newer ?? []) subscriber.replay(frame);
    if (current !== undefined) assert(subscriber.lastId >= current.version);
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
    return Object.freeze({
      stream: subscriber.stream,
      close: () => subscriber.close(),
      onEnd: (listener: () => void) => subscriber.onEnd(listener),
    });
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
