import { assert } from "../util/assert.ts";

/**
 * The named places where a test can stop the store (etcd gofail). Each sits between two disk operations
 * whose order matters for recovery; `mod.ts` ("Failpoints") says what a crash at each one leaves.
 */
export const failpointNames = [
  "wal.afterAppendBeforeSync",
  "wal.midTruncate",
  "checkpoint.afterTmpWriteBeforeRename",
  "checkpoint.afterRenameBeforeDirSync",
  "checkpoint.afterRenameBeforeWalTruncate",
  "snapshot.beforeRename",
] as const;

/** One of {@linkcode failpointNames}. */
export type FailpointName = typeof failpointNames[number];

/**
 * What an armed failpoint does when the store reaches it: `"throw"` throws a {@linkcode FailpointError}
 * (the store stops there, as a crash would stop it); a callback runs (and may throw) before the store
 * goes on.
 */
export type FailpointAction = "throw" | ((name: FailpointName) => void | Promise<void>);

/** Thrown by an armed failpoint: simulates the process dying at that point. */
export class FailpointError extends Error {
  /** The failpoint that fired. */
  readonly failpoint: FailpointName;

  constructor(failpoint: FailpointName) {
    super(`failpoint ${failpoint} fired`);
    this.name = "FailpointError";
    this.failpoint = failpoint;
  }
}

/**
 * Named failpoints, injected into `Store.open` (`StoreOptions.failpoints`). Production code passes nothing
 * and gets {@linkcode inertFailpoints}, which cannot be armed, so a failpoint costs one property check:
 * `if (failpoints.armed) await failpoints.reach(name)`.
 *
 * ```ts
 * import { MemoryFs, Store, type StoreOptions } from "./mod.ts";
 *
 * declare const options: StoreOptions; // dir, clock, logger, limits, encryption, ...
 *
 * const memoryFs = new MemoryFs();
 * let image: MemoryFs | undefined;
 * const failpoints = new Failpoints();
 * failpoints.arm("wal.afterAppendBeforeSync", (name) => {
 *   image = memoryFs.crashCopy(); // what a power cut here would leave
 *   throw new FailpointError(name); // and the store stops here
 * });
 * const store = await Store.open({ ...options, fs: memoryFs, failpoints });
 * ```
 */
export class Failpoints {
  readonly #actions = new Map<FailpointName, FailpointAction>();
  readonly #hitCounts = new Map<FailpointName, number>();
  readonly #inert: boolean;
  #armed = false;

  constructor(options: { inert?: boolean } = {}) {
    this.#inert = options.inert ?? false;
  }

  /** True when at least one failpoint is armed; the store checks it before calling {@linkcode reach}. */
  get armed(): boolean {
    return this.#armed;
  }

  /** Arms `name`: every later time the store reaches it, `action` runs, until {@linkcode disarm}. */
  arm(name: FailpointName, action: FailpointAction): void {
    assert(!this.#inert, "the shared inert failpoints cannot be armed: inject new Failpoints()");
    assert(failpointNames.includes(name));
    this.#actions.set(name, action);
    this.#armed = true;
  }

  /** Disarms `name` (no error when it was not armed). */
  disarm(name: FailpointName): void {
    this.#actions.delete(name);
    this.#armed = this.#actions.size > 0;
  }

  /** How many times the store reached `name` while any failpoint was armed. */
  hitCount(name: FailpointName): number {
    return this.#hitCounts.get(name) ?? 0;
  }

  /**
   * Called by the store at `name`; runs its action when armed.
   *
   * @throws {FailpointError} when the action is `"throw"`, or whatever a callback throws.
   */
  async reach(name: FailpointName): Promise<void> {
    assert(this.#armed, "reach() only behind a check of armed");
    this.#hitCounts.set(name, this.hitCount(name) + 1);
    const action = this.#actions.get(name);
    if (action === undefined) return;
    if (action === "throw") throw new FailpointError(name);
    await action(name);
  }
}

/** The shared failpoints of production: never armed, so every failpoint is one false property check. */
export const inertFailpoints: Failpoints = new Failpoints({ inert: true });
