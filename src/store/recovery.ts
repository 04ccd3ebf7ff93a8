import { assert } from "../util/assert.ts";
import {
  listSnapshots,
  readStateFile,
  removeTmpFiles,
  snapshotDirName,
  type StateFileSummary,
  type StateFrame,
  storageFileName,
} from "./checkpoint.ts";
import { RecordDecodeError, WalCorruptError } from "./errors.ts";
import {
  checkFileHeader,
  encodeFileHeader,
  fileHeaderBytes,
  readFully,
  recordEndAt,
  scanFrames,
  type ScanResult,
} from "./frame.ts";
import { type FsFile, privateDirPermissions, privateFilePermissions } from "./fs.ts";
import { keepBrokenCopy, moveAside, truncateWalAt } from "./repair.ts";
import { type Ballot, type StoreOptions, zeroBallot } from "./types.ts";
import type { VisibleIndex } from "./visible_index.ts";
import {
  ballotAt,
  checkRecordAt,
  isBallotStateOpCode,
  isZeroBallot,
  opCodeOf,
  sequenceAt,
  tableAndKeyAt,
} from "./wal_record.ts";

/** File name of the write-ahead log in the data dir. */
export const walFileName = "wal.log";

const purgeOpCode = opCodeOf("purge");
const promiseOpCode = opCodeOf("promise");
/**
 * Repairs one open may make: a damaged storage.db moved aside, then the WAL cut (which can find a second
 * damaged frame only before the first cut, so one WAL cut suffices); one spare.
 */
const repairAttemptsMax = 3;

/** Permission bits as `chmod` writes them, e.g. `0755`. */
export function octal(permissions: number): string {
  return `0${permissions.toString(8).padStart(3, "0")}`;
}

/**
 * The state recovery fills, owned by the store: the index and the durable explicit promises. Recovery
 * only adds to it, and empties it before each repair's new attempt.
 */
export interface RecoveryTarget {
  readonly index: VisibleIndex;
  /** Records a key's durable explicit promise; the zero ballot clears it. */
  setDurablePromise(table: string, key: string, ballot: Ballot): void;
  /** How many tables hold an outstanding promise: replay skips clearing promises while it is 0. */
  promiseTableCount(): number;
  /** How many keys have a lifetime (filled by the index's `onLifetime`). */
  lifetimeCount(): number;
  /** Empties the index, the promises and the lifetimes. */
  clear(): void;
}

/** What recovery hands the store. Warnings and repairs were already logged through `options.logger`. */
export interface Recovered {
  /** The sequence of the last durable change. */
  readonly sequence: number;
  /**
   * The WAL, open for appends and replayed, with its size after any torn tail was cut off; undefined for
   * a read-only open (which closes what it read).
   */
  readonly wal: { readonly file: FsFile; readonly sizeBytes: number } | undefined;
  /** How many files were repaired (only with `options.repair`). */
  readonly repairCount: number;
  /** The timestamp of the newest snapshot on disk, 0 when there is none. */
  readonly lastSnapshotMs: number;
}

/**
 * Recovers the state of the data dir `options.dir` into `target`: `storage.db` (or, when it is missing,
 * the newest readable snapshot), then the WAL, cutting off a torn tail. With `options.repair`, a damaged
 * file is kept as `<name>.broken.<ms>`, then the WAL is cut or `storage.db` moved aside, and recovery
 * starts over. With `options.readOnly` (and a read-only `options.fs`) it writes nothing.
 *
 * @throws {WrongKeyError} when a file was written under another key; nothing is modified.
 * @throws {WalCorruptError} when a file is damaged other than at the WAL's tail (and `repair` is off).
 */
export function recoverDataDir(options: StoreOptions, target: RecoveryTarget): Promise<Recovered> {
  assert(target.index.tableCount === 0, "recovery starts from an empty index");
  assert(target.promiseTableCount() === 0, "recovery starts without promises");
  return new Recovery(options, target).run();
}

/** One open's recovery: the state of its attempts. */
class Recovery {
  readonly #options: StoreOptions;
  readonly #target: RecoveryTarget;
  readonly #readOnly: boolean;
  #sequenceDurable = 0;

  constructor(options: StoreOptions, target: RecoveryTarget) {
    this.#options = options;
    this.#target = target;
    this.#readOnly = options.readOnly === true;
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

  /** Recovers the state from the files, repairing them when allowed. */
  async run(): Promise<Recovered> {
    const { fs, logger } = this.#options;
    if (!this.#readOnly) {
      await this.#prepareDirs();
      const removed = [
        ...await removeTmpFiles(fs, this.#dir),
        ...await removeTmpFiles(fs, this.#snapshotDir),
      ];
      if (removed.length > 0) logger.info("removed files left by an interrupted write", { files: removed });
    }
    const snapshots = await listSnapshots(fs, this.#snapshotDir);
    const lastSnapshotMs = snapshots.at(-1)?.timestampMs ?? 0;
    let repairCount = 0;
    let wal: Recovered["wal"];
    let recovered = false;
    // Bounded: each repair moves storage.db aside or cuts the WAL shorter; repairAttemptsMax stops a
    // repair that would not make progress.
    while (!recovered) {
      try {
        wal = await this.#recoverFiles();
        recovered = true;
      } catch (error) {
        const repairable = error instanceof WalCorruptError && this.#options.repair === true;
        if (!repairable || repairCount >= repairAttemptsMax) throw error;
        await this.#repairFile(error);
        repairCount += 1;
        this.#target.clear();
        this.#sequenceDurable = 0;
      }
    }
    assert(this.#readOnly === (wal === undefined), "only a writable store opens the WAL for appends");
    assert(Number.isSafeInteger(this.#sequenceDurable));
    return { sequence: this.#sequenceDurable, wal, repairCount, lastSnapshotMs };
  }

  /**
   * Creates the data dir and `snapshots/` owner-only (0700). A data dir that already exists with wider
   * permissions is left as it is, with a warning: it may hold other things (the default is the working
   * directory), and every file the store writes in it is 0600 anyway. `snapshots/`, `wal.log` and
   * `storage.db` are the store's own: when an older build made them wider, they are narrowed.
   */
  async #prepareDirs(): Promise<void> {
    const { fs, logger } = this.#options;
    await fs.mkdir(this.#dir, { permissions: privateDirPermissions });
    await fs.mkdir(this.#snapshotDir, { permissions: privateDirPermissions });
    const dirPermissions = (await fs.stat(this.#dir))?.permissions ?? privateDirPermissions;
    if ((dirPermissions & ~privateDirPermissions) !== 0) {
      logger.warn(
        `data dir ${this.#dir} has permissions ${octal(dirPermissions)}: other users can list the names of ` +
          `its files (each file is ${octal(privateFilePermissions)}); \`chmod 700 ${this.#dir}\` hides them`,
      );
    }
    const narrowed: string[] = [];
    for (
      const [path, permissions] of [
        [this.#snapshotDir, privateDirPermissions],
        [this.#walPath, privateFilePermissions],
        [this.#storagePath, privateFilePermissions],
      ] as const
    ) {
      const before = await fs.narrowPermissions(path, permissions);
      if (before !== undefined) narrowed.push(`${path} ${octal(before)} -> ${octal(before & permissions)}`);
    }
    if (narrowed.length > 0) {
      logger.warn("narrowed the permissions of files an older build made wider", { narrowed });
    }
  }

  /**
   * One recovery attempt: the base state, then the WAL. On success it returns the WAL open for appends
   * (undefined when read-only); on failure every file it opened is closed.
   */
  async #recoverFiles(): Promise<Recovered["wal"]> {
    const { fs, logger } = this.#options;
    assert(this.#target.index.tableCount === 0, "each attempt starts from an empty index");
    assert(this.#target.promiseTableCount() === 0, "each attempt starts without promises");
    assert(this.#target.lifetimeCount() === 0, "each attempt starts without lifetimes");
    const base = await this.#loadBase();
    this.#sequenceDurable = base.sequence;
    const walExisted = await fs.stat(this.#walPath) !== undefined;
    if (!walExisted && base.source !== undefined) {
      logger.warn(`${this.#walPath} is missing: writes after sequence ${base.sequence} are lost, if any`, {
        file: this.#walPath,
        base: base.source,
      });
    }
    const file = this.#readOnly
      ? await fs.openRead(this.#walPath)
      : await fs.openAppend(this.#walPath, { permissions: privateFilePermissions });
    if (file === undefined) return undefined; // read-only, without a WAL: the base is the whole state
    try {
      const { sizeBytes, firstSequence } = await this.#recoverWal(file);
      if (firstSequence !== undefined && firstSequence > base.sequence + 1) {
        logger.warn(
          `writes with sequences ${base.sequence + 1} to ${firstSequence - 1} are lost: ` +
            `they were in neither ${base.source ?? "a state file"} nor ${this.#walPath}`,
          { lostCount: firstSequence - 1 - base.sequence },
        );
      }
      if (!this.#readOnly) return { file, sizeBytes };
      file.close();
      return undefined;
    } catch (error) {
      file.close();
      throw error;
    }
  }

  /**
   * Loads `storage.db`, or when it is missing the newest snapshot that reads cleanly (damaged ones are
   * skipped with a warning), or nothing.
   *
   * @returns the sequence of the last change in the base and the file it came from.
   */
  async #loadBase(): Promise<{ sequence: number; source: string | undefined }> {
    const { fs, logger } = this.#options;
    const summary = await this.#readStateFile(this.#storagePath);
    if (summary !== undefined) return { sequence: summary.sequence, source: this.#storagePath };
    const snapshots = await listSnapshots(fs, this.#snapshotDir);
    // Bounded by the snapshots on disk; newest first.
    for (const snapshot of snapshots.reverse()) {
      const path = `${this.#snapshotDir}/${snapshot.name}`;
      try {
        const found = await this.#readStateFile(path);
        assert(found !== undefined, "a listed snapshot exists");
        logger.warn(`${this.#storagePath} is missing: starting from ${path} and the WAL`, {
          file: path,
          sequence: found.sequence,
        });
        return { sequence: found.sequence, source: path };
      } catch (error) {
        if (!(error instanceof WalCorruptError)) throw error;
        logger.warn(`skipping a damaged snapshot: ${error.message}`, { file: path, offset: error.offset });
        this.#target.clear();
      }
    }
    assert(this.#target.index.tableCount === 0);
    assert(this.#target.promiseTableCount() === 0);
    return { sequence: 0, source: undefined };
  }

  /**
   * Reads a state file into the index, each frame indexed while the next is read.
   *
   * @throws the errors of {@linkcode readStateFile}.
   */
  async #readStateFile(path: string): Promise<StateFileSummary | undefined> {
    const { fs, encryption } = this.#options;
    const { index } = this.#target;
    const queue = (frame: StateFrame) => {
      index.queueFrame(frame.records, frame.entryCount);
      for (const { table, key, ballot } of frame.promises) this.#target.setDurablePromise(table, key, ballot);
    };
    let summary: StateFileSummary | undefined;
    try {
      summary = await readStateFile({ fs, path, encryption }, queue);
    } catch (error) {
      await index.loadQueued().catch(() => {}); // the read's error is the one to report
      throw error;
    }
    await index.loadQueued();
    return summary;
  }

  /** Repairs the file `error` names: keeps a copy and cuts the WAL, or moves storage.db aside. */
  async #repairFile(error: WalCorruptError): Promise<void> {
    const { fs, clock, logger } = this.#options;
    assert(Number.isSafeInteger(error.offset));
    assert(error.offset >= 0);
    if (error.path === this.#walPath) {
      const copyPath = await keepBrokenCopy({ fs, path: error.path, clock });
      const droppedBytes = await truncateWalAt({ fs, path: error.path, clock, offset: error.offset });
      assert(droppedBytes > 0, "the damage lies inside the file");
      logger.error(
        `repair: cut ${error.path} at byte offset ${error.offset}: the writes in the ${droppedBytes} bytes ` +
          `after it are lost; the damaged file was copied to ${copyPath}`,
        { file: error.path, offset: error.offset, droppedBytes, copy: copyPath, reason: error.message },
      );
      return;
    }
    if (error.path === this.#storagePath) {
      const movedPath = await moveAside({ fs, path: error.path, clock });
      logger.error(
        `repair: moved the damaged ${error.path} to ${movedPath}; recovering from the newest readable ` +
          "snapshot and the WAL (writes in neither are lost and reported below)",
        { file: error.path, offset: error.offset, moved: movedPath, reason: error.message },
      );
      return;
    }
    throw error;
  }

  /**
   * Replays the WAL into the index. Returns its size after any torn tail was cut off, and the sequence
   * of its first change (undefined when it holds none).
   */
  async #recoverWal(file: FsFile): Promise<{ sizeBytes: number; firstSequence: number | undefined }> {
    const { fs, logger, encryption } = this.#options;
    const path = this.#walPath;
    const header = encodeFileHeader("wal", encryption.keyId);
    const sizeBytes = await file.sizeBytes();
    if (sizeBytes < fileHeaderBytes) {
      // A new WAL, or a crash while its header was written: nothing after it was ever acknowledged.
      if (this.#readOnly) {
        if (sizeBytes > 0) {
          logger.warn("read a torn WAL header as an empty WAL, left as it is", { file: path });
        }
        return { sizeBytes, firstSequence: undefined };
      }
      if (sizeBytes > 0) logger.warn("rewriting a torn WAL header", { file: path, offset: 0 });
      await file.truncate(0);
      await file.write(header);
      await file.syncData();
      await fs.syncDir(this.#dir);
      return { sizeBytes: fileHeaderBytes, firstSequence: undefined };
    }
    const found = new Uint8Array(fileHeaderBytes);
    assert(await readFully(file, found) === fileHeaderBytes);
    checkFileHeader({ path, bytes: found, kind: "wal", keyId: encryption.keyId });
    const { result, firstSequence } = await this.#replayWal(file, { sizeBytes, header });
    if (result.torn === undefined) return { sizeBytes, firstSequence };
    const { offset, reason } = result.torn;
    if (this.#readOnly) {
      logger.warn(
        `${path} has a torn tail at byte offset ${offset}: read up to its last good frame and left as it ` +
          "is (read-only; a node cuts it when it next opens the data dir)",
        { file: path, offset, unreadBytes: sizeBytes - offset, reason },
      );
      return { sizeBytes: offset, firstSequence };
    }
    logger.warn(`cut off a torn tail of ${path} at byte offset ${offset}`, {
      file: path,
      offset,
      droppedBytes: sizeBytes - offset,
      reason,
    });
    await file.truncate(offset);
    await file.syncData();
    return { sizeBytes: offset, firstSequence };
  }

  /** Applies every record of the WAL's frames, checking that sequences increase. */
  async #replayWal(
    file: FsFile,
    options: { sizeBytes: number; header: Uint8Array },
  ): Promise<{ result: ScanResult; firstSequence: number | undefined }> {
    const path = this.#walPath;
    let lastSequence = 0;
    let firstSequence: number | undefined;
    const scan = { file, path, sizeBytes: options.sizeBytes, encryption: this.#options.encryption };
    const result = await scanFrames({ ...scan, header: options.header }, (frame, offset) => {
      const { bytes } = frame;
      const promiseRecords: Array<{ op: number; start: number; end: number }> = [];
      let recordOffset = 0;
      // Bounded: each step moves past one record, whose end decodeFramePlaintext checked.
      for (let index = 0; index < frame.count; index += 1) {
        const end = recordEndAt(bytes, recordOffset);
        const start = recordOffset + 4;
        const { op, sequence } = checkWalRecord(bytes, { start, end }, { path, offset });
        // A purge or a promise is not a change: it carries the sequence of the last change before it.
        const change = op !== purgeOpCode && op !== promiseOpCode;
        const increases = change ? sequence > lastSequence : sequence >= lastSequence;
        if (!increases) {
          throw new WalCorruptError({ path, offset, reason: `sequence ${sequence} does not increase` });
        }
        lastSequence = sequence;
        if (change) firstSequence ??= sequence;
        if (op === promiseOpCode || op === purgeOpCode || isBallotStateOpCode(op)) {
          promiseRecords.push({ op, start, end });
        }
        recordOffset = end;
      }
      // Applied after the whole frame was checked (a damaged frame changes nothing), while the next is read.
      this.#target.index.queueFrame(frame, frame.count);
      for (const { op, start, end } of promiseRecords) this.#replayPromise(op, { bytes, start, end });
    }).catch(async (error) => {
      await this.#target.index.loadQueued().catch(() => {}); // the read's error is the one to report
      throw error;
    });
    await this.#target.index.loadQueued();
    if (firstSequence !== undefined) assert(firstSequence <= lastSequence);
    this.#sequenceDurable = Math.max(this.#sequenceDurable, lastSequence);
    return { result, firstSequence };
  }

  /**
   * What a replayed record does to its key's explicit promise, as it did when it was logged: a promise
   * record sets it; a state with a ballot (an accept or an applied replica, each at or above the promise)
   * and a purge clear it; a zero-ballot state leaves it. The last such record of a key decides, whatever
   * base it is replayed over (see `#loadRecord` in `visible_index.ts`).
   */
  #replayPromise(op: number, span: { bytes: Uint8Array; start: number; end: number }): void {
    if (op !== promiseOpCode && this.#target.promiseTableCount() === 0) return; // nothing to clear
    const { table, key } = tableAndKeyAt(span);
    assert(op === promiseOpCode || op === purgeOpCode || isBallotStateOpCode(op));
    const ballot = op === promiseOpCode ? ballotAt(span) : zeroBallot;
    if (op === promiseOpCode) assert(!isZeroBallot(ballot), "a promise record holds a ballot");
    this.#target.setDurablePromise(table, key, ballot);
  }
}

/**
 * Checks a WAL record (a put or delete with or without a ballot, a purge or a promise) in
 * `bytes[start, end)`; returns its op code and sequence.
 */
function checkWalRecord(
  bytes: Uint8Array,
  record: { start: number; end: number },
  at: { path: string; offset: number },
): { op: number; sequence: number } {
  let op;
  try {
    op = checkRecordAt(bytes, record.start, record.end);
  } catch (error) {
    if (error instanceof RecordDecodeError) throw new WalCorruptError({ ...at, reason: error.message });
    throw error;
  }
  if (op === opCodeOf("checkpointEnd")) {
    throw new WalCorruptError({ ...at, reason: "checkpoint record in the WAL" });
  }
  const sequence = sequenceAt(bytes, record.start);
  // A promise made before any change carries sequence 0: it is not a change.
  if (sequence < 1 && op !== promiseOpCode) {
    throw new WalCorruptError({ ...at, reason: "record without a sequence" });
  }
  return { op, sequence };
}
