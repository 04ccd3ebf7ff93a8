import { assert } from "../util/assert.ts";
import { RecencyLink, RecencyList } from "../util/recency.ts";
import { type Frame, FrameHistory } from "./history.ts";

/** Which stream a history replays: one key's (ids are versions) or one table's (the broker's table ids). */
export type HistoryKind = "key" | "table";

/** What a reader of {@linkcode Histories} may see of one history; changes go through `remember`. */
export type HistoryView = Pick<
  FrameHistory,
  "framesAfter" | "framesHeldAfter" | "newestId" | "frameCount" | "frameBytes"
>;

/** Options of {@linkcode Histories}. */
export interface HistoriesOptions {
  /** Frames per history (`sseHistoryDepth`). */
  depthMax: number;
  /** Histories of each kind (`sseHistoryKeysMax`): at most this many keys and this many tables. */
  topicsMax: number;
  /** Bytes of frames held by key and table histories together (`sseHistoryBytesMax`). */
  bytesMax: number;
  /**
   * Bytes counted for each frame besides its own: the objects that hold it. With it, `bytesMax` bounds
   * the memory the frames take, not only their payload.
   * @default 0
   */
  frameOverheadBytes?: number;
}

/** Options of {@linkcode Histories.remember}. */
export interface RememberOptions {
  kind: HistoryKind;
  /** The key's topic (table and key) or the table's name. */
  topic: string;
  frame: Frame;
  /** The topic has a subscriber now: from this frame on, its frames are kept (see `watch`). */
  watched?: boolean;
}

/** What {@linkcode Histories.remember} answers for a frame whose id is not above its topic's newest. */
export const notNewer = -1;

class Slot {
  readonly kind: HistoryKind;
  readonly topic: string;
  /** The frames held; undefined once the byte budget took them all (the slot still knows `newestId`). */
  history: FrameHistory | undefined = undefined;
  /** Id of the newest frame remembered, whether or not it is still held; 0 before the first (watched). */
  newestId: number;
  /** Its frames are kept: it is a table, or a key that has had a subscriber (see `Histories.watch`). */
  watched: boolean;
  /** Its place among the slots holding frames, by last change. */
  readonly recent = new RecencyLink<Slot>(this);
  /** Its place among the slots of its kind, by last change. */
  readonly recentOfKind = new RecencyLink<Slot>(this);

  constructor(kind: HistoryKind, topic: string, newestId: number) {
    this.kind = kind;
    this.topic = topic;
    this.newestId = newestId;
    this.watched = kind === "table";
  }
}

/**
 * The `Last-Event-ID` replay histories of every table and of the keys that have had a subscriber, bounded
 * three ways: `depthMax` frames each, `topicsMax` topics of each kind, and `bytesMax` bytes of frames over
 * all histories. Each topic also keeps the id of its newest frame, so a change that is not newer (the same
 * change forwarded twice, or a late one) is recognized and not remembered, and one that skips ids after it
 * (versions of a key this node missed) is told to the caller.
 *
 * A key's frames are kept only once it is watched: from its first subscription on this node (`watch`),
 * or from a change published while it has a subscriber. Only a client that was subscribed here resumes
 * a key here with `Last-Event-ID`; one that resumes a key never watched here (after moving to another
 * node) gets its current value, as for a gap older than the history. Keeping every key's frames, which
 * no one may ever ask for, cost a durable PUT about a tenth of its CPU: thousands of random keys' frames
 * held for seconds are what a generational collector and a cache handle worst.
 *
 * The byte budget is one pool shared by key and table histories, not a half each: a table with many
 * keys fills its key histories far more than its one table history, and a fixed split would leave half
 * the budget idle. A frame counts as its `byteLength` plus `frameOverheadBytes`.
 *
 * When a frame does not fit, the frames of the least recently changed histories, of either kind, are
 * forgotten whole (their topics keep their newest id); the history being appended to is kept, unless it
 * alone is over the budget: then its oldest frames go, and if its newest frame alone is over, all of
 * them. Past `topicsMax` topics of a kind, the least recently changed topic is forgotten with its
 * frames. A forgotten history, or one that lost its oldest frames, answers `framesAfter` with
 * `undefined` for the lost ids, so the broker falls back to the key's Resync and its current value
 * (keys) or a table's `Resync` (tables).
 */
export class Histories {
  readonly #depthMax: number;
  readonly #topicsMax: number;
  readonly #bytesMax: number;
  readonly #frameOverheadBytes: number;
  readonly #slotsByKind: Record<HistoryKind, Map<string, Slot>> = { key: new Map(), table: new Map() };
  /** The slots holding frames, least recently changed first. */
  readonly #recency = new RecencyList<Slot>();
  /** The slots of each kind, least recently changed first. */
  readonly #recencyByKind: Record<HistoryKind, RecencyList<Slot>> = {
    key: new RecencyList(),
    table: new RecencyList(),
  };
  /** Sum of the counted bytes (payload and overhead) of every frame held. */
  #frameBytes = 0;

  constructor(options: HistoriesOptions) {
    assert(Number.isSafeInteger(options.depthMax));
    assert(options.depthMax >= 1);
    assert(Number.isSafeInteger(options.topicsMax));
    assert(options.topicsMax >= 1);
    assert(Number.isSafeInteger(options.bytesMax));
    assert(options.bytesMax >= 0);
    const frameOverheadBytes = options.frameOverheadBytes ?? 0;
    assert(Number.isSafeInteger(frameOverheadBytes));
    assert(frameOverheadBytes >= 0);
    this.#depthMax = options.depthMax;
    this.#topicsMax = options.topicsMax;
    this.#bytesMax = options.bytesMax;
    this.#frameOverheadBytes = frameOverheadBytes;
  }

  /** Bytes counted for the frames of all histories together (payload and overhead); at most `bytesMax`. */
  get frameBytes(): number {
    return this.#frameBytes;
  }

  /** Histories holding frames, of both kinds. */
  get historyCount(): number {
    return this.#recency.size;
  }

  /** Topics of `kind` whose newest id is known; at most `topicsMax`. */
  topicCount(kind: HistoryKind): number {
    return this.#slotsByKind[kind].size;
  }

  /**
   * Id of the newest frame remembered for `topic`, held or not (a key's newest published version), or
   * undefined when the topic is not remembered.
   */
  newestId(kind: HistoryKind, topic: string): number | undefined {
    return this.#slotsByKind[kind].get(topic)?.newestId;
  }

  /** The history of one key or table, or undefined when it holds no frame. */
  history(kind: HistoryKind, topic: string): HistoryView | undefined {
    return this.#slotsByKind[kind].get(topic)?.history;
  }

  /**
   * From now on, keeps the frames of `topic`, as long as the topic is remembered (it is forgotten after
   * `topicsMax` other topics of its kind changed since its last change).
   */
  watch(kind: HistoryKind, topic: string): void {
    const slots = this.#slotsByKind[kind];
    let slot = slots.get(topic);
    if (slot === undefined) {
      slot = new Slot(kind, topic, 0);
      slots.set(topic, slot);
      this.#touchTopic(slot);
    }
    slot.watched = true;
    assert(slots.size <= this.#topicsMax);
  }

  /**
   * Notes `frame` as the newest of `topic`, making the topic the most recently changed, and appends it to
   * the topic's history when the topic is watched; then forgets histories or frames until every bound
   * holds again.
   *
   * @returns the id of the topic's newest frame before this one, so that the caller sees whether ids were
   * skipped (a key's versions this node missed); 0 when the topic had none (new, forgotten, or watched
   * but never changed). {@linkcode notNewer}, and nothing is remembered, when the topic's newest frame has
   * this id or a higher one: a version at or below the newest (a change forwarded twice, or a late one)
   * is not remembered, and subscribers skip it too, since each sends ids in increasing order.
   */
  remember(options: RememberOptions): number {
    const { kind, topic, frame } = options;
    const slots = this.#slotsByKind[kind];
    let slot = slots.get(topic);
    if (slot === undefined) {
      slot = new Slot(kind, topic, 0);
      slots.set(topic, slot);
    } else if (frame.id <= slot.newestId) {
      return notNewer;
    }
    const previousId = slot.newestId;
    assert(previousId < frame.id);
    slot.newestId = frame.id;
    if (options.watched === true) slot.watched = true;
    this.#touchTopic(slot);
    if (slot.watched) {
      if (slot.history === undefined) {
        slot.history = new FrameHistory({ depthMax: this.#depthMax, first: frame });
        this.#frameBytes += this.#costOf(slot.history);
      } else {
        const bytesBefore = this.#costOf(slot.history);
        slot.history.append(frame);
        this.#frameBytes += this.#costOf(slot.history) - bytesBefore;
      }
      this.#recency.touch(slot.recent);
      this.#fitBytes(slot);
    }
    assert(slots.size <= this.#topicsMax);
    assert(this.#frameBytes <= this.#bytesMax);
    return previousId;
  }

  /** Makes `slot` the most recently changed of its kind, forgetting the least recent past `topicsMax`. */
  #touchTopic(slot: Slot): void {
    const ofKind = this.#recencyByKind[slot.kind];
    ofKind.touch(slot.recentOfKind);
    if (this.#slotsByKind[slot.kind].size > this.#topicsMax) this.#forgetTopic(ofKind.oldest!);
  }

  /** Brings the bytes held back within `bytesMax` after `appended` grew (and nothing else did). */
  #fitBytes(appended: Slot): void {
    const history = appended.history!;
    // Loop bound: at most depthMax frames, and each pass forgets one.
    while (this.#costOf(history) > this.#bytesMax && history.frameCount > 1) {
      const bytesBefore = this.#costOf(history);
      history.forgetOldest();
      this.#frameBytes -= bytesBefore - this.#costOf(history);
    }
    // Its newest frame alone is over.
    if (this.#costOf(history) > this.#bytesMax) this.#forgetFrames(appended);
    // Loop bound: each pass forgets the frames of one slot. `appended` is the most recent and fits alone,
    // so the loop stops before reaching it.
    while (this.#frameBytes > this.#bytesMax) {
      const oldest = this.#recency.oldest!;
      assert(oldest !== appended);
      this.#forgetFrames(oldest);
    }
    assert(this.#frameBytes >= 0);
    assert(this.#frameBytes <= this.#bytesMax);
  }

  /** Forgets the frames of `slot`; the slot stays, with its newest id. */
  #forgetFrames(slot: Slot): void {
    this.#frameBytes -= this.#costOf(slot.history!);
    assert(this.#frameBytes >= 0);
    slot.history = undefined;
    this.#recency.remove(slot.recent);
  }

  /** Forgets `slot` whole: its frames and its newest id. */
  #forgetTopic(slot: Slot): void {
    if (slot.history !== undefined) this.#forgetFrames(slot);
    const deleted = this.#slotsByKind[slot.kind].delete(slot.topic);
    assert(deleted);
    this.#recencyByKind[slot.kind].remove(slot.recentOfKind);
  }

  /** Bytes counted for the frames of one history: payload plus overhead. */
  #costOf(history: FrameHistory): number {
    return history.frameBytes + history.frameCount * this.#frameOverheadBytes;
  }
}
