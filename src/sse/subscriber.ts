import { assert } from "../util/assert.ts";

const encoder = new TextEncoder();
import type { DeliveryTimer } from "./delivery.ts";
import { encodeReadyFrame } from "./event_format.ts";
import { SubscriberTooSlowError } from "./errors.ts";
import type { Frame } from "./history.ts";

/** Why a subscriber stopped: its client went away, it was closed, or its queue overflowed. */
export type CloseReason = "cancelled" | "closed" | "overflow";

/** Options of {@linkcode Subscriber}. */
export interface SubscriberOptions {
  /** Live frames queued before the subscriber is disconnected as too slow. */
  queueDepthMax: number;
  /**
   * The stream's position, sent first as its ready block (`event: ready`, `id: <lastId>`): frames with an
   * id at or below it are never sent (the client has them, or they precede the stream).
   */
  lastId: number;
  /** Called exactly once, when the subscriber stops for any reason. */
  onClose: (subscriber: Subscriber, reason: CloseReason) => void;
  /**
   * The stream starts held (see {@linkcode Subscriber.release}): live frames wait while a replay read from
   * disk is queued a chunk at a time ({@linkcode Subscriber.waitForRoom}).
   * @default false
   */
  held?: boolean;
  /** Times each live frame from its publication to its hand-over to this stream (one per broker). */
  delivery: DeliveryTimer;
}

/**
 * A held subscriber's live frames: a frame's bytes with its id, or a Resync's bytes (no id), with when its
 * change was published (monotonic ms, see {@linkcode DeliveryTimer}).
 */
type PendingFrame = { id: number | undefined; bytes: Uint8Array; publishedMs: number };

/** A live change held during a snapshot: the newest of its key, with when it was published. */
type HeldChange = { version: number; bytes: Uint8Array; publishedMs: number };

/**
 * The stream source of a held subscriber: as the subscriber, plus `pull`, which the stream calls when its
 * queue has room again. Only resuming streams pay for it; a live stream's source has no `pull`.
 */
class PacedSource implements UnderlyingDefaultSource<Uint8Array> {
  readonly #subscriber: Subscriber;

  constructor(subscriber: Subscriber) {
    this.#subscriber = subscriber;
  }

  start(controller: ReadableStreamDefaultController<Uint8Array>): void {
    this.#subscriber.start(controller);
  }

  pull(): void {
    this.#subscriber.roomMade();
  }

  cancel(): void {
    this.#subscriber.cancel();
  }
}

/**
 * One open event stream with a bounded queue. Frames are sent in strictly increasing id order, each at
 * most once; a live frame that finds the queue full disconnects the subscriber without its backlog. The
 * only frames without an id are a key's Resyncs, each queued right before the frame it announces.
 *
 * A node holds thousands of these for hours, so each keeps as little as it can: the subscriber is its own
 * stream's underlying source (`start` and `cancel` live on the prototype, where closures would cost each
 * stream two functions and a context), and the queue bound is a plain `highWaterMark` with the default
 * size algorithm (a `CountQueuingStrategy` keeps a closure and a converted copy of itself per stream).
 */
export class Subscriber implements UnderlyingDefaultSource<Uint8Array> {
  /** The bytes of the event stream, starting with the ready block of `lastId`. */
  readonly stream: ReadableStream<Uint8Array>;
  readonly #queueDepthMax: number;
  readonly #onClose: (subscriber: Subscriber, reason: CloseReason) => void;
  readonly #delivery: DeliveryTimer;
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  #lastId: number;
  #closed = false;
  /** Called once when the subscriber stops (the server frees its connection then); one at most. */
  #endListener: (() => void) | undefined;
  /** Live frames held back while a replay is read; undefined when not held. */
  #pending: PendingFrame[] | undefined;
  /** Resolves a replay waiting for room in the queue. */
  #roomWaiter: (() => void) | undefined;
  /** While a table snapshot streams: each key's newest live change (a frame without an id), by key. */
  #snapshotChanges: Map<string, HeldChange> | undefined;
  #snapshotKeysMax = 0;
  /**
   * Versions sent for keys a snapshot confirmed (a state this node had not published: its notice may
   * still come): a change of the key at or below it is not sent again. Forgotten once a newer one passes.
   */
  #versionFloors: Map<string, number> | undefined;

  constructor(options: SubscriberOptions) {
    assert(Number.isSafeInteger(options.queueDepthMax));
    assert(options.queueDepthMax >= 1);
    assert(Number.isSafeInteger(options.lastId));
    assert(options.lastId >= 0);
    this.#queueDepthMax = options.queueDepthMax;
    this.#onClose = options.onClose;
    this.#delivery = options.delivery;
    this.#lastId = options.lastId;
    // Each chunk counts 1 against the high-water mark: `desiredSize` is queueDepthMax minus chunks queued.
    this.#pending = options.held === true ? [] : undefined;
    const source = options.held === true ? new PacedSource(this) : this;
    this.stream = new ReadableStream<Uint8Array>(source, { highWaterMark: options.queueDepthMax });
    assert(this.#controller !== undefined, "ReadableStream calls start() synchronously");
    // The ready block is the position every later frame follows, so its id is the last id as it starts.
    this.#controller.enqueue(encodeReadyFrame(options.lastId));
  }

  /** Underlying-source callback, called once by the stream's constructor: keeps the controller. */
  start(controller: ReadableStreamDefaultController<Uint8Array>): void {
    assert(this.#controller === undefined, "a subscriber's stream starts once");
    this.#controller = controller;
  }

  /** Underlying-source callback, called by the stream when its reader cancels it: the client went away. */
  cancel(): void {
    this.#stop("cancelled");
  }

  /** Id of the last frame sent, or the id the client said it has. */
  get lastId(): number {
    return this.#lastId;
  }

  /** True once the subscriber has stopped; it then sends nothing more. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Queues a frame of the replay, which is bounded by the history depth and so never overflows.
   * Frames the client already has are skipped.
   */
  replay(frame: Frame): void {
    assert(!this.#closed);
    if (frame.id <= this.#lastId) return;
    this.#controller.enqueue(frame.bytes);
    this.#lastId = frame.id;
  }

  /**
   * Queues a key's Resync (a frame without an id, SPEC §4b) as part of the replay, right before the frame
   * it announces; `lastId` stays, since the client has no new version yet.
   */
  replayResync(bytes: Uint8Array): void {
    assert(!this.#closed);
    assert(bytes.length > 0);
    this.#controller.enqueue(bytes);
  }

  /**
   * Queues a live frame, unless the client already has it. A full queue disconnects the subscriber.
   * Called by the broker's publish only: the hand-over is timed from the change's publication.
   *
   * @returns false when this frame overflowed the queue and the subscriber was disconnected.
   */
  send(frame: Frame): boolean {
    if (this.#closed || frame.id <= this.#lastId) return true;
    if (this.#pending !== undefined) {
      return this.#hold({ id: frame.id, bytes: frame.bytes, publishedMs: this.#delivery.publishedMs });
    }
    if (!this.#enqueueLive(frame.bytes)) return false;
    this.#lastId = frame.id;
    this.#delivery.handedOver();
    return true;
  }

  /**
   * Queues a live key's Resync (a frame without an id, SPEC §4b) right before the frame it announces,
   * within the same queue bound as {@linkcode Subscriber.send}; `lastId` stays. Should the frame after it
   * then overflow, the stream errors and its queue, this Resync included, is dropped: the client
   * reconnects from `lastId` and is told of the jump again.
   *
   * @returns false when it overflowed the queue and the subscriber was disconnected.
   */
  sendResync(bytes: Uint8Array): boolean {
    assert(bytes.length > 0);
    if (this.#closed) return true;
    if (this.#pending !== undefined) {
      return this.#hold({ id: undefined, bytes, publishedMs: this.#delivery.publishedMs });
    }
    return this.#enqueueLive(bytes);
  }

  /** True while live frames are held back for a replay. */
  get held(): boolean {
    return this.#pending !== undefined;
  }

  /**
   * Resolves once the stream's queue has room for more of a replay (or the subscriber stopped): a replay
   * read from disk is queued a chunk at a time, at the pace the client reads.
   */
  async waitForRoom(options: { queuedMax?: number } = {}): Promise<void> {
    assert(this.#pending !== undefined, "only a held subscriber paces a replay");
    // A chunk may be a whole page of a snapshot: a caller that queues pages waits until few are queued.
    const queuedMax = options.queuedMax ?? this.#queueDepthMax - 1;
    assert(queuedMax >= 0 && queuedMax < this.#queueDepthMax);
    // Bounded: each pass waits for the client to read a chunk, or ends when the subscriber stops.
    while (!this.#closed && this.#queueDepthMax - (this.#controller.desiredSize ?? 0) > queuedMax) {
      await new Promise<void>((resolve) => {
        this.#roomWaiter = resolve;
      });
    }
  }

  /** Called by the paced stream source when the client read and the queue has room. */
  roomMade(): void {
    const waiter = this.#roomWaiter;
    this.#roomWaiter = undefined;
    waiter?.();
  }

  /**
   * Ends the hold: the live frames that waited follow the replay, each unless the client already has it
   * (a change both replayed and published live is sent once), timed from its publication to now. From
   * now on live frames go out at once.
   */
  release(): void {
    if (this.#closed) return;
    const pending = this.#pending;
    assert(pending !== undefined, "release follows a hold");
    this.#pending = undefined;
    const handedMs = pending.length === 0 ? 0 : this.#delivery.nowMs();
    for (const frame of pending) {
      if (this.#closed) return;
      if (frame.id === undefined) {
        this.sendResync(frame.bytes);
        continue;
      }
      if (frame.id <= this.#lastId) continue;
      if (!this.#enqueueLive(frame.bytes)) return;
      this.#lastId = frame.id;
      this.#delivery.handedOverHeld(handedMs - frame.publishedMs);
    }
    assert(this.#pending === undefined);
  }

  /** True while a table snapshot streams: live changes are merged into it, not sent with ids. */
  get snapshotting(): boolean {
    return this.#snapshotChanges !== undefined;
  }

  /**
   * Starts a table snapshot on a held subscriber: from now on live changes are kept by key (the newest of
   * each, at most `keysMax` keys; beyond it the client is too slow) until the snapshot sends them.
   */
  beginSnapshot(options: { keysMax: number }): void {
    assert(this.#pending !== undefined, "a snapshot streams on a held subscriber");
    assert(options.keysMax >= 1);
    this.#snapshotChanges = new Map();
    this.#snapshotKeysMax = options.keysMax;
  }

  /**
   * True when a change of `key` at `version` was already shown by a snapshot's confirmed record: a late
   * notice of that state. A newer change forgets the floor.
   */
  shownAlready(topic: string, version: number): boolean {
    const floors = this.#versionFloors;
    if (floors === undefined) return false;
    const floor = floors.get(topic);
    if (floor === undefined) return false;
    if (version <= floor) return true;
    floors.delete(topic);
    if (floors.size === 0) this.#versionFloors = undefined;
    return false;
  }

  /** True while some key has a floor (see {@linkcode Subscriber.shownAlready}): only then is it asked. */
  get hasVersionFloors(): boolean {
    return this.#versionFloors !== undefined;
  }

  /** A live change during a snapshot: kept as its key's newest, or the subscriber is closed at the bound. */
  holdChange(change: { topic: string; version: number; bytes: Uint8Array }): void {
    const changes = this.#snapshotChanges;
    if (this.#closed || changes === undefined) return;
    if (this.shownAlready(change.topic, change.version)) return;
    const held = changes.get(change.topic);
    if (held === undefined && changes.size >= this.#snapshotKeysMax) {
      this.#overflow(this.#snapshotKeysMax);
      return;
    }
    if (held === undefined || held.version < change.version) {
      const publishedMs = this.#delivery.publishedMs;
      changes.set(change.topic, { version: change.version, bytes: change.bytes, publishedMs });
    }
    assert(changes.size <= this.#snapshotKeysMax);
  }

  /**
   * Sends a page of snapshot records as one chunk (one encoding, one buffer, whatever the page's size):
   * each record's frame text, or the live change of its key held since when that is newer (the key's held
   * change is then forgotten).
   */
  snapshotPage<R extends { readonly version: number; readonly confirmed?: boolean | undefined }>(
    records: readonly R[],
    options: { textOf: (record: R) => string; topicOf: (record: R) => string },
  ): void {
    const changes = this.#snapshotChanges;
    assert(changes !== undefined, "a snapshot page comes during a snapshot");
    if (this.#closed) return;
    const heldBefore = changes.size;
    // Most pages meet no held change: then no record's topic is built, and the texts are one string.
    const lookup = heldBefore > 0;
    // Read once, when the page first sends a held change.
    let handedMs: number | undefined;
    let text = "";
    for (const record of records) {
      if (lookup || record.confirmed === true) {
        const topic = options.topicOf(record);
        const held = lookup ? changes.get(topic) : undefined;
        if (held !== undefined) changes.delete(topic);
        if (held !== undefined && held.version >= record.version) {
          // The held change is newer: it goes in the record's place, as its own chunk between the texts.
          if (text.length > 0) this.#controller.enqueue(encoder.encode(text));
          text = "";
          this.#controller.enqueue(held.bytes);
          handedMs ??= this.#delivery.nowMs();
          this.#delivery.handedOverHeld(handedMs - held.publishedMs);
          continue;
        }
        if (record.confirmed === true) this.#setFloor(topic, record.version);
      }
      text += options.textOf(record);
    }
    if (text.length > 0) this.#controller.enqueue(encoder.encode(text));
    assert(changes.size <= heldBefore, "a page only sends held changes, never holds new ones");
  }

  /** Notes a version floor for a confirmed record (see `shownAlready`), within the held-changes bound. */
  #setFloor(topic: string, version: number): void {
    const floors = this.#versionFloors ??= new Map();
    if (floors.size < this.#snapshotKeysMax) floors.set(topic, version);
    assert(floors.size <= this.#snapshotKeysMax);
  }

  /**
   * Ends the snapshot: the live changes held since their key was sent (or of keys no page had) follow in
   * key order, then `synced`, whose id becomes the stream's position: every change up to it is shown.
   */
  endSnapshot(synced: { id: number; bytes: Uint8Array }): void {
    const changes = this.#snapshotChanges;
    assert(changes !== undefined, "a snapshot ends once");
    this.#snapshotChanges = undefined;
    if (this.#closed) return;
    const handedMs = changes.size === 0 ? 0 : this.#delivery.nowMs();
    for (const key of [...changes.keys()].sort()) {
      const held = changes.get(key)!;
      this.#controller.enqueue(held.bytes);
      this.#delivery.handedOverHeld(handedMs - held.publishedMs);
    }
    this.#controller.enqueue(synced.bytes);
    this.#lastId = Math.max(this.#lastId, synced.id);
    assert(this.#lastId >= synced.id);
  }

  /** Queues bytes that carry no change of their own (`Synced`, a table's `Resync` without an id). */
  replayNotice(bytes: Uint8Array): void {
    assert(bytes.length > 0);
    if (this.#closed) return;
    this.#controller.enqueue(bytes);
  }

  /** Keeps a live frame back during a replay, within the queue bound; beyond it the client is too slow. */
  #hold(frame: PendingFrame): boolean {
    const pending = this.#pending!;
    if (pending.length >= this.#queueDepthMax) {
      this.#overflow(this.#queueDepthMax);
      return false;
    }
    pending.push(frame);
    assert(pending.length <= this.#queueDepthMax);
    return true;
  }

  /** Queues a comment (keepalive) if the queue is empty; a stream with frames pending needs none. */
  sendComment(bytes: Uint8Array): void {
    if (this.#closed) return;
    if (this.#controller.desiredSize !== this.#queueDepthMax) return;
    this.#controller.enqueue(bytes);
  }

  /** Ends the stream after the frames already queued; the subscriber is unregistered now. */
  close(): void {
    if (this.#closed) return;
    this.#controller.close();
    this.#stop("closed");
  }

  /**
   * Calls `listener` once the subscriber stops, for any reason (at once if it has stopped already). One
   * listener at most: a field, not a list, since thousands of subscribers each keep it for hours.
   */
  onEnd(listener: () => void): void {
    assert(this.#endListener === undefined, "a subscriber has one end listener");
    if (this.#closed) return listener();
    this.#endListener = listener;
  }

  /** Queues live bytes, or disconnects the subscriber when its queue is full (and returns false). */
  #enqueueLive(bytes: Uint8Array): boolean {
    assert(!this.#closed);
    const queuedCount = this.#queueDepthMax - (this.#controller.desiredSize ?? 0);
    if (queuedCount >= this.#queueDepthMax) {
      this.#overflow(this.#queueDepthMax);
      return false;
    }
    this.#controller.enqueue(bytes);
    assert(queuedCount + 1 <= this.#queueDepthMax);
    return true;
  }

  /** Disconnects the subscriber as too slow: its stream errors with what was over `limit`. */
  #overflow(limit: number): void {
    this.#controller.error(new SubscriberTooSlowError({ queueDepthMax: limit }));
    this.#stop("overflow");
    assert(this.#closed);
  }

  #stop(reason: CloseReason): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#pending = undefined;
    this.roomMade();
    this.#onClose(this, reason);
    const listener = this.#endListener;
    this.#endListener = undefined;
    listener?.();
    assert(this.#closed);
  }
}
