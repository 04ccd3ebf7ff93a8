/**
 * The group commit of the bench's bare baselines, the same one dynarust's WAL does: writes that wait while
 * a sync runs are joined into one `write` and one `syncData`.
 *
 * @module
 */

const encoder = new TextEncoder();

/**
 * Appends lines to one file; each `append` resolves once its line is on disk. With `seal`, each batch is
 * written as `seal` transforms it (the contract baseline compresses and encrypts it, as dynarust's WAL does).
 */
export class GroupCommitLog {
  readonly #file: Deno.FsFile;
  readonly #seal: ((batch: Uint8Array) => Uint8Array) | undefined;
  #waiting: Array<{ bytes: Uint8Array; resolve: () => void }> = [];
  #flushing = false;

  private constructor(file: Deno.FsFile, seal: ((batch: Uint8Array) => Uint8Array) | undefined) {
    this.#file = file;
    this.#seal = seal;
  }

  /** Opens (creates) `path` for appending. */
  static async open(path: string, seal?: (batch: Uint8Array) => Uint8Array): Promise<GroupCommitLog> {
    return new GroupCommitLog(await Deno.open(path, { create: true, append: true }), seal);
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
      let joined: Uint8Array = new Uint8Array(batch.reduce((total, write) => total + write.bytes.length, 0));
      let offset = 0;
      for (const write of batch) {
        joined.set(write.bytes, offset);
        offset += write.bytes.length;
      }
      if (this.#seal !== undefined) joined = this.#seal(joined);
      for (let written = 0; written < joined.length;) {
        written += await this.#file.write(joined.subarray(written));
      }
      await this.#file.syncData();
      for (const write of batch) write.resolve();
    }
    this.#flushing = false;
  }
}
