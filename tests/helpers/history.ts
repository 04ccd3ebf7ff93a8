/**
 * A record of every client write of a test and the checks run over it after the faults heal (etcd's
 * robustness tests, Jepsen): acknowledged versions of a key only grow in real time, and the final state of
 * each key is what the last-ordered write left, with nothing acknowledged lost.
 */
import assert from "node:assert/strict";

/** One client write as the client saw it. */
export interface WriteRecord {
  key: string;
  /** The value written; unique per write so the final state can be traced to its write. */
  value: number;
  startedMs: number;
  endedMs: number;
  /** "ok" with its version (201), "indeterminate" (5xx or no answer: it may or may not take effect). */
  outcome: { kind: "ok"; version: number } | { kind: "indeterminate" } | { kind: "refused" };
}

/** The history of one test. */
export class History {
  readonly writes: WriteRecord[] = [];

  /** Runs one PUT through `send` and records it. */
  async put(key: string, value: number, send: () => Promise<Response>): Promise<void> {
    const startedMs = performance.now();
    let outcome: WriteRecord["outcome"] = { kind: "indeterminate" };
    try {
      const response = await send();
      if (response.status === 201) outcome = { kind: "ok", version: (await response.json()).version };
      else {
        await response.body?.cancel();
        if (response.status < 500) outcome = { kind: "refused" };
      }
    } catch {
      // no answer: indeterminate
    }
    this.writes.push({ key, value, startedMs, endedMs: performance.now(), outcome });
  }

  /** Acknowledged writes. */
  acknowledged(): Array<WriteRecord & { outcome: { kind: "ok"; version: number } }> {
    return this.writes.filter((write) => write.outcome.kind === "ok") as Array<
      WriteRecord & { outcome: { kind: "ok"; version: number } }
    >;
  }

  /**
   * Versions only grow: for two acknowledged writes of a key where one ended before the other started,
   * the later one has the higher version.
   */
  checkVersionsGrow(): void {
    const byKey = Map.groupBy(this.acknowledged(), (write) => write.key);
    for (const [key, writes] of byKey) {
      const ordered = [...writes].sort((a, b) => a.endedMs - b.endedMs);
      for (const [index, earlier] of ordered.entries()) {
        for (const later of ordered.slice(index + 1)) {
          if (later.startedMs <= earlier.endedMs) continue; // concurrent: no order to check
          assert.ok(
            later.outcome.version > earlier.outcome.version,
            `${key}: write of ${later.value} (v${later.outcome.version}) acknowledged after write of ` +
              `${earlier.value} (v${earlier.outcome.version}) ended, with a version that did not grow`,
          );
        }
      }
    }
  }

  /** The final state of every key holds a version ≥ every acknowledged one, written by a recorded write. */
  checkFinal(final: Map<string, { version: number; value: unknown } | undefined>): void {
    for (const [key, writes] of Map.groupBy(this.writes, (write) => write.key)) {
      const acknowledged = writes.filter((write) => write.outcome.kind === "ok");
      if (acknowledged.length === 0) continue;
      const state = final.get(key);
      assert.ok(state !== undefined, `${key}: acknowledged writes, but the key is gone`);
      const highest = Math.max(
        ...acknowledged.map((write) => (write.outcome as { version: number }).version),
      );
      assert.ok(state.version >= highest, `${key}: final version ${state.version} < acknowledged ${highest}`);
      const writers = writes.filter((write) => write.outcome.kind !== "refused").map((write) => write.value);
      assert.ok(
        writers.includes(state.value as number),
        `${key}: final value ${state.value} was never written`,
      );
    }
  }
}
