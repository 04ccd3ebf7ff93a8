// Goal: the expiry sweeper takes due keys in bounded batches, never has more than expiryInFlightMax expiries
// in flight, lets the usual proposer go first (a grace delay for the others), drops keys that are no longer
// this node's, retries failures with a doubling pause, and, started, expires every due key by itself, looking
// again when the next key falls due by its clock (at least every expiryIdleMsMax).
// Method: a real Store on MemoryFs with a manual clock, whose timers run the started sweeper's turns; the
// expiry is a function the test controls (held promises), or the store's own conditional write.
import assert from "node:assert/strict";
import {
  Expirer,
  expiryBatchMax,
  expiryIdleMsMax,
  expiryInFlightMax,
  expiryRetryMs,
} from "../../../src/cluster/expirer.ts";
import type { ExpiringKey } from "../../../src/cluster/local_store.ts";
import type { Store } from "../../../src/store/mod.ts";
import { ManualClock } from "../../../src/util/clock.ts";
import { UnavailableError } from "../../../src/util/errors.ts";
import { silentLogger } from "../../../src/util/log.ts";
import { waitFor } from "../../helpers/wait_for.ts";
import { openTestStore } from "./fake_cluster.ts";

/** `count` keys of table `t` with a lifetime of one second, then the clock past it. */
async function dueKeys(store: Store, clock: ManualClock, count: number): Promise<void> {
  await Promise.all(
    Array.from(
      { length: count },
      (_, index) => store.put("t", `k${index}`, index, { owner: "o", ttlSecs: 1 }),
    ),
  );
  clock.advance(1_000);
}

/** An expiry the test settles by hand. */
interface Held {
  item: ExpiringKey;
  settle(outcome: boolean | Error): void;
}

function heldExpiries(): { held: Held[]; expire: (item: ExpiringKey) => Promise<boolean> } {
  const held: Held[] = [];
  return {
    held,
    expire: (item) =>
      new Promise<boolean>((resolve, reject) => {
        held.push({
          item,
          settle: (outcome) => outcome instanceof Error ? reject(outcome) : resolve(outcome),
        });
      }),
  };
}

Deno.test(
  "Expirer.sweep() takes at most a batch, and never more than expiryInFlightMax in flight",
  async () => {
    const clock = new ManualClock();
    const store = await openTestStore(clock);
    await dueKeys(store, clock, expiryInFlightMax + 100);
    const { held, expire } = heldExpiries();
    const expirer = new Expirer({ store, clock, logger: silentLogger, delayOf: () => 0, expire });
    assert.equal(expiryBatchMax <= expiryInFlightMax, true);
    assert.equal(expirer.sweep(), expiryBatchMax);
    // Bounded by the loop: one more batch per sweep until the slots are full.
    while (expirer.stats.inFlight < expiryInFlightMax) assert.notEqual(expirer.sweep(), 0);
    assert.equal(held.length, expiryInFlightMax);
    assert.equal(expirer.sweep(), 0, "no free slot, nothing taken");
    for (const expiry of held.splice(0, 40)) expiry.settle(true);
    await waitFor(() => expirer.stats.inFlight === expiryInFlightMax - 40, { timeoutMs: 1_000 });
    assert.equal(expirer.sweep(), 40);
    for (const expiry of held.splice(0)) expiry.settle(false);
    await waitFor(() => expirer.stats.inFlight === 0, { timeoutMs: 1_000 });
    assert.equal(expirer.sweep(), 100 - 40);
    for (const expiry of held.splice(0)) expiry.settle(true);
    await waitFor(() => expirer.stats.inFlight === 0, { timeoutMs: 1_000 });
    assert.deepEqual(expirer.stats, {
      proposed: expiryInFlightMax + 100,
      expired: 100,
      refused: expiryInFlightMax,
      failed: 0,
      deferred: 0,
      inFlight: 0,
    });
    await store.close();
  },
);

Deno.test(
  "Expirer.sweep(): another replica's keys wait a grace delay first; keys no longer here are dropped",
  async () => {
    const clock = new ManualClock();
    const store = await openTestStore(clock);
    await dueKeys(store, clock, 3);
    const { held, expire } = heldExpiries();
    const delays: Record<string, number | undefined> = { k0: 0, k1: 500, k2: undefined };
    const expirer = new Expirer({
      store,
      clock,
      logger: silentLogger,
      delayOf: (item) => delays[item.key],
      expire,
    });
    assert.equal(expirer.sweep(), 3);
    assert.deepEqual(held.map((expiry) => expiry.item.key), ["k0"]);
    assert.equal(expirer.stats.deferred, 1);
    clock.advance(499);
    assert.equal(expirer.sweep(), 0);
    clock.advance(1);
    assert.equal(expirer.sweep(), 1, "after the grace delay, the other replica proposes it itself");
    assert.deepEqual(held.map((expiry) => [expiry.item.key, expiry.item.deferrals]), [["k0", 0], ["k1", 1]]);
    assert.equal(store.nextExpiryMs(), undefined, "k2 was dropped: its replicas expire it");
    for (const expiry of held) expiry.settle(true);
    await store.close();
  },
);

Deno.test(
  "Expirer: a failed expiry is put back with a doubling pause, and a newer lifetime wins over it",
  async () => {
    const clock = new ManualClock();
    const store = await openTestStore(clock);
    await dueKeys(store, clock, 2);
    const { held, expire } = heldExpiries();
    const expirer = new Expirer({ store, clock, logger: silentLogger, delayOf: () => 0, expire });
    assert.equal(expirer.sweep(), 2);
    for (const expiry of held.splice(0)) expiry.settle(new UnavailableError("no quorum"));
    await waitFor(() => expirer.stats.failed === 2, { timeoutMs: 1_000 });
    assert.equal(store.nextExpiryMs(), clock.nowMs() + expiryRetryMs);
    // k1 is written again meanwhile with a new lifetime: its retry is dropped in favour of it.
    await store.put("t", "k1", "again", { owner: "o", ttlSecs: 60 });
    clock.advance(expiryRetryMs);
    assert.equal(expirer.sweep(), 1);
    assert.deepEqual(held.map((expiry) => [expiry.item.key, expiry.item.deferrals]), [["k0", 1]]);
    held.splice(0)[0]!.settle(new UnavailableError("no quorum"));
    await waitFor(() => expirer.stats.failed === 3, { timeoutMs: 1_000 });
    clock.advance(2 * expiryRetryMs - 1);
    assert.equal(expirer.sweep(), 0, "the second pause is twice the first");
    clock.advance(1);
    assert.equal(expirer.sweep(), 1);
    held.splice(0)[0]!.settle(true);
    await store.close();
  },
);

Deno.test(
  "Expirer.start() expires every due key by itself, through the store's conditional write",
  async () => {
    const clock = new ManualClock();
    const store = await openTestStore(clock);
    await dueKeys(store, clock, 700);
    const expirer = new Expirer({
      store,
      clock,
      logger: silentLogger,
      delayOf: () => 0,
      expire: async (item) =>
        (await store.expire(item.table, item.key, { version: item.version })) !== undefined,
    });
    expirer.start();
    try {
      // The sweeper's turns are timers of its clock, due at once while keys are due: the test runs them.
      await waitFor(() => {
        clock.advance(0);
        return expirer.stats.expired === 700;
      }, { timeoutMs: 10_000 });
      assert.equal(store.tableCounts().get("t"), 0);
      assert.equal(store.getEntry("t", "k5")!.json.endsWith(',"reason":"expired"}'), true);
      assert.equal(expirer.stats.refused, 0);
    } finally {
      expirer.stop();
      await store.close();
    }
  },
);

Deno.test(
  "Expirer.start() sweeps at once, then on its clock when the next key falls due; stop() clears it",
  async () => {
    const clock = new ManualClock();
    const store = await openTestStore(clock);
    await store.put("t", "later", 1, { owner: "o", ttlSecs: 3 });
    const { held, expire } = heldExpiries();
    const expirer = new Expirer({ store, clock, logger: silentLogger, delayOf: () => 0, expire });
    expirer.start();
    expirer.start();
    assert.equal(clock.timerCount, 1, "one timer");
    clock.advance(0);
    assert.equal(held.length, 0, "nothing is due yet");
    assert.equal(clock.timerCount, 1, "the next look is armed");
    clock.advance(expiryIdleMsMax);
    clock.advance(2_999 - expiryIdleMsMax);
    assert.equal(held.length, 0, "not a millisecond early");
    clock.advance(1);
    assert.deepEqual(held.map((expiry) => expiry.item.key), ["later"]);
    held[0]!.settle(true);
    await waitFor(() => expirer.stats.expired === 1 && clock.timerCount === 1, { timeoutMs: 1_000 });
    expirer.stop();
    assert.equal(clock.timerCount, 0, "stop() leaves no timer armed");
    await store.close();
  },
);
