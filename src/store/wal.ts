import { assert } from "../util/assert.ts";
import type { Clock } from "../util/clock.ts";
import { countBounds, Histogram, secondsBounds } from "../util/metrics.ts";
import type { Encryption } from "./crypto.ts";
import { StorageFailedError, StorageFullError } from "./errors.ts";
import type { Failpoints } from "./failpoints.ts";
import { encodeFrame, fileHeaderBytes } from "./frame.ts";
import { type FsFile, isNoSpaceError } from "./fs.ts";

/**
 * Largest encoded size of one batch. A batch closes at `walBatchRecordsMax` records or at this size,
 * whichever comes first, so one frame stays small enough to hold in memory (it always takes at least one
 * record, however large).
 */
export const walBatchBytesMax = 16 * 1024 * 1024;

/** What the WAL carries: an encoded record (`encodeRecord`), plus what the caller needs back when durable. */
export interface WalItem {
  readonly encoded: Uint8Array;
}

/** What a WAL measures of each batch, for `/metrics`. */
export interface WalMetrics {
  /** Records per batch. */
  batchRecords: Histogram;
  /** Seconds each `syncData` took. */
  syncSeconds: Histogram;
}

/** Options of {@linkcode Wal}. */
export interface WalOptions<Item extends WalItem> {
  /** The open WAL file (read + append), already holding a valid header and `sizeBytes` bytes. */
  file: FsFile;
  path: string;
  /** The file header; the frames' additional authenticated data. */
  header: Uint8Array;
  encryption: Encryption;
  sizeBytes: number;
  batchRecordsMax: number;
  /** Reached between the write and the sync of a batch, and in the middle of a truncation. */
  failpoints: Failpoints;
  clock: Clock;
  /** Called once per batch after its sync and before its appends resolve, in batch order. */
  onDurable: (items: readonly Item[]) => void;
  /**
   * Called, before any promise is rejected, when a batch failed: every queued item was dropped with it.
   * `fatal` is true when the WAL refuses all further appends.
   */
  onFailed: (error: StorageFailedError | StorageFullError, fatal: boolean) => void;
  /** Called after each durable batch, once its appends are resolved. */
  onFlushed?: () => void;
}

interface Waiter<Item> {
  item: Item;
  resolve: () => void;
  reject: (error: unknown) => void;
}

/**
 * The write-ahead log with group commit. Appends queue while one batch is written; the next batch takes
 * every queued record (up to the limits), is encrypted once, written with one `write` and made durable
 * with one `syncData`. Batches complete in order. After a fatal failure every append is refused.
 */
export class Wal<Item extends WalItem> {
  readonly #options: WalOptions<Item>;
  #queue: Waiter<Item>[] = [];
  #flushing: Promise<void> | undefined;
  #flushScheduled = false;
  #pauseCount = 0;
  #sizeBytes: number;
  #failure: StorageFailedError | undefined;
  #closed = false;
  #idleWaiters: Array<() => void> = [];
  /** Since open: records per batch (its count is the batches written, its sum the records). */
  readonly metrics: WalMetrics = {
    batchRecords: new Histogram(countBounds),
    syncSeconds: new Histogram(secondsBounds),
  };

  constructor(options: WalOptions<Item>) {
    assert(options.sizeBytes >= fileHeaderBytes);
    assert(options.batchRecordsMax >= 1);
    this.#options = options;
    this.#sizeBytes = options.sizeBytes;
  }

  /** Bytes of the WAL file, header included. */
  get sizeBytes(): number {
    return this.#sizeBytes;
  }

  /** The failure that stopped the WAL, if any. */
  get failure(): StorageFailedError | undefined {
    return this.#failure;
  }

  /**
   * Queues `item` for the next batch; resolves once it is durable.
   *
   * @throws {StorageFailedError} when an earlier batch failed fatally, or this one fails.
   * @throws {StorageFullError} when this batch did not fit on the disk.
   */
  append(item: Item): Promise<void> {
    assert(!this.#closed, "append after close");
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ item, resolve, reject });
      if (!this.#flushScheduled) {
        this.#flushScheduled = true;
        // Deferred, so appends made in the same turn of the event loop share the first batch.
        queueMicrotask(() => {
          this.#flushScheduled = false;
          this.#kick();
        });
      }
    });
  }

  #kick(): void {
    if (this.#flushing === undefined && this.#queue.length === 0) this.#notifyIdle();
    if (this.#flushing !== undefined || this.#pauseCount > 0 || this.#queue.length === 0) return;
    this.#flushing = this.#flushLoop().finally(() => {
      this.#flushing = undefined;
      this.#kick();
    });
  }

  async #flushLoop(): Promise<void> {
    // Ends when the queue is empty or a pause is requested; each turn removes at least one waiter.
    while (this.#queue.length > 0 && this.#pauseCount === 0) {
      await this.#flushBatch(this.#takeBatch());
    }
  }

  #takeBatch(): Waiter<Item>[] {
    let count = 0;
    let bytes = 0;
    const recordsMax = Math.min(this.#options.batchRecordsMax, this.#queue.length);
    while (
      count < recordsMax &&
      (count === 0 || bytes + this.#queue[count]!.item.encoded.length <= walBatchBytesMax)
    ) {
      bytes += this.#queue[count]!.item.encoded.length;
      count += 1;
    }
    assert(count >= 1);
    return this.#queue.splice(0, count);
  }

  async #flushBatch(batch: Waiter<Item>[]): Promise<void> {
    const frame = encodeFrame({
      encryption: this.#options.encryption,
      header: this.#options.header,
      records: batch.map((waiter) => waiter.item.encoded),
    });
    try {
      await this.#options.file.write(frame);
    } catch (error) {
      await this.#failWrite(batch, error);
      return;
    }
    try {
      const failpoints = this.#options.failpoints;
      if (failpoints.armed) await failpoints.reach("wal.afterAppendBeforeSync");
      const syncStartedMs = this.#options.clock.monotonicMs();
      await this.#options.file.syncData();
      this.metrics.syncSeconds.observe((this.#options.clock.monotonicMs() - syncStartedMs) / 1000);
    } catch (error) {
      // After a failed fsync the state of the page cache is unknown (fsyncgate): never retry, never ack.
      // The frame is cut off (best effort), so a restart without a power cut does not replay a write
      // that was answered with an error.
      await this.#rollBack();
      this.#fail(batch, new StorageFailedError(`Cannot sync ${this.#options.path}`, { cause: error }), true);
      return;
    }
    this.#sizeBytes += frame.length;
    this.metrics.batchRecords.observe(batch.length);
    this.#options.onDurable(batch.map((waiter) => waiter.item));
    for (const waiter of batch) waiter.resolve();
    this.#options.onFlushed?.();
  }

  /** A failed write: on ENOSPC cut the partial frame off and stay usable; otherwise stop for good. */
  async #failWrite(batch: Waiter<Item>[], cause: unknown): Promise<void> {
    const path = this.#options.path;
    const rollBackError = await this.#rollBack();
    if (!isNoSpaceError(cause)) {
      this.#fail(batch, new StorageFailedError(`Cannot write ${path}`, { cause }), true);
    } else if (rollBackError === undefined) {
      this.#fail(batch, new StorageFullError(`Cannot append to ${path}: the disk is full`, { cause }), false);
    } else {
      const error = new StorageFailedError(`Cannot roll back ${path} after a full disk`, {
        cause: rollBackError,
      });
      this.#fail(batch, error, true);
    }
  }

  /**
   * Cuts the file back to its last durable frame, dropping a partial or unsynced one.
   *
   * @returns the error of the truncation, or undefined when it succeeded.
   */
  async #rollBack(): Promise<unknown> {
    assert(this.#sizeBytes >= fileHeaderBytes);
    try {
      await this.#options.file.truncate(this.#sizeBytes);
      return undefined;
    } catch (error) {
      // Recovery cuts a partial frame as a torn tail; a whole one is replayed (it may be on disk).
      return error;
    }
  }

  #fail(batch: Waiter<Item>[], error: StorageFailedError | StorageFullError, fatal: boolean): void {
    const dropped = [...batch, ...this.#queue.splice(0)];
    if (fatal) {
      assert(error instanceof StorageFailedError);
      this.#failure = error;
    }
    this.#options.onFailed(error, fatal);
    for (const waiter of dropped) waiter.reject(error);
    if (this.#flushing === undefined) this.#notifyIdle();
  }

  /** Runs `work` while no batch is being written, holding further batches until it ends. */
  async runExclusive<T>(work: () => Promise<T>): Promise<T> {
    this.#pauseCount += 1;
    try {
      // Bounded: once paused, the running flush loop ends after its current batch.
      while (this.#flushing !== undefined) await this.#flushing;
      return await work();
    } finally {
      this.#pauseCount -= 1;
      assert(this.#pauseCount >= 0);
      this.#kick();
    }
  }

  /**
   * Cuts the WAL back to its header and syncs; call only inside `runExclusive`, once every record is
   * durable elsewhere.
   *
   * @throws {StorageFailedError} (and the WAL stops) when the truncation or its sync fails.
   */
  async truncateToHeader(): Promise<void> {
    assert(this.#pauseCount > 0, "truncateToHeader outside runExclusive");
    assert(this.#flushing === undefined);
    try {
      await this.#options.file.truncate(fileHeaderBytes);
      const failpoints = this.#options.failpoints;
      if (failpoints.armed) await failpoints.reach("wal.midTruncate");
      await this.#options.file.syncData();
    } catch (cause) {
      const error = new StorageFailedError(`Cannot truncate ${this.#options.path}`, { cause });
      this.#fail([], error, true);
      throw error;
    }
    this.#sizeBytes = fileHeaderBytes;
  }

  #notifyIdle(): void {
    for (const resolve of this.#idleWaiters.splice(0)) resolve();
  }

  /** Waits until every queued append has completed (resolved or rejected). */
  drain(): Promise<void> {
    if (this.#queue.length === 0 && this.#flushing === undefined) return Promise.resolve();
    return new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
  }

  /** Drains, then closes the file. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.drain();
    this.#closed = true;
    this.#options.file.close();
  }
}
