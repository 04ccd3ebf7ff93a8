// Goal: a crash at each named failpoint of the store (src/store/failpoints.ts) loses no acknowledged write,
// brings back no write that was never attempted, and leaves files the store reopens cleanly: tmp files
// removed, the WAL as long as the store thinks, and a later write, checkpoint and reopen all work. The
// same holds for a key's Paxos acceptor state: an acknowledged promise or accept survives, and one that
// was queued but not synced is either there whole (the exact state at its ballot) or absent.
// Method: seeded waves of concurrent puts and deletes, or of promises and accepts as an acceptor issues
// them (each decided on acceptorOf() in the same turn), on a MemoryFs. A Failpoints object is armed with
// a callback that, at the chosen hit, takes two crash images (a power cut keeps only synced data and
// entries; a process crash keeps everything the kernel was handed) plus the acknowledged history, then
// throws FailpointError. Both images are reopened and checked against that history (etcd robustness:
// acknowledged writes durable, versions per key only grow). Replay a run with KV_TEST_SEED=<n>.
import assert from "node:assert/strict";
import {
  type Ballot,
  compareBallots,
  type Entry,
  FailpointError,
  type FailpointName,
  Failpoints,
  MemoryFs,
  type ReplicaEntry,
  StorageFailedError,
  Store,
  zeroBallot,
} from "../../src/store/mod.ts";
import { Random } from "../helpers/seed.ts";
import { RecordingLogger, storeOptions } from "../unit/store/test_store.ts";

const table = "t";
const keyCount = 8;
const alice = { owner: "alice" };
const wavesMax = 40;
/** The key a recovered store is written once more at, before it is closed and reopened. */
const afterCrashKey = "after-crash";

/** Writes a crash test issues in waves, and the check of a recovered store against what was acknowledged. */
interface Workload<Acked> {
  /** Issues a wave of concurrent writes and waits for all of them (acknowledged or refused). */
  wave(store: Store): Promise<void>;
  /** A copy of what is acknowledged now (taken at the crash). */
  ackedNow(): Acked;
  /** Asserts nothing acknowledged before the crash is lost and nothing never attempted appears. */
  check(recovered: Store, acked: Acked, label: string): void;
}

/** Every write attempted and every acknowledgement, per key. */
class History implements Workload<Map<string, Entry>> {
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

  ackedNow(): Map<string, Entry> {
    return new Map(this.acked);
  }

  check(recovered: Store, acked: Map<string, Entry>, label: string): void {
    checkAgainstHistory(recovered, this, acked, label);
  }
}

/** Puts and deletes of a few keys. */
function puts(random: Random): Workload<Map<string, Entry>> {
  return new History(random);
}

const paxosTable = "paxos";
const proposers = ["n1:6660", "n2:6660", "n3:6660"];

/** What a Paxos workload had acknowledged: per key, the highest promise and the highest accept. */
interface PaxosAcked {
  promised: Map<string, Ballot>;
  accepted: Map<string, Ballot>;
}

function ballotKey(ballot: Ballot): string {
  return `${ballot.counter}/${ballot.node}`;
}

/**
 * Runs a promise or accept: `onAck` once it is durable. A failed batch (it rejects) or a store that
 * failed before (it throws at once) is an answer too; anything else thrown is a bug of the test.
 */
function settle(run: () => Promise<unknown>, onAck: () => void): Promise<void> {
  try {
    return run().then(onAck, () => {});
  } catch (error) {
    if (error instanceof StorageFailedError) return Promise.resolve();
    throw error;
  }
}

function maxOf(a: Ballot | undefined, b: Ballot): Ballot {
  return a === undefined || compareBallots(b, a) > 0 ? b : a;
}

/**
 * An acceptor's history: promises and accepts of a few keys, each decided on `acceptorOf()` and queued in
 * the same turn, as the cluster's acceptor does, several per wave so that they see each other pending.
 */
class PaxosHistory implements Workload<PaxosAcked> {
  readonly #random: Random;
  readonly #acked: PaxosAcked = { promised: new Map(), accepted: new Map() };
  /** Per key: every promise attempted, and every accept attempted with its state, by ballot. */
  readonly attemptedPromises = new Map<string, Set<string>>();
  readonly attemptedAccepts = new Map<string, Map<string, ReplicaEntry>>();
  #serial = 0;

  constructor(random: Random) {
    this.#random = random;
  }

  /** Issues one seeded promise or accept; resolves (never rejects) once it is acknowledged or refused. */
  write(store: Store): Promise<void> {
    const key = `p${this.#random.int(keyCount)}`;
    const state = store.acceptorOf(paxosTable, key);
    const top = Math.max(state.promised.counter, state.accepted.counter);
    const node = this.#random.pick(proposers);
    if (this.#random.int(2) === 0) {
      const ballot = { counter: top + 1 + this.#random.int(2), node };
      const attempted = this.attemptedPromises.get(key) ?? new Set();
      this.attemptedPromises.set(key, attempted.add(ballotKey(ballot)));
      return settle(() => store.promise(paxosTable, key, ballot), () => {
        this.#acked.promised.set(key, maxOf(this.#acked.promised.get(key), ballot));
      });
    }
    const atPromise = state.promised.counter > 0 && this.#random.int(2) === 0;
    const ballot = atPromise ? state.promised : { counter: top + 1, node };
    this.#serial += 1;
    const entry: ReplicaEntry = {
      version: (state.entry?.version ?? 0) + 1,
      timestamp: 1_700_000_000_000 + this.#serial,
      owner: "alice",
      deleted: this.#random.int(6) === 0,
    };
    if (!entry.deleted) entry.valueJson = JSON.stringify({ serial: this.#serial, key });
    const attempted = this.attemptedAccepts.get(key) ?? new Map();
    assert.equal(attempted.has(ballotKey(ballot)), false, "one state per ballot");
    this.attemptedAccepts.set(key, attempted.set(ballotKey(ballot), entry));
    return settle(() => store.accept(paxosTable, key, ballot, entry), () => {
      this.#acked.accepted.set(key, maxOf(this.#acked.accepted.get(key), ballot));
    });
  }

  async wave(store: Store): Promise<void> {
    const count = 1 + this.#random.int(6);
    await Promise.all(Array.from({ length: count }, () => this.write(store)));
  }

  ackedNow(): PaxosAcked {
    return { promised: new Map(this.#acked.promised), accepted: new Map(this.#acked.accepted) };
  }

  check(recovered: Store, acked: PaxosAcked, label: string): void {
    for (let index = 0; index < keyCount; index += 1) {
      const key = `p${index}`;
      const state = recovered.acceptorOf(paxosTable, key);
      const ackedAccept = acked.accepted.get(key);
      if (ackedAccept !== undefined) {
        assert.ok(
          compareBallots(state.accepted, ackedAccept) >= 0,
          `${label}: ${key} lost an acknowledged accept`,
        );
      }
      if (compareBallots(state.accepted, zeroBallot) !== 0) {
        const entry = this.attemptedAccepts.get(key)?.get(ballotKey(state.accepted));
        assert.ok(entry !== undefined, `${label}: ${key} holds a state never accepted`);
        assert.deepEqual(
          state.entry,
          { ...entry, ballot: state.accepted },
          `${label}: ${key} holds it whole`,
        );
      } else {
        assert.equal(state.entry, undefined, `${label}: ${key} holds a state nobody accepted`);
      }
      // An acknowledged promise still binds: as the explicit promise, or through an accept at or above it.
      const ackedPromise = acked.promised.get(key);
      const binding = compareBallots(state.promised, state.accepted) > 0 ? state.promised : state.accepted;
      if (ackedPromise !== undefined) {
        assert.ok(
          compareBallots(binding, ackedPromise) >= 0,
          `${label}: ${key} forgot an acknowledged promise`,
        );
      }
      if (compareBallots(state.promised, zeroBallot) !== 0) {
        assert.ok(
          this.attemptedPromises.get(key)?.has(ballotKey(state.promised)),
          `${label}: phantom promise`,
        );
        assert.ok(compareBallots(state.promised, state.accepted) > 0, `${label}: ${key} promise not above`);
      }
    }
  }
}

/** Promises and accepts of a few keys. */
function paxos(random: Random): Workload<PaxosAcked> {
  return new PaxosHistory(random);
}

/** What the failpoint's callback saw at the crash. */
interface CrashImages<Acked> {
  powerCut: MemoryFs;
  processCrash: MemoryFs;
  ackedAtCrash: Acked;
}

/** Arms `name` to crash at its hit number `hitsBeforeCrash + 1`; resolves with the crash images. */
function armCrash<Acked>(
  options: { failpoints: Failpoints; name: FailpointName; fs: MemoryFs; workload: Workload<Acked> },
  hitsBeforeCrash: number,
): Promise<CrashImages<Acked>> {
  const { failpoints, name, fs, workload } = options;
  const crashed = Promise.withResolvers<CrashImages<Acked>>();
  failpoints.arm(name, () => {
    if (failpoints.hitCount(name) <= hitsBeforeCrash) return;
    failpoints.disarm(name);
    crashed.resolve({
      powerCut: fs.crashCopy(),
      processCrash: fs.crashCopy({ keepUnsynced: true }),
      ackedAtCrash: workload.ackedNow(),
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
function checkAgainstHistory(
  recovered: Store,
  history: History,
  ackedAtCrash: Map<string, Entry>,
  label: string,
): void {
  for (const [key, acked] of ackedAtCrash) {
    const entry = recovered.getEntry(table, key);
    assert.ok(entry !== undefined, `${label}: acknowledged ${key} v${acked.version} is lost`);
    assert.ok(entry.version >= acked.version, `${label}: ${key} went back to v${entry.version}`);
    if (entry.version === acked.version) assert.equal(entry.json, acked.json, `${label}: ${key}`);
  }
  for (const { table: found, key, entry } of recovered.scan()) {
    if (key === afterCrashKey) continue; // written by reopenAndCheck
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
async function reopenAndCheck<Acked>(
  crashImage: MemoryFs,
  context: { workload: Workload<Acked>; crash: CrashImages<Acked>; label: string },
) {
  const image = crashImage.crashCopy(); // the image itself stays as the crash left it
  const tmpBefore = await tmpFilesOf(image);
  const logger = new RecordingLogger();
  const recovered = await Store.open(storeOptions({ fs: image, logger }));
  context.workload.check(recovered, context.crash.ackedAtCrash, context.label);
  assert.deepEqual(await tmpFilesOf(image), [], `${context.label}: tmp files are removed at open`);
  if (tmpBefore.length > 0) {
    assert.ok(logger.lines.some((line) => line.message.includes("interrupted write")), context.label);
  }
  assert.equal((await image.stat("/data/wal.log"))?.sizeBytes, recovered.stats().walBytes, context.label);
  const state = dumpAll(recovered);
  const after = await recovered.put(table, afterCrashKey, 1, alice);
  await recovered.close();
  const again = await Store.open(storeOptions({ fs: image }));
  assert.deepEqual(dumpAll(again), { ...state, [afterCrashKey]: after.json }, `${context.label}: reopens`);
  context.workload.check(again, context.crash.ackedAtCrash, `${context.label}, closed and reopened`);
  await again.close();
  return { tmpBefore };
}

async function tmpFilesOf(fs: MemoryFs): Promise<string[]> {
  const names = [...await fs.readDir("/data"), ...await fs.readDir("/data/snapshots")];
  return names.filter((name) => name.endsWith(".tmp"));
}

/** Options of {@linkcode runCrash}. */
interface CrashScenario<Acked> {
  name: FailpointName;
  /** The writes: {@linkcode puts} or {@linkcode paxos}. */
  workload: (random: Random) => Workload<Acked>;
  /** Hits of the failpoint let through before the crash. */
  hitsBeforeCrash: (random: Random) => number;
  /** Started once the failpoint is armed, alongside the writes (a checkpoint, a snapshot). */
  trigger?: (store: Store) => Promise<unknown>;
  /** Run before arming, after the first waves (an earlier checkpoint, say). */
  prepare?: (store: Store, fs: MemoryFs) => Promise<void>;
}

/** Writes, crashes at the failpoint, and checks both crash images; returns what a test looks at more. */
async function runCrash<Acked>(scenario: CrashScenario<Acked>) {
  const random = Random.fromEnv(`store failpoint ${scenario.name} (${scenario.workload.name})`);
  const fs = new MemoryFs();
  const failpoints = new Failpoints();
  const store = await Store.open(storeOptions({ fs, failpoints }));
  const workload = scenario.workload(random);
  for (let wave = 0; wave < 3; wave += 1) await workload.wave(store);
  await scenario.prepare?.(store, fs);
  let done = false;
  const crashed = armCrash(
    { failpoints, name: scenario.name, fs, workload },
    scenario.hitsBeforeCrash(random),
  )
    .finally(() => {
      done = true;
    });
  const triggered = scenario.trigger?.(store).then(() => undefined, (error: unknown) => error);
  for (let wave = 0; wave < wavesMax && !done; wave += 1) await workload.wave(store);
  const crash = await crashed;
  const triggerError = await triggered;
  const afterCrash = await store.put(table, "k0", "late", alice).then(() => "accepted", () => "refused");
  await store.close();
  const powerCut = await reopenAndCheck(crash.powerCut, { workload, crash, label: "power cut" });
  const processCrash = await reopenAndCheck(crash.processCrash, { workload, crash, label: "process crash" });
  return { crash, workload, triggerError, afterCrash, powerCut, processCrash };
}

function assertCrashedAtFailpoint(error: unknown, name: FailpointName): void {
  assert.ok(error instanceof StorageFailedError, `expected StorageFailedError, got ${error}`);
  assert.ok(error.cause instanceof FailpointError);
  assert.equal(error.cause.failpoint, name);
}

Deno.test("failpoint wal.afterAppendBeforeSync: acked writes survive, the crashed batch is not", async () => {
  const { crash, afterCrash } = await runCrash({
    workload: puts,
    name: "wal.afterAppendBeforeSync",
    hitsBeforeCrash: (random) => random.int(4),
  });
  assert.ok(crash.ackedAtCrash.size > 0, "some writes were acknowledged before the crash");
  assert.equal(afterCrash, "refused", "a store that failed a batch takes no further write");
});

Deno.test("failpoint wal.midTruncate: storage.db + the uncut WAL replay idempotently", async () => {
  const { crash, triggerError, afterCrash } = await runCrash({
    workload: puts,
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
    workload: puts,
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
    workload: puts,
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
    workload: puts,
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
    workload: puts,
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

Deno.test(
  "failpoint wal.afterAppendBeforeSync (paxos): acked promises and accepts survive, the rest whole " +
    "or absent",
  async () => {
    const { crash, afterCrash } = await runCrash({
      workload: paxos,
      name: "wal.afterAppendBeforeSync",
      hitsBeforeCrash: (random) => random.int(4),
    });
    const ackedCount = crash.ackedAtCrash.promised.size + crash.ackedAtCrash.accepted.size;
    assert.ok(ackedCount > 0, "some promises or accepts were acknowledged before the crash");
    assert.equal(afterCrash, "refused");
  },
);

for (
  const name of [
    "wal.midTruncate",
    "checkpoint.afterTmpWriteBeforeRename",
    "checkpoint.afterRenameBeforeDirSync",
    "checkpoint.afterRenameBeforeWalTruncate",
  ] as const
) {
  Deno.test(`failpoint ${name} (paxos): promises outstanding at a checkpoint survive it`, async () => {
    const { triggerError } = await runCrash({
      workload: paxos,
      name,
      hitsBeforeCrash: () => 0,
      // A checkpoint before the crash too, so the image's storage.db already carries promises.
      prepare: async (store) => void await store.checkpoint(),
      trigger: (store) => store.checkpoint(),
    });
    assertCrashedAtFailpoint(triggerError, name);
  });
}

Deno.test(
  "failpoint snapshot.beforeRename (paxos): a start from a snapshot keeps the promises it holds",
  async () => {
    const { crash, workload } = await runCrash({
      workload: paxos,
      name: "snapshot.beforeRename",
      hitsBeforeCrash: () => 0,
      // A snapshot, then a checkpoint at the same sequence: without storage.db, the snapshot and the WAL
      // after the checkpoint hold everything, the promises made before it only in the snapshot.
      prepare: async (store) => {
        await store.snapshot();
        await store.checkpoint();
      },
      trigger: (store) => store.snapshot(),
    });
    for (
      const [label, image] of [["power cut", crash.powerCut], ["process crash", crash.processCrash]] as const
    ) {
      const copy = image.crashCopy();
      await copy.remove("/data/storage.db");
      const logger = new RecordingLogger();
      const recovered = await Store.open(storeOptions({ fs: copy, logger }));
      assert.ok(logger.at("warn").some((line) => line.message.includes("starting from")), label);
      assert.ok(!logger.lines.some((line) => line.message.includes("are lost")), `${label}: no gap`);
      workload.check(recovered, crash.ackedAtCrash, `${label}, from the snapshot`);
      await recovered.close();
    }
  },
);
