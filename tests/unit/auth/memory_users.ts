// A UserDirectory in memory for the auth tests. `create` yields before its conditional write, as the
// store adapter does while its WAL record syncs, so concurrent registrations really interleave.
import type { UserDirectory, UserRecord } from "../../../src/auth/mod.ts";
import { defaultLimits, type Limits } from "../../../src/config/limits.ts";

/** A UserDirectory over a Map that counts its calls. */
export class MemoryUsers implements UserDirectory {
  readonly records = new Map<string, UserRecord>();
  getCount = 0;
  createCount = 0;

  get(user: string): UserRecord | undefined {
    this.getCount += 1;
    return this.records.get(user);
  }

  async create(user: string, record: UserRecord): Promise<"created" | "exists"> {
    this.createCount += 1;
    await Promise.resolve();
    if (this.records.has(user)) return "exists";
    this.records.set(user, record);
    return "created";
  }
}

/** A 32-byte JWT secret. */
export const testSecret = "test-jwt-secret-0123456789abcdef-0123";

/** The default limits with `overrides` applied. */
export function testLimits(overrides: Partial<Limits> = {}): Limits {
  return { ...defaultLimits, ...overrides };
}
