import { recordOverheadBytesMax } from "../config/limits.ts";
import { assert } from "../util/assert.ts";
import { InvalidRequestError, PayloadTooLargeError } from "../util/errors.ts";
import { isJsonObject, mergePatch } from "../util/json.ts";
import {
  type KeyPromise,
  pruneSnapshots,
  snapshotDirName,
  snapshotFileName,
  storageFileName,
  writeStateFile,
} from "./checkpoint.ts";
import {
  DataDirLockedError,
  ForbiddenError,
  KeyNotFoundError,
  NotAnObjectError,
  StorageFailedError,
  StorageFullError,
  StoreClosedError,
  StoreReadOnlyError,
  VersionConflictError,
} from "./errors.ts";
import { encodeFileHeader, fileHeaderBytes, framePlaintextBytesMax } from "./frame.ts";
import { type Failpoints, inertFailpoints } from "./failpoints.ts";
import {
  type FsFile,
  type FsLock,
  isNoSpaceError,
  privateDirPermissions,
  privateFilePermissions,
  ReadOnlyFs,
} from "./fs.ts";
import {
  checkBallot,
  checkReplicaEntry,
  compareReplicaEntries,
  decideReplica,
  entryOfReplica,
  recordOfReplica,
  replicaOfEntry,
} from "./replica.ts";
import {
  type AcceptorBallots,
  type AcceptorState,
  type Ballot,
  type ChangeEvent,
  compareBallots,
  type ReplicaEntry,
  type ReplicaResult,
  type StoredEntry,
  type StoreOptions,
  type StoreStats,
  type WriteOptions,
  zeroBallot,
} from "./types.ts";
import { recoverDataDir, walFileName } from "./recovery.ts";
import { Wal, walBatchBytesMax } from "./wal.ts";
import { VisibleIndex } from "./visible_index.ts";
import { type ExpiringKey, ExpiryQueue } from "./expiry_queue.ts";
import {
  ballotBytesMax,
  type DeleteRecord,
  encodeRecord,
  type EntryHead,
  entryOf,
  expiryBytes,
  isZeroBallot,
  type KeyState,
  type PutRecord,
  recordFixedBytes,
  setRecordSequence,
  valueJsonOf,
  versionAt,
} from "./wal_record.ts";

export { walFileName };
/**
 * File name of the data dir's lock: an open store holds it exclusively, a read-only one shares it, so no
 * two processes write one data dir and no reader reads one a node is writing. Empty; never removed.
 */
export const lockFileName = "node.lock";

/**
 * The part of a record's size limit that is not the request body: its fixed fields, largest ballot and an
 * expiry.
 */
const recordOverheadBytes = recordFixedBytes + ballotBytesMax + expiryBytes;
assert(recordOverheadBytes === recordOverheadBytesMax, "config's record overhead is the store's");
/** Longest delay `setTimeout` takes; longer snapshot intervals are clamped to it. */
const timerDelayMsMax = 2 ** 31 - 1;
/**
 * Turns a replica apply or a purge waits for the pending writes of its keys before it compares. Each turn
 * waits for one batch; a key written again meanwhile takes another turn. Past the bound it compares
 * against the pending state, which still keeps versions monotonic.
 */
const settleTurnsMax = 64;

/**
 * A write between acceptance and durability: a local write (version + 1, zero ballot), a Paxos accept, a
 * replica's state (a delayed accept, decided by ballots), a purge or a promise (neither is a change: no
 * sequence of its own, no change event).
 */
interface PendingWrite {
  readonly encoded: Uint8Array;
  readonly table: string;
  readonly key: string;
  readonly sequence: number;
  readonly kind: "local" | "accepted" | "replica" | "purge" | "promise";
  /** The key's state after the write: the new one, the one it had for a promise, undefined after a purge. */
  readonly entry: StoredEntry | undefined;
  /** The key's explicit promise after the write; the zero ballot when none is outstanding. */
  readonly promised: Ballot;
}

/** The newest pending write of a key, and the promise of its durability (rejected when it is dropped). */
interface PendingKey {
  readonly write: PendingWrite;
  readonly durable: Promise<void>;
}

/** A replica's state, checked and encoded, waiting for the decision against the current state. */
interface PreparedReplica {
  readonly table: string;
  readonly key: string;
  readonly encoded: Uint8Array;
  readonly entry: StoredEntry;
  /** Refused unless it moves the key's version forward (or is identical); see `applyReplicas`. */
  readonly strict: boolean;
}

/** What a write needs once its checks passed. */
type WriteIntent =
  /** `ttlSecs`: the new state's lifetime, 0 for none. */
  | { op: "put"; valueJson: string; ttlSecs: number }
  /** `expiresAt`: the lifetime an expiry ends, 0 for a client's delete. */
  | { op: "delete"; expiresAt: number };

const encoder = new TextEncoder();

/** The WAL option of an accept its caller does not wait on at once (see `Wal.append`). */
const lazyAppend = { lazy: true } as const;

/**
 * The storage engine: an in-memory index of every key over a group-committed, encrypted WAL, compacted
 * into `storage.db` and copied into snapshots. See `mod.ts` for the format and `DESIGN.md` for the why.
 */
export class Store {
  readonly #options: StoreOptions;
  /** The visible state: durable writes only. */
  /** Keys whose state has a lifetime, by due time (`takeExpired`); rebuilt as the files are indexed. */
  readonly #expiries = new ExpiryQueue();
  /**
   * False until a state with a lifetime was indexed, accepted or applied: until then no key can be expired,
   * and a write asks nothing more (`expiredVersionOf`), so a node that never uses TTL pays nothing for it.
   */
  #lifetimesSeen = false;
  readonly #index = new VisibleIndex({
    onLifetime: (table, key, lifetime) => {
      this.#lifetimesSeen = true;
      this.#expiries.set({ table, key, version: lifetime.version, expiresAtMs: lifetime.expiresAt });
    },
  });
  /** Writes accepted but not yet durable, newest per key: sequences writes, never read by `get`. */
  readonly #pending = new Map<string, Map<string, PendingKey>>();
  /**
   * Durable explicit promises, by table and key, only while outstanding: an accept or an applied replica
   * at or above one clears it, and so does a purge. Pending promises live in `#pending`.
   */
  readonly #promises = new Map<string, Map<string, Ballot>>();
  readonly #listeners = new Set<(event: ChangeEvent) => void>();
  readonly #recordBytesMax: number;
  readonly #failpoints: Failpoints;
  /** Opened with `readOnly`: `#options.fs` is a {@linkcode ReadOnlyFs}, and `#wal` stays undefined. */
  readonly #readOnly: boolean;
  /** The data dir's lock, held until close; undefined for a read-only store of a dir without one. */
  #lock: FsLock | undefined;
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
    this.#readOnly = options.readOnly === true;
    if (this.#readOnly) assert(options.repair !== true, "a read-only store repairs nothing");
    // Read-only means read-only: every call that would write fails an assertion instead of writing.
    this.#options = this.#readOnly ? { ...options, fs: new ReadOnlyFs(options.fs) } : options;
    this.#failpoints = options.failpoints ?? inertFailpoints;
    this.#recordBytesMax = options.limits.requestBytesMax + 3 * options.limits.nameBytesMax +
      recordOverheadBytes;
    assert(
      this.#recordBytesMax + walBatchBytesMax < framePlaintextBytesMax,
      "requestBytesMax is too large for one WAL frame",
    );
    this.#autoCheckpointAtBytes = options.limits.walCheckpointBytes;
  }

  /**
   * Opens the store in `options.dir` (created when missing): loads `storage.db` (or, when it is missing,
   * the newest readable snapshot), replays the WAL (cutting off a torn tail with a warning) and starts the
   * snapshot timer. With `repair`, a damaged file is first kept as `<name>.broken.<ms>`, then the WAL is
   * cut at its last good frame or a damaged `storage.db` is moved aside, and the store opens on what is
   * left, logging what was lost. With `readOnly` it only reads (see `StoreOptions.readOnly`).
   *
   * @throws {DataDirLockedError} when another process holds the data dir's lock (`lockFileName`).
   * @throws {WrongKeyError} when a file was written under another key; nothing is modified.
   * @throws {WalCorruptError} when a file is damaged other than at the WAL's tail (and `repair` is off).
   */
  static async open(options: StoreOptions): Promise<Store> {
    const store = new Store(options);
    await store.#lockDataDir();
    try {
      const repaired = await store.#recover();
      if (repaired) await store.#checkpointRepaired();
    } catch (error) {
      store.#lock?.release();
      throw error;
    }
    store.#scheduleSnapshot();
    return store;
  }

  /**
   * Takes the data dir's lock without waiting: exclusively (creating the dir and the lock file when
   * missing), or shared when read-only. A read-only store of a dir without a lock file takes none: no
   * store ever opened that dir for writing, so none has it open now.
   *
   * @throws {DataDirLockedError} when another process holds it in a conflicting mode.
   */
  async #lockDataDir(): Promise<void> {
    const { fs } = this.#options;
    const lockPath = `${this.#dir}/${lockFileName}`;
    assert(this.#lock === undefined, "the lock is taken once");
    if (this.#readOnly) {
      if (await fs.stat(lockPath) === undefined) return;
      this.#lock = await fs.tryLock(lockPath, { exclusive: false });
    } else {
      await fs.mkdir(this.#dir, { permissions: privateDirPermissions });
      const create = { permissions: privateFilePermissions };
      this.#lock = await fs.tryLock(lockPath, { exclusive: true, create });
    }
    if (this.#lock === undefined) {
      throw new DataDirLockedError({ dir: this.#dir, lockPath, readOnly: this.#readOnly });
    }
  }

  /** Makes the repaired state storage.db at once; the .broken copies stay for a human to inspect. */
  async #checkpointRepaired(): Promise<void> {
    const { logger } = this.#options;
    try {
      await this.checkpoint();
      logger.warn("repair done: the recovered state is checkpointed into storage.db", {
        sequence: this.#sequenceDurable,
      });
    } catch (error) {
      // Nothing is lost: the snapshot and the WAL it was recovered from are still there.
      logger.error("repair done, but its checkpoint failed; the next start recovers the same state", {
        sequence: this.#sequenceDurable,
        error: String(error),
      });
    }
  }

  /**
   * Recovers the state from the files (see `recovery.ts`), repairing them when allowed; opens the WAL for
   * appends unless read-only. Returns whether it repaired any file.
   */
  async #recover(): Promise<boolean> {
    const { logger } = this.#options;
    const recovered = await recoverDataDir(this.#options, {
      index: this.#index,
      setDurablePromise: (table, key, ballot) => {
        this.#setDurablePromise(table, key, ballot);
      },
      promiseTableCount: () => this.#promises.size,
      lifetimeCount: () => this.#expiries.size,
      clear: () => {
        this.#index.clear();
        this.#promises.clear();
        this.#expiries.clear();
      },
    });
    assert(this.#wal === undefined, "the WAL is opened for appends once");
    assert(Number.isSafeInteger(recovered.sequence));
    this.#lastSnapshotMs = recovered.lastSnapshotMs;
    this.#sequenceDurable = recovered.sequence;
    if (recovered.wal !== undefined) {
      const { file, sizeBytes } = recovered.wal;
      try {
        this.#wal = this.#createWal(file, sizeBytes);
      } catch (error) {
        file.close();
        throw error;
      }
    }
    // Recovery overwrote keys of earlier frames: move what is left of mostly dead pages.
    this.#index.compact();
    this.#dropSupersededPromises();
    assert(this.#readOnly === (this.#wal === undefined), "only a writable store opens the WAL for appends");
    this.#sequenceAccepted = this.#sequenceDurable;
    logger.info("store opened", {
      dir: this.#dir,
      sequence: this.#sequenceDurable,
      tables: this.#index.tableCount,
    });
    return recovered.repairCount > 0;
  }

  get #dir(): string {
    return this.#options.dir;
  }

  get #walPath(): string {
    return `${this.#dir}/${walFileName}`;
  }

  get #storagePath(): string {
    return `${this.#dir}/${storageFileName}`;
  }

  get #snapshotDir(): string {
    return `${this.#dir}/${snapshotDirName}`;
  }

  #createWal(file: FsFile, sizeBytes: number): Wal<PendingWrite> {
    return new Wal<PendingWrite>({
      file,
      path: this.#walPath,
      header: encodeFileHeader("wal", this.#options.encryption.keyId),
      encryption: this.#options.encryption,
      sizeBytes,
      batchRecordsMax: this.#options.limits.walBatchRecordsMax,
      failpoints: this.#failpoints,
      clock: this.#options.clock,
      onDurable: (writes) => this.#applyDurable(writes),
      onFailed: (error, fatal) => this.#dropPending(error, fatal),
      onFlushed: () => this.#maybeCheckpoint(),
    });
  }

  /**
   * Records the key's durable explicit promise (the zero ballot clears it); returns whether one was
   * outstanding before.
   */
  #setDurablePromise(table: string, key: string, ballot: Ballot): boolean {
    if (this.#promises.size === 0 && isZeroBallot(ballot)) return false;
    let byKey = this.#promises.get(table);
    const outstanding = byKey?.has(key) ?? false;
    if (isZeroBallot(ballot)) {
      byKey?.delete(key);
      if (byKey?.size === 0) this.#promises.delete(table);
      return outstanding;
    }
    assert(Number.isSafeInteger(ballot.counter), "a promise's counter is a safe integer");
    if (byKey === undefined) this.#promises.set(table, byKey = new Map());
    byKey.set(key, ballot);
    assert(byKey.get(key) === ballot);
    return outstanding;
  }

  /** The key's explicit promise, a pending one included; the zero ballot when none is outstanding. */
  #promisedOf(table: string, key: string): Ballot {
    const pending = this.#pending.get(table)?.get(key);
    if (pending !== undefined) return pending.write.promised;
    if (this.#promises.size === 0) return zeroBallot;
    return this.#promises.get(table)?.get(key) ?? zeroBallot;
  }

  /**
   * Drops recovered promises at or below their key's accepted ballot. Replay never leaves one unless
   * writes were lost between a snapshot and the WAL (a gap, logged): then a promise logged after the gap
   * may meet a state from before it. Such a promise binds nothing the accepted ballot does not (an
   * acceptor's effective promise is at least the successor of its accepted ballot), and every promise
   * kept is above its key's accepted ballot, as when it was made.
   */
  #dropSupersededPromises(): void {
    let droppedCount = 0;
    const promises = this.#promiseList();
    for (const { table, key, ballot } of promises) {
      const accepted = this.#index.headOf(table, key)?.ballot ?? zeroBallot;
      if (compareBallots(ballot, accepted) > 0) continue;
      assert(this.#setDurablePromise(table, key, zeroBallot));
      droppedCount += 1;
    }
    assert(this.#promiseList().length === promises.length - droppedCount);
    if (droppedCount > 0) {
      this.#options.logger.warn("dropped promises at or below their key's accepted ballot", { droppedCount });
    }
  }

  /** Every durable outstanding promise, for a state file. */
  #promiseList(): KeyPromise[] {
    const promises: KeyPromise[] = [];
    for (const [table, byKey] of this.#promises) {
      for (const [key, ballot] of byKey) promises.push({ table, key, ballot });
    }
    return promises;
  }

  /** Makes one durable write visible and takes it out of the overlay when it is still the key's newest. */
  #applyDurableWrite(write: PendingWrite): void {
    const { table, key } = write;
    if (write.kind === "purge" || write.kind === "promise") {
      assert(
        write.sequence === this.#sequenceDurable,
        "a purge or promise carries the last change's sequence",
      );
      if (write.kind === "purge") {
        assert(write.entry === undefined);
        const removed = this.#index.remove(table, key);
        const hadPromise = this.#setDurablePromise(table, key, zeroBallot);
        assert(removed || hadPromise, "a purge is queued only for a key with a state or a promise");
      } else {
        const accepted = this.#index.headOf(table, key)?.ballot ?? zeroBallot;
        assert(compareBallots(write.promised, accepted) > 0, "a promise is above the accepted ballot");
        this.#setDurablePromise(table, key, write.promised);
      }
    } else {
      this.#applyDurableChange(write);
    }
    const pendingTable = this.#pending.get(write.table);
    if (pendingTable?.get(write.key)?.write === write) {
      pendingTable.delete(write.key);
      if (pendingTable.size === 0) this.#pending.delete(write.table);
    }
  }

  /** Makes a durable change (a local write, an accept or a replica) the key's state. */
  #applyDurableChange(write: PendingWrite): void {
    const { table, key, encoded, entry } = write;
    assert(entry !== undefined);
    assert(write.sequence === this.#sequenceDurable + 1, "batches must become durable in sequence order");
    this.#sequenceDurable = write.sequence;
    if (write.kind !== "local") {
      // Decided against the state before it in the same order, so it still holds against the index.
      const previous = this.#index.headOf(table, key);
      const order = compareBallots(entry.ballot, previous?.ballot ?? zeroBallot);
      if (write.kind === "accepted") assert(order > 0, "an accept raises the key's ballot");
      assert(order >= 0, "a replica never lowers the key's ballot");
      if (order === 0 && previous !== undefined) {
        const current = this.#index.get(table, key);
        assert(current !== undefined);
        assert(compareReplicaEntries(replicaOfEntry(entry), replicaOfEntry(current)) > 0);
      }
    }
    const replacedVersion = this.#index.applyRecord({ table, key, encoded, deleted: entry.deleted });
    if (write.kind === "local") assert(entry.version === replacedVersion + 1);
    if (!entry.deleted && entry.expiresAt !== 0) {
      this.#lifetimesSeen = true;
      this.#expiries.set({ table, key, version: entry.version, expiresAtMs: entry.expiresAt });
    }
    if (write.kind !== "local") {
      assert(isZeroBallot(write.promised), "a state at a ballot clears the promise");
    }
    this.#setDurablePromise(table, key, write.promised);
  }

  /** A batch is durable: make it visible, then tell listeners, in commit order. */
  #applyDurable(writes: readonly PendingWrite[]): void {
    for (const write of writes) this.#applyDurableWrite(write);
    this.#index.compact();
    assert(this.#sequenceDurable <= this.#sequenceAccepted);
    const listeners = [...this.#listeners];
    for (const write of writes) {
      // A purge or a promise is not a change.
      if (write.kind === "purge" || write.kind === "promise") continue;
      assert(write.entry !== undefined);
      const event: ChangeEvent = {
        kind: write.entry.deleted ? "Deleted" : "Updated",
        table: write.table,
        key: write.key,
        version: write.entry.version,
        sequence: write.sequence,
        json: write.entry.json,
        source: write.kind,
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

  /**
   * The state later writes are checked against: the newest pending write's (undefined for a pending purge,
   * unchanged for a pending promise), else the visible entry.
   */
  #current(table: string, key: string): StoredEntry | undefined {
    const pending = this.#pending.get(table)?.get(key);
    if (pending !== undefined) return pending.write.entry;
    return this.#index.get(table, key);
  }

  /** What `#current` gives, without decoding a durable record's value (writes check only this). */
  #currentHead(table: string, key: string): EntryHead | undefined {
    const pending = this.#pending.get(table)?.get(key);
    if (pending !== undefined) return pending.write.entry;
    return this.#index.headOf(table, key);
  }

  /** True when `head` is a live state whose lifetime ended by the store's clock. */
  #expired(head: EntryHead): boolean {
    return head.expiresAt !== 0 && !head.deleted && head.expiresAt <= this.#options.clock.nowMs();
  }

  /**
   * The lifetime a write's options ask for, in seconds; 0 for none.
   *
   * @throws {InvalidRequestError} when `ttlSecs` is not an integer from 1 to `ttlSecsMax`.
   */
  #ttlSecsOf(options: WriteOptions): number {
    const { ttlSecs } = options;
    if (ttlSecs === undefined) return 0;
    const ttlSecsMax = this.#options.limits.ttlSecsMax;
    if (!Number.isSafeInteger(ttlSecs) || ttlSecs < 1 || ttlSecs > ttlSecsMax) {
      throw new InvalidRequestError(
        `ttl_secs is ${ttlSecs}; it must be an integer from 1 to ${ttlSecsMax} (ttlSecsMax)`,
      );
    }
    return ttlSecs;
  }

  #checkWritable(operation: string): void {
    if (this.#readOnly) throw new StoreReadOnlyError(operation);
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

  /**
   * Checks names, owner and version conditions. Returns the key's state they were checked against: `live`,
   * the live entry's head (undefined when missing or deleted), and `previousVersion`, the version a tombstone
   * keeps too, which the write continues from.
   */
  #checkWrite(
    target: { table: string; key: string; operation: string },
    options: WriteOptions,
  ): { live: EntryHead | undefined; previousVersion: number } {
    this.#checkWritable(target.operation);
    this.#checkName("table", target.table);
    this.#checkName("key", target.key);
    if (options.owner.length === 0 || !options.owner.isWellFormed()) {
      throw new InvalidRequestError("The owner name is empty or not valid Unicode");
    }
    const current = this.#currentHead(target.table, target.key);
    // A state whose lifetime ended is missing to writers as to readers: a tombstone, until its expiry.
    const live = current === undefined || current.deleted || this.#expired(current) ? undefined : current;
    if (live === undefined && target.operation !== "put") throw new KeyNotFoundError(target);
    if (live !== undefined && live.owner !== options.owner) throw new ForbiddenError(target);
    const checked = { live, previousVersion: current?.version ?? 0 };
    const ifVersion = options.ifVersion;
    if (ifVersion === undefined) return checked;
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
    return checked;
  }

  /**
   * Sequences an accepted write, queues it on the WAL and resolves once it is durable and visible.
   * `previousVersion` is the key's version that `#checkWrite` found, in the same synchronous step.
   */
  #commit(
    target: { table: string; key: string; owner: string; previousVersion: number },
    intent: WriteIntent,
  ): Promise<StoredEntry> {
    const { table, key, owner } = target;
    const version = target.previousVersion + 1;
    const timestamp = this.#options.clock.nowMs();
    assert(Number.isSafeInteger(version));
    assert(Number.isSafeInteger(timestamp));
    const common = { sequence: 0, version, timestamp, table, key, owner };
    const record: PutRecord | DeleteRecord = intent.op === "put"
      ? {
        op: "put",
        ...common,
        valueJson: intent.valueJson,
        expiresAt: intent.ttlSecs === 0 ? 0 : timestamp + intent.ttlSecs * 1000,
      }
      : { op: "delete", ...common, expiresAt: intent.expiresAt };
    const encoded = encodeRecord(record);
    if (encoded.length > this.#recordBytesMax) {
      throw new PayloadTooLargeError(
        `Cannot write key "${key}" of table "${table}": its record is ${encoded.length} bytes, limit is ` +
          `${this.#recordBytesMax} (requestBytesMax + 3 * nameBytesMax + ${recordOverheadBytes})`,
      );
    }
    // Built from the record's fields, not decoded back from its bytes (ten times the work).
    const entry = entryOf(record);
    // A plain local write is at the zero ballot and leaves the key's promise as it is.
    const promised = this.#promisedOf(table, key);
    return this.#enqueue({ encoded, table, key, kind: "local", entry, promised }).then(() => entry);
  }

  /**
   * Gives an encoded write its sequence (the next one for a change, the current one for a purge or a
   * promise), makes it the key's newest pending state and queues it on the WAL; resolves once it is
   * durable and visible.
   */
  #enqueue(prepared: Omit<PendingWrite, "sequence">, lazy = false): Promise<void> {
    const change = prepared.kind !== "purge" && prepared.kind !== "promise";
    if (prepared.kind === "purge") assert(prepared.entry === undefined);
    if (change) assert(prepared.entry !== undefined);
    const sequence = change ? this.#sequenceAccepted + 1 : this.#sequenceAccepted;
    assert(Number.isSafeInteger(sequence));
    assert(sequence >= (change ? 1 : 0));
    setRecordSequence(prepared.encoded, sequence);
    this.#sequenceAccepted = sequence;
    const write: PendingWrite = { ...prepared, sequence };
    if (write.entry !== undefined && write.entry.expiresAt !== 0) this.#lifetimesSeen = true;
    assert(this.#wal !== undefined);
    const durable = this.#wal.append(write, lazy ? lazyAppend : undefined);
    let pendingTable = this.#pending.get(write.table);
    if (pendingTable === undefined) this.#pending.set(write.table, pendingTable = new Map());
    pendingTable.set(write.key, { write, durable });
    return durable;
  }

  /** The live entry of a key, or undefined when it is missing or deleted. Only durable writes are seen. */
  get(table: string, key: string): StoredEntry | undefined {
    return this.#index.getLive(table, key);
  }

  /** True when the key has a durable entry (a tombstone included); cheaper than decoding it. */
  holds(table: string, key: string): boolean {
    return this.#index.versionOf(table, key) !== undefined;
  }

  /** The entry of a key including a tombstone. Only durable writes are seen. */
  getEntry(table: string, key: string): StoredEntry | undefined {
    return this.#index.get(table, key);
  }

  /**
   * Writes `value` (any JSON) and resolves once it is durable. A new or deleted key may be created by
   * anyone; a live key only by its owner.
   *
   * @throws {ForbiddenError} @throws {VersionConflictError} @throws {PayloadTooLargeError}
   * @throws {StoreClosedError} @throws {StorageFailedError} @throws {StorageFullError}
   */
  // deno-lint-ignore require-await
  async put(table: string, key: string, value: unknown, options: WriteOptions): Promise<StoredEntry> {
    const ttlSecs = this.#ttlSecsOf(options);
    const { live, previousVersion } = this.#checkWrite({ table, key, operation: "put" }, options);
    const valueJson = JSON.stringify(value);
    if (typeof valueJson !== "string") throw new InvalidRequestError("The value is not JSON");
    const owner = live?.owner ?? options.owner;
    return this.#commit({ table, key, owner, previousVersion }, { op: "put", valueJson, ttlSecs });
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
  ): Promise<StoredEntry> {
    const ttlSecs = this.#ttlSecsOf(options);
    const { live, previousVersion } = this.#checkWrite({ table, key, operation: "patch" }, options);
    assert(live !== undefined);
    if (!isJsonObject(patch)) throw new InvalidRequestError("A patch must be a JSON object");
    const liveEntry = this.#current(table, key);
    assert(liveEntry !== undefined && !liveEntry.deleted);
    const current: unknown = JSON.parse(valueJsonOf(liveEntry));
    if (!isJsonObject(current)) throw new NotAnObjectError({ table, key });
    const valueJson = JSON.stringify(mergePatch(current, patch));
    return this.#commit(
      { table, key, owner: live.owner, previousVersion },
      { op: "put", valueJson, ttlSecs },
    );
  }

  /**
   * Deletes a live key, leaving a tombstone that keeps its version; resolves with the tombstone.
   *
   * @throws {KeyNotFoundError} @throws {ForbiddenError} @throws {VersionConflictError}
   * @throws {StoreClosedError} @throws {StorageFailedError} @throws {StorageFullError}
   */
  // deno-lint-ignore require-await
  async delete(table: string, key: string, options: WriteOptions): Promise<StoredEntry> {
    const { live, previousVersion } = this.#checkWrite({ table, key, operation: "delete" }, options);
    assert(live !== undefined);
    return this.#commit(
      { table, key, owner: live.owner, previousVersion },
      { op: "delete", expiresAt: 0 },
    );
  }

  /**
   * Expires the key when its newest state (pending writes included) is live, of `version`, and its
   * lifetime ended by the store's clock: a tombstone of the next version that keeps the lifetime (its
   * `Entry.json` ends with `,"reason":"expired"}`), queued in the caller's turn and resolved once durable.
   * Otherwise nothing is written and it resolves `undefined` (already expired, overwritten, extended, or
   * not yet due): the conditional write that makes an expiry happen once (src/cluster/DESIGN.md, "Expiry
   * (TTL)"). No owner check: the node itself expires keys.
   *
   * @throws {StoreClosedError} @throws {StorageFailedError} @throws {StorageFullError}
   */
  expire(table: string, key: string, options: { version: number }): Promise<StoredEntry | undefined> {
    this.#checkWritable("expire");
    assert(Number.isSafeInteger(options.version) && options.version >= 1, "an expiry names a version");
    const current = this.#currentHead(table, key);
    if (current === undefined || current.version !== options.version || !this.#expired(current)) {
      return Promise.resolve(undefined);
    }
    const target = { table, key, owner: current.owner, previousVersion: current.version };
    const expired = this.#commit(target, { op: "delete", expiresAt: current.expiresAt });
    assert(this.#currentHead(table, key)?.deleted === true, "the tombstone is queued in this turn");
    return expired;
  }

  /**
   * The keys whose lifetime ended by `nowMs`, earliest first, at most `countMax`, taken from the expiry
   * queue: each still holds that state durably (live, that version, that lifetime). Entries whose key moved
   * on (overwritten, deleted, expired, purged) are dropped on the way, at most `8 × countMax` per call, so a
   * call is bounded however many are stale. A taken key leaves the queue until it gets a new lifetime or
   * {@linkcode Store.deferExpiry} puts it back.
   */
  takeExpired(nowMs: number, countMax: number): ExpiringKey[] {
    assert(Number.isSafeInteger(countMax) && countMax >= 0);
    const taken: ExpiringKey[] = [];
    let budget = countMax * 8;
    // Bounded by the budget: each round takes at least one entry off it.
    while (taken.length < countMax && budget > 0) {
      const due = this.#expiries.takeDue(nowMs, Math.min(countMax - taken.length, budget));
      if (due.length === 0) break;
      budget -= due.length;
      for (const item of due) {
        const held = this.#index.lifetimeOf(item.table, item.key);
        if (held?.version === item.version && held.expiresAt === item.expiresAtMs) taken.push(item);
      }
    }
    assert(taken.length <= countMax);
    return taken;
  }

  /**
   * Puts a key taken by {@linkcode Store.takeExpired} back in the expiry queue, due at `dueAtMs`, unless it
   * got a newer lifetime meanwhile. Returns whether it was put back.
   */
  deferExpiry(item: ExpiringKey, dueAtMs: number): boolean {
    return this.#expiries.requeue(item, dueAtMs);
  }

  /** When the earliest key of the expiry queue is due (ms since the epoch), or undefined when none is. */
  nextExpiryMs(): number | undefined {
    return this.#expiries.nextDueMs;
  }

  /**
   * The version of the key's newest state (pending writes included) when it is live and its lifetime ended
   * by `nowMs`, else undefined: cheap enough for every write (the op byte tells a record without one).
   */
  expiredVersionOf(table: string, key: string, nowMs: number): number | undefined {
    if (!this.#lifetimesSeen) return undefined;
    const pending = this.#pending.get(table)?.get(key);
    if (pending !== undefined) {
      const entry = pending.write.entry;
      if (entry === undefined || entry.deleted || entry.expiresAt === 0) return undefined;
      return entry.expiresAt <= nowMs ? entry.version : undefined;
    }
    const lifetime = this.#index.lifetimeOf(table, key);
    return lifetime !== undefined && lifetime.expiresAt <= nowMs ? lifetime.version : undefined;
  }

  /**
   * Applies a replica's state durably when it wins against the key's acceptor state by
   * {@linkcode decideReplica} (a Paxos accept arriving late: ballots decide; the conflict rule of
   * {@linkcode compareReplicaEntries} orders only two states at one ballot, i.e. legacy zero-ballot ones).
   * It first waits for pending writes of the key, then decides, so a local write in flight is neither lost
   * nor regressed. An applied state is published with source "replica" (same kind, version and json as
   * a local write, next sequence), after its sync; it clears the key's promise.
   *
   * @returns "stale" when the current state or promise wins, "identical" when it is the same state at the
   *   same ballot; nothing is written then.
   * @throws {InvalidRequestError} when the entry breaks a rule of {@linkcode ReplicaEntry} or a limit.
   * @throws {StoreClosedError} @throws {StorageFailedError} @throws {StorageFullError}
   */
  async applyReplica(table: string, key: string, entry: ReplicaEntry): Promise<ReplicaResult> {
    const [result] = await this.applyReplicas([{ table, key, entry }]);
    assert(result !== undefined);
    return result;
  }

  /**
   * {@linkcode Store.applyReplica} for many keys at once: every item is checked first (one bad item
   * refuses the list), then the winners are queued together, so they share one WAL batch and one sync
   * when they fit one (`walBatchRecordsMax` records, 16 MiB). A key listed twice is compared against
   * its earlier item. Resolves once every applied item is durable.
   *
   * `strict` is legacy (the last-writer-wins coordinator's write) and counts only between two states at
   * the zero ballot: such an item is also "stale" when it does not move the key's version forward, even
   * if it would win by the conflict rule. That is decided against the state after pending writes settle,
   * so a version still pending here counts.
   *
   * @returns "applied", "identical" or "stale" per item, in order.
   * @throws the errors of {@linkcode Store.applyReplica}.
   */
  async applyReplicas(
    items: ReadonlyArray<{ table: string; key: string; entry: ReplicaEntry; strict?: boolean }>,
  ): Promise<Array<ReplicaResult>> {
    const operation = "apply replicas";
    this.#checkWritable(operation);
    const prepared = items.map((item) => this.#prepareReplica(item));
    const { results, durable } = await this.#afterSettled(
      { targets: prepared, operation },
      () => this.#enqueueReplicas(prepared),
    );
    await Promise.all(durable);
    assert(results.length === items.length);
    return results;
  }

  /** Checks a replica's names and state. @throws {InvalidRequestError} naming the rule broken. */
  #checkReplica(table: string, key: string, entry: ReplicaEntry): void {
    this.#checkName("table", table);
    this.#checkName("key", key);
    checkReplicaEntry(entry, { valueCodeUnitsMax: this.#recordBytesMax });
  }

  /**
   * Checks a replica's state and encodes its record.
   *
   * @throws {InvalidRequestError} when the names, the entry or the record's size break a rule.
   */
  #prepareReplica(
    item: { table: string; key: string; entry: ReplicaEntry; strict?: boolean },
  ): PreparedReplica {
    const { table, key } = item;
    this.#checkReplica(table, key, item.entry);
    const record = recordOfReplica(item);
    const encoded = encodeRecord(record);
    if (encoded.length > this.#recordBytesMax) {
      throw new InvalidRequestError(
        `Cannot apply a replica of key "${key}" of table "${table}": ` +
          `its record is ${encoded.length} bytes, limit is ${this.#recordBytesMax} ` +
          `(requestBytesMax + 3 * nameBytesMax + ${recordOverheadBytes})`,
      );
    }
    // The view as decoding the record would give it (a test holds them equal), without decoding it.
    const entry = entryOfReplica(key, item.entry);
    assert(
      versionAt({ bytes: encoded, start: 0, end: encoded.length }) === entry.version,
      "the record's version",
    );
    assert(compareBallots(entry.ballot, item.entry.ballot ?? zeroBallot) === 0, "the entry's ballot");
    return { table, key, encoded, entry, strict: item.strict === true };
  }

  /** Decides every prepared replica against the current state, in order, and queues the winners. */
  #enqueueReplicas(
    prepared: readonly PreparedReplica[],
  ): { results: Array<ReplicaResult>; durable: Promise<void>[] } {
    const results: Array<ReplicaResult> = [];
    const durable: Promise<void>[] = [];
    for (const { table, key, encoded, entry, strict } of prepared) {
      const current = this.#current(table, key);
      const result = decideReplica({ entry, current, promised: this.#promisedOf(table, key), strict });
      results.push(result);
      if (result !== "applied") continue;
      // Applied at or above the promise, which it supersedes.
      durable.push(this.#enqueue({ encoded, table, key, kind: "replica", entry, promised: zeroBallot }));
    }
    assert(results.length === prepared.length);
    assert(durable.length <= results.length);
    return { results, durable };
  }

  /**
   * The ballots of the key's acceptor state ({@linkcode Store.acceptorOf} without decoding the value): what
   * routing, the one-round path and the accept rule look at, on every write.
   */
  ballotsOf(table: string, key: string): AcceptorBallots {
    const promised = this.#promisedOf(table, key);
    const accepted = this.#currentHead(table, key)?.ballot ?? zeroBallot;
    if (!isZeroBallot(promised)) {
      assert(compareBallots(promised, accepted) > 0, "an outstanding promise is above the accepted ballot");
    }
    return { promised, accepted };
  }

  /**
   * The key's version, timestamp, owner, kind and ballot, seeing a write queued in this same turn, without
   * decoding its value: what a change that does not read the value (a put, a delete) is judged against.
   */
  headOf(table: string, key: string): EntryHead | undefined {
    return this.#currentHead(table, key);
  }

  /**
   * The key's Paxos acceptor state, seeing pending writes and promises: what a `promise` or `accept`
   * queued in this same turn is included.
   */
  acceptorOf(table: string, key: string): AcceptorState {
    const current = this.#current(table, key);
    const promised = this.#promisedOf(table, key);
    const accepted = current?.ballot ?? zeroBallot;
    if (!isZeroBallot(promised)) {
      assert(compareBallots(promised, accepted) > 0, "an outstanding promise is above the accepted ballot");
    }
    return { promised, accepted, entry: current === undefined ? undefined : replicaOfEntry(current) };
  }

  /**
   * Promises `ballot` for the key (Paxos phase 1): queued in this turn, so a later `acceptorOf` sees it,
   * and resolved once durable. The caller checked, in this same turn, that `ballot` is above the key's
   * promise and accepted ballot. Not a change: no sequence, no change event. A key need not hold a state.
   *
   * Every check throws synchronously, before anything is queued, so a caller that goes on to read
   * `acceptorOf` in the same turn never sees a promise that was refused; the promise returned rejects
   * only when the batch fails.
   *
   * @throws {AssertionError} when `ballot` is not above both (a bug of the caller).
   * @throws {InvalidRequestError} when the names or the ballot break a rule.
   * @throws {StoreClosedError} @throws {StorageFailedError} when the store is closed or failed before.
   * @returns a promise that rejects with {@linkcode StorageFailedError} or {@linkcode StorageFullError}
   *   when its batch fails.
   */
  promise(table: string, key: string, ballot: Ballot): Promise<void> {
    this.#checkWritable("promise");
    this.#checkName("table", table);
    this.#checkName("key", key);
    checkBallot(ballot, "A promise's ballot");
    const current = this.#current(table, key);
    const promised = this.#promisedOf(table, key);
    assert(compareBallots(ballot, promised) > 0, "a promise is above the key's promise");
    assert(
      compareBallots(ballot, current?.ballot ?? zeroBallot) > 0,
      "a promise is above the accepted ballot",
    );
    const own: Ballot = Object.freeze({ counter: ballot.counter, node: ballot.node });
    const timestamp = this.#options.clock.nowMs();
    const encoded = encodeRecord({ op: "promise", sequence: 0, timestamp, table, key, ballot: own });
    return this.#enqueue({ encoded, table, key, kind: "promise", entry: current, promised: own });
  }

  /**
   * Accepts `entry` as the key's state at `ballot` (Paxos phase 2): checked like a replica, queued in this
   * turn (a later `acceptorOf` sees it), given the next change sequence, and resolved with its `Entry`
   * once durable. It clears the key's promise and is published with source "accepted". `entry.ballot` is
   * ignored: the state is accepted at `ballot`. The caller checked, in this same turn, that `ballot` is at
   * least the key's promise and above its accepted ballot. `lazy`: its WAL record does not start a batch of
   * its own (a proposer's own accept, when the other replicas can make the quorum; see `Wal.append`): it is
   * as durable once resolved, and, like any write, seen by readers only then.
   *
   * Every check throws synchronously, before anything is queued, as for {@linkcode Store.promise}.
   *
   * @throws {AssertionError} when `ballot` breaks that rule (a bug of the caller).
   * @throws {InvalidRequestError} when the names, the ballot or the entry break a rule or a limit.
   * @throws {StoreClosedError} @throws {StorageFailedError} when the store is closed or failed before.
   * @returns a promise of the accepted `Entry` that rejects with {@linkcode StorageFailedError} or
   *   {@linkcode StorageFullError} when its batch fails.
   */
  accept(
    table: string,
    key: string,
    ballot: Ballot,
    entry: ReplicaEntry,
    options?: { lazy?: boolean },
  ): Promise<StoredEntry> {
    this.#checkWritable("accept");
    checkBallot(ballot, "An accept's ballot");
    const own: Ballot = Object.freeze({ counter: ballot.counter, node: ballot.node });
    const prepared = this.#prepareReplica({ table, key, entry: { ...entry, ballot: own } });
    const promised = this.#promisedOf(table, key);
    const accepted = this.#currentHead(table, key)?.ballot ?? zeroBallot;
    assert(compareBallots(own, promised) >= 0, "an accept is at or above the key's promise");
    assert(compareBallots(own, accepted) > 0, "an accept is above the key's accepted ballot");
    const { encoded, entry: accepting } = prepared;
    const durable = this.#enqueue({
      encoded,
      table,
      key,
      kind: "accepted",
      entry: accepting,
      promised: zeroBallot,
    }, options?.lazy === true);
    return durable.then(() => accepting);
  }

  /**
   * The `Entry` (reader's view) `entry` would be as the key's state, without writing anything.
   *
   * @throws {InvalidRequestError} when the names or the entry break a rule (the value over its length limit
   * included).
   */
  viewOf(table: string, key: string, entry: ReplicaEntry): StoredEntry {
    // Checked as a replica is, without encoding its record: a view is never written, so the record's size
    // limit is not this view's (the state was chosen by replicas that stored it).
    this.#checkReplica(table, key, entry);
    const view = entryOfReplica(key, entry);
    assert(view.version === entry.version && view.deleted === entry.deleted, "the view is of this state");
    return view;
  }

  /**
   * Runs `decide` once no key of `targets` has a pending write (or after `settleTurnsMax` turns), with
   * the store still writable. Without pending writes it runs synchronously, in the caller's turn, so the
   * writes it queues join the current batch.
   */
  async #afterSettled<T>(
    options: { targets: ReadonlyArray<{ table: string; key: string }>; operation: string },
    decide: () => T,
  ): Promise<T> {
    for (let turn = 0; turn < settleTurnsMax; turn += 1) {
      const settling: Promise<unknown>[] = [];
      for (const { table, key } of options.targets) {
        const pending = this.#pending.get(table)?.get(key);
        if (pending !== undefined) settling.push(pending.durable.catch(() => {}));
      }
      if (settling.length === 0) break;
      await Promise.all(settling);
      this.#checkWritable(options.operation);
    }
    return decide();
  }

  /**
   * The key's durable state (a tombstone included) in replica form, or undefined when this node does
   * not hold it. The value's JSON is sliced out of `Entry.json`, never parsed.
   */
  replicaOf(table: string, key: string): ReplicaEntry | undefined {
    const entry = this.getEntry(table, key);
    return entry === undefined ? undefined : replicaOfEntry(entry);
  }

  /**
   * Every durable key of every table (reserved ones too), tombstones included, in no particular order.
   * Lazy: it walks a copy of the index's record addresses (8 bytes a key), decoding each entry as it
   * yields it. Changes made while it runs may or may not be seen; a key is never seen in a state it did
   * not hold.
   */
  scan(): Iterable<{ table: string; key: string; entry: StoredEntry }> {
    return this.#index.scan();
  }

  /** Every key {@linkcode scan} yields with its state and content hash, without decoding values. */
  scanStates(): Iterable<{ table: string; key: string; state: KeyState }> {
    return this.#index.scanStates();
  }

  /** Every key {@linkcode scan} yields, without decoding entries (placement passes need only keys). */
  scanKeys(): Iterable<{ table: string; key: string }> {
    return this.#index.scanKeys();
  }

  /**
   * Drops a key from this node without leaving a tombstone, durably (a `purge` WAL record), once its
   * pending writes are settled: for a key that no longer belongs to this node. Its explicit promise goes
   * with it: this node is no longer its acceptor. No change event is published and no sequence is taken.
   * A key this node holds neither a state nor a promise of is left alone.
   *
   * @throws {StoreClosedError} @throws {StorageFailedError} @throws {StorageFullError}
   */
  async purge(table: string, key: string): Promise<void> {
    assert(table.length > 0);
    assert(key.length > 0);
    const operation = "purge";
    this.#checkWritable(operation);
    const durable = await this.#afterSettled({ targets: [{ table, key }], operation }, () => {
      if (this.#current(table, key) === undefined && isZeroBallot(this.#promisedOf(table, key))) return [];
      const timestamp = this.#options.clock.nowMs();
      const encoded = encodeRecord({ op: "purge", sequence: 0, timestamp, table, key });
      return [this.#enqueue({ encoded, table, key, kind: "purge", entry: undefined, promised: zeroBallot })];
    });
    await Promise.all(durable);
  }

  /** True when the table holds a key, live or a tombstone (a table whose keys were all purged does not). */
  hasTable(table: string): boolean {
    return this.#index.hasTable(table);
  }

  /**
   * Live entries of a table in ascending code-unit order of their keys, after `after` (exclusive), at most
   * `limit`, read lazily from the current state. With `liveAtMs`, a state whose lifetime ended by then is
   * left out too (and not counted in `limit`).
   */
  entries(
    table: string,
    options: { after?: string; limit: number; liveAtMs?: number },
  ): Iterable<[string, StoredEntry]> {
    return this.#index.entries(table, options);
  }

  /** Live keys per table, for every table ever written. */
  tableCounts(): Map<string, number> {
    return this.#index.tableCounts();
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
        await writeStateFile({
          fs: this.#options.fs,
          path,
          encryption: this.#options.encryption,
          cut: this.#index.cut(),
          promises: this.#promiseList(),
          sequence,
          timestamp: this.#options.clock.nowMs(),
          failpoints: {
            points: this.#failpoints,
            beforeRename: "checkpoint.afterTmpWriteBeforeRename",
            afterRename: "checkpoint.afterRenameBeforeDirSync",
          },
        });
        const failpoints = this.#failpoints;
        if (failpoints.armed) await failpoints.reach("checkpoint.afterRenameBeforeWalTruncate");
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
    if (this.#readOnly) return Promise.reject(new StoreReadOnlyError("checkpoint"));
    if (this.#state !== "open") return Promise.reject(new StoreClosedError("checkpoint"));
    return this.#enqueueCheckpoint();
  }

  async #writeSnapshot(): Promise<string> {
    // The cut (with the promises durable at it) is taken synchronously, so writes go on while it is written.
    const cut = this.#index.cut();
    const promises = this.#promiseList();
    const sequence = this.#sequenceDurable;
    const timestampMs = Math.max(this.#options.clock.nowMs(), this.#lastSnapshotMs + 1);
    this.#lastSnapshotMs = timestampMs;
    const path = `${this.#snapshotDir}/${snapshotFileName(timestampMs)}`;
    const { fs, encryption, snapshotLimit } = this.#options;
    try {
      await writeStateFile({
        fs,
        path,
        encryption,
        cut,
        promises,
        sequence,
        timestamp: timestampMs,
        failpoints: { points: this.#failpoints, beforeRename: "snapshot.beforeRename" },
      });
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
    if (this.#readOnly) return Promise.reject(new StoreReadOnlyError("snapshot"));
    if (this.#state !== "open") return Promise.reject(new StoreClosedError("snapshot"));
    const run = this.#snapshotChain.then(() => this.#writeSnapshot());
    this.#snapshotChain = run.catch(() => {});
    return run;
  }

  #scheduleSnapshot(): void {
    if (this.#readOnly || this.#options.snapshotIntervalSecs === 0 || this.#state !== "open") return;
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
    assert(wal !== undefined, "a read-only store has no WAL to count");
    return {
      walBatchCount: wal.metrics.batchRecords.count,
      walRecordCount: wal.metrics.batchRecords.sum,
      walBytes: wal.sizeBytes,
      checkpointCount: this.#checkpointCount,
      snapshotCount: this.#snapshotCount,
      sequence: this.#sequenceDurable,
      indexPageBytes: this.#index.pageStats.pageBytes,
      indexLiveBytes: this.#index.pageStats.liveBytes,
      wal: wal.metrics,
    };
  }

  /**
   * Writes what waits in the WAL now, lazy accepts included, and resolves once every write queued so far is
   * durable (or failed): what a caller that must see its own lazy accept before going on awaits.
   */
  drain(): Promise<void> {
    return this.#wal?.drain() ?? Promise.resolve();
  }

  /**
   * Stops taking writes, waits for the accepted ones, writes a final checkpoint (unless the WAL holds
   * nothing since the last one), closes the files, clears the timer and lets the data dir's lock go. Later
   * writes throw `StoreClosedError`. A failed final checkpoint is logged: the WAL still holds every write.
   * A read-only store only lets its lock go.
   */
  close(): Promise<void> {
    this.#closing ??= this.#closeOnce();
    return this.#closing;
  }

  async #closeOnce(): Promise<void> {
    const wal = this.#wal;
    if (this.#readOnly) {
      assert(wal === undefined, "a read-only store never opens the WAL for appends");
      this.#lock?.release();
      this.#listeners.clear();
      this.#state = "closed";
      return;
    }
    assert(wal !== undefined);
    this.#state = "closing";
    clearTimeout(this.#snapshotTimer);
    this.#snapshotTimer = undefined;
    await this.#snapshotChain;
    await wal.drain();
    await this.#checkpointChain;
    // Nothing since the last checkpoint: rewriting storage.db would only cost time (13 s at 1M records).
    const current = wal.sizeBytes === fileHeaderBytes &&
      await this.#options.fs.stat(this.#storagePath) !== undefined;
    if (this.#failure === undefined && !current) {
      try {
        await this.#runCheckpoint();
      } catch (error) {
        this.#options.logger.error("final checkpoint failed; the WAL keeps every write", {
          error: String(error),
        });
      }
    }
    await wal.close();
    this.#lock?.release();
    this.#listeners.clear();
    this.#state = "closed";
  }
}
