/**
 * The group commit of the bench's bare baselines, the same one dynarust's WAL does: writes that wait while
 * a sync runs are joined into one `write` and one `syncData`.
 *
 * @module
 */

const encoder = new TextEncoder();

/** Appends lines to one file; each `append` resolves once its line is on disk. */
export class GroupCommitLog {
  readonly #file: Deno.FsFile;
  #waiting: Array<{ bytes: Uint8Array; resolve: () => void }> = [];
  #flushing = false;

  private constructor(file: Deno.FsFile) {
    this.#file = file;
  }

  /** Opens (creates) `path` for appending. */
  static async open(path: string): Promise<GroupCommitLog> {
    return new GroupCommitLog(await Deno.open(path, { create: true, append: true }));
  }

  /** Resolves once `line` is written and synced. */
  append(line: string): Promise<void> {
    return new Promise((resolve) => {
      this.#waiting.push({ bytes: encoder.encode(line), resolve });
      if (this.#flushing) return;
      this.#flushing = true;
      queueMicrotask(() => void this.#flush());
    });
  }

  async #flush(): Promise<void> {
    // Ends when no write is waiting; each turn writes at least one.
    while (this.#waiting.length > 0) {
      const batch = this.#waiting;
      this.#waiting = [];
      const joined = new Uint8Array(batch.reduce((total, write) => total + write.bytes.length, 0));
      let offset = 0;
      for (const write of batch) {
        joined.set(write.bytes, offset);
        offset += write.bytes.length;
      }
      for (let written = 0; written < joined.length;) {
        written += await this.#file.write(joined.subarray(written));
      }
      await this.#file.syncData();
      for (const write of batch) write.resolve();
    }
    this.#flushing = false;
  }
}
