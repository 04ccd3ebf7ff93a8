// Goal: 100,000 keys whose lifetimes end in the same millisecond never stall a node (cluster DESIGN.md,
// "Expiry (TTL)": the sweeper takes bounded batches and yields between them): it keeps answering
// GET /health quickly while it expires them, reads of an expired key are right meanwhile, and every key
// ends up expired, once.
// Method: the keys are written into a data dir by a Store in this process (with the build's key and a clock
// stopped at one instant, so every key gets the same expires_at; 100,000 HTTP writes would take most of the
// test's time), then a node child process opens that dir, rebuilding its expiry queue from storage.db, and
// serves while the keys come due. A sequential probe measures /health's latency over the whole sweep.
import assert from "node:assert/strict";
import { defaultLimits } from "../../../src/config/limits.ts";
import { DenoFs, loadBuildEncryption, Store } from "../../../src/store/mod.ts";
import { systemClock } from "../../../src/util/clock.ts";
import { silentLogger } from "../../../src/util/log.ts";
import { NodeProcess } from "../../helpers/node_process.ts";
import { waitFor } from "../../helpers/wait_for.ts";

/** `KV_TTL_SCALE_KEYS=1000000` runs the million keys by hand (about a minute of seeding). */
const keyCount = Number(Deno.env.get("KV_TTL_SCALE_KEYS") ?? 100_000);
/** Long enough for the seeding and the node's start, so that the sweep runs while the node serves. */
const ttlSecs = keyCount > 100_000 ? 60 : 10;
/** What "keeps answering" means here: no /health answer slower than this while the keys expire. */
const healthLatencyMsMax = 500;

async function seedDataDir(dir: string, writtenAtMs: number): Promise<number> {
  const store = await Store.open({
    dir,
    fs: new DenoFs(),
    clock: { ...systemClock, nowMs: () => writtenAtMs },
    logger: silentLogger,
    limits: defaultLimits,
    encryption: await loadBuildEncryption(),
    snapshotLimit: 1,
    snapshotIntervalSecs: 0,
  });
  const batch = 4_096;
  for (let start = 0; start < keyCount; start += batch) {
    const writes = [];
    for (let index = start; index < Math.min(keyCount, start + batch); index += 1) {
      writes.push(store.put("sessions", `s${index}`, { user: index }, { owner: "alice", ttlSecs }));
    }
    await Promise.all(writes);
  }
  assert.equal(store.tableCounts().get("sessions"), keyCount);
  await store.close(); // a checkpoint: the node reads them from storage.db
  return writtenAtMs + ttlSecs * 1000;
}

Deno.test(
  `ttl scale: ${keyCount.toLocaleString("en")} keys expiring in one millisecond; ` +
    "the node keeps answering and expires them all",
  async () => {
    const dataDir = await Deno.makeTempDir({ prefix: "dynarust_ttl_scale_" });
    try {
      const expiresAtMs = await seedDataDir(dataDir, Date.now());
      await using node = await NodeProcess.start({ dataDir });
      assert.ok(Date.now() < expiresAtMs, "the node serves before the keys are due; raise ttlSecs otherwise");
      let latencyMsMax = 0;
      let probes = 0;
      let probesDuringSweep = 0;
      let expiredKeys = 0;
      // Bounded by waitFor's timeout; each step is one /health request, and every tenth a /stats request.
      await waitFor(async () => {
        const started = performance.now();
        const health = await node.fetch("/health");
        await health.body?.cancel();
        assert.equal(health.status, 200);
        latencyMsMax = Math.max(latencyMsMax, performance.now() - started);
        probes += 1;
        if (Date.now() >= expiresAtMs) probesDuringSweep += 1;
        if (probes % 10 !== 0) return false;
        expiredKeys = ((await (await node.fetch("/stats")).json()) as { expired_keys: number }).expired_keys;
        return expiredKeys === keyCount;
      }, {
        timeoutMs: keyCount > 100_000 ? 600_000 : 45_000,
        intervalMs: 5,
        what: "every key to be expired",
      });
      const sweptMs = Date.now() - expiresAtMs;
      console.log(
        `ttl scale: ${keyCount} keys expired ${sweptMs} ms after they were due; /health max ` +
          `${
            latencyMsMax.toFixed(1)
          } ms over ${probes} probes, ${probesDuringSweep} of them during the sweep`,
      );
      assert.ok(latencyMsMax < healthLatencyMsMax, `/health took up to ${latencyMsMax.toFixed(1)} ms`);
      assert.ok(probesDuringSweep >= 10, `only ${probesDuringSweep} probes ran while the keys were expired`);
      const stats = await (await node.fetch("/stats")).json();
      assert.equal(stats.tables.sessions, 0);
      assert.equal(stats.expiry.refused, 0, "each key expired once");
      const tombstone = await node.fetch("/sessions/key/s77");
      assert.equal(tombstone.status, 404);
      await tombstone.body?.cancel();
      assert.deepEqual(await (await node.fetch("/sessions/keys?limit=5")).json(), []);
    } finally {
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    }
  },
);
