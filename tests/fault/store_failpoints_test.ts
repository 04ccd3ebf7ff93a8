// Goal: a crash at each named failpoint of the store (src/store/failpoints.ts) loses no acknowledged write,
// brings back no write that was never attempted, and leaves files the store reopens cleanly: tmp files
// removed, the WAL as long as the store thinks, and a later write, checkpoint and reopen all work.
// Method: seeded waves of concurrent puts and deletes on a MemoryFs. A Failpoints object is armed with a
// callback that, at the chosen hit, takes two crash images (a power cut keeps only synced data and
// entries; a process crash keeps everything the kernel was handed) plus the acknowledged history, then
// throws FailpointError. Both images are reopened and checked against that history (etcd robustness:
// acknowledged writes durable, versions per key only grow). Replay a run with KV_TEST_SEED=<n>.
import assert from "node:assert/strict";
import {
  type Entry,
  FailpointError,
  type FailpointName,
  Failpoints,
  MemoryFs,
  StorageFailedError,
  Store,
} from "../../src/store/mod.ts";
import { Random } from "../helpers/seed.ts";
import { RecordingLogger, storeOptions } from "../unit/store/test_store.ts";

const table = "t";
const keyCount = 8;
const alice = { owner: "alice" };
const wavesMax = 40;

/** Every write attempted and every acknowledgement, per key. */
class History {
  readonly #random: Random;
  /** Newest acknowledged state per key. */
  readonly acked = new Map<string, Entry>();
  /** Versions acknowledged per key, in the order the acknowledgements arrived. */
  readonly ackedVersions = new Map<string, number[]>();
  readonly attemptedValues = new Map<string, Set<string>>();
  readonly attemptedDeletes = new Set<string>();
  #serial = 0;

  constructor(random: Random) {
    this.#random = random;
  }

  /** Issues one seeded write; resolves (never rejects) once it is acknowledged or refused. */
  write(store: Store): Promise<void> {
    const key = `k${this.#random.int(keyCount)}`;
    if (this.#random.int(5) === 0 && store.get(table, key) !== undefined) {
      this.attemptedDeletes.add(key);
      return store.delete(table, key, alice).then((entry) => this.#ack(key, entry), () => {});
    }
    this.#serial += 1;
    const value = { serial: this.#serial, key };
    const values = this.attemptedValues.get(key) ?? new Set();
    this.attemptedValues.set(key, values.add(JSON.stringify(value)));
    return store.put(table, key, value, alice).then((entry) => this.#ack(key, entry), () => {});
  }

  #ack(key: string, entry: Entry): void {
    const versions = this.ackedVersions.get(key) ?? [];
    this.ackedVersions.set(key, [...versions, entry.version]);
    const previous = this.acked.get(key);
    if (previous === undefined || entry.version > previous.version) this.acked.set(key, entry);
  }

  /** Issues a wave of 1 to 6 concurrent writes and waits for all of them. */
  async wave(store: Store): Promise<void> {
    const count = 1 + this.#random.int(6);
    await Promise.all(Array.from({ length: count }, () => this.write(store)));
  }
}

/** What the failpoint's callback saw at the crash. */
interface CrashImages {
  powerCut: MemoryFs;
  processCrash: MemoryFs;
  ackedAtCrash: Map<string, Entry>;
}

/** Arms `name` to crash at its hit number `hitsBeforeCrash + 1`; resolves with the crash images. */
function armCrash(
  options: { failpoints: Failpoints; name: FailpointName; fs: MemoryFs; history: History },
  hitsBeforeCrash: number,
): Promise<CrashImages> {
  const { failpoints, name, fs, history } = options;
  const crashed = Promise.withResolvers<CrashImages>();
  failpoints.arm(name, () => {
    if (failpoints.hitCount(name) <= hitsBeforeCrash) return;
    failpoints.disarm(name);
    crashed.resolve({
      powerCut: fs.crashCopy(),
      processCrash: fs.crashCopy({ keepUnsynced: true }),
      ackedAtCrash: new Map(history.acked),
    });
    throw new FailpointError(name);
  });
  return crashed.promise;
}

/** The value JSON a recovered entry holds (`undefined` for a tombstone). */
function valueJsonOf(entry: Entry): string | undefined {
  return entry.deleted ? undefined : JSON.stringify(JSON.parse(entry.json).value);
}

/** Asserts the recovered state against the history: nothing acknowledged lost, nothing invented. */
function checkAgainstHistory(recovered: Store, history: History, crash: CrashImages, label: string): void {
  for (const [key, acked] of crash.ackedAtCrash) {
    const entry = recovered.getEntry(table, key);
    assert.ok(entry !== undefined, `${label}: acknowledged ${key} v${acked.version} is lost`);
    assert.ok(entry.version >= acked.version, `${label}: ${key} went back to v${entry.version}`);
    if (entry.version === acked.version) assert.equal(entry.json, acked.json, `${label}: ${key}`);
  }
  for (const { table: found, key, entry } of recovered.scan()) {
    assert.equal(found, table, `${label}: a table nobody wrote`);
    const json = valueJsonOf(entry);
    if (json === undefined) assert.ok(history.attemptedDeletes.has(key), `${label}: phantom delete ${key}`);
    else assert.ok(history.attemptedValues.get(key)?.has(json), `${label}: phantom value of ${key}`);
  }
  for (const [key, versions] of history.ackedVersions) {
    for (let index = 1; index < versions.length; index += 1) {
      assert.ok(versions[index]! > versions[index - 1]!, `versions of ${key} grow: ${versions.join(",")}`);
    }
  }
}

function dumpAll(store: Store): Record<string, string> {
  const result: Record<string, string> = {};
  for (const { key, entry } of store.scan()) result[key] = entry.json;
  return result;
}

/** Reopens a copy of a crash image, checks it, then writes, closes and reopens it once more. */
async function reopenAndCheck(
  crashImage: MemoryFs,
  context: { history: History; crash: CrashImages; label: string },
) {
  const image = crashImage.crashCopy(); // the image itself stays as the crash left it
  const tmpBefore = await tmpFilesOf(image);
  const logger = new RecordingLogger();
  const recovered = await Store.open(storeOptions({ fs: image, logger }));
  checkAgainstHistory(recovered, context.history, context.crash, context.label);
  assert.deepEqual(await tmpFilesOf(image), [], `${context.label}: tmp files are removed at open`);
  if (tmpBefore.length > 0) {
    assert.ok(logger.lines.some((line) => line.message.includes("interrupted write")), context.label);
  }
  assert.equal((await image.stat("/data/wal.log"))?.sizeBytes, recovered.stats().walBytes, context.label);
  const state = dumpAll(recovered);
  const after = await recovered.put(table, "after-crash", 1, alice);
  await recovered.close();
  const again = await Store.open(storeOptions({ fs: image }));
  assert.deepEqual(dumpAll(again), { ...state, "after-crash": after.json }, `${context.label}: reopens`);
  await again.close();
  return { tmpBefore };
}

async function tmpFilesOf(fs: MemoryFs): Promise<string[]> {
  const names = [...await fs.readDir("/data"), ...await fs.readDir("/data/snapshots")];
  return names.filter((name) => name.endsWith(".tmp"));
}

/** Options of {@linkcode runCrash}. */
interface CrashScenario {
  name: FailpointName;
  /** Hits of the failpoint let through before the crash. */
  hitsBeforeCrash: (random: Random) => number;
  /** Started once the failpoint is armed, alongside the writes (a checkpoint, a snapshot). */
  trigger?: (store: Store) => Promise<unknown>;
  /** Run before arming, after the first waves (an earlier checkpoint, say). */
  prepare?: (store: Store, fs: MemoryFs) => Promise<void>;
}

/** Writes, crashes at the failpoint, and checks both crash images; returns what a test looks at more. */
async function runCrash(scenario: CrashScenario) {
  const random = Random.fromEnv(`store failpoint ${scenario.name}`);
  const fs = new MemoryFs();
  const failpoints = new Failpoints();
  const store = await Store.open(storeOptions({ fs, failpoints }));
  const history = new History(random);
  for (let wave = 0; wave < 3; wave += 1) await history.wave(store);
  await scenario.prepare?.(store, fs);
  let done = false;
  const crashed = armCrash({ failpoints, name: scenario.name, fs, history }, scenario.hitsBeforeCrash(random))
    .finally(() => {
      done = true;
    });
  const triggered = scenario.trigger?.(store).then(() => undefined, (error: unknown) => error);
  for (let wave = 0; wave < wavesMax && !done; wave += 1) await history.wave(store);
  const crash = await crashed;
  const triggerError = await triggered;
  const afterCrash = await store.put(table, "k0", "late", alice).then(() => "accepted", () => "refused");
  await store.close();
  const powerCut = await reopenAndCheck(crash.powerCut, { history, crash, label: "power cut" });
  const processCrash = await reopenAndCheck(crash.processCrash, { history, crash, label: "process crash" });
  return { crash, triggerError, afterCrash, powerCut, processCrash };
}

function assertCrashedAtFailpoint(error: unknown, name: FailpointName): void {
  assert.ok(error instanceof StorageFailedError, `expected StorageFailedError, got ${error}`);
  assert.ok(error.cause instanceof FailpointError);
  assert.equal(error.cause.failpoint, name);
}

Deno.test("failpoint wal.afterAppendBeforeSync: acked writes survive, the crashed batch is not", async () => {
  const { crash, afterCrash } = await runCrash({
    name: "wal.afterAppendBeforeSync",
    hitsBeforeCrash: (random) => random.int(4),
  });
  assert.ok(crash.ackedAtCrash.size > 0, "some writes were acknowledged before the crash");
  assert.equal(afterCrash, "refused", "a store that failed a batch takes no further write");
});

Deno.test("failpoint wal.midTruncate: storage.db + the uncut WAL replay idempotently", async () => {
  const { crash, triggerError, afterCrash } = await runCrash({
    name: "wal.midTruncate",
    hitsBeforeCrash: () => 0,
    trigger: (store) => store.checkpoint(),
  });
  assertCrashedAtFailpoint(triggerError, "wal.midTruncate");
  assert.equal(afterCrash, "refused");
  const walBytes = async (fs: MemoryFs) => (await fs.stat("/data/wal.log"))!.sizeBytes;
  assert.ok(await walBytes(crash.powerCut) > await walBytes(crash.processCrash), "the cut was not synced");
  assert.ok(await crash.powerCut.stat("/data/storage.db") !== undefined);
});

Deno.test("failpoint checkpoint.afterTmpWriteBeforeRename: the tmp is removed at open", async () => {
  const { triggerError, afterCrash, processCrash } = await runCrash({
    name: "checkpoint.afterTmpWriteBeforeRename",
    hitsBeforeCrash: () => 0,
    trigger: (store) => store.checkpoint(),
  });
  assertCrashedAtFailpoint(triggerError, "checkpoint.afterTmpWriteBeforeRename");
  assert.equal(afterCrash, "accepted", "a failed checkpoint loses nothing, so writes go on");
  assert.deepEqual(processCrash.tmpBefore, ["storage.db.tmp"]);
});

Deno.test("failpoint checkpoint.afterRenameBeforeDirSync: old or new storage.db + WAL", async () => {
  let oldStorage: Uint8Array | undefined;
  const { crash, triggerError } = await runCrash({
    name: "checkpoint.afterRenameBeforeDirSync",
    hitsBeforeCrash: () => 0,
    prepare: async (store, fs) => {
      await store.checkpoint();
      oldStorage = await fs.readFile("/data/storage.db");
    },
    trigger: (store) => store.checkpoint(),
  });
  assertCrashedAtFailpoint(triggerError, "checkpoint.afterRenameBeforeDirSync");
  assert.ok(oldStorage !== undefined);
  assert.deepEqual(
    await crash.powerCut.readFile("/data/storage.db"),
    oldStorage,
    "the rename was not durable",
  );
  assert.notDeepEqual(await crash.processCrash.readFile("/data/storage.db"), oldStorage);
});

Deno.test("failpoint checkpoint.afterRenameBeforeWalTruncate: storage.db + whole WAL", async () => {
  const { crash, triggerError } = await runCrash({
    name: "checkpoint.afterRenameBeforeWalTruncate",
    hitsBeforeCrash: () => 0,
    trigger: (store) => store.checkpoint(),
  });
  assertCrashedAtFailpoint(triggerError, "checkpoint.afterRenameBeforeWalTruncate");
  for (const image of [crash.powerCut, crash.processCrash]) {
    assert.ok(await image.stat("/data/storage.db") !== undefined);
    assert.ok((await image.stat("/data/wal.log"))!.sizeBytes > 21, "the WAL was not cut");
  }
});

Deno.test("failpoint snapshot.beforeRename: the tmp is removed at open, older snapshots kept", async () => {
  let firstSnapshot = "";
  const { crash, triggerError, afterCrash, processCrash } = await runCrash({
    name: "snapshot.beforeRename",
    hitsBeforeCrash: () => 0,
    prepare: async (store) => {
      firstSnapshot = (await store.snapshot()).slice("/data/snapshots/".length);
    },
    trigger: (store) => store.snapshot(),
  });
  assert.ok(triggerError instanceof StorageFailedError && triggerError.cause instanceof FailpointError);
  assert.equal(afterCrash, "accepted");
  assert.equal(processCrash.tmpBefore.length, 1);
  assert.match(processCrash.tmpBefore[0]!, /^snapshot_\d+\.json\.tmp$/);
  for (const image of [crash.powerCut, crash.processCrash]) {
    const names = await image.readDir("/data/snapshots");
    assert.deepEqual(names.filter((name) => !name.endsWith(".tmp")), [firstSnapshot]);
  }
});
