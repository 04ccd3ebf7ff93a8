import { assert } from "../util/assert.ts";
import type { Clock } from "../util/clock.ts";
import { countBounds, Histogram, secondsBounds } from "../util/metrics.ts";
import type { Encryption } from "./crypto.ts";
import type { WalMetrics } from "./types.ts";
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

/**
 * How long a lazy append waits for company: a few ms, so that a proposer's own accepts, which its quorum
 * does not wait for while the other replicas answer, share one fsync per few ms instead of one per batch
 * of a busy node (an fsync costs this host ~120-165 µs of CPU).
 */
export const walLazyWaitMs = 5;

interface Waiter<Item> {
  item: Item;
  /** Written with the next batch that something else starts, or after `walLazyWaitMs`. */
  lazy: boolean;
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
  /** Waiters in `#queue` that are not lazy: while there is one, batches are written at once. */
  #urgentCount = 0;
  /** Set when queued lazy appends waited `walLazyWaitMs`, or on drain: write the queue now. */
  #lazyDue = false;
  #lazyTimer: ReturnType<typeof setTimeout> | undefined;
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
   * Queues `item` for the next batch; resolves once it is durable. A `lazy` append does not start a batch
   * of its own: it goes with the next batch an urgent append starts, or after `walLazyWaitMs` (it is for a
   * record nobody waits on at once; its durability is the same once it resolves).
   *
   * @throws {StorageFailedError} when an earlier batch failed fatally, or this one fails.
   * @throws {StorageFullError} when this batch did not fit on the disk.
   */
  append(item: Item, options?: { lazy?: boolean }): Promise<void> {
    assert(!this.#closed, "append after close");
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    const lazy = options?.lazy === true;
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ item, lazy, resolve, reject });
      if (!lazy) this.#urgentCount += 1;
      assert(this.#urgentCount <= this.#queue.length, "urgent appends are queued appends");
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
    if (!this.#writeNow()) return this.#armLazyTimer();
    this.#flushing = this.#flushLoop().finally(() => {
      this.#flushing = undefined;
      this.#kick();
    });
  }

  /** Whether what is queued is to be written now: an urgent append, or lazy ones that waited long enough. */
  #writeNow(): boolean {
    return this.#urgentCount > 0 || this.#lazyDue;
  }

  /** Queued lazy appends only: written after `walLazyWaitMs` unless an urgent append comes first. */
  #armLazyTimer(): void {
    assert(this.#queue.length > 0 && this.#urgentCount === 0, "only lazy appends wait");
    if (this.#lazyTimer !== undefined) return;
    this.#lazyTimer = setTimeout(() => {
      this.#lazyTimer = undefined;
      this.#lazyDue = true;
      this.#kick();
    }, walLazyWaitMs);
  }

  /** Forgets the wait of queued lazy appends: they were taken into a batch, or dropped. */
  #cancelLazyTimer(): void {
    if (this.#lazyTimer !== undefined) clearTimeout(this.#lazyTimer);
    this.#lazyTimer = undefined;
  }

  async #flushLoop(): Promise<void> {
    // Ends when the queue is empty, holds only lazy appends not yet due, or a pause is requested; each turn
    // removes at least one waiter.
    while (this.#queue.length > 0 && this.#pauseCount === 0 && this.#writeNow()) {
      const batch = this.#takeBatch();
      // Whatever this batch took, lazy or not, is written: the timer of lazy appends starts again.
      this.#cancelLazyTimer();
      this.#lazyDue = this.#lazyDue && this.#queue.length > 0;
      await this.#flushBatch(batch);
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
    const batch = this.#queue.splice(0, count);
    for (const waiter of batch) if (!waiter.lazy) this.#urgentCount -= 1;
    assert(this.#urgentCount >= 0 && this.#urgentCount <= this.#queue.length, "urgent appends counted");
    return batch;
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
    this.#urgentCount = 0;
    this.#lazyDue = false;
    this.#cancelLazyTimer();
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

  /** Waits until every queued append has completed (resolved or rejected); lazy ones are written now. */
  drain(): Promise<void> {
    if (this.#queue.length === 0 && this.#flushing === undefined) return Promise.resolve();
    const idle = new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
    if (this.#queue.length > 0) {
      this.#lazyDue = true;
      this.#kick();
    }
    return idle;
  }

  /** Drains, then closes the file. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.drain();
    this.#closed = true;
    this.#options.file.close();
  }
}
