import { assert } from "../util/assert.ts";
import { InvalidRequestError, PayloadTooLargeError } from "../util/errors.ts";
import { isJsonObject, mergePatch } from "../util/json.ts";
import {
  listSnapshots,
  pruneSnapshots,
  readStateFile,
  removeTmpFiles,
  snapshotDirName,
  snapshotFileName,
  type StateItem,
  storageFileName,
  writeStateFile,
} from "./checkpoint.ts";
import {
  ForbiddenError,
  KeyNotFoundError,
  NotAnObjectError,
  StorageFailedError,
  StorageFullError,
  StoreClosedError,
  VersionConflictError,
  WalCorruptError,
} from "./errors.ts";
import {
  checkFileHeader,
  encodeFileHeader,
  fileHeaderBytes,
  framePlaintextBytesMax,
  readFully,
  scanFrames,
} from "./frame.ts";
import { type FsFile, isNoSpaceError } from "./fs.ts";
import type { ChangeEvent, Entry, StoreOptions, StoreStats, WriteOptions } from "./types.ts";
import { Wal, walBatchBytesMax } from "./wal.ts";
import {
  decodeRecord,
  type DeleteRecord,
  encodeRecord,
  entryOf,
  type PutRecord,
  RecordDecodeError,
  recordFixedBytes,
  valueJsonOf,
} from "./wal_record.ts";

/** File name of the write-ahead log in the data dir. */
export const walFileName = "wal.log";
/** Longest delay `setTimeout` takes; longer snapshot intervals are clamped to it. */
const timerDelayMsMax = 2 ** 31 - 1;

/** One table of the visible index. Keys are never removed (tombstones stay), only added. */
interface TableState {
  readonly entries: Map<string, Entry>;
  liveCount: number;
  /** Every key in code-unit order, built on demand; `addedKeys` are merged in at the next listing. */
  sortedKeys: string[];
  addedKeys: string[];
}

/** A write between acceptance and durability. */
interface PendingWrite {
  readonly encoded: Uint8Array;
  readonly table: string;
  readonly key: string;
  readonly sequence: number;
  readonly entry: Entry;
}

/** What a write needs once its checks passed. */
type WriteIntent = { op: "put"; valueJson: string } | { op: "delete" };

const encoder = new TextEncoder();

/**
 * The storage engine: an in-memory index of every key over a group-committed, encrypted WAL, compacted
 * into `storage.db` and copied into snapshots. See `mod.ts` for the format and `DESIGN.md` for the why.
 */
export class Store {
  readonly #options: StoreOptions;
  readonly #tables = new Map<string, TableState>();
  /** Writes accepted but not yet durable, newest per key: sequences writes, never read by `get`. */
  readonly #pending = new Map<string, Map<string, Entry>>();
  readonly #listeners = new Set<(event: ChangeEvent) => void>();
  readonly #recordBytesMax: number;
  #wal: Wal<PendingWrite> | undefined;
  #sequenceDurable = 0;
  #sequenceAccepted = 0;
  #state: "open" | "closing" | "closed" = "open";
  #failure: StorageFailedError | undefined;
  #closing: Promise<void> | undefined;
  #checkpointChain: Promise<void> = Promise.resolve();
  #autoCheckpointQueued = false;
  #autoCheckpointAtBytes: number;
  #checkpointCount = 0;
  #snapshotChain: Promise<unknown> = Promise.resolve();
  #snapshotTimer: ReturnType<typeof setTimeout> | undefined;
  #lastSnapshotMs = 0;
  #snapshotCount = 0;

  private constructor(options: StoreOptions) {
    assert(Number.isSafeInteger(options.snapshotLimit));
    assert(options.snapshotLimit >= 1);
    assert(Number.isSafeInteger(options.snapshotIntervalSecs));
    assert(options.snapshotIntervalSecs >= 0);
    this.#options = options;
    this.#recordBytesMax = options.limits.requestBytesMax + 3 * options.limits.nameBytesMax +
      recordFixedBytes;
    assert(
      this.#recordBytesMax + walBatchBytesMax < framePlaintextBytesMax,
      "requestBytesMax is too large for one WAL frame",
    );
    this.#autoCheckpointAtBytes = options.limits.walCheckpointBytes;
  }

  /**
   * Opens the store in `options.dir` (created when missing): loads `storage.db`, replays the WAL (cutting
   * off a torn tail with a warning) and starts the snapshot timer.
   *
   * @throws {WrongKeyError} when a file was written under another key; nothing is modified.
   * @throws {WalCorruptError} when a file is damaged other than at the WAL's tail.
   */
  static async open(options: StoreOptions): Promise<Store> {
    const store = new Store(options);
    await store.#recover();
    store.#scheduleSnapshot();
    return store;
  }

  get #dir(): string {
    return this.#options.dir;
  }

  get #walPath(): string {
    return `${this.#dir}/${walFileName}`;
  }

  get #snapshotDir(): string {
    return `${this.#dir}/${snapshotDirName}`;
  }

  async #recover(): Promise<void> {
    const { fs, logger, encryption } = this.#options;
    await fs.mkdir(this.#dir);
    await fs.mkdir(this.#snapshotDir);
    const removed = [...await removeTmpFiles(fs, this.#dir), ...await removeTmpFiles(fs, this.#snapshotDir)];
    if (removed.length > 0) logger.info("removed files left by an interrupted write", { files: removed });
    const summary = await readStateFile(
      { fs, path: `${this.#dir}/${storageFileName}`, encryption },
      (record) => this.#applyRecovered(record),
    );
    this.#sequenceDurable = summary?.sequence ?? 0;
    const snapshots = await listSnapshots(fs, this.#snapshotDir);
    this.#lastSnapshotMs = snapshots.at(-1)?.timestampMs ?? 0;
    const file = await fs.openAppend(this.#walPath);
    try {
      const sizeBytes = await this.#recoverWal(file);
      this.#wal = this.#createWal(file, sizeBytes);
    } catch (error) {
      file.close();
      throw error;
    }
    this.#sequenceAccepted = this.#sequenceDurable;
    logger.info("store opened", {
      dir: this.#dir,
      sequence: this.#sequenceDurable,
      tables: this.#tables.size,
    });
  }

  #createWal(file: FsFile, sizeBytes: number): Wal<PendingWrite> {
    return new Wal<PendingWrite>({
      file,
      path: this.#walPath,
      header: encodeFileHeader("wal", this.#options.encryption.keyId),
      encryption: this.#options.encryption,
      sizeBytes,
      batchRecordsMax: this.#options.limits.walBatchRecordsMax,
      onDurable: (writes) => this.#applyDurable(writes),
      onFailed: (error, fatal) => this.#dropPending(error, fatal),
      onFlushed: () => this.#maybeCheckpoint(),
    });
  }

  /** Replays the WAL into the index; returns its size after any torn tail was cut off. */
  async #recoverWal(file: FsFile): Promise<number> {
    const { fs, logger, encryption } = this.#options;
    const path = this.#walPath;
    const header = encodeFileHeader("wal", encryption.keyId);
    const sizeBytes = await file.sizeBytes();
    if (sizeBytes < fileHeaderBytes) {
      // A new WAL, or a crash while its header was written: nothing after it was ever acknowledged.
      if (sizeBytes > 0) logger.warn("rewriting a torn WAL header", { file: path, offset: 0 });
      await file.truncate(0);
      await file.write(header);
      await file.syncData();
      await fs.syncDir(this.#dir);
      return fileHeaderBytes;
    }
    const found = new Uint8Array(fileHeaderBytes);
    assert(await readFully(file, found) === fileHeaderBytes);
    checkFileHeader({ path, bytes: found, kind: "wal", keyId: encryption.keyId });
    let lastSequence = 0;
    const result = await scanFrames({ file, path, sizeBytes, encryption, header }, (records, offset) => {
      for (const bytes of records) {
        const record = decodeWalRecord(bytes, { path, offset });
        if (record.sequence <= lastSequence) {
          throw new WalCorruptError({
            path,
            offset,
            reason: `sequence ${record.sequence} does not increase`,
          });
        }
        lastSequence = record.sequence;
        this.#applyRecovered(record);
      }
    });
    this.#sequenceDurable = Math.max(this.#sequenceDurable, lastSequence);
    if (result.torn === undefined) return sizeBytes;
    const { offset, reason } = result.torn;
    logger.warn(`cut off a torn tail of ${path} at byte offset ${offset}`, {
      file: path,
      offset,
      droppedBytes: sizeBytes - offset,
      reason,
    });
    await file.truncate(offset);
    await file.syncData();
    return offset;
  }

  #tableFor(table: string): TableState {
    let state = this.#tables.get(table);
    if (state === undefined) {
      state = { entries: new Map(), liveCount: 0, sortedKeys: [], addedKeys: [] };
      this.#tables.set(table, state);
    }
    return state;
  }

  #setVisible(state: TableState, key: string, entry: Entry): void {
    const previous = state.entries.get(key);
    if (previous === undefined) state.addedKeys.push(key);
    else if (!previous.deleted) state.liveCount -= 1;
    if (!entry.deleted) state.liveCount += 1;
    state.entries.set(key, entry);
    assert(state.liveCount >= 0);
    assert(state.liveCount <= state.entries.size);
  }

  /** Applies a record from a file, only when it is newer than what the index holds: replay is idempotent. */
  #applyRecovered(record: PutRecord | DeleteRecord): void {
    const state = this.#tableFor(record.table);
    const current = state.entries.get(record.key);
    if (current !== undefined && current.version >= record.version) return;
    this.#setVisible(state, record.key, entryOf(record));
  }

  /** A batch is durable: make it visible, then tell listeners, in commit order. */
  #applyDurable(writes: readonly PendingWrite[]): void {
    for (const write of writes) {
      assert(write.sequence === this.#sequenceDurable + 1, "batches must become durable in sequence order");
      this.#sequenceDurable = write.sequence;
      const state = this.#tableFor(write.table);
      assert(write.entry.version === (state.entries.get(write.key)?.version ?? 0) + 1);
      this.#setVisible(state, write.key, write.entry);
      const pendingTable = this.#pending.get(write.table);
      if (pendingTable?.get(write.key) === write.entry) {
        pendingTable.delete(write.key);
        if (pendingTable.size === 0) this.#pending.delete(write.table);
      }
    }
    assert(this.#sequenceDurable <= this.#sequenceAccepted);
    const listeners = [...this.#listeners];
    for (const write of writes) {
      const event: ChangeEvent = {
        kind: write.entry.deleted ? "Deleted" : "Updated",
        table: write.table,
        key: write.key,
        version: write.entry.version,
        sequence: write.sequence,
        json: write.entry.json,
      };
      for (const listener of listeners) this.#notify(listener, event);
    }
  }

  #notify(listener: (event: ChangeEvent) => void, event: ChangeEvent): void {
    try {
      listener(event);
    } catch (error) {
      this.#options.logger.error("a change listener threw", { table: event.table, error: String(error) });
    }
  }

  /** A batch failed: every pending write was rejected with it, so the overlay built on them goes too. */
  #dropPending(error: StorageFailedError | StorageFullError, fatal: boolean): void {
    this.#pending.clear();
    this.#sequenceAccepted = this.#sequenceDurable;
    if (fatal) this.#failure ??= error as StorageFailedError;
    this.#options.logger.error(fatal ? "storage failed; refusing all writes until restart" : "disk full", {
      code: error.code,
      cause: String(error.cause),
    });
  }

  /** The state later writes are checked against: the newest pending write, else the visible entry. */
  #current(table: string, key: string): Entry | undefined {
    return this.#pending.get(table)?.get(key) ?? this.#tables.get(table)?.entries.get(key);
  }

  #checkWritable(operation: string): void {
    if (this.#state !== "open") throw new StoreClosedError(operation);
    if (this.#failure !== undefined) throw this.#failure;
  }

  #checkName(kind: "table" | "key", name: string): void {
    if (name.length === 0) throw new InvalidRequestError(`The ${kind} name is empty`);
    if (!name.isWellFormed()) throw new InvalidRequestError(`The ${kind} name is not valid Unicode`);
    const bytesMax = this.#options.limits.nameBytesMax;
    if (name.length * 3 <= bytesMax) return;
    const bytes = encoder.encode(name).length;
    if (bytes > bytesMax) {
      throw new InvalidRequestError(
        `The ${kind} name is ${bytes} bytes, limit is ${bytesMax} (nameBytesMax)`,
      );
    }
  }

  /** Checks names, owner and version conditions; returns the live entry, if any. */
  #checkWrite(
    target: { table: string; key: string; operation: string },
    options: WriteOptions,
  ): Entry | undefined {
    this.#checkWritable(target.operation);
    this.#checkName("table", target.table);
    this.#checkName("key", target.key);
    if (options.owner.length === 0 || !options.owner.isWellFormed()) {
      throw new InvalidRequestError("The owner name is empty or not valid Unicode");
    }
    const current = this.#current(target.table, target.key);
    const live = current === undefined || current.deleted ? undefined : current;
    if (live === undefined && target.operation !== "put") throw new KeyNotFoundError(target);
    if (live !== undefined && live.owner !== options.owner) throw new ForbiddenError(target);
    const ifVersion = options.ifVersion;
    if (ifVersion === undefined) return live;
    if (!Number.isSafeInteger(ifVersion) || ifVersion < 0) {
      throw new InvalidRequestError(`ifVersion must be a non-negative integer, got ${ifVersion}`);
    }
    if ((live?.version ?? 0) !== ifVersion) {
      throw new VersionConflictError({
        ...target,
        expectedVersion: ifVersion,
        currentVersion: live?.version,
      });
    }
    return live;
  }

  /** Sequences an accepted write, queues it on the WAL and resolves once it is durable and visible. */
  #commit(target: { table: string; key: string; owner: string }, intent: WriteIntent): Promise<Entry> {
    const { table, key, owner } = target;
    const previous = this.#current(table, key);
    const version = (previous?.version ?? 0) + 1;
    const sequence = this.#sequenceAccepted + 1;
    const timestamp = this.#options.clock.nowMs();
    assert(Number.isSafeInteger(version));
    assert(Number.isSafeInteger(sequence));
    assert(Number.isSafeInteger(timestamp));
    const common = { sequence, version, timestamp, table, key, owner };
    const record: PutRecord | DeleteRecord = intent.op === "put"
      ? { op: "put", ...common, valueJson: intent.valueJson }
      : { op: "delete", ...common };
    const encoded = encodeRecord(record);
    if (encoded.length > this.#recordBytesMax) {
      throw new PayloadTooLargeError(
        `Cannot write key "${key}" of table "${table}": its record is ${encoded.length} bytes, limit is ` +
          `${this.#recordBytesMax} (requestBytesMax + 3 * nameBytesMax + ${recordFixedBytes})`,
      );
    }
    const entry = entryOf(record);
    this.#sequenceAccepted = sequence;
    let pendingTable = this.#pending.get(table);
    if (pendingTable === undefined) this.#pending.set(table, pendingTable = new Map());
    pendingTable.set(key, entry);
    assert(this.#wal !== undefined);
    return this.#wal.append({ encoded, table, key, sequence, entry }).then(() => entry);
  }

  /** The live entry of a key, or undefined when it is missing or deleted. Only durable writes are seen. */
  get(table: string, key: string): Entry | undefined {
    const entry = this.#tables.get(table)?.entries.get(key);
    return entry === undefined || entry.deleted ? undefined : entry;
  }

  /** The entry of a key including a tombstone. Only durable writes are seen. */
  getEntry(table: string, key: string): Entry | undefined {
    return this.#tables.get(table)?.entries.get(key);
  }

  /**
   * Writes `value` (any JSON) and resolves once it is durable. A new or deleted key may be created by
   * anyone; a live key only by its owner.
   *
   * @throws {ForbiddenError} @throws {VersionConflictError} @throws {PayloadTooLargeError}
   * @throws {StoreClosedError} @throws {StorageFailedError} @throws {StorageFullError}
   */
  // deno-lint-ignore require-await
  async put(table: string, key: string, value: unknown, options: WriteOptions): Promise<Entry> {
    const live = this.#checkWrite({ table, key, operation: "put" }, options);
    const valueJson = JSON.stringify(value);
    if (typeof valueJson !== "string") throw new InvalidRequestError("The value is not JSON");
    return this.#commit({ table, key, owner: live?.owner ?? options.owner }, { op: "put", valueJson });
  }

  /**
   * Merges `patch` into the stored object (RFC 7396: `null` removes a field) as a new version.
   *
   * @throws {KeyNotFoundError} @throws {NotAnObjectError} @throws {ForbiddenError}
   * @throws {VersionConflictError} and the errors of {@linkcode Store.put}.
   */
  // deno-lint-ignore require-await
  async patch(
    table: string,
    key: string,
    patch: Record<string, unknown>,
    options: WriteOptions,
  ): Promise<Entry> {
    const live = this.#checkWrite({ table, key, operation: "patch" }, options);
    assert(live !== undefined);
    if (!isJsonObject(patch)) throw new InvalidRequestError("A patch must be a JSON object");
    const current: unknown = JSON.parse(valueJsonOf(live));
    if (!isJsonObject(current)) throw new NotAnObjectError({ table, key });
    const valueJson = JSON.stringify(mergePatch(current, patch));
    return this.#commit({ table, key, owner: live.owner }, { op: "put", valueJson });
  }

  /**
   * Deletes a live key, leaving a tombstone that keeps its version; resolves with the tombstone.
   *
   * @throws {KeyNotFoundError} @throws {ForbiddenError} @throws {VersionConflictError}
   * @throws {StoreClosedError} @throws {StorageFailedError} @throws {StorageFullError}
   */
  // deno-lint-ignore require-await
  async delete(table: string, key: string, options: WriteOptions): Promise<Entry> {
    const live = this.#checkWrite({ table, key, operation: "delete" }, options);
    assert(live !== undefined);
    return this.#commit({ table, key, owner: live.owner }, { op: "delete" });
  }

  /** True when the table was ever written (a table of tombstones counts). */
  hasTable(table: string): boolean {
    return this.#tables.has(table);
  }

  #sortedKeys(state: TableState): string[] {
    if (state.addedKeys.length > 0) {
      // A new array, so a listing in progress keeps its own. Timsort merges the sorted run and the additions.
      state.sortedKeys = state.sortedKeys.concat(state.addedKeys).sort();
      state.addedKeys = [];
    }
    assert(state.sortedKeys.length === state.entries.size);
    return state.sortedKeys;
  }

  /**
   * Live entries of a table in ascending code-unit order of their keys, after `after` (exclusive), at most
   * `limit`, read lazily from the current state.
   */
  *entries(table: string, options: { after?: string; limit: number }): Iterable<[string, Entry]> {
    assert(Number.isSafeInteger(options.limit));
    assert(options.limit >= 0);
    const state = this.#tables.get(table);
    if (state === undefined) return;
    const keys = this.#sortedKeys(state);
    let index = options.after === undefined ? 0 : firstIndexAfter(keys, options.after);
    let count = 0;
    for (; index < keys.length && count < options.limit; index += 1) {
      const key = keys[index]!;
      const entry = state.entries.get(key);
      assert(entry !== undefined);
      if (entry.deleted) continue;
      count += 1;
      yield [key, entry];
    }
  }

  /** Live keys per table, for every table ever written. */
  tableCounts(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const [table, state] of this.#tables) counts.set(table, state.liveCount);
    return counts;
  }

  /**
   * Calls `listener` for every change, synchronously, in commit order, after it is durable and visible.
   *
   * @returns a function that removes the listener.
   */
  onChange(listener: (event: ChangeEvent) => void): () => void {
    const wrapped = (event: ChangeEvent) => listener(event);
    this.#listeners.add(wrapped);
    return () => this.#listeners.delete(wrapped);
  }

  #visibleItems(): StateItem[] {
    const items: StateItem[] = [];
    for (const [table, state] of this.#tables) {
      for (const [key, entry] of state.entries) items.push({ table, key, entry });
    }
    return items;
  }

  #storageError(operation: string, cause: unknown): StorageFailedError | StorageFullError {
    if (cause instanceof StorageFailedError || cause instanceof StorageFullError) return cause;
    if (isNoSpaceError(cause)) {
      return new StorageFullError(`Cannot ${operation}: the disk is full`, { cause });
    }
    return new StorageFailedError(`Cannot ${operation}`, { cause });
  }

  async #runCheckpoint(): Promise<void> {
    const wal = this.#wal;
    assert(wal !== undefined);
    if (this.#failure !== undefined) throw this.#failure;
    await wal.runExclusive(async () => {
      const sequence = this.#sequenceDurable;
      const path = `${this.#dir}/${storageFileName}`;
      try {
        // Flushing is paused, so the visible state cannot change while it is written.
        const items = this.#visibleItems();
        await writeStateFile({
          fs: this.#options.fs,
          path,
          encryption: this.#options.encryption,
          items,
          sequence,
          timestamp: this.#options.clock.nowMs(),
        });
      } catch (error) {
        throw this.#storageError(`write ${path}`, error);
      }
      assert(sequence === this.#sequenceDurable);
      await wal.truncateToHeader();
    });
    this.#checkpointCount += 1;
  }

  #enqueueCheckpoint(): Promise<void> {
    const run = this.#checkpointChain.then(() => this.#runCheckpoint());
    this.#checkpointChain = run.catch(() => {});
    return run;
  }

  #maybeCheckpoint(): void {
    const wal = this.#wal;
    assert(wal !== undefined);
    if (
      this.#state !== "open" || this.#autoCheckpointQueued || wal.sizeBytes <= this.#autoCheckpointAtBytes
    ) return;
    this.#autoCheckpointQueued = true;
    this.#enqueueCheckpoint().then(
      () => {
        this.#autoCheckpointAtBytes = this.#options.limits.walCheckpointBytes;
      },
      (error) => {
        // Nothing is lost (the WAL keeps every write); try again once it has grown as much again.
        this.#autoCheckpointAtBytes = wal.sizeBytes + this.#options.limits.walCheckpointBytes;
        this.#options.logger.error("checkpoint failed", { code: error.code, cause: String(error.cause) });
      },
    ).finally(() => {
      this.#autoCheckpointQueued = false;
    });
  }

  /**
   * Writes every entry into `storage.db` (atomically) and truncates the WAL.
   *
   * @throws {StoreClosedError} @throws {StorageFailedError} @throws {StorageFullError}
   */
  checkpoint(): Promise<void> {
    if (this.#state !== "open") return Promise.reject(new StoreClosedError("checkpoint"));
    return this.#enqueueCheckpoint();
  }

  async #writeSnapshot(): Promise<string> {
    // The cut is taken synchronously, so writes go on while it is written.
    const items = this.#visibleItems();
    const sequence = this.#sequenceDurable;
    const timestampMs = Math.max(this.#options.clock.nowMs(), this.#lastSnapshotMs + 1);
    this.#lastSnapshotMs = timestampMs;
    const path = `${this.#snapshotDir}/${snapshotFileName(timestampMs)}`;
    const { fs, encryption, snapshotLimit } = this.#options;
    try {
      await writeStateFile({ fs, path, encryption, items, sequence, timestamp: timestampMs });
      this.#snapshotCount += 1;
      await pruneSnapshots({ fs, snapshotDir: this.#snapshotDir, snapshotLimit });
    } catch (error) {
      throw this.#storageError(`write ${path}`, error);
    }
    return path;
  }

  /**
   * Writes a snapshot of every entry to `snapshots/snapshot_<ms>.json` and prunes the oldest beyond
   * `snapshotLimit`.
   *
   * @returns the path of the new snapshot.
   * @throws {StoreClosedError} @throws {StorageFailedError} @throws {StorageFullError}
   */
  snapshot(): Promise<string> {
    if (this.#state !== "open") return Promise.reject(new StoreClosedError("snapshot"));
    const run = this.#snapshotChain.then(() => this.#writeSnapshot());
    this.#snapshotChain = run.catch(() => {});
    return run;
  }

  #scheduleSnapshot(): void {
    if (this.#options.snapshotIntervalSecs === 0 || this.#state !== "open") return;
    const delayMs = Math.min(this.#options.snapshotIntervalSecs * 1000, timerDelayMsMax);
    this.#snapshotTimer = setTimeout(() => {
      this.#snapshotTimer = undefined;
      this.snapshot().catch((error) => {
        this.#options.logger.error("snapshot failed", { code: error.code, cause: String(error.cause) });
      }).finally(() => this.#scheduleSnapshot());
    }, delayMs);
  }

  /** Counters for `/stats`. */
  stats(): StoreStats {
    const wal = this.#wal;
    assert(wal !== undefined);
    return {
      walBatchCount: wal.batchCount,
      walRecordCount: wal.recordCount,
      walBytes: wal.sizeBytes,
      checkpointCount: this.#checkpointCount,
      snapshotCount: this.#snapshotCount,
      sequence: this.#sequenceDurable,
    };
  }

  /**
   * Stops taking writes, waits for the accepted ones, writes a final checkpoint, closes the files and
   * clears the timer. Later writes throw `StoreClosedError`. A failed final checkpoint is logged: the WAL
   * still holds every write.
   */
  close(): Promise<void> {
    this.#closing ??= this.#closeOnce();
    return this.#closing;
  }

  async #closeOnce(): Promise<void> {
    const wal = this.#wal;
    assert(wal !== undefined);
    this.#state = "closing";
    clearTimeout(this.#snapshotTimer);
    this.#snapshotTimer = undefined;
    await this.#snapshotChain;
    await wal.drain();
    await this.#checkpointChain;
    if (this.#failure === undefined) {
      try {
        await this.#runCheckpoint();
      } catch (error) {
        this.#options.logger.error("final checkpoint failed; the WAL keeps every write", {
          error: String(error),
        });
      }
    }
    await wal.close();
    this.#listeners.clear();
    this.#state = "closed";
  }
}

/** Index of the first key greater than `after` in a sorted array (binary search, code-unit order). */
function firstIndexAfter(keys: readonly string[], after: string): number {
  let low = 0;
  let high = keys.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (keys[middle]! <= after) low = middle + 1;
    else high = middle;
  }
  return low;
}

function decodeWalRecord(bytes: Uint8Array, at: { path: string; offset: number }): PutRecord | DeleteRecord {
  let record;
  try {
    record = decodeRecord(bytes);
  } catch (error) {
    if (error instanceof RecordDecodeError) throw new WalCorruptError({ ...at, reason: error.message });
    throw error;
  }
  if (record.op === "checkpointEnd") {
    throw new WalCorruptError({ ...at, reason: "checkpoint record in the WAL" });
  }
  if (record.sequence < 1) throw new WalCorruptError({ ...at, reason: "record without a sequence" });
  return record;
}
