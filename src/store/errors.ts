import { InvalidRequestError, KvError, UnavailableError } from "../util/errors.ts";

/** Names one key in a message. Names are not secret; values never appear in messages. */
function describeKey(target: { table: string; key: string }): string {
  return `key "${target.key}" of table "${target.table}"`;
}

/** The key does not exist, or is a tombstone, and the operation needs a live key. */
export class KeyNotFoundError extends KvError {
  constructor(target: { table: string; key: string; operation: string }) {
    super("key_not_found", `Cannot ${target.operation} ${describeKey(target)}: it does not exist`);
  }
}

/** The key is owned by another user. */
export class ForbiddenError extends KvError {
  constructor(target: { table: string; key: string; operation: string }) {
    super("forbidden", `Cannot ${target.operation} ${describeKey(target)}: it is owned by another user`);
  }
}

/** An `ifVersion` condition did not hold. */
export class VersionConflictError extends KvError {
  /** The version the writer expected (0: "must not exist"). */
  readonly expectedVersion: number;
  /** The current live version, or undefined when the key does not exist live. */
  readonly currentVersion: number | undefined;

  constructor(
    target: { table: string; key: string; expectedVersion: number; currentVersion: number | undefined },
  ) {
    const expected = target.expectedVersion === 0
      ? "the key not to exist"
      : `version ${target.expectedVersion}`;
    const current = target.currentVersion === undefined
      ? "it does not exist"
      : `its current version is ${target.currentVersion}`;
    super("version_conflict", `Cannot write ${describeKey(target)}: expected ${expected}, but ${current}`);
    this.expectedVersion = target.expectedVersion;
    this.currentVersion = target.currentVersion;
  }
}

/** A patch was sent for a key whose stored value is not a JSON object. */
export class NotAnObjectError extends InvalidRequestError {
  constructor(target: { table: string; key: string }) {
    super(`Cannot patch ${describeKey(target)}: the stored value is not a JSON object`);
  }
}

/** The store is closed (shutting down); no further writes are accepted. */
export class StoreClosedError extends UnavailableError {
  constructor(operation: string) {
    super(`Cannot ${operation}: the store is closed`);
  }
}

/**
 * A write or fsync failed. Nothing further is acknowledged: every later write is refused with this error
 * until the node restarts and recovers from its files.
 */
export class StorageFailedError extends KvError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super("storage_failed", message, options);
  }
}

/** The disk is full (ENOSPC). The failed batch was rolled back; writes may succeed once space is freed. */
export class StorageFullError extends KvError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super("storage_full", message, options);
  }
}

/** A data file is damaged somewhere other than its tail; the node must not start on it. */
export class WalCorruptError extends KvError {
  /** The damaged file. */
  readonly path: string;
  /** Byte offset of the first damaged frame or header. */
  readonly offset: number;

  constructor(target: { path: string; offset: number; reason: string }) {
    super("wal_corrupt", `${target.path} is corrupt at byte offset ${target.offset}: ${target.reason}`);
    this.path = target.path;
    this.offset = target.offset;
  }
}

/** A data file was written with another encryption key than the one of this build. */
export class WrongKeyError extends KvError {
  readonly path: string;

  constructor(target: { path: string; fileKeyId: string; buildKeyId: string }) {
    super(
      "wrong_key",
      `${target.path}: the data dir was written with key id ${target.fileKeyId} and this build has key id ` +
        `${target.buildKeyId}; refusing to read or overwrite it`,
    );
    this.path = target.path;
  }
}

/**
 * The build has no usable encryption key: its key module (git-ignored, written by `deno task gen-key`)
 * is missing or does not hold a key.
 */
export class BuildKeyError extends KvError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super("config_invalid", message, options);
  }
}

/**
 * A record's bytes do not follow the layout. The caller names the file and offset. Not a `KvError`: it never
 * leaves the store, which turns it into a `WalCorruptError` naming where it was read.
 */
export class RecordDecodeError extends Error {
  override name = "RecordDecodeError";
}

/**
 * Another process holds the data dir's lock: a node runs on it (its store holds the lock exclusively), or
 * a read-only reader (an offline export) shares it while a node tries to start.
 */
export class DataDirLockedError extends KvError {
  /** The data dir. */
  readonly dir: string;

  constructor(target: { dir: string; lockPath: string; readOnly: boolean }) {
    super(
      "config_invalid",
      target.readOnly
        ? `${target.dir} is in use: a node runs on it (it holds the lock ${target.lockPath})`
        : `${target.dir} is in use by another process: a node, or an offline export or import, holds ` +
          `the lock ${target.lockPath}`,
    );
    this.dir = target.dir;
  }
}

/** The store was opened read-only: it refuses every write, checkpoint and snapshot. */
export class StoreReadOnlyError extends UnavailableError {
  constructor(operation: string) {
    super(`Cannot ${operation}: the store is open read-only`);
  }
}
