// Goal: HashSlots runs at most concurrencyMax hashes at once, queues up to queueMax more in arrival
// order, and refuses the next one with 503 at once.
// Method: hashes that end when the test says so.
import assert from "node:assert/strict";
import { HashSlots } from "../../../src/auth/hash_slots.ts";
import { UnavailableError } from "../../../src/util/errors.ts";

/** A hash that ends when `finish()` is called; `started` tells whether it began. */
function heldHash() {
  const gate = Promise.withResolvers<void>();
  const hash = {
    started: false,
    finish: () => gate.resolve(),
    run: async () => {
      hash.started = true;
      await gate.promise;
      return "done";
    },
  };
  return hash;
}

Deno.test(
  "HashSlots runs concurrencyMax hashes at max, queues queueMax, refuses at queueMax + 1",
  async () => {
    const slots = new HashSlots({ concurrencyMax: 2, queueMax: 2 });
    const hashes = Array.from({ length: 4 }, heldHash);
    const results = hashes.map((hash) => slots.run(hash.run));
    await Promise.resolve();
    assert.deepEqual(hashes.map((hash) => hash.started), [true, true, false, false]);
    assert.equal(slots.runningCount, 2);
    assert.equal(slots.queuedCount, 2);
    await assert.rejects(slots.run(() => Promise.resolve("over")), (error: unknown) => {
      assert.ok(error instanceof UnavailableError);
      assert.match(error.message, /2 are waiting for a hash, the limit is 2/);
      return true;
    });
    hashes[1]!.finish();
    assert.equal(await results[1], "done");
    assert.deepEqual(
      hashes.map((hash) => hash.started),
      [true, true, true, false],
      "first come, first served",
    );
    assert.equal(slots.runningCount, 2);
    for (const hash of hashes) hash.finish();
    assert.deepEqual(await Promise.all(results), ["done", "done", "done", "done"]);
    assert.equal(slots.runningCount, 0);
    assert.equal(slots.queuedCount, 0);
  },
);

Deno.test("HashSlots frees the slot of a hash that throws", async () => {
  const slots = new HashSlots({ concurrencyMax: 1, queueMax: 0 });
  await assert.rejects(slots.run(() => Promise.reject(new Error("boom"))), /boom/);
  assert.equal(slots.runningCount, 0);
  assert.equal(await slots.run(() => Promise.resolve(7)), 7);
});
