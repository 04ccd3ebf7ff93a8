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
}

class Slot {
  readonly kind: HistoryKind;
  readonly topic: string;
  readonly history: FrameHistory;
  /** Its place among all slots, by last change. */
  readonly recent = new RecencyLink<Slot>(this);
  /** Its place among the slots of its kind, by last change. */
  readonly recentOfKind = new RecencyLink<Slot>(this);

  constructor(kind: HistoryKind, topic: string, history: FrameHistory) {
    this.kind = kind;
    this.topic = topic;
    this.history = history;
  }
}

/**
 * The `Last-Event-ID` replay histories of every key and table, bounded three ways: `depthMax` frames
 * each, `topicsMax` histories of each kind, and `bytesMax` bytes of frames over all histories.
 *
 * The byte budget is one pool shared by key and table histories, not a half each: a table with many
 * keys fills its key histories far more than its one table history, and a fixed split would leave half
 * the budget idle. A frame counts as its `byteLength` plus `frameOverheadBytes`.
 *
 * When a frame does not fit, the least recently changed histories, of either kind, are forgotten whole;
 * the history being appended to is kept, unless it alone is over the budget: then its oldest frames go,
 * and if its newest frame alone is over, the whole history goes. A forgotten history, or one that lost
 * its oldest frames, answers `framesAfter` with `undefined` for the lost ids, so the broker falls back
 * to the current value (keys) or a `Resync` (tables).
 */
export class Histories {
  readonly #depthMax: number;
  readonly #topicsMax: number;
  readonly #bytesMax: number;
  readonly #frameOverheadBytes: number;
  readonly #slotsByKind: Record<HistoryKind, Map<string, Slot>> = { key: new Map(), table: new Map() };
  /** Every slot, least recently changed first. */
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

  /** Histories held, of both kinds. */
  get historyCount(): number {
    return this.#recency.size;
  }

  /** The history of one key or table, or undefined when none is remembered. */
  history(kind: HistoryKind, topic: string): HistoryView | undefined {
    return this.#slotsByKind[kind].get(topic)?.history;
  }

  /**
   * Appends `frame` to the history of `topic`, making it the most recently changed, then forgets
   * histories or frames until every bound holds again.
   */
  remember(options: RememberOptions): void {
    const { kind, topic, frame } = options;
    const slots = this.#slotsByKind[kind];
    let slot = slots.get(topic);
    if (slot === undefined) {
      slot = new Slot(kind, topic, new FrameHistory({ depthMax: this.#depthMax, first: frame }));
      slots.set(topic, slot);
      this.#frameBytes += this.#costOf(slot.history);
    } else {
      // A version at or below the newest (a conflict resolved after a partition) is not remembered;
      // subscribers skip it too, since each sends ids in increasing order only.
      const bytesBefore = this.#costOf(slot.history);
      slot.history.append(frame);
      this.#frameBytes += this.#costOf(slot.history) - bytesBefore;
    }
    this.#recency.touch(slot.recent);
    const ofKind = this.#recencyByKind[kind];
    ofKind.touch(slot.recentOfKind);
    if (slots.size > this.#topicsMax) this.#forget(ofKind.oldest!);
    this.#fitBytes(slot);
    assert(slots.size <= this.#topicsMax);
    assert(this.#frameBytes <= this.#bytesMax);
  }

  /** Brings the bytes held back within `bytesMax` after `appended` grew (and nothing else did). */
  #fitBytes(appended: Slot): void {
    const history = appended.history;
    // Loop bound: at most depthMax frames, and each pass forgets one.
    while (this.#costOf(history) > this.#bytesMax && history.frameCount > 1) {
      const bytesBefore = this.#costOf(history);
      history.forgetOldest();
      this.#frameBytes -= bytesBefore - this.#costOf(history);
    }
    if (this.#costOf(history) > this.#bytesMax) this.#forget(appended); // its newest frame alone is over
    // Loop bound: each pass forgets one slot. `appended` is the most recent and fits alone, so the loop
    // stops before reaching it.
    while (this.#frameBytes > this.#bytesMax) {
      const oldest = this.#recency.oldest!;
      assert(oldest !== appended);
      this.#forget(oldest);
    }
    assert(this.#frameBytes >= 0);
    assert(this.#frameBytes <= this.#bytesMax);
  }

  #forget(slot: Slot): void {
    const deleted = this.#slotsByKind[slot.kind].delete(slot.topic);
    assert(deleted);
    this.#recency.remove(slot.recent);
    this.#recencyByKind[slot.kind].remove(slot.recentOfKind);
    this.#frameBytes -= this.#costOf(slot.history);
    assert(this.#frameBytes >= 0);
  }

  /** Bytes counted for the frames of one history: payload plus overhead. */
  #costOf(history: FrameHistory): number {
    return history.frameBytes + history.frameCount * this.#frameOverheadBytes;
  }
}
