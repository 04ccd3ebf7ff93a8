import { assert } from "../util/assert.ts";

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

/**
 * The last `depthMax` frames of one key or table, for `Last-Event-ID` replay. It holds every frame
 * with an id above `floorId`: frames are appended in id order and only the oldest are forgotten.
 */
export class FrameHistory {
  readonly #depthMax: number;
  /**
   * A ring: `#count` frames from slot `#oldest` on, wrapping at the end; freed slots hold undefined. It
   * starts as a one-element literal (most histories, of keys written once, stay that size) and grows up
   * to `depthMax` slots. A ring, not `push` and `shift`: at depthMax every append would shift the array.
   */
  #frames: Array<Frame | undefined>;
  #oldest = 0;
  #count = 1;
  /** Every frame of this history with an id above this one is held. */
  #floorId: number;
  /** Sum of `byteLength` over the frames held. */
  #frameBytes: number;
  /**
   * Id of the newest frame, kept here so that an append reads no frame but the one it drops: a history
   * is touched at random among thousands, and each frame read is likely a cache miss.
   */
  #newestId: number;

  constructor(options: { depthMax: number; first: Frame }) {
    assert(Number.isSafeInteger(options.depthMax));
    assert(options.depthMax >= 1);
    // No id lies strictly between `first.id - 1` and `first.id`, so nothing before `first` is claimed.
    this.#floorId = options.first.id - 1;
    this.#depthMax = options.depthMax;
    this.#frames = [options.first];
    this.#frameBytes = options.first.byteLength;
    this.#newestId = options.first.id;
  }

  /** The `index`-th frame held, oldest first. */
  #at(index: number): Frame {
    assert(index >= 0 && index < this.#count);
    const slot = this.#oldest + index;
    const capacity = this.#frames.length;
    return this.#frames[slot < capacity ? slot : slot - capacity]!;
  }

  /** Id of the newest frame held. */
  get newestId(): number {
    return this.#newestId;
  }

  /** Frames held, oldest first; at most `depthMax`. */
  get frameCount(): number {
    return this.#count;
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
    if (frame.id <= this.#newestId) return false;
    const capacity = this.#frames.length;
    if (this.#count === capacity && capacity < this.#depthMax) {
      // Full below depthMax: grow, with the oldest frame first again.
      if (this.#oldest !== 0) {
        this.#frames = [...this.#frames.slice(this.#oldest), ...this.#frames.slice(0, this.#oldest)];
        this.#oldest = 0;
      }
      this.#frames.push(frame);
    } else {
      if (this.#count === capacity) this.#dropOldest(); // at depthMax
      const slot = this.#oldest + this.#count;
      this.#frames[slot < capacity ? slot : slot - capacity] = frame;
    }
    this.#count += 1;
    this.#frameBytes += frame.byteLength;
    this.#newestId = frame.id;
    assert(this.#count <= this.#depthMax);
    assert(this.#floorId < this.#newestId);
    return true;
  }

  /**
   * Forgets the oldest frame (to fit a byte budget), raising the floor so that `framesAfter` reports
   * the lost frame as a gap. The newest frame is never forgotten: a history is never empty.
   */
  forgetOldest(): void {
    assert(this.#count >= 2, "a history keeps its newest frame");
    this.#dropOldest();
    assert(this.#floorId < this.#at(0).id);
  }

  #dropOldest(): void {
    const forgotten = this.#at(0);
    this.#frames[this.#oldest] = undefined;
    this.#oldest = this.#oldest + 1 === this.#frames.length ? 0 : this.#oldest + 1;
    this.#count -= 1;
    this.#floorId = forgotten.id;
    this.#frameBytes -= forgotten.byteLength;
    assert(this.#frameBytes >= 0);
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
    let start = this.#count;
    while (start > 0 && this.#at(start - 1).id > id) start -= 1;
    const frames: Frame[] = [];
    for (let index = start; index < this.#count; index += 1) frames.push(this.#at(index));
    if (frames.length > 0) assert(frames[0]!.id > id);
    assert(frames.length <= this.#depthMax);
    return frames;
  }
}
