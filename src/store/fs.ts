import { assert } from "../util/assert.ts";

/** An open file. Reads move a position; writes of an `openAppend` file always go to its end. */
export interface FsFile {
  /** Reads up to `buffer.length` bytes at the current position; `null` at the end of the file. */
  read(buffer: Uint8Array): Promise<number | null>;
  /** Writes every byte of `bytes` (looping over partial writes). */
  write(bytes: Uint8Array): Promise<void>;
  /** Makes the file's data (and its size) durable: `fdatasync`. */
  syncData(): Promise<void>;
  /** Cuts or extends the file to `lengthBytes`. */
  truncate(lengthBytes: number): Promise<void>;
  /** The file's current size. */
  sizeBytes(): Promise<number>;
  close(): void;
}

/**
 * Permission bits of every file the store writes (WAL, state files, snapshots, secrets, copies, temp and
 * probe files): owner read and write only, since they hold password hashes and a JWT secret (SPEC §8).
 */
export const privateFilePermissions = 0o600;
/** Permission bits of the data dir and its subdirectories: owner only. */
export const privateDirPermissions = 0o700;

/** The permission bits a created file or directory gets; the umask can only remove bits from them. */
export interface CreateOptions {
  /** e.g. {@linkcode privateFilePermissions}; explicit at every call site (STYLE B8). */
  permissions: number;
}

/** What `Fs.stat` tells. */
export interface FsStat {
  sizeBytes: number;
  /** Permission bits, e.g. `0o600`. */
  permissions: number;
}

/**
 * The one door to the disk: nothing else in the code base touches files. `DenoFs` is the real one,
 * `MemoryFs` a model for tests that can lose unsynced data in a simulated crash.
 */
export interface Fs {
  /** Creates `path` and its missing parents with `permissions`; an existing directory is left as it is. */
  mkdir(path: string, options: CreateOptions): Promise<void>;
  /** Opens an existing file for reading; undefined when it does not exist. */
  openRead(path: string): Promise<FsFile | undefined>;
  /** Opens a file for reading and appending, creating it with `permissions` when missing. */
  openAppend(path: string, options: CreateOptions): Promise<FsFile>;
  /** Creates or empties a file, with exactly `permissions`, and opens it for writing. */
  createFile(path: string, options: CreateOptions): Promise<FsFile>;
  /** The whole content of a small file; undefined when it does not exist. */
  readFile(path: string): Promise<Uint8Array | undefined>;
  /** Size and permission bits of a file or directory; undefined when it does not exist. */
  stat(path: string): Promise<FsStat | undefined>;
  /** Names (not paths) in a directory; empty when it does not exist. */
  readDir(path: string): Promise<string[]>;
  /** Atomically replaces `target` by `source`. Durable only after `syncDir` of the directory. */
  rename(source: string, target: string): Promise<void>;
  /** Removes a file; no error when it does not exist. */
  remove(path: string): Promise<void>;
  /**
   * Clears the permission bits of a file or directory that `permissions` does not allow (0o644 → 0o600).
   *
   * @returns the bits it had when some were cleared; undefined when none were, or `path` does not exist.
   */
  narrowPermissions(path: string, permissions: number): Promise<number | undefined>;
  /** Makes the directory's entries (creations, renames, removals) durable. */
  syncDir(path: string): Promise<void>;
  /**
   * Takes an advisory lock on the file `path` without waiting (`flock`): `exclusive` for one holder,
   * shared otherwise (any number of shared holders, no exclusive one). With `create` a missing file is
   * created with its permissions; without it a missing file throws `Deno.errors.NotFound`.
   *
   * @returns the lock, held until `release` (or the process's end); undefined when another holder's lock
   *   conflicts with it.
   */
  tryLock(path: string, options: LockOptions): Promise<FsLock | undefined>;
}

/** Options of `Fs.tryLock`. */
export interface LockOptions {
  /** One holder (a node's store) instead of many shared ones (read-only readers). */
  exclusive: boolean;
  /** Creates a missing lock file with these permissions. @default a missing file throws NotFound */
  create?: CreateOptions;
}

/** A lock taken by `Fs.tryLock`. */
export interface FsLock {
  /** Lets the lock go (closing its file); a second call does nothing. */
  release(): void;
}

/** True when `error` is "no space left on device" (ENOSPC, os error 28), from any Fs. */
export function isNoSpaceError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  if ((error as { code?: unknown }).code === "ENOSPC") return true;
  return /No space left on device|os error 28\b/.test(error.message);
}

/** The parent directory of a `/`-separated path. */
export function parentDir(path: string): string {
  const index = path.lastIndexOf("/");
  if (index < 0) return ".";
  if (index === 0) return "/";
  return path.slice(0, index);
}

class DenoFsFile implements FsFile {
  readonly #file: Deno.FsFile;

  constructor(file: Deno.FsFile) {
    this.#file = file;
  }

  read(buffer: Uint8Array): Promise<number | null> {
    return this.#file.read(buffer);
  }

  // deno-lint-ignore require-await
  async write(bytes: Uint8Array): Promise<void> {
    let offset = 0;
    // Synchronous: a write lands in the page cache in microseconds, less than the event-loop turn an
    // asynchronous write waits for. Bounded: every iteration writes at least one byte or throws.
    while (offset < bytes.length) {
      const written = this.#file.writeSync(bytes.subarray(offset));
      assert(written > 0, "write made no progress");
      offset += written;
    }
  }

  syncData(): Promise<void> {
    return this.#file.syncData();
  }

  truncate(lengthBytes: number): Promise<void> {
    return this.#file.truncate(lengthBytes);
  }

  async sizeBytes(): Promise<number> {
    return (await this.#file.stat()).size;
  }

  close(): void {
    this.#file.close();
  }
}

function isNotFound(error: unknown): boolean {
  return error instanceof Deno.errors.NotFound;
}

/** The real file system, through `Deno.*`. */
export class DenoFs implements Fs {
  async mkdir(path: string, options: CreateOptions): Promise<void> {
    // `mode` applies to every directory created, minus the umask, which can only remove bits.
    await Deno.mkdir(path, { recursive: true, mode: options.permissions });
  }

  async openRead(path: string): Promise<FsFile | undefined> {
    try {
      return new DenoFsFile(await Deno.open(path, { read: true }));
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  async openAppend(path: string, options: CreateOptions): Promise<FsFile> {
    const file = await Deno.open(path, { read: true, append: true, create: true, mode: options.permissions });
    return new DenoFsFile(file);
  }

  async createFile(path: string, options: CreateOptions): Promise<FsFile> {
    const file = await Deno.open(path, {
      write: true,
      create: true,
      truncate: true,
      mode: options.permissions,
    });
    try {
      // `mode` applies only to a new file, minus the umask: an emptied old file keeps its bits.
      if ((((await file.stat()).mode ?? 0) & 0o777) !== options.permissions) {
        await Deno.chmod(path, options.permissions);
      }
    } catch (error) {
      file.close();
      throw error;
    }
    return new DenoFsFile(file);
  }

  /**
   * A text file the operator named (a certificate, a CA), read whole; unlike the store's files its absence
   * is an error, thrown as `Deno.readTextFile` throws it (`Deno.errors.NotFound` naming the path).
   */
  readTextFile(path: string): Promise<string> {
    return Deno.readTextFile(path);
  }

  /**
   * A file the operator named (a backup to import), as a stream read front to back; the file closes when
   * the stream ends or is cancelled. Its absence throws as `Deno.open` does (`Deno.errors.NotFound`).
   */
  async openStream(path: string): Promise<ReadableStream<Uint8Array>> {
    return (await Deno.open(path, { read: true })).readable;
  }

  async readFile(path: string): Promise<Uint8Array | undefined> {
    try {
      return await Deno.readFile(path);
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  async stat(path: string): Promise<FsStat | undefined> {
    try {
      const info = await Deno.stat(path);
      return { sizeBytes: info.size, permissions: (info.mode ?? 0) & 0o777 };
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  async readDir(path: string): Promise<string[]> {
    const names: string[] = [];
    try {
      for await (const entry of Deno.readDir(path)) names.push(entry.name);
    } catch (error) {
      if (isNotFound(error)) return [];
      throw error;
    }
    return names;
  }

  async rename(source: string, target: string): Promise<void> {
    await Deno.rename(source, target);
  }

  async remove(path: string): Promise<void> {
    try {
      await Deno.remove(path);
    } catch (error) {
      if (!isNotFound(error)) throw error;
    }
  }

  async narrowPermissions(path: string, permissions: number): Promise<number | undefined> {
    let current: number;
    try {
      current = ((await Deno.stat(path)).mode ?? 0) & 0o777;
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
    if ((current & ~permissions) === 0) return undefined;
    await Deno.chmod(path, current & permissions);
    return current;
  }

  async syncDir(path: string): Promise<void> {
    const dir = await Deno.open(path, { read: true });
    try {
      await dir.sync();
    } finally {
      dir.close();
    }
  }

  async tryLock(path: string, options: LockOptions): Promise<FsLock | undefined> {
    const file = options.create === undefined
      ? await Deno.open(path, { read: true })
      : await Deno.open(path, { read: true, write: true, create: true, mode: options.create.permissions });
    let locked = false;
    try {
      // `flock`: held by this open file, so a second open, in this process too, conflicts with it.
      locked = await file.tryLock(options.exclusive);
    } finally {
      if (!locked) file.close();
    }
    if (!locked) return undefined;
    let held = true;
    return {
      release: () => {
        if (held) file.close();
        held = false;
      },
    };
  }
}

/**
 * An `Fs` that only reads, for a read-only store: every call that would create, change or remove a file
 * or directory is a bug of the caller and fails an assertion, as does writing through a file it opened.
 */
export class ReadOnlyFs implements Fs {
  readonly #inner: Fs;

  constructor(inner: Fs) {
    this.#inner = inner;
  }

  #refuse(operation: string, path: string): never {
    assert(false, `a read-only store must not ${operation} ${path}`);
  }

  mkdir(path: string): Promise<void> {
    this.#refuse("create the directory", path);
  }

  async openRead(path: string): Promise<FsFile | undefined> {
    const file = await this.#inner.openRead(path);
    if (file === undefined) return undefined;
    return {
      read: (buffer) => file.read(buffer),
      write: () => this.#refuse("write", path),
      syncData: () => this.#refuse("sync", path),
      truncate: () => this.#refuse("truncate", path),
      sizeBytes: () => file.sizeBytes(),
      close: () => file.close(),
    };
  }

  openAppend(path: string): Promise<FsFile> {
    this.#refuse("open for appending", path);
  }

  createFile(path: string): Promise<FsFile> {
    this.#refuse("create", path);
  }

  readFile(path: string): Promise<Uint8Array | undefined> {
    return this.#inner.readFile(path);
  }

  stat(path: string): Promise<FsStat | undefined> {
    return this.#inner.stat(path);
  }

  readDir(path: string): Promise<string[]> {
    return this.#inner.readDir(path);
  }

  rename(source: string): Promise<void> {
    this.#refuse("rename", source);
  }

  remove(path: string): Promise<void> {
    this.#refuse("remove", path);
  }

  narrowPermissions(path: string): Promise<number | undefined> {
    this.#refuse("change the permissions of", path);
  }

  syncDir(path: string): Promise<void> {
    this.#refuse("sync the directory", path);
  }

  tryLock(path: string, options: LockOptions): Promise<FsLock | undefined> {
    if (options.exclusive) this.#refuse("lock exclusively", path);
    if (options.create !== undefined) this.#refuse("create the lock file", path);
    return this.#inner.tryLock(path, options);
  }
}

/**
 * One file of `MemoryFs`. Bytes below `durableLength` are durable unless listed in `undo`, which keeps
 * the durable bytes that unsynced writes or truncations replaced, so a crash can restore them.
 */
class MemoryInode {
  bytes = new Uint8Array(64);
  length = 0;
  durableLength = 0;
  undo: Array<{ offset: number; bytes: Uint8Array }> = [];
  permissions: number;

  constructor(permissions: number) {
    this.permissions = permissions;
  }

  #ensureCapacity(lengthBytes: number): void {
    if (lengthBytes <= this.bytes.length) return;
    const grown = new Uint8Array(Math.max(lengthBytes, this.bytes.length * 2));
    grown.set(this.bytes.subarray(0, this.length));
    this.bytes = grown;
  }

  writeAt(offset: number, data: Uint8Array): void {
    assert(offset <= this.length);
    if (offset < this.durableLength) {
      const end = Math.min(this.durableLength, offset + data.length);
      this.undo.push({ offset, bytes: this.bytes.slice(offset, end) });
    }
    this.#ensureCapacity(offset + data.length);
    this.bytes.set(data, offset);
    this.length = Math.max(this.length, offset + data.length);
  }

  truncate(lengthBytes: number): void {
    if (lengthBytes < this.durableLength) {
      this.undo.push({ offset: lengthBytes, bytes: this.bytes.slice(lengthBytes, this.durableLength) });
    }
    if (lengthBytes < this.length) this.bytes.fill(0, lengthBytes, this.length);
    this.#ensureCapacity(lengthBytes);
    this.length = lengthBytes;
  }

  sync(): void {
    this.durableLength = this.length;
    this.undo = [];
  }

  content(): Uint8Array {
    return this.bytes.slice(0, this.length);
  }

  /** The file as it is now, every byte synced. */
  liveCopy(): MemoryInode {
    const copy = new MemoryInode(this.permissions);
    copy.writeAt(0, this.bytes.subarray(0, this.length));
    copy.sync();
    assert(copy.length === this.length);
    return copy;
  }

  /** The file as a crash would leave it: only synced bytes. */
  durableCopy(): MemoryInode {
    const copy = new MemoryInode(this.permissions);
    const bytes = new Uint8Array(Math.max(this.length, this.durableLength));
    bytes.set(this.bytes.subarray(0, this.length));
    for (let index = this.undo.length - 1; index >= 0; index -= 1) {
      const saved = this.undo[index]!;
      bytes.set(saved.bytes, saved.offset);
    }
    copy.writeAt(0, bytes.subarray(0, this.durableLength));
    copy.sync();
    return copy;
  }
}

class MemoryFsFile implements FsFile {
  readonly #fs: MemoryFs;
  readonly #inode: MemoryInode;
  readonly #append: boolean;
  #position = 0;
  #closed = false;

  constructor(options: { fs: MemoryFs; inode: MemoryInode; append: boolean }) {
    this.#fs = options.fs;
    this.#inode = options.inode;
    this.#append = options.append;
  }

  #checkOpen(): void {
    if (this.#closed) throw new Deno.errors.BadResource("file is closed");
  }

  read(buffer: Uint8Array): Promise<number | null> {
    this.#checkOpen();
    const available = this.#inode.length - this.#position;
    if (available <= 0) return Promise.resolve(buffer.length === 0 ? 0 : null);
    const count = Math.min(available, buffer.length);
    buffer.set(this.#inode.bytes.subarray(this.#position, this.#position + count));
    this.#position += count;
    return Promise.resolve(count);
  }

  write(bytes: Uint8Array): Promise<void> {
    this.#checkOpen();
    const offset = this.#append ? this.#inode.length : this.#position;
    const grownBytes = Math.max(0, offset + bytes.length - this.#inode.length);
    const fitBytes = this.#fs.reserveBytes(grownBytes);
    const written = fitBytes < grownBytes ? bytes.subarray(0, bytes.length - (grownBytes - fitBytes)) : bytes;
    this.#inode.writeAt(offset, written);
    this.#position = offset + written.length;
    if (written.length < bytes.length) return Promise.reject(noSpaceError());
    return Promise.resolve();
  }

  syncData(): Promise<void> {
    this.#checkOpen();
    this.#inode.sync();
    return Promise.resolve();
  }

  truncate(lengthBytes: number): Promise<void> {
    this.#checkOpen();
    const grownBytes = Math.max(0, lengthBytes - this.#inode.length);
    if (this.#fs.reserveBytes(grownBytes) < grownBytes) return Promise.reject(noSpaceError());
    this.#inode.truncate(lengthBytes);
    return Promise.resolve();
  }

  sizeBytes(): Promise<number> {
    this.#checkOpen();
    return Promise.resolve(this.#inode.length);
  }

  close(): void {
    this.#checkOpen();
    this.#closed = true;
  }
}

function noSpaceError(): Error {
  return Object.assign(new Error("No space left on device (os error 28)"), { code: "ENOSPC" });
}

function notFoundError(path: string): Error {
  return new Deno.errors.NotFound(`No such file or directory: ${path}`);
}

/**
 * An in-memory `Fs` for tests. It models durability: file data is durable after `syncData`, directory
 * entries (creations, renames, removals) after `syncDir` of their directory; `crashCopy()` returns the
 * file system a power cut would leave. Directories themselves are durable at once. With `capacityBytes`
 * a write that does not fit writes what fits and fails with ENOSPC, like a full disk.
 */
export class MemoryFs implements Fs {
  #live = new Map<string, MemoryInode>();
  #durable = new Map<string, MemoryInode>();
  /** Directories and their permission bits. */
  #dirs = new Map<string, number>([["/", 0o755], [".", 0o755]]);
  /** Locks held, by path: one exclusive holder, or a count of shared ones. Never copied by `crashCopy`. */
  #locks = new Map<string, { exclusive: boolean; holderCount: number }>();
  /** Total bytes all files may hold; `Infinity` for no limit. */
  capacityBytes: number;

  constructor(options: { capacityBytes?: number } = {}) {
    this.capacityBytes = options.capacityBytes ?? Infinity;
  }

  /** @internal How many of `bytes` more bytes fit within `capacityBytes`. */
  reserveBytes(bytes: number): number {
    if (this.capacityBytes === Infinity) return bytes;
    let usedBytes = 0;
    for (const inode of this.#live.values()) usedBytes += inode.length;
    return Math.max(0, Math.min(bytes, this.capacityBytes - usedBytes));
  }

  #requireDir(path: string): void {
    if (!this.#dirs.has(parentDir(path))) throw notFoundError(parentDir(path));
  }

  mkdir(path: string, options: CreateOptions): Promise<void> {
    // Bounded by the number of `/` in the path.
    for (let current = path; !this.#dirs.has(current); current = parentDir(current)) {
      this.#dirs.set(current, options.permissions);
    }
    return Promise.resolve();
  }

  openRead(path: string): Promise<FsFile | undefined> {
    const inode = this.#live.get(path);
    if (inode === undefined) return Promise.resolve(undefined);
    return Promise.resolve(new MemoryFsFile({ fs: this, inode, append: false }));
  }

  openAppend(path: string, options: CreateOptions): Promise<FsFile> {
    this.#requireDir(path);
    let inode = this.#live.get(path);
    if (inode === undefined) {
      inode = new MemoryInode(options.permissions);
      this.#live.set(path, inode);
    }
    return Promise.resolve(new MemoryFsFile({ fs: this, inode, append: true }));
  }

  createFile(path: string, options: CreateOptions): Promise<FsFile> {
    this.#requireDir(path);
    const inode = new MemoryInode(options.permissions);
    this.#live.set(path, inode);
    return Promise.resolve(new MemoryFsFile({ fs: this, inode, append: false }));
  }

  readFile(path: string): Promise<Uint8Array | undefined> {
    return Promise.resolve(this.#live.get(path)?.content());
  }

  stat(path: string): Promise<FsStat | undefined> {
    const dirPermissions = this.#dirs.get(path);
    if (dirPermissions !== undefined) return Promise.resolve({ sizeBytes: 0, permissions: dirPermissions });
    const inode = this.#live.get(path);
    if (inode === undefined) return Promise.resolve(undefined);
    return Promise.resolve({ sizeBytes: inode.length, permissions: inode.permissions });
  }

  /** Sets the permission bits of an existing directory (for tests of a data dir made by someone else). */
  setDirPermissions(path: string, permissions: number): void {
    assert(this.#dirs.has(path), `${path} is not a directory`);
    this.#dirs.set(path, permissions);
  }

  narrowPermissions(path: string, permissions: number): Promise<number | undefined> {
    const inode = this.#live.get(path);
    const current = inode?.permissions ?? this.#dirs.get(path);
    if (current === undefined || (current & ~permissions) === 0) return Promise.resolve(undefined);
    if (inode === undefined) this.#dirs.set(path, current & permissions);
    else inode.permissions = current & permissions;
    return Promise.resolve(current);
  }

  readDir(path: string): Promise<string[]> {
    const names: string[] = [];
    for (const candidate of [...this.#live.keys(), ...this.#dirs.keys()]) {
      if (candidate !== path && parentDir(candidate) === path) names.push(candidate.slice(path.length + 1));
    }
    return Promise.resolve(names);
  }

  rename(source: string, target: string): Promise<void> {
    const inode = this.#live.get(source);
    if (inode === undefined) return Promise.reject(notFoundError(source));
    this.#requireDir(target);
    this.#live.delete(source);
    this.#live.set(target, inode);
    return Promise.resolve();
  }

  remove(path: string): Promise<void> {
    this.#live.delete(path);
    return Promise.resolve();
  }

  syncDir(path: string): Promise<void> {
    if (!this.#dirs.has(path)) return Promise.reject(notFoundError(path));
    for (const name of new Set([...this.#live.keys(), ...this.#durable.keys()])) {
      if (parentDir(name) !== path) continue;
      const inode = this.#live.get(name);
      if (inode === undefined) this.#durable.delete(name);
      else this.#durable.set(name, inode);
    }
    return Promise.resolve();
  }

  tryLock(path: string, options: LockOptions): Promise<FsLock | undefined> {
    if (!this.#live.has(path)) {
      if (options.create === undefined) return Promise.reject(notFoundError(path));
      this.#requireDir(path);
      this.#live.set(path, new MemoryInode(options.create.permissions));
    }
    const held = this.#locks.get(path);
    if (held !== undefined && (held.exclusive || options.exclusive)) return Promise.resolve(undefined);
    const lock = held ?? { exclusive: options.exclusive, holderCount: 0 };
    lock.holderCount += 1;
    this.#locks.set(path, lock);
    let holding = true;
    return Promise.resolve({
      release: () => {
        if (!holding) return;
        holding = false;
        lock.holderCount -= 1;
        assert(lock.holderCount >= 0);
        if (lock.holderCount === 0) this.#locks.delete(path);
      },
    });
  }

  /**
   * The file system a power cut would leave now: synced data of files whose directory entry was synced.
   * With `keepUnsynced`, what a crash of the process alone leaves: the kernel still writes back every
   * byte and entry, synced or not. The copy is independent of this one; open files of this one do not
   * reach it, nor do its locks (the crashed process held them).
   */
  crashCopy(options: { keepUnsynced?: boolean } = {}): MemoryFs {
    const copy = new MemoryFs({ capacityBytes: this.capacityBytes });
    for (const [dir, permissions] of this.#dirs) copy.#dirs.set(dir, permissions);
    const keepUnsynced = options.keepUnsynced ?? false;
    for (const [path, inode] of keepUnsynced ? this.#live : this.#durable) {
      const kept = keepUnsynced ? inode.liveCopy() : inode.durableCopy();
      copy.#live.set(path, kept);
      copy.#durable.set(path, kept);
    }
    return copy;
  }

  /** Writes a whole file durably (entry included): for tests that prepare or damage files. */
  async writeFileDurably(path: string, bytes: Uint8Array): Promise<void> {
    const file = await this.createFile(path, { permissions: privateFilePermissions });
    await file.write(bytes);
    await file.syncData();
    file.close();
    await this.syncDir(parentDir(path));
  }
}
