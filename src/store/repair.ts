import { assert } from "../util/assert.ts";
import type { Clock } from "../util/clock.ts";
import { fileHeaderBytes } from "./frame.ts";
import { type Fs, parentDir, privateFilePermissions } from "./fs.ts";

/** Marks a copy of a damaged file kept by a repair: `<name>.broken.<ms>`. */
export const brokenSuffix = ".broken.";
/** Names tried when `<name>.broken.<ms>` exists (two repairs in one millisecond). */
const brokenNameAttemptsMax = 1000;

/** Options of the repair helpers. */
export interface RepairOptions {
  fs: Fs;
  /** The damaged file. */
  path: string;
  clock: Clock;
}

/** A free `<path>.broken.<ms>` name, `ms` from the clock (bumped while a file has that name). */
async function brokenPathOf(options: RepairOptions): Promise<string> {
  const startMs = options.clock.nowMs();
  assert(Number.isSafeInteger(startMs));
  for (let attempt = 0; attempt < brokenNameAttemptsMax; attempt += 1) {
    const candidate = `${options.path}${brokenSuffix}${startMs + attempt}`;
    if (await options.fs.stat(candidate) === undefined) return candidate;
  }
  throw new Error(`Cannot name a copy of ${options.path}: ${brokenNameAttemptsMax} names are taken`);
}

/**
 * Copies a damaged file to `<path>.broken.<ms>` durably (data and directory entry) before a repair
 * changes it.
 *
 * @returns the path of the copy.
 */
export async function keepBrokenCopy(options: RepairOptions): Promise<string> {
  const bytes = await options.fs.readFile(options.path);
  assert(bytes !== undefined, "the damaged file exists");
  const copyPath = await brokenPathOf(options);
  const file = await options.fs.createFile(copyPath, { permissions: privateFilePermissions });
  try {
    await file.write(bytes);
    await file.syncData();
  } finally {
    file.close();
  }
  await options.fs.syncDir(parentDir(copyPath));
  const copied = await options.fs.stat(copyPath);
  assert(copied?.sizeBytes === bytes.length);
  return copyPath;
}

/**
 * Renames a damaged file to `<path>.broken.<ms>` and syncs its directory, so the store opens as if it
 * were missing.
 *
 * @returns the new path.
 */
export async function moveAside(options: RepairOptions): Promise<string> {
  const targetPath = await brokenPathOf(options);
  await options.fs.rename(options.path, targetPath);
  await options.fs.syncDir(parentDir(options.path));
  assert(await options.fs.stat(options.path) === undefined);
  return targetPath;
}

/**
 * Cuts a damaged WAL at `offset` (the start of the first damaged frame) and syncs it. A cut inside the
 * file header empties the file, which the store rewrites as a new WAL.
 *
 * @returns the bytes dropped.
 */
export async function truncateWalAt(options: RepairOptions & { offset: number }): Promise<number> {
  assert(Number.isSafeInteger(options.offset));
  assert(options.offset >= 0);
  const lengthBytes = options.offset < fileHeaderBytes ? 0 : options.offset;
  const file = await options.fs.openAppend(options.path, { permissions: privateFilePermissions });
  try {
    const sizeBytes = await file.sizeBytes();
    assert(lengthBytes <= sizeBytes);
    await file.truncate(lengthBytes);
    await file.syncData();
    assert(await file.sizeBytes() === lengthBytes);
    return sizeBytes - lengthBytes;
  } finally {
    file.close();
  }
}
