import { assert } from "../util/assert.ts";
import { type Fs, type FsFile, parentDir } from "./fs.ts";

/** Options of {@linkcode replaceFile}. */
export interface ReplaceFileOptions {
  fs: Fs;
  /** The file to replace (or create). */
  path: string;
  /** The temporary file, in the same directory as `path` so the rename is atomic. */
  tmpPath: string;
  /** Permission bits of the new file, e.g. `privateFilePermissions`. */
  permissions: number;
}

/**
 * Replaces `path` by what `fill` writes, or leaves it as it was: `fill` writes `tmpPath`, which is synced
 * and renamed over `path` (then the directory is synced) only once `fill` resolves. When `fill` or any
 * step fails, `tmpPath` is removed and the error is thrown again; `path` is untouched.
 *
 * @returns what `fill` returned.
 */
export async function replaceFile<T>(
  options: ReplaceFileOptions,
  fill: (file: FsFile) => Promise<T>,
): Promise<T> {
  const { fs, path, tmpPath } = options;
  assert(tmpPath !== path, "the temporary file must not be the target");
  assert(parentDir(tmpPath) === parentDir(path), "a rename is atomic only within one directory");
  const file = await fs.createFile(tmpPath, { permissions: options.permissions });
  let open = true;
  try {
    const result = await fill(file);
    await file.syncData();
    file.close();
    open = false;
    await fs.rename(tmpPath, path);
    await fs.syncDir(parentDir(path));
    return result;
  } catch (error) {
    if (open) file.close();
    await fs.remove(tmpPath).catch(() => {});
    throw error;
  }
}
