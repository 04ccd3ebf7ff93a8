// Shared helpers of the store tests: fixed keys, store options, a recording logger, a file system
// wrapper that counts and breaks operations, and waitFor.
import { defaultLimits, type Limits } from "../../../src/config/limits.ts";
import { ManualClock } from "../../../src/util/clock.ts";
import type { Logger, LogLevel } from "../../../src/util/log.ts";
import type { CreateOptions, Fs, FsFile, FsLock, FsStat, LockOptions } from "../../../src/store/fs.ts";
import { importEncryptionKey, MemoryFs, Store, type StoreOptions } from "../../../src/store/mod.ts";

/** The key every test store uses (not the build key, so tests do not depend on it). */
export const testEncryption = await importEncryptionKey("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=");
/** Another key, for wrong-key tests. */
export const otherEncryption = await importEncryptionKey("//79/Pv6+fj39vX08/Lx8O/u7ezr6uno5+bl5OPi4eA=");

/** A log line kept by {@linkcode RecordingLogger}. */
export interface LogLine {
  level: LogLevel;
  message: string;
  fields: Record<string, unknown> | undefined;
}

/** A logger that keeps every line, for assertions on warnings. */
export class RecordingLogger implements Logger {
  lines: LogLine[] = [];
  error(message: string, fields?: Record<string, unknown>): void {
    this.lines.push({ level: "error", message, fields });
  }
  warn(message: string, fields?: Record<string, unknown>): void {
    this.lines.push({ level: "warn", message, fields });
  }
  info(message: string, fields?: Record<string, unknown>): void {
    this.lines.push({ level: "info", message, fields });
  }
  debug(message: string, fields?: Record<string, unknown>): void {
    this.lines.push({ level: "debug", message, fields });
  }
  enabled(): boolean {
    return true;
  }
  /** Lines at `level`. */
  at(level: LogLevel): LogLine[] {
    return this.lines.filter((line) => line.level === level);
  }
}

/** Options of a test store: MemoryFs, manual clock, timers off, unless overridden. */
export function storeOptions(
  overrides: Partial<Omit<StoreOptions, "limits">> & { limits?: Partial<Limits> } = {},
): StoreOptions {
  return {
    dir: "/data",
    fs: new MemoryFs(),
    clock: new ManualClock(),
    logger: new RecordingLogger(),
    encryption: testEncryption,
    snapshotLimit: 3,
    snapshotIntervalSecs: 0,
    ...overrides,
    limits: { ...defaultLimits, ...overrides.limits },
  };
}

/** Opens a store on `options` (see {@linkcode storeOptions}). */
export function openStore(options: StoreOptions): Promise<Store> {
  return Store.open(options);
}

/** Hooks of {@linkcode HookedFs}; a hook may throw to make the operation fail. */
export interface FsHooks {
  beforeWrite?: (path: string, bytes: Uint8Array) => void | Promise<void>;
  beforeSyncData?: (path: string) => void | Promise<void>;
  beforeTruncate?: (path: string, lengthBytes: number) => void | Promise<void>;
  beforeRename?: (source: string, target: string) => void | Promise<void>;
}

/** An Fs that forwards to another, counting syncs and running hooks before operations. */
export class HookedFs implements Fs {
  readonly inner: Fs;
  hooks: FsHooks;
  /** `syncData` calls per path. */
  syncCounts = new Map<string, number>();

  constructor(inner: Fs, hooks: FsHooks = {}) {
    this.inner = inner;
    this.hooks = hooks;
  }

  syncCount(path: string): number {
    return this.syncCounts.get(path) ?? 0;
  }

  #wrap(path: string, file: FsFile): FsFile {
    return {
      read: (buffer) => file.read(buffer),
      write: async (bytes) => {
        await this.hooks.beforeWrite?.(path, bytes);
        await file.write(bytes);
      },
      syncData: async () => {
        await this.hooks.beforeSyncData?.(path);
        this.syncCounts.set(path, this.syncCount(path) + 1);
        await file.syncData();
      },
      truncate: async (lengthBytes) => {
        await this.hooks.beforeTruncate?.(path, lengthBytes);
        await file.truncate(lengthBytes);
      },
      sizeBytes: () => file.sizeBytes(),
      close: () => file.close(),
    };
  }

  mkdir(path: string, options: CreateOptions): Promise<void> {
    return this.inner.mkdir(path, options);
  }
  async openRead(path: string): Promise<FsFile | undefined> {
    const file = await this.inner.openRead(path);
    return file === undefined ? undefined : this.#wrap(path, file);
  }
  async openAppend(path: string, options: CreateOptions): Promise<FsFile> {
    return this.#wrap(path, await this.inner.openAppend(path, options));
  }
  async createFile(path: string, options: CreateOptions): Promise<FsFile> {
    return this.#wrap(path, await this.inner.createFile(path, options));
  }
  readFile(path: string): Promise<Uint8Array | undefined> {
    return this.inner.readFile(path);
  }
  stat(path: string): Promise<FsStat | undefined> {
    return this.inner.stat(path);
  }
  readDir(path: string): Promise<string[]> {
    return this.inner.readDir(path);
  }
  async rename(source: string, target: string): Promise<void> {
    await this.hooks.beforeRename?.(source, target);
    await this.inner.rename(source, target);
  }
  remove(path: string): Promise<void> {
    return this.inner.remove(path);
  }
  narrowPermissions(path: string, permissions: number): Promise<number | undefined> {
    return this.inner.narrowPermissions(path, permissions);
  }
  syncDir(path: string): Promise<void> {
    return this.inner.syncDir(path);
  }
  tryLock(path: string, options: LockOptions): Promise<FsLock | undefined> {
    return this.inner.tryLock(path, options);
  }
}

/** Waits until `predicate` holds, checking every few ms; fails after `timeoutMs`. */
export async function waitFor(
  predicate: () => boolean | Promise<boolean>,
  options: { timeoutMs: number },
): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${options.timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** True when `haystack` contains the bytes of `needle`. */
export function containsBytes(haystack: Uint8Array, needle: Uint8Array): boolean {
  outer: for (let start = 0; start + needle.length <= haystack.length; start += 1) {
    for (let index = 0; index < needle.length; index += 1) {
      if (haystack[start + index] !== needle[index]) continue outer;
    }
    return true;
  }
  return false;
}

/** Every value in `table`, for comparing whole states. */
export function dumpTable(store: Store, table: string): Record<string, string> {
  const result: Record<string, string> = {};
  for (const [key, entry] of store.entries(table, { limit: 1_000_000 })) result[key] = entry.json;
  return result;
}
