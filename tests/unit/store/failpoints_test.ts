// Goal: failpoints are inert unless a test arms them; an armed "throw" stops the store where it fires, and
// a callback runs there and lets the store go on.
// Method: a Store on MemoryFs with an injected Failpoints; the crash scenarios themselves are in
// tests/fault/store_failpoints_test.ts.
import assert from "node:assert/strict";
import { AssertionError } from "../../../src/util/assert.ts";
import {
  FailpointError,
  failpointNames,
  Failpoints,
  inertFailpoints,
  MemoryFs,
  StorageFailedError,
  Store,
} from "../../../src/store/mod.ts";
import { storeOptions } from "./test_store.ts";

const alice = { owner: "alice" };

Deno.test("inertFailpoints cannot be armed, and a store opened without failpoints uses it", async () => {
  assert.equal(inertFailpoints.armed, false);
  assert.throws(() => inertFailpoints.arm("wal.afterAppendBeforeSync", "throw"), AssertionError);
  assert.equal(inertFailpoints.armed, false);
  const store = await Store.open(storeOptions());
  await store.put("t", "k", 1, alice);
  await store.checkpoint();
  await store.snapshot();
  assert.equal(inertFailpoints.hitCount("wal.afterAppendBeforeSync"), 0, "never reached while unarmed");
  await store.close();
});

Deno.test("Failpoints.arm() with throw: the write fails, caused by FailpointError", async () => {
  const failpoints = new Failpoints();
  const fs = new MemoryFs();
  const store = await Store.open(storeOptions({ fs, failpoints }));
  await store.put("t", "before", 1, alice);
  failpoints.arm("wal.afterAppendBeforeSync", "throw");
  assert.equal(failpoints.armed, true);
  await assert.rejects(
    () => store.put("t", "crashed", 2, alice),
    (error: unknown) =>
      error instanceof StorageFailedError && error.cause instanceof FailpointError &&
      error.cause.failpoint === "wal.afterAppendBeforeSync",
  );
  assert.equal(failpoints.hitCount("wal.afterAppendBeforeSync"), 1);
  failpoints.disarm("wal.afterAppendBeforeSync");
  assert.equal(failpoints.armed, false);
  await assert.rejects(() => store.put("t", "later", 3, alice), StorageFailedError);
  assert.equal(store.get("t", "before")?.version, 1, "reads go on");
  assert.equal(store.get("t", "crashed"), undefined);
  await store.close();
  const reopened = await Store.open(storeOptions({ fs: fs.crashCopy({ keepUnsynced: true }) }));
  assert.equal(reopened.get("t", "crashed"), undefined, "the unsynced frame was cut off");
  assert.equal(reopened.get("t", "before")?.version, 1);
  await reopened.close();
});

Deno.test("Failpoints.arm() with a callback: it runs at every hit and the store goes on", async () => {
  const failpoints = new Failpoints();
  const store = await Store.open(storeOptions({ failpoints }));
  const reached: string[] = [];
  for (const name of failpointNames) failpoints.arm(name, (hit) => void reached.push(hit));
  await store.put("t", "k", 1, alice);
  await store.checkpoint();
  await store.snapshot();
  assert.deepEqual(reached, [
    "wal.afterAppendBeforeSync",
    "checkpoint.afterTmpWriteBeforeRename",
    "checkpoint.afterRenameBeforeDirSync",
    "checkpoint.afterRenameBeforeWalTruncate",
    "wal.midTruncate",
    "snapshot.beforeRename",
  ]);
  assert.equal(new Set(reached).size, failpointNames.length, "every failpoint is reachable");
  assert.equal(store.get("t", "k")?.version, 1);
  await store.close();
});
