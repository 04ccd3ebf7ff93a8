import { assert } from "../util/assert.ts";
import { utf8Length } from "../util/bytes.ts";

/** One frame and its id: a version on key streams, the broker's own id on table streams. */
export interface Frame {
  readonly id: number;
  /** Bytes of the frame's UTF-8 encoding, what a history counts it as. */
  readonly byteLength: number;
  /** The UTF-8 encoding sent to subscribers. */
  readonly bytes: Uint8Array;
}

/** A frame of bytes already encoded. */
export function frameOf(id: number, bytes: Uint8Array): Frame {
  return { id, byteLength: bytes.length, bytes };
}

const encoder = new TextEncoder();

/**
 * A frame kept as text and encoded at its first send, then kept encoded. Most frames are only
 * remembered for a replay that never comes: a publish with no subscriber then encodes nothing and keeps
 * no ArrayBuffer per frame for the garbage collector to track.
 */
export class TextFrame implements Frame {
  readonly id: number;
  readonly byteLength: number;
  #text: string | undefined;
  #bytes: Uint8Array | undefined;

  constructor(id: number, text: string) {
    this.id = id;
    this.#text = text;
    this.byteLength = utf8Length(text);
  }

  get bytes(): Uint8Array {
    if (this.#bytes === undefined) {
      this.#bytes = encoder.encode(this.#text!);
      this.#text = undefined;
      assert(this.#bytes.length === this.byteLength, "a frame encodes to the bytes it was counted as");
    }
    return this.#bytes;
  }
}

/**
 * The last `depthMax` frames of one key or table, for `Last-Event-ID` replay. It holds every frame
 * with an id above `floorId`: frames are appended in id order and only the oldest are forgotten.
 */
export class FrameHistory {
  readonly #depthMax: number;
  /** Oldest first. Starts as a one-element literal: most histories (keys written once) stay that size. */
  readonly #frames: Frame[];
  /** Every frame of this history with an id above this one is held. */
  #floorId: number;
  /** Sum of `byteLength` over `#frames`. */
  #frameBytes: number;

  constructor(options: { depthMax: number; first: Frame }) {
    assert(Number.isSafeInteger(options.depthMax));
    assert(options.depthMax >= 1);
    // No id lies strictly between `first.id - 1` and `first.id`, so nothing before `first` is claimed.
    this.#floorId = options.first.id - 1;
    this.#depthMax = options.depthMax;
    this.#frames = [options.first];
    this.#frameBytes = options.first.byteLength;
  }

  /** Id of the newest frame held. */
  get newestId(): number {
    const newest = this.#frames[this.#frames.length - 1];
    assert(newest !== undefined, "a history is never empty");
    return newest.id;
  }

  /** Frames held, oldest first; at most `depthMax`. */
  get frameCount(): number {
    return this.#frames.length;
  }

  /** Bytes of the frames held: the sum of their `byteLength`. */
  get frameBytes(): number {
    return this.#frameBytes;
  }

  /**
   * Appends `frame`, forgetting the oldest beyond `depthMax`.
   *
   * @returns false, and holds nothing new, when `frame.id` is not above the newest id.
   */
  append(frame: Frame): boolean {
    if (frame.id <= this.newestId) return false;
    this.#frames.push(frame);
    this.#frameBytes += frame.byteLength;
    if (this.#frames.length > this.#depthMax) this.forgetOldest();
    assert(this.#frames.length <= this.#depthMax);
    assert(this.#floorId < this.#frames[0]!.id);
    return true;
  }

  /**
   * Forgets the oldest frame (to fit a byte budget), raising the floor so that `framesAfter` reports
   * the lost frame as a gap. The newest frame is never forgotten: a history is never empty.
   */
  forgetOldest(): void {
    assert(this.#frames.length >= 2, "a history keeps its newest frame");
    const forgotten = this.#frames.shift()!;
    this.#floorId = forgotten.id;
    this.#frameBytes -= forgotten.byteLength;
    assert(this.#frameBytes >= 0);
    assert(this.#floorId < this.#frames[0]!.id);
  }

  /**
   * The frames after `id`, oldest first.
   *
   * @returns undefined when a frame after `id` may have been forgotten (the gap is older than the history).
   */
  framesAfter(id: number): Frame[] | undefined {
    assert(Number.isSafeInteger(id));
    if (id < this.#floorId) return undefined;
    return this.framesHeldAfter(id);
  }

  /**
   * The frames held with an id above `id`, oldest first, even when older frames after `id` were
   * forgotten: the newest state this history knows, for a client that already had a gap.
   */
  framesHeldAfter(id: number): Frame[] {
    assert(Number.isSafeInteger(id));
    let start = this.#frames.length;
    while (start > 0 && this.#frames[start - 1]!.id > id) start -= 1;
    const frames = this.#frames.slice(start);
    if (frames.length > 0) assert(frames[0]!.id > id);
    assert(frames.length <= this.#depthMax);
    return frames;
  }
}
