import { assert } from "../util/assert.ts";
import type { Encryption } from "./crypto.ts";
import { RecordDecodeError, WalCorruptError } from "./errors.ts";
import type { FailpointName, Failpoints } from "./failpoints.ts";
import {
  checkFileHeader,
  encodeFileHeader,
  encodeFrame,
  fileHeaderBytes,
  type FrameRecords,
  readFully,
  recordEndAt,
  recordsOf,
  scanFrames,
} from "./frame.ts";
import { type Fs, type FsFile, parentDir, privateFilePermissions } from "./fs.ts";
import type { Ballot } from "./types.ts";
import type { IndexCut } from "./visible_index.ts";
import {
  ballotAt,
  type CheckpointEndRecord,
  checkRecordAt,
  decodeRecordHead,
  encodeRecord,
  opCodeOf,
  setRecordSequence,
  tableAndKeyAt,
} from "./wal_record.ts";

const purgeOpCode = opCodeOf("purge");
const promiseOpCode = opCodeOf("promise");
const checkpointEndOpCode = opCodeOf("checkpointEnd");

/** An outstanding explicit promise of a key, as a state file carries it. */
export interface KeyPromise {
  readonly table: string;
  readonly key: string;
  readonly ballot: Ballot;
}

/** Plaintext gathered into one frame of a state file before it is encrypted and written. */
export const stateFramePlaintextBytes = 256 * 1024;
/** Name of the compacted state in the data dir. */
export const storageFileName = "storage.db";
/** Directory of snapshots inside the data dir. */
export const snapshotDirName = "snapshots";
/** Suffix of a file being written; one left by a crash is removed at open. */
export const tmpSuffix = ".tmp";

/** Options of {@linkcode writeStateFile}. */
export interface WriteStateOptions {
  fs: Fs;
  /** Final path; the file is written to `path + ".tmp"`, synced, renamed and its directory synced. */
  path: string;
  encryption: Encryption;
  /** Every key's record, tombstones included, as the index held them at the cut. */
  cut: IndexCut;
  /** Every outstanding promise at the cut; written after the keys' records. */
  promises: readonly KeyPromise[];
  /** Sequence of the last change the items include. */
  sequence: number;
  timestamp: number;
  /** Failpoints reached once the tmp file is synced (before the rename) and, when given, after the rename. */
  failpoints?: { points: Failpoints; beforeRename: FailpointName; afterRename?: FailpointName };
}

async function writeStateFrames(file: FsFile, options: WriteStateOptions): Promise<number> {
  const header = encodeFileHeader("state", options.encryption.keyId);
  await file.write(header);
  const { addresses, pages } = options.cut;
  // Records are copied here (pages are shared and never modified) to carry sequence 0, as a state
  // file's do; a frame's are gathered in one buffer, reused once the frame is written.
  let scratch = new Uint8Array(stateFramePlaintextBytes);
  let scratchBytes = 0;
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  const flush = async () => {
    await file.write(await encodeFrame({ encryption: options.encryption, header, records: pending }));
    pending = [];
    pendingBytes = 0;
    scratchBytes = 0;
  };
  for (const address of addresses) {
    const { bytes, start, end } = pages.recordAt(address);
    const length = end - start;
    if (scratchBytes + length > scratch.length) {
      scratch = new Uint8Array(Math.max(stateFramePlaintextBytes, length));
      scratchBytes = 0;
    }
    const record = scratch.subarray(scratchBytes, scratchBytes + length);
    record.set(bytes.subarray(start, end));
    setRecordSequence(record, 0);
    pending.push(record);
    scratchBytes += length;
    pendingBytes += 4 + length;
    if (pendingBytes >= stateFramePlaintextBytes) await flush();
  }
  for (const { table, key, ballot } of options.promises) {
    const record = encodeRecord({
      op: "promise",
      sequence: 0,
      timestamp: options.timestamp,
      table,
      key,
      ballot,
    });
    pending.push(record);
    pendingBytes += 4 + record.length;
    if (pendingBytes >= stateFramePlaintextBytes) await flush();
  }
  const recordCount = addresses.length + options.promises.length;
  pending.push(encodeRecord({
    op: "checkpointEnd",
    sequence: options.sequence,
    entryCount: recordCount,
    timestamp: options.timestamp,
  }));
  await flush();
  return recordCount;
}

/**
 * Writes a complete state file (`storage.db` or a snapshot) atomically and durably: tmp file, sync,
 * rename, directory sync. On failure the tmp file is removed and the previous file is untouched.
 *
 * @returns the number of records written before the checkpoint end (keys and promises).
 */
export async function writeStateFile(options: WriteStateOptions): Promise<number> {
  assert(Number.isSafeInteger(options.sequence));
  assert(options.sequence >= 0);
  const tmpPath = options.path + tmpSuffix;
  let entryCount: number;
  const file = await options.fs.createFile(tmpPath, { permissions: privateFilePermissions });
  try {
    entryCount = await writeStateFrames(file, options);
    await file.syncData();
  } catch (error) {
    file.close();
    await options.fs.remove(tmpPath).catch(() => {});
    throw error;
  }
  file.close();
  const failpoints = options.failpoints;
  if (failpoints?.points.armed) await failpoints.points.reach(failpoints.beforeRename);
  await options.fs.rename(tmpPath, options.path);
  if (failpoints?.points.armed && failpoints.afterRename !== undefined) {
    await failpoints.points.reach(failpoints.afterRename);
  }
  await options.fs.syncDir(parentDir(options.path));
  return entryCount;
}

/** What a state file held besides its records. */
export interface StateFileSummary {
  sequence: number;
  /** Records before the checkpoint end: keys' states and promises. */
  entryCount: number;
}

function corrupt(path: string, offset: number, reason: string): WalCorruptError {
  return new WalCorruptError({ path, offset, reason });
}

/**
 * One frame of a state file: its first `entryCount` records are puts, deletes and promises, each checked
 * (the index skips the promises).
 */
export interface StateFrame {
  /** Every record of the frame, the checkpoint end included when it is the last frame. */
  readonly records: FrameRecords;
  readonly entryCount: number;
  /** The frame's promise records, decoded. */
  readonly promises: readonly KeyPromise[];
}

/**
 * Reads a state file, passing the entry records of each frame to `onFrame` in file order, each checked.
 * Such files are only ever renamed into place complete, so any damage, a torn tail included, is
 * corruption.
 *
 * @returns undefined when the file does not exist.
 * @throws {WalCorruptError} naming the file and offset of the damage.
 * @throws {WrongKeyError} when it was written under another key.
 */
export async function readStateFile(
  options: { fs: Fs; path: string; encryption: Encryption },
  onFrame: (frame: StateFrame) => void,
): Promise<StateFileSummary | undefined> {
  const { path } = options;
  const file = await options.fs.openRead(path);
  if (file === undefined) return undefined;
  try {
    const sizeBytes = await file.sizeBytes();
    const header = new Uint8Array(fileHeaderBytes);
    if (await readFully(file, header) < fileHeaderBytes) throw corrupt(path, 0, "shorter than its header");
    checkFileHeader({ path, bytes: header, kind: "state", keyId: options.encryption.keyId });
    let summary: StateFileSummary | undefined;
    let entryCount = 0;
    const result = await scanFrames(
      { file, path, sizeBytes, encryption: options.encryption, header },
      (records, offset) => {
        if (summary !== undefined) throw corrupt(path, offset, "records follow the checkpoint end");
        const promises: KeyPromise[] = [];
        const frameEntryCount = checkStateFrame(records, { path, offset }, promises);
        entryCount += frameEntryCount;
        if (frameEntryCount < records.count) {
          const end = checkpointEndOf(records, { path, offset });
          if (end.entryCount !== entryCount) throw corrupt(path, offset, "entry count does not match");
          summary = { sequence: end.sequence, entryCount };
        }
        onFrame({ records, entryCount: frameEntryCount, promises });
      },
    );
    if (result.torn !== undefined) throw corrupt(path, result.torn.offset, result.torn.reason);
    if (summary === undefined) throw corrupt(path, result.endOffset, "no checkpoint end record");
    return summary;
  } finally {
    file.close();
  }
}

/**
 * Checks every record of a state file's frame; returns how many puts, deletes and promises come before
 * the checkpoint end, which may only be the frame's last record. The promises are added to `promises`.
 */
function checkStateFrame(
  records: FrameRecords,
  at: { path: string; offset: number },
  promises: KeyPromise[],
): number {
  const { bytes } = records;
  let entryCount = 0;
  let offset = 0;
  // Bounded: each step moves past one record, whose end decodeFramePlaintext checked.
  for (let index = 0; index < records.count; index += 1) {
    const end = recordEndAt(bytes, offset);
    let op: number;
    try {
      op = checkRecordAt(bytes, offset + 4, end);
    } catch (error) {
      if (error instanceof RecordDecodeError) throw corrupt(at.path, at.offset, error.message);
      throw error;
    }
    // A state file holds the keys present; a purged key is simply absent from it.
    if (op === purgeOpCode) throw corrupt(at.path, at.offset, "purge record in a state file");
    if (op === checkpointEndOpCode) {
      if (index !== records.count - 1) throw corrupt(at.path, at.offset, "records follow the checkpoint end");
    } else {
      if (op === promiseOpCode) {
        const span = { bytes, start: offset + 4, end };
        promises.push({ ...tableAndKeyAt(span), ballot: ballotAt(span) });
      }
      entryCount += 1;
    }
    offset = end;
  }
  return entryCount;
}

/** The checkpoint end record that is the last record of `records`, checked before. */
function checkpointEndOf(records: FrameRecords, at: { path: string; offset: number }): CheckpointEndRecord {
  const last = recordsOf(records).at(-1)!;
  const record = decodeRecordHead(last, 0, last.length);
  if (record.op !== "checkpointEnd") throw corrupt(at.path, at.offset, "no checkpoint end record");
  return record;
}

/** File name of a snapshot taken at `timestampMs`. */
export function snapshotFileName(timestampMs: number): string {
  assert(Number.isSafeInteger(timestampMs));
  return `snapshot_${timestampMs}.json`;
}

const snapshotNamePattern = /^snapshot_(\d+)\.json$/;

/** Snapshots in `snapshotDir`, oldest first. */
export async function listSnapshots(
  fs: Fs,
  snapshotDir: string,
): Promise<Array<{ name: string; timestampMs: number }>> {
  const snapshots: Array<{ name: string; timestampMs: number }> = [];
  for (const name of await fs.readDir(snapshotDir)) {
    const match = snapshotNamePattern.exec(name);
    if (match !== null) snapshots.push({ name, timestampMs: Number(match[1]) });
  }
  return snapshots.sort((left, right) => left.timestampMs - right.timestampMs);
}

/** Deletes all but the newest `snapshotLimit` snapshots. */
export async function pruneSnapshots(
  options: { fs: Fs; snapshotDir: string; snapshotLimit: number },
): Promise<void> {
  assert(options.snapshotLimit >= 1);
  const snapshots = await listSnapshots(options.fs, options.snapshotDir);
  const excess = snapshots.slice(0, Math.max(0, snapshots.length - options.snapshotLimit));
  for (const snapshot of excess) await options.fs.remove(`${options.snapshotDir}/${snapshot.name}`);
  if (excess.length > 0) await options.fs.syncDir(options.snapshotDir);
}

/**
 * Removes the `.tmp` files of state files (`storage.db.tmp`, `snapshot_<ms>.json.tmp`) that a crash left
 * in `dir`: they were never renamed into place, so they hold nothing needed. Other files are left alone,
 * since the data dir may be a directory the user shares (the default is the working directory).
 */
export async function removeTmpFiles(fs: Fs, dir: string): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await fs.readDir(dir)) {
    if (!name.endsWith(tmpSuffix)) continue;
    const finalName = name.slice(0, -tmpSuffix.length);
    if (finalName !== storageFileName && !snapshotNamePattern.test(finalName)) continue;
    await fs.remove(`${dir}/${name}`);
    removed.push(name);
  }
  return removed;
}
