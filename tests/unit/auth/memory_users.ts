// A UserStorage in memory for the auth tests, with the store's split between what a conditional write
// checks (pending writes included) and what a read sees (durable writes only). `create` yields before its
// conditional write, as the store adapter does, so concurrent registrations really interleave; with
// `holdWrites()` a created record stays pending (invisible to `read`) until `releaseWrites()`.
import { ReplicatedUsers, type UserRecord, type UserStorage } from "../../../src/auth/mod.ts";
import { defaultLimits, type Limits } from "../../../src/config/limits.ts";

/** A UserStorage over Maps that counts its calls. */
export class MemoryUsers implements UserStorage {
  /** Durable records: what `read` sees. */
  readonly records = new Map<string, UserRecord>();
  /** Records other members hold: what `readElsewhere` finds. */
  readonly elsewhere = new Map<string, UserRecord>();
  readCount = 0;
  createCount = 0;
  elsewhereCount = 0;
  readonly #pending = new Map<string, UserRecord>();
  readonly #held: Array<() => void> = [];
  readonly #listeners: Array<(user: string) => void> = [];
  #holding = false;

  read(user: string): UserRecord | undefined {
    this.readCount += 1;
    return this.records.get(user);
  }

  async readElsewhere(user: string): Promise<UserRecord | undefined> {
    this.elsewhereCount += 1;
    await Promise.resolve();
    return this.elsewhere.get(user);
  }

  async create(user: string, record: UserRecord): Promise<"created" | "exists"> {
    this.createCount += 1;
    await Promise.resolve();
    if (this.records.has(user) || this.#pending.has(user)) return "exists";
    this.#pending.set(user, record);
    if (this.#holding) await new Promise<void>((resolve) => this.#held.push(resolve));
    this.#pending.delete(user);
    this.records.set(user, record);
    for (const listener of this.#listeners) listener(user);
    return "created";
  }

  onDurable(listener: (user: string) => void): void {
    this.#listeners.push(listener);
  }

  /** Created records stay pending until {@linkcode MemoryUsers.releaseWrites}. */
  holdWrites(): void {
    this.#holding = true;
  }

  /** Makes every held record durable, in order. */
  releaseWrites(): void {
    this.#holding = false;
    for (const resolve of this.#held.splice(0)) resolve();
  }

  /** Records created but not yet durable. */
  get pendingCount(): number {
    return this.#pending.size;
  }

  /** The directory Auth uses, over this storage. */
  directory(): ReplicatedUsers {
    return new ReplicatedUsers(this);
  }
}

/** A 32-byte JWT secret. */
export const testSecret = "test-jwt-secret-0123456789abcdef-0123";

/** The default limits with `overrides` applied. */
export function testLimits(overrides: Partial<Limits> = {}): Limits {
  return { ...defaultLimits, ...overrides };
}
