/**
 * A file system that breaks on request, wrapping any `Fs` (`DenoFs` or `MemoryFs`): failing `syncData`
 * (EIO), a full disk (ENOSPC, after a seeded partial write), a write torn at a file offset (after which
 * the file system is "crashed": every operation fails, as if the process had died mid-write), and a bit
 * flipped at a file offset. Faults are armed and healed by the test; the store only sees the `Fs` seam.
 */
import type { CreateOptions, Fs, FsFile, FsLock, FsStat, LockOptions } from "../../src/store/mod.ts";
import type { Random } from "./seed.ts";

/** An I/O error as the OS reports it (Deno has no class for EIO). */
export function ioError(what: string): Error {
  return Object.assign(new Error(`Input/output error (os error 5): ${what}`), { code: "EIO" });
}

/** A full disk as the OS reports it: what `isNoSpaceError` (src/store/fs.ts) recognises. */
export function noSpaceError(): Error {
  return Object.assign(new Error("No space left on device (os error 28)"), { code: "ENOSPC" });
}

/** Which files a fault applies to: one path, or every file when omitted. */
export interface FaultTarget {
  path?: string;
}

/** Counts of faults that fired, for assertions and waits. */
export interface FaultCounts {
  syncFailures: number;
  noSpaceFailures: number;
  tornWrites: number;
}

function matches(target: FaultTarget | undefined, path: string): boolean {
  return target !== undefined && (target.path === undefined || target.path === path);
}

/** A write of `path` reaching `offset` writes only the bytes before it, then the file system crashes. */
interface TearFault {
  path: string;
  offset: number;
}

/** A wrapped `Fs` with switchable faults; see the module comment. */
export class FaultyFs implements Fs {
  readonly inner: Fs;
  readonly #random: Random | undefined;
  #syncFault: FaultTarget | undefined;
  #noSpaceFault: FaultTarget | undefined;
  #tearFault: TearFault | undefined;
  #crashed = false;
  /** Faults that fired so far. */
  readonly counts: FaultCounts = { syncFailures: 0, noSpaceFailures: 0, tornWrites: 0 };

  /** `random` chooses how much of a write lands before ENOSPC; without it nothing lands. */
  constructor(inner: Fs, options: { random?: Random } = {}) {
    this.inner = inner;
    this.#random = options.random;
  }

  /** Every later `syncData` of a matching file fails with EIO (the data may or may not be on disk). */
  failSyncs(target: FaultTarget = {}): void {
    this.#syncFault = target;
  }

  /** Every later write to a matching file fails with ENOSPC, after writing a seeded prefix of its bytes. */
  fillDisk(target: FaultTarget = {}): void {
    this.#noSpaceFault = target;
  }

  /**
   * The next write of `path` that reaches file offset `offset` writes only the bytes before it; then the
   * file system is crashed ({@linkcode crash}) and that write fails too.
   */
  tearWriteAt(fault: TearFault): void {
    this.#tearFault = fault;
  }

  /** Clears the sync and full-disk faults (space was freed, the disk works again). Not a crash. */
  heal(): void {
    this.#syncFault = undefined;
    this.#noSpaceFault = undefined;
  }

  /** From now on every operation but `close` fails with EIO, as if the process had died. */
  crash(): void {
    this.#crashed = true;
  }

  /** True after {@linkcode crash} or a torn write. */
  get crashed(): boolean {
    return this.#crashed;
  }

  /** Flips bit `bit` (0-7) of the byte at `offset` of `path`, durably, through the inner file system. */
  async flipBit(options: { path: string; offset: number; bit?: number }): Promise<void> {
    const bytes = await this.inner.readFile(options.path);
    if (bytes === undefined) throw new Error(`flipBit: ${options.path} does not exist`);
    if (options.offset >= bytes.length) throw new Error(`flipBit: offset ${options.offset} is past the end`);
    bytes[options.offset]! ^= 1 << (options.bit ?? 0);
    const file = await this.inner.createFile(options.path, { permissions: 0o600 });
    await file.write(bytes);
    await file.syncData();
    file.close();
    const slash = options.path.lastIndexOf("/");
    await this.inner.syncDir(slash < 0 ? "." : slash === 0 ? "/" : options.path.slice(0, slash));
  }

  #check(what: string): void {
    if (this.#crashed) throw ioError(`${what} after a crash`);
  }

  async #write(options: { path: string; file: FsFile; offset: number; bytes: Uint8Array }): Promise<void> {
    const { path, file, offset, bytes } = options;
    this.#check(`write ${path}`);
    const tear = this.#tearFault;
    if (tear !== undefined && tear.path === path && offset + bytes.length > tear.offset) {
      this.#tearFault = undefined;
      this.counts.tornWrites += 1;
      await file.write(bytes.subarray(0, Math.max(0, tear.offset - offset)));
      this.#crashed = true;
      throw ioError(`write ${path} torn at offset ${tear.offset}`);
    }
    if (matches(this.#noSpaceFault, path)) {
      this.counts.noSpaceFailures += 1;
      const landedBytes = this.#random === undefined ? 0 : this.#random.int(bytes.length);
      await file.write(bytes.subarray(0, landedBytes));
      throw noSpaceError();
    }
    await file.write(bytes);
  }

  #wrap(path: string, file: FsFile, mode: "append" | "create" | "read"): FsFile {
    let position = 0; // of a created file: writes go one after another from 0
    return {
      read: (buffer) => {
        this.#check(`read ${path}`);
        return file.read(buffer);
      },
      write: async (bytes) => {
        const offset = mode === "append" ? await file.sizeBytes() : position;
        await this.#write({ path, file, offset, bytes });
        position = offset + bytes.length;
      },
      syncData: async () => {
        this.#check(`sync ${path}`);
        if (matches(this.#syncFault, path)) {
          this.counts.syncFailures += 1;
          throw ioError(`sync ${path}`);
        }
        await file.syncData();
      },
      truncate: async (lengthBytes) => {
        this.#check(`truncate ${path}`);
        await file.truncate(lengthBytes);
      },
      sizeBytes: () => {
        this.#check(`stat ${path}`);
        return file.sizeBytes();
      },
      close: () => file.close(),
    };
  }

  async mkdir(path: string, options: CreateOptions): Promise<void> {
    this.#check(`mkdir ${path}`);
    await this.inner.mkdir(path, options);
  }

  async openRead(path: string): Promise<FsFile | undefined> {
    this.#check(`open ${path}`);
    const file = await this.inner.openRead(path);
    return file === undefined ? undefined : this.#wrap(path, file, "read");
  }

  async openAppend(path: string, options: CreateOptions): Promise<FsFile> {
    this.#check(`open ${path}`);
    return this.#wrap(path, await this.inner.openAppend(path, options), "append");
  }

  async createFile(path: string, options: CreateOptions): Promise<FsFile> {
    this.#check(`create ${path}`);
    return this.#wrap(path, await this.inner.createFile(path, options), "create");
  }

  async readFile(path: string): Promise<Uint8Array | undefined> {
    this.#check(`read ${path}`);
    return await this.inner.readFile(path);
  }

  async stat(path: string): Promise<FsStat | undefined> {
    this.#check(`stat ${path}`);
    return await this.inner.stat(path);
  }

  async readDir(path: string): Promise<string[]> {
    this.#check(`read dir ${path}`);
    return await this.inner.readDir(path);
  }

  async rename(source: string, target: string): Promise<void> {
    this.#check(`rename ${source}`);
    await this.inner.rename(source, target);
  }

  async remove(path: string): Promise<void> {
    this.#check(`remove ${path}`);
    await this.inner.remove(path);
  }

  async narrowPermissions(path: string, permissions: number): Promise<number | undefined> {
    this.#check(`chmod ${path}`);
    return await this.inner.narrowPermissions(path, permissions);
  }

  async syncDir(path: string): Promise<void> {
    this.#check(`sync dir ${path}`);
    if (matches(this.#syncFault, path)) {
      this.counts.syncFailures += 1;
      throw ioError(`sync dir ${path}`);
    }
    await this.inner.syncDir(path);
  }

  /** A lock taken before a crash is let go by `release`, as the dead process's would be by its end. */
  async tryLock(path: string, options: LockOptions): Promise<FsLock | undefined> {
    this.#check(`lock ${path}`);
    return await this.inner.tryLock(path, options);
  }
}
