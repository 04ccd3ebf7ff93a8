import { randomBytes } from "node:crypto";
import { assert } from "../util/assert.ts";
import { UnavailableError } from "../util/errors.ts";
import { ClusterAuthError } from "./errors.ts";

/**
 * Anti-replay for node-to-node requests (SPEC §8): every request carries `x-dyna-seq: <epoch>-<counter>`,
 * covered by the MAC. A sender draws a random 64-bit epoch per signer (so per process) and counts its
 * requests to each target from 1; a receiver keeps, per (sender, epoch), a sliding window of the counters
 * it accepted (IPsec's anti-replay window, RFC 4303 §3.4.3) and forgets the stream once the newest
 * request it accepted from it has left the MAC's validity window. Memory is O(streams), not O(requests).
 */

/**
 * Counters one stream's window remembers below its highest: how far a request may be overtaken by later
 * requests of the same sender to the same receiver and still be accepted. 65,536 bits (8 KiB) is many
 * times the requests one peer has in flight to another within `requestTimeoutMs`.
 */
export const sequenceWindowBits = 1 << 16;
/**
 * Streams (sender, epoch) a receiver remembers at most: 1,024 × 8 KiB = 8 MiB. A cluster uses one per
 * peer process (`peersMax` is 256), plus one per restart or backup run within the validity window.
 */
export const replayStreamsMax = 1_024;
/** Targets a sender keeps a counter for; past it the signer starts a new epoch (fresh streams everywhere). */
const targetsMax = 4_096;

/** A parsed `x-dyna-seq` value. */
export interface Sequence {
  /** 16 lower-case hex digits: the sender's random epoch. */
  epoch: string;
  /** 1, 2, 3, ... per target within the epoch. */
  counter: number;
}

const sequencePattern = /^([0-9a-f]{16})-([1-9][0-9]{0,15})$/;

/** Parses `<epoch>-<counter>`, or undefined when it is not one. */
export function parseSequence(text: string): Sequence | undefined {
  const match = sequencePattern.exec(text);
  if (match === null) return undefined;
  const counter = Number(match[2]);
  if (!Number.isSafeInteger(counter)) return undefined;
  return { epoch: match[1]!, counter };
}

/** The sender side: a random epoch and one counter per target. */
export class SequenceSource {
  #epoch = newEpoch();
  readonly #counters = new Map<string, number>();

  /** The next `x-dyna-seq` value for a request to `target`. */
  next(target: string): string {
    if (!this.#counters.has(target) && this.#counters.size >= targetsMax) {
      // Forgetting a counter would reuse its numbers: a new epoch starts every target's stream afresh.
      this.#epoch = newEpoch();
      this.#counters.clear();
    }
    const counter = (this.#counters.get(target) ?? 0) + 1;
    assert(Number.isSafeInteger(counter));
    this.#counters.set(target, counter);
    assert(this.#counters.size <= targetsMax);
    return `${this.#epoch}-${counter}`;
  }
}

function newEpoch(): string {
  return randomBytes(8).toString("hex");
}

/** What a stream's window says of one counter. */
export type SequenceStatus = "fresh" | "seen" | "too_old";

/**
 * The counters of one (sender, epoch) stream a receiver accepted: the highest, and a bitmap of the
 * `bits` below it (bit `counter mod bits`), so a counter is accepted once, in any order within the window.
 */
export class SequenceWindow {
  readonly #words: Uint32Array;
  readonly #mask: number;
  #top = 0;
  /** The latest signed time (sender's clock) of an accepted request. */
  lastTimeMs = 0;

  constructor(bits: number = sequenceWindowBits) {
    assert(Number.isSafeInteger(bits) && bits >= 32);
    assert((bits & (bits - 1)) === 0, "the window is a power of two");
    this.#words = new Uint32Array(bits / 32);
    this.#mask = bits - 1;
  }

  /** The highest counter accepted, 0 before any. */
  get top(): number {
    return this.#top;
  }

  /** Whether `counter` would be accepted ("fresh"), was accepted before, or is below the window. */
  status(counter: number): SequenceStatus {
    assert(Number.isSafeInteger(counter) && counter >= 1);
    if (counter > this.#top) return "fresh";
    if (this.#top - counter > this.#mask) return "too_old";
    return this.#has(counter) ? "seen" : "fresh";
  }

  /** Records `counter`, which must be fresh, sliding the window up when it is the new highest. */
  accept(counter: number, timeMs: number): void {
    assert(this.status(counter) === "fresh", "only a fresh counter is accepted");
    if (counter > this.#top) {
      const advance = counter - this.#top;
      if (advance > this.#mask) {
        this.#words.fill(0);
      } else {
        // The slots of the counters that enter the window held counters that leave it.
        for (let slot = this.#top + 1; slot <= counter; slot += 1) this.#clear(slot);
      }
      this.#top = counter;
    }
    this.#set(counter);
    this.lastTimeMs = Math.max(this.lastTimeMs, timeMs);
    assert(this.status(counter) === "seen");
  }

  #has(counter: number): boolean {
    const bit = counter & this.#mask;
    return (this.#words[bit >>> 5]! & (1 << (bit & 31))) !== 0;
  }

  #set(counter: number): void {
    const bit = counter & this.#mask;
    this.#words[bit >>> 5]! |= 1 << (bit & 31);
  }

  #clear(counter: number): void {
    const bit = counter & this.#mask;
    this.#words[bit >>> 5]! &= ~(1 << (bit & 31));
  }
}

/** Options of {@linkcode ReplayGuard}. */
export interface ReplayGuardOptions {
  /** The MAC's validity window: a stream is forgotten this long after its newest signed time. */
  windowMs: number;
  /** @default replayStreamsMax */
  streamsMax?: number;
  /** @default sequenceWindowBits */
  windowBits?: number;
}

/**
 * The receiver side: one {@linkcode SequenceWindow} per (sender, epoch). A request is checked when its
 * headers are authenticated (a replay is refused before its body is read) and recorded once its body
 * matched its digest, checked again then, so two copies in flight at once are accepted once.
 *
 * At `streamsMax` live streams a new stream is refused (503) rather than an old one forgotten early,
 * which would reopen its requests to replay; only senders holding the cluster secret create streams.
 */
export class ReplayGuard {
  readonly #streams = new Map<string, SequenceWindow>();
  readonly #windowMs: number;
  readonly #streamsMax: number;
  readonly #windowBits: number;
  #sweptMs = 0;

  constructor(options: ReplayGuardOptions) {
    assert(Number.isSafeInteger(options.windowMs) && options.windowMs > 0);
    this.#windowMs = options.windowMs;
    this.#streamsMax = options.streamsMax ?? replayStreamsMax;
    this.#windowBits = options.windowBits ?? sequenceWindowBits;
    assert(this.#streamsMax >= 1);
  }

  /** Streams remembered now. */
  get streamCount(): number {
    return this.#streams.size;
  }

  /**
   * Refuses a request whose counter was accepted before or is below its stream's window.
   *
   * @throws {ClusterAuthError} for a replay. @throws {UnavailableError} when a new stream finds no room.
   */
  check(request: { path: string; sender: string; sequence: Sequence; nowMs: number }): void {
    const stream = this.#streams.get(streamKey(request.sender, request.sequence));
    if (stream === undefined) {
      this.#makeRoom(request.nowMs);
      return;
    }
    const status = stream.status(request.sequence.counter);
    if (status === "fresh") return;
    const reason = status === "seen"
      ? "it is a replay (its x-dyna-seq was accepted before)"
      : `its x-dyna-seq is more than ${this.#windowBits} below the newest from its sender`;
    throw new ClusterAuthError({ path: request.path.slice(0, 100), reason });
  }

  /**
   * Checks again and records a request whose body was verified.
   *
   * @throws the errors of {@linkcode ReplayGuard.check}.
   */
  record(request: { path: string; sender: string; sequence: Sequence; timeMs: number; nowMs: number }): void {
    assert(Number.isSafeInteger(request.timeMs) && request.timeMs >= 0);
    this.check(request);
    const key = streamKey(request.sender, request.sequence);
    let stream = this.#streams.get(key);
    if (stream === undefined) {
      stream = new SequenceWindow(this.#windowBits);
      this.#streams.set(key, stream);
    }
    stream.accept(request.sequence.counter, request.timeMs);
    assert(this.#streams.size <= this.#streamsMax);
  }

  /**
   * Before a new stream: forgets the streams whose every request has left the validity window (at the
   * bound, or once per window), and refuses the new one when the bound still holds.
   */
  #makeRoom(nowMs: number): void {
    if (this.#streams.size < this.#streamsMax && nowMs - this.#sweptMs <= this.#windowMs) return;
    this.#sweptMs = nowMs;
    for (const [key, stream] of this.#streams) {
      if (stream.lastTimeMs + this.#windowMs < nowMs) this.#streams.delete(key);
    }
    if (this.#streams.size < this.#streamsMax) return;
    throw new UnavailableError(
      `Cannot take a request from a new sender: ${this.#streams.size} senders (per restart) were heard ` +
        `within the last ${this.#windowMs} ms, limit is ${this.#streamsMax}`,
    );
  }
}

function streamKey(sender: string, sequence: Sequence): string {
  // A header value holds no line break, so the two fields cannot run into each other.
  return `${sender}\n${sequence.epoch}`;
}
