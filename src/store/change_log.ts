import { assert } from "../util/assert.ts";
import type { Clock } from "../util/clock.ts";
import { crc32 } from "../util/crc32.ts";
import type { Logger } from "../util/log.ts";
import {
  decodeLogRecord,
  type LoggedChange,
  type LogRecord,
  logRecordText,
  topicHashOf,
} from "./change_record.ts";
import { type Encryption, ivBytes } from "./crypto.ts";
import { WalCorruptError, WrongKeyError } from "./errors.ts";
import {
  checkFileHeader,
  decodeFramePlaintext,
  encodeFileHeader,
  encodePlaintextFrame,
  fileHeaderBytes,
  frameHeaderBytes,
  readFully,
  recordsOf,
  scanFrames,
} from "./frame.ts";
import { type Fs, type FsFile, privateDirPermissions, privateFilePermissions } from "./fs.ts";
import { RecordDecodeError } from "./errors.ts";

export type { LoggedChange, LogMarker, LogRecord } from "./change_record.ts";

/** What the change log keeps (SPEC §4b): a record is dropped once it is outside one of the three. */
export interface ChangeRetention {
  /** Records younger than this are kept (10 minutes). */
  ageMs: number;
  /** At most this many newest records are kept (100,000). */
  recordsMax: number;
  /** At most this many bytes of segment files (`DYNA_CHANGE_RETENTION_BYTES`, 64 MiB). */
  bytesMax: number;
}

/** Options of {@linkcode ChangeLog.open}. */
export interface ChangeLogOptions {
  /** The data dir; segments live in its `changes/` directory. */
  dir: string;
  fs: Fs;
  encryption: Encryption;
  clock: Clock;
  logger: Logger;
  retention: ChangeRetention;
  /** A batch is written once it holds this many bytes of records. @default 65,536 */
  batchBytesMax?: number;
  /** ...or this long after its first record. @default 20 */
  flushMs?: number;
}

/** One segment file. */
interface Segment {
  readonly path: string;
  /** Bytes written or being written: the file header and every sealed frame. */
  sizeBytes: number;
  recordCount: number;
  frameCount: number;
  lastSeq: number;
  /** Wall clock of its newest record (at open: the open time). */
  newestMs: number;
  /** Open for appending while it is the newest; undefined once rolled (or while being created). */
  file: Promise<FsFile> | undefined;
}

/** One frame: where it is, and its plaintext while it is not written yet. */
interface FrameSlot {
  readonly segment: Segment;
  offset: number;
  lengthBytes: number;
  /** The flag byte and the packed records, from sealing until the frame is on disk (then read back). */
  plaintext: Uint8Array | undefined;
  /** Its write failed: its records are lost (a reader meets a gap). */
  lost: boolean;
}

/** The first `seq` a fresh log hands out: the wall clock in ms times 1000 (see DESIGN.md, "Positions"). */
function clockSeqOf(clock: Clock): number {
  const seq = Math.floor(clock.nowMs()) * 1000;
  assert(Number.isSafeInteger(seq) && seq >= 1, "the clock gives a usable first sequence");
  return seq;
}

/** A segment with no frame yet (a file header only), after the sequence `lastSeq`. */
function emptySegment(path: string, at: { lastSeq: number; nowMs: number }): Segment {
  assert(Number.isSafeInteger(at.lastSeq) && at.lastSeq >= 0);
  return {
    path,
    sizeBytes: fileHeaderBytes,
    recordCount: 0,
    frameCount: 0,
    lastSeq: at.lastSeq,
    newestMs: at.nowMs,
    file: undefined,
  };
}

/** Zero-padded so that names sort in sequence order. */
function segmentName(firstSeq: number): string {
  return `changes_${String(firstSeq).padStart(20, "0")}.log`;
}

const segmentNamePattern = /^changes_\d{20}\.log$/;
const defaultBatchBytesMax = 64 * 1024;
const defaultFlushMs = 20;
/** Room a batch buffer has beyond `batchBytesMax`: the record that fills a batch rarely needs a new one. */
const batchSlackBytes = 16 * 1024;

const encoder = new TextEncoder();

/**
 * The retention window of published changes, on disk (see `src/sse/DESIGN.md`, "The change log"):
 * appended by the broker in sequence order, read back by resuming subscribers. Segment files of frames
 * encrypted like the WAL's, never fsynced (a crash loses the unwritten tail, recorded as a gap at the next
 * open); an index of sequence, version, (table, key) hash and frame per record in memory.
 *
 * Callback order, the contract: `append` returns after updating the index and the open batch (a reader
 * sees the record at once, from memory); the batch is encrypted and its write queued when full or
 * `flushMs` later; writes go to the file one at a time, in order; a frame's records leave memory when its
 * write completed. A failed write marks its frame lost and rolls to a new segment: never retried.
 */
export class ChangeLog {
  readonly #options: ChangeLogOptions;
  readonly #changesDir: string;
  readonly #header: Uint8Array;
  readonly #segmentBytesMax: number;
  readonly #batchBytesMax: number;
  readonly #flushMs: number;
  readonly #segments: Segment[] = [];
  // The index, one element per record from #recordBase on (arrays are compacted now and then).
  #seqs: number[] = [];
  #versions: number[] = [];
  #hashes: number[] = [];
  #frameNumbers: number[] = [];
  #recordBase = 0;
  #frames: FrameSlot[] = [];
  /** Frame number of `#frames[0]`. */
  #frameBase = 0;
  /**
   * The open batch, laid out as a frame's plaintext: the flag byte (0), then each record after its u32
   * length, encoded in place (no buffer per record). A fresh buffer per batch: a sealed one is kept as its
   * frame's plaintext until written. Undefined while no batch is open.
   */
  #batchBuffer: Uint8Array | undefined;
  #batchUsed = 0;
  /** Batch buffers of the standard size whose frames were written, for the next batches (at most 2). */
  readonly #freeBuffers: Uint8Array[] = [];
  #batchTimer: ReturnType<typeof setTimeout> | undefined;
  /** The chain of file operations, in order; never rejects. */
  #writing: Promise<void> = Promise.resolve();
  #floorSeq: number;
  #lastSeq: number;
  #nextSeq: number;
  #closed = false;
  /** One segment's bytes read back, shared by readers until the segment grows. */
  #cache: { path: string; bytes: Uint8Array } | undefined;

  private constructor(options: ChangeLogOptions, startSeq: number) {
    const { retention } = options;
    assert(retention.recordsMax >= 1 && retention.bytesMax >= 1 && retention.ageMs >= 0);
    this.#options = options;
    this.#changesDir = `${options.dir}/changes`;
    this.#header = encodeFileHeader("changes", options.encryption.keyId);
    this.#segmentBytesMax = Math.max(64 * 1024, Math.floor(retention.bytesMax / 8));
    this.#batchBytesMax = Math.min(options.batchBytesMax ?? defaultBatchBytesMax, this.#segmentBytesMax);
    this.#flushMs = options.flushMs ?? defaultFlushMs;
    this.#floorSeq = startSeq - 1;
    this.#lastSeq = startSeq - 1;
    this.#nextSeq = startSeq;
    assert(this.#batchBytesMax >= 1);
  }

  /**
   * Reads the segments of `<dir>/changes` into the index, cuts a torn tail, drops a damaged segment with
   * every older one (the floor rises: only history is lost), and records a gap when the last run did not
   * close cleanly.
   *
   * @throws {WrongKeyError} when a segment was written under another key.
   */
  static async open(options: ChangeLogOptions): Promise<ChangeLog> {
    // Sequences start at 1 while the segments are read; the start is decided after.
    const log = new ChangeLog(options, 1);
    await options.fs.mkdir(log.#changesDir, { permissions: privateDirPermissions });
    const names = (await options.fs.readDir(log.#changesDir)).filter((name) => segmentNamePattern.test(name));
    let lastRecord: LogRecord | undefined;
    for (const name of names.sort()) {
      const loaded = await log.#loadSegment(`${log.#changesDir}/${name}`);
      if (loaded === "damaged") log.#dropAllSegments();
      else if (loaded !== undefined) lastRecord = loaded;
    }
    if (log.#segments.length === 0) lastRecord = undefined;
    const start = Math.max(log.#lastSeq + 1, clockSeqOf(options.clock));
    log.#nextSeq = start;
    if (log.#segments.length === 0) {
      log.#floorSeq = start - 1;
      log.#lastSeq = start - 1;
    }
    if (lastRecord !== undefined && lastRecord.type !== "closed") {
      // Changes after the last logged one may have been sent and not logged: a gap up to the new start.
      log.#appendRecord({ type: "gap", seq: Math.max(start, log.#lastSeq + 1) });
      log.#nextSeq = log.#lastSeq + 1;
    }
    assert(log.#nextSeq > log.#lastSeq);
    assert(log.#floorSeq <= log.#lastSeq);
    return log;
  }

  /** The sequence the next published change should have: above every sequence this log ever held. */
  get nextSeq(): number {
    return this.#nextSeq;
  }

  /** Every change with a sequence above this one is held, or covered by a gap marker. */
  get floorSeq(): number {
    return this.#floorSeq;
  }

  /** The newest sequence held (the floor when none). */
  get lastSeq(): number {
    return this.#lastSeq;
  }

  /** Records held, markers included. */
  get recordCount(): number {
    return this.#seqs.length - this.#recordBase;
  }

  /** Bytes of the segment files, written or queued. */
  get sizeBytes(): number {
    let total = 0;
    for (const segment of this.#segments) total += segment.sizeBytes;
    return total;
  }

  /**
   * Logs one published change; its `seq` must be at or above {@linkcode ChangeLog.nextSeq}. Returns at
   * once: the record is readable now and written with its batch.
   */
  append(change: LoggedChange): void {
    assert(change.seq >= this.#nextSeq, "a change's sequence is above every logged one");
    assert(Number.isSafeInteger(change.seq));
    if (this.#closed) return;
    this.#appendRecord(change);
    this.#nextSeq = change.seq + 1;
  }

  /** Seals the open batch and waits until every queued write is done (or failed and marked lost). */
  async flush(): Promise<void> {
    this.#seal();
    await this.#writing;
    assert(this.#batchBuffer === undefined);
  }

  /**
   * Writes what is batched, then a `closed` marker (unless `clean` is false: an abrupt stop, after which the
   * next open records a gap as after a crash), and closes the newest segment.
   */
  async close(options: { clean?: boolean } = {}): Promise<void> {
    if (this.#closed) return;
    if (options.clean !== false) this.#appendRecord({ type: "closed", seq: this.#nextSeq });
    this.#closed = true;
    this.#seal();
    const segment = this.#segments.at(-1);
    this.#chain(async () => {
      const file = await segment?.file;
      file?.close();
    });
    await this.#writing;
    assert(this.#batchBuffer === undefined);
  }

  /**
   * The records with a sequence above `after` and at most the newest at this call, in order, in chunks of
   * at most `chunkCount`. When `after` is below the floor, or a gap or a lost frame comes up, the last
   * chunk ends with a `gap` marker and nothing follows: the reader cannot be given what it lacks.
   */
  async *recordsAfter(
    after: number,
    options: { chunkCount: number; keep?: (change: LoggedChange) => boolean },
  ): AsyncGenerator<LogRecord[]> {
    assert(options.chunkCount >= 1);
    if (after < this.#floorSeq) {
      yield [{ type: "gap", seq: this.#floorSeq }];
      return;
    }
    const last = this.#lastSeq;
    const first = this.#firstIndexAfter(after);
    const frameNumbers: number[] = [];
    for (let index = first; index < this.#seqs.length; index += 1) {
      const frameNumber = this.#frameNumbers[index]!;
      if (frameNumbers.at(-1) !== frameNumber) frameNumbers.push(frameNumber);
    }
    yield* this.#chunksOf(frameNumbers, {
      chunkCount: options.chunkCount,
      take: (record) =>
        record.seq > after && record.seq <= last && record.type !== "closed" &&
        (record.type !== "change" || (options.keep?.(record) ?? true)),
    });
  }

  /**
   * The logged changes of one key with a version above `after`, in sequence order (which is version order,
   * with repeats a reader drops), in chunks of at most `chunkCount`. Gaps are not reported: a key's
   * versions show a jump themselves.
   */
  async *keyChangesAfter(
    names: { table: string; key: string },
    options: { after: number; chunkCount: number },
  ): AsyncGenerator<LoggedChange[]> {
    const hash = topicHashOf(names.table, names.key);
    const frameNumbers: number[] = [];
    for (let index = this.#recordBase; index < this.#seqs.length; index += 1) {
      if (this.#hashes[index] !== hash || this.#versions[index]! <= options.after) continue;
      const frameNumber = this.#frameNumbers[index]!;
      if (frameNumbers.at(-1) !== frameNumber) frameNumbers.push(frameNumber);
    }
    const take = (record: LogRecord) =>
      record.type === "change" && record.table === names.table && record.key === names.key &&
      record.version > options.after;
    for await (const chunk of this.#chunksOf(frameNumbers, { chunkCount: options.chunkCount, take })) {
      // A lost frame of this key shows as a jump in versions; the gap marker itself is dropped.
      const changes = chunk.filter((record): record is LoggedChange => record.type === "change");
      if (changes.length > 0) yield changes;
    }
  }

  /** Reads `frameNumbers` in order, keeping `take`'s records; a frame that cannot be read ends with a gap. */
  async *#chunksOf(
    frameNumbers: number[],
    options: { chunkCount: number; take: (record: LogRecord) => boolean },
  ): AsyncGenerator<LogRecord[]> {
    let chunk: LogRecord[] = [];
    for (const frameNumber of frameNumbers) {
      const records = await this.#recordsOfFrame(frameNumber);
      if (records === undefined) {
        chunk.push({ type: "gap", seq: this.#lastSeq });
        break;
      }
      for (const record of records) {
        if (!options.take(record)) continue;
        chunk.push(record);
        if (record.type === "gap") break;
      }
      if (chunk.at(-1)?.type === "gap") break;
      if (chunk.length >= options.chunkCount) {
        yield chunk;
        chunk = [];
      }
    }
    if (chunk.length > 0) yield chunk;
  }

  /** Index of the first record with a sequence above `after` (binary search; the end when none). */
  #firstIndexAfter(after: number): number {
    let low = this.#recordBase;
    let high = this.#seqs.length;
    // Bounded: the range halves each pass.
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.#seqs[middle]! <= after) low = middle + 1;
      else high = middle;
    }
    assert(low >= this.#recordBase && low <= this.#seqs.length);
    if (low < this.#seqs.length) assert(this.#seqs[low]! > after);
    return low;
  }

  /** The records of a frame: from memory until written, else read back; undefined when gone or lost. */
  async #recordsOfFrame(frameNumber: number): Promise<LogRecord[] | undefined> {
    const slot = this.#frames[frameNumber - this.#frameBase];
    if (slot === undefined || slot.lost) return undefined; // dropped by retention since the read began
    if (slot === this.#frames.at(-1) && this.#batchBuffer !== undefined) {
      return recordsOfPlaintext(this.#batchBuffer.subarray(0, this.#batchUsed)); // the open batch
    }
    if (slot.plaintext !== undefined) return recordsOfPlaintext(slot.plaintext);
    const bytes = await this.#segmentBytes(slot.segment, slot.offset + slot.lengthBytes);
    if (bytes === undefined) return undefined;
    try {
      return this.#decodeFrame(bytes.subarray(slot.offset, slot.offset + slot.lengthBytes));
    } catch (error) {
      if (!(error instanceof RecordDecodeError)) throw error;
      this.#options.logger.warn("change log: a frame does not read back", { path: slot.segment.path });
      return undefined;
    }
  }

  #decodeFrame(frame: Uint8Array): LogRecord[] {
    const view = new DataView(frame.buffer, frame.byteOffset, frame.length);
    const ciphertext = frame.subarray(frameHeaderBytes);
    if (view.getUint32(0) !== ciphertext.length || view.getUint32(4) !== crc32(ciphertext)) {
      throw new RecordDecodeError("change log frame length or CRC does not match");
    }
    const iv = frame.subarray(8, 8 + ivBytes);
    const plaintext = this.#options.encryption.changeCipher.open({
      iv,
      ciphertext,
      additionalData: this.#header,
    });
    if (plaintext === undefined) throw new RecordDecodeError("change log frame does not authenticate");
    return recordsOfPlaintext(plaintext);
  }

  /** The segment's file, at least `endBytes` of it, through the one-segment cache. */
  async #segmentBytes(segment: Segment, endBytes: number): Promise<Uint8Array | undefined> {
    const cached = this.#cache;
    if (cached !== undefined && cached.path === segment.path && cached.bytes.length >= endBytes) {
      return cached.bytes;
    }
    const bytes = await this.#options.fs.readFile(segment.path);
    if (bytes === undefined || bytes.length < endBytes) return undefined;
    this.#cache = { path: segment.path, bytes };
    return bytes;
  }

  /** Adds a record to the index and the open batch; seals the batch when full. */
  #appendRecord(record: LogRecord): void {
    assert(record.seq > this.#lastSeq, "log records are in sequence order");
    const text = logRecordText(record);
    // UTF-8 takes at most 3 bytes per UTF-16 code unit; a batch that might not hold it is sealed first.
    const bytesMax = 4 + text.length * 3;
    if (this.#batchBuffer !== undefined && this.#batchUsed + bytesMax > this.#batchBuffer.length) {
      this.#seal();
    }
    if (this.#batchBuffer === undefined) this.#openBatch(bytesMax);
    const buffer = this.#batchBuffer!;
    const at = this.#batchUsed;
    const { written } = encoder.encodeInto(text, buffer.subarray(at + 4));
    // The record's u32 length, big-endian, before it (as `frame.ts` lays records out).
    buffer[at] = written >>> 24;
    buffer[at + 1] = (written >>> 16) & 0xff;
    buffer[at + 2] = (written >>> 8) & 0xff;
    buffer[at + 3] = written & 0xff;
    this.#batchUsed = at + 4 + written;
    const slot = this.#frames.at(-1)!;
    this.#seqs.push(record.seq);
    this.#versions.push(record.type === "change" ? record.version : 0);
    this.#hashes.push(record.type === "change" ? topicHashOf(record.table, record.key) : 0);
    this.#frameNumbers.push(this.#frameBase + this.#frames.length - 1);
    this.#lastSeq = record.seq;
    const segment = slot.segment;
    segment.recordCount += 1;
    segment.lastSeq = record.seq;
    if (this.#batchUsed >= this.#batchBytesMax) this.#seal();
    assert(this.#seqs.length === this.#frameNumbers.length);
  }

  /**
   * Starts a batch: a buffer for at least `recordBytesMax` more (a frame's flag byte first), and a frame
   * slot in the newest segment (a new segment when there is none or it is full).
   */
  #openBatch(recordBytesMax: number): void {
    let segment = this.#segments.at(-1);
    if (segment === undefined || segment.file === undefined || segment.sizeBytes >= this.#segmentBytesMax) {
      segment = this.#startSegment();
    }
    this.#frames.push({ segment, offset: 0, lengthBytes: 0, plaintext: undefined, lost: false });
    segment.frameCount += 1;
    const standardBytes = this.#batchBytesMax + batchSlackBytes;
    const reused = 1 + recordBytesMax <= standardBytes ? this.#freeBuffers.pop() : undefined;
    this.#batchBuffer = reused ?? new Uint8Array(Math.max(standardBytes, 1 + recordBytesMax));
    this.#batchBuffer[0] = 0;
    this.#batchUsed = 1; // the flag byte: 0, not deflated
    if (!this.#closed) this.#batchTimer = setTimeout(() => this.#seal(), this.#flushMs);
    assert(this.#batchBuffer[0] === 0);
  }

  /** Rolls to a new segment named after the next record's sequence; its creation is queued on the chain. */
  #startSegment(): Segment {
    const previous = this.#segments.at(-1);
    if (previous?.file !== undefined) {
      const closing = previous.file;
      previous.file = undefined;
      this.#chain(async () => (await closing).close());
    }
    const path = `${this.#changesDir}/${segmentName(this.#lastSeq + 1)}`;
    const segment = emptySegment(path, { lastSeq: this.#lastSeq, nowMs: this.#options.clock.nowMs() });
    const opened = this.#writing.then(async () => {
      const file = await this.#options.fs.createFile(path, { permissions: privateFilePermissions });
      await file.write(this.#header);
      return file;
    });
    segment.file = opened;
    // A failure to create shows on the first frame's write, which marks it lost.
    this.#writing = opened.then(() => {}, () => {});
    this.#segments.push(segment);
    this.#applyRetention();
    return segment;
  }

  /** Encrypts the open batch into its frame and queues the write. */
  #seal(): void {
    if (this.#batchTimer !== undefined) clearTimeout(this.#batchTimer);
    this.#batchTimer = undefined;
    if (this.#batchBuffer === undefined) return;
    const slot = this.#frames.at(-1)!;
    slot.plaintext = this.#batchBuffer.subarray(0, this.#batchUsed);
    const cipher = this.#options.encryption.changeCipher;
    const bytes = encodePlaintextFrame({ cipher, header: this.#header, plaintext: slot.plaintext });
    slot.offset = slot.segment.sizeBytes;
    slot.lengthBytes = bytes.length;
    slot.segment.sizeBytes += bytes.length;
    slot.segment.newestMs = this.#options.clock.nowMs();
    this.#batchBuffer = undefined;
    this.#batchUsed = 0;
    this.#applyRetention();
    const file = slot.segment.file;
    assert(file !== undefined, "a batch is sealed into the open segment");
    this.#chain(async () => {
      try {
        await (await file).write(bytes);
        this.#recycle(slot);
      } catch (error) {
        this.#writeFailed(slot, error);
      }
    });
    assert(slot.lengthBytes > frameHeaderBytes);
  }

  /** A written frame lets go of its plaintext; a standard-size buffer goes back for the next batches. */
  #recycle(slot: FrameSlot): void {
    const plaintext = slot.plaintext;
    slot.plaintext = undefined;
    if (plaintext === undefined || this.#freeBuffers.length >= 2) return;
    if (plaintext.buffer.byteLength !== this.#batchBytesMax + batchSlackBytes) return;
    this.#freeBuffers.push(new Uint8Array(plaintext.buffer));
    assert(this.#freeBuffers.length <= 2);
  }

  /** A frame's write failed: its records are lost (a gap for readers); the next batch starts a new file. */
  #writeFailed(slot: FrameSlot, error: unknown): void {
    slot.lost = true;
    slot.plaintext = undefined;
    if (this.#segments.at(-1) === slot.segment && slot.segment.file !== undefined) {
      slot.segment.sizeBytes = this.#segmentBytesMax; // roll at the next batch
    }
    this.#options.logger.warn("change log: a write failed; resuming across it gets a Resync", {
      path: slot.segment.path,
      error: error instanceof Error ? error.message : String(error),
    });
    assert(slot.lost);
  }

  /** Queues `operation` after every earlier file operation; its failure is logged, never thrown. */
  #chain(operation: () => Promise<void>): void {
    this.#writing = this.#writing.then(operation).catch((error) => {
      this.#options.logger.warn("change log: a file operation failed", {
        error: error instanceof Error ? error.message : String(error),
      });
    });
  }

  /** Drops the oldest segments whose records are all outside the window (never the newest). */
  #applyRetention(): void {
    const { ageMs, recordsMax, bytesMax } = this.#options.retention;
    const nowMs = this.#options.clock.nowMs();
    // Bounded by the segments held.
    while (this.#segments.length > 1) {
      const oldest = this.#segments[0]!;
      const recordsAfter = this.recordCount - oldest.recordCount;
      const tooOld = nowMs - oldest.newestMs > ageMs;
      if (!tooOld && recordsAfter < recordsMax && this.sizeBytes <= bytesMax) break;
      this.#dropOldestSegment();
    }
    assert(this.#segments.length >= 1);
  }

  #dropOldestSegment(): void {
    const oldest = this.#segments.shift()!;
    this.#recordBase += oldest.recordCount;
    this.#frames.splice(0, oldest.frameCount);
    this.#frameBase += oldest.frameCount;
    this.#floorSeq = Math.max(this.#floorSeq, oldest.lastSeq);
    if (this.#recordBase > 4096 && this.#recordBase * 2 > this.#seqs.length) this.#compactIndex();
    if (this.#cache?.path === oldest.path) this.#cache = undefined;
    this.#chain(() => this.#options.fs.remove(oldest.path));
    assert(this.#recordBase <= this.#seqs.length);
  }

  /** Forgets every segment read so far (a damaged one was found): the floor rises to the last sequence. */
  #dropAllSegments(): void {
    // Bounded by the segments held.
    while (this.#segments.length > 0) this.#dropOldestSegment();
    assert(this.recordCount === 0);
  }

  #compactIndex(): void {
    const base = this.#recordBase;
    this.#seqs = this.#seqs.slice(base);
    this.#versions = this.#versions.slice(base);
    this.#hashes = this.#hashes.slice(base);
    this.#frameNumbers = this.#frameNumbers.slice(base);
    this.#recordBase = 0;
    assert(this.#seqs.length === this.#frameNumbers.length);
  }

  /**
   * Reads one segment at open into the index: its last record, `"damaged"` when it cannot be trusted (it
   * and every older segment are dropped), undefined when it holds no record (it is removed).
   */
  async #loadSegment(path: string): Promise<LogRecord | "damaged" | undefined> {
    const { fs, logger } = this.#options;
    const file = await fs.openRead(path);
    if (file === undefined) return undefined;
    try {
      const sizeBytes = await file.sizeBytes();
      const header = new Uint8Array(fileHeaderBytes);
      if (await readFully(file, header) < fileHeaderBytes) {
        await fs.remove(path);
        return undefined;
      }
      checkFileHeader({ path, bytes: header, kind: "changes", keyId: this.#options.encryption.keyId });
      return await this.#indexSegment({ file, path, sizeBytes });
    } catch (error) {
      if (error instanceof WrongKeyError) throw error;
      if (!(error instanceof WalCorruptError || error instanceof RecordDecodeError)) throw error;
      logger.warn("change log: a damaged segment and the older ones are dropped", {
        path,
        reason: error.message,
      });
      await fs.remove(path);
      return "damaged";
    } finally {
      file.close();
    }
  }

  async #indexSegment(
    options: { file: FsFile; path: string; sizeBytes: number },
  ): Promise<LogRecord | undefined> {
    const { file, path, sizeBytes } = options;
    const segment = emptySegment(path, { lastSeq: this.#lastSeq, nowMs: this.#options.clock.nowMs() });
    const frames: Array<{ offset: number; records: LogRecord[] }> = [];
    const { encryption } = this.#options;
    const scan = { file, path, sizeBytes, encryption, cipher: encryption.changeCipher, header: this.#header };
    const result = await scanFrames(scan, (frame, offset) => {
      frames.push({ offset, records: recordsOf(frame).map(decodeLogRecord) });
    });
    if (result.torn !== undefined) {
      this.#options.logger.warn("change log: cut a torn tail", { path, offset: result.torn.offset });
      const cut = await this.#options.fs.openAppend(path, { permissions: privateFilePermissions });
      await cut.truncate(result.endOffset).finally(() => cut.close());
    }
    if (frames.length === 0) {
      await this.#options.fs.remove(path);
      return undefined;
    }
    // Changes before this segment's first sequence (its name) lie in older segments, dropped or damaged.
    const nameSeq = Number(path.slice(path.lastIndexOf("/") + 9, path.lastIndexOf("/") + 29));
    if (this.#segments.length === 0) this.#floorSeq = Math.max(this.#floorSeq, nameSeq - 1);
    let previousSeq = this.#lastSeq;
    for (const record of frames.flatMap((frame) => frame.records)) {
      if (record.seq <= previousSeq) throw new RecordDecodeError("change log sequences do not increase");
      previousSeq = record.seq;
    }
    this.#segments.push(segment);
    frames.forEach((frame, index) => {
      const end = frames[index + 1]?.offset ?? result.endOffset;
      this.#indexFrame(segment, {
        offset: frame.offset,
        lengthBytes: end - frame.offset,
        records: frame.records,
      });
    });
    segment.sizeBytes = result.endOffset;
    return frames.at(-1)!.records.at(-1);
  }

  /** Adds a frame read at open to the index. */
  #indexFrame(segment: Segment, frame: { offset: number; lengthBytes: number; records: LogRecord[] }): void {
    const frameNumber = this.#frameBase + this.#frames.length;
    this.#frames.push({
      segment,
      offset: frame.offset,
      lengthBytes: frame.lengthBytes,
      plaintext: undefined,
      lost: false,
    });
    segment.frameCount += 1;
    for (const record of frame.records) {
      assert(record.seq > this.#lastSeq, "checked by #indexSegment");
      this.#seqs.push(record.seq);
      this.#versions.push(record.type === "change" ? record.version : 0);
      this.#hashes.push(record.type === "change" ? topicHashOf(record.table, record.key) : 0);
      this.#frameNumbers.push(frameNumber);
      this.#lastSeq = record.seq;
      segment.recordCount += 1;
      segment.lastSeq = record.seq;
    }
    assert(this.#seqs.length === this.#frameNumbers.length);
  }
}

/** The records of a frame's plaintext (flag byte and packed records). */
function recordsOfPlaintext(plaintext: Uint8Array): LogRecord[] {
  return recordsOf(decodeFramePlaintext(plaintext)).map(decodeLogRecord);
}
