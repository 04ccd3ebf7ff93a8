// Goal: SPEC §6 and issue 4 item 2 under disk faults injected through the Fs seam. (a) A torn WAL tail is
// cut with a warning naming file and offset, and nothing acknowledged before it is lost. (b) A flipped bit
// in the middle of the WAL or of storage.db stops a real node with exit 65 naming file and offset, and
// `--repair` / `DYNA_REPAIR=1` starts it on a `.broken.<ms>` copy's good part. (c) ENOSPC on a WAL write
// answers 507 storage_full, reads go on, and writes succeed again once space is back. (d) A failing fsync
// answers 503 storage_failed, and no later write is acknowledged until restart; after it, no write that
// got 503 is visible. (e) A missing WAL or storage.db recovers what exists and says what was lost.
// Method: FaultyFs (tests/helpers/faulty_fs.ts) around DenoFs in temp dirs; nodes run in-process through
// startNode(config, { fs, logger }) and are spoken to over HTTP, or as child processes for exit codes.
// Randomness (tear offsets, bytes that land before ENOSPC, flipped bytes) is seeded: KV_TEST_SEED=<n>.
import assert from "node:assert/strict";
import { loadConfig } from "../../src/config/load.ts";
import { type NodeHandle, startNode } from "../../main.ts";
import { DenoFs, type Fs, loadBuildEncryption, MemoryFs, Store } from "../../src/store/mod.ts";
import { FaultyFs } from "../helpers/faulty_fs.ts";
import { NodeProcess } from "../helpers/node_process.ts";
import { Random } from "../helpers/seed.ts";
import { jwtSecret } from "../helpers/test_cluster.ts";
import { dumpTable, RecordingLogger, storeOptions } from "../unit/store/test_store.ts";

// The key of the node processes below (the task that runs the tests makes the module when missing).
const buildEncryption = await loadBuildEncryption();
const alice = { owner: "alice" };

/** A node running in this process on its own data dir, spoken to over HTTP as user alice. */
class InProcessNode {
  readonly handle: NodeHandle;
  readonly #token: string;

  private constructor(handle: NodeHandle, token: string) {
    this.handle = handle;
    this.#token = token;
  }

  /** Starts a node on `dataDir` through `fs`, then registers (or logs in) alice. */
  static async start(options: { dataDir: string; fs: Fs; logger: RecordingLogger }): Promise<InProcessNode> {
    const invocation = loadConfig({
      args: ["127.0.0.1:0", "--data-dir", options.dataDir],
      env: { JWT_SECRET: jwtSecret },
    });
    assert.equal(invocation.kind, "run");
    const handle = await startNode(invocation.config, { fs: options.fs, logger: options.logger });
    const response = await fetch(`${handle.url}/auth/alice`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ secret: "correct horse battery" }),
    });
    const body = await response.json();
    assert.equal(typeof body.token, "string", JSON.stringify(body));
    return new InProcessNode(handle, body.token);
  }

  /** `PUT /t/key/<key>`; returns the status and the problem code, if any. */
  async put(key: string, value: unknown): Promise<{ status: number; code: string | undefined }> {
    const response = await fetch(`${this.handle.url}/t/key/${key}`, {
      method: "PUT",
      headers: { "content-type": "application/json", authorization: `Bearer ${this.#token}` },
      body: JSON.stringify({ value }),
    });
    const body = await response.json();
    return { status: response.status, code: body.code };
  }

  /** `GET /t/key/<key>`: the stored value, or undefined on 404. */
  async get(key: string): Promise<unknown> {
    const response = await fetch(`${this.handle.url}/t/key/${key}`);
    const body = await response.json();
    if (response.status === 404) return undefined;
    assert.equal(response.status, 200, JSON.stringify(body));
    return body.value;
  }

  /** Stops abruptly, as a crash would (no leave, no hand-off). */
  stop(): Promise<void> {
    return this.handle.stop({ graceful: false });
  }
}

async function withTempDir(run: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "dynarust_disk_faults_" });
  try {
    await run(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function acknowledged(node: InProcessNode, keys: string[]): Promise<void> {
  for (const key of keys) {
    const result = await node.put(key, { key });
    assert.ok(result.status === 200 || result.status === 201, `PUT ${key}: ${result.status} ${result.code}`);
  }
}

Deno.test("disk fault (a): a torn WAL tail is cut, warned with file + offset; nothing before lost", () =>
  withTempDir(async (dir) => {
    const random = Random.fromEnv("disk fault (a) torn tail");
    const walPath = `${dir}/wal.log`;
    const faulty = new FaultyFs(new DenoFs());
    const node = await InProcessNode.start({ dataDir: dir, fs: faulty, logger: new RecordingLogger() });
    const keys = ["k1", "k2", "k3", "k4", "k5"];
    await acknowledged(node, keys);
    const tailOffset = (await Deno.stat(walPath)).size;
    const tornBytes = 1 + random.int(40);
    faulty.tearWriteAt({ path: walPath, offset: tailOffset + tornBytes });
    const torn = await node.put("k6", "torn");
    assert.deepEqual(torn, { status: 503, code: "storage_failed" }, "the torn write is not acknowledged");
    assert.equal(faulty.counts.tornWrites, 1);
    await node.stop();
    assert.equal((await Deno.stat(walPath)).size, tailOffset + tornBytes, "the torn frame is on disk");
    const logger = new RecordingLogger();
    const restarted = await InProcessNode.start({ dataDir: dir, fs: new DenoFs(), logger });
    try {
      for (const key of keys) assert.deepEqual(await restarted.get(key), { key }, `${key} survived`);
      assert.equal(await restarted.get("k6"), undefined);
      const warning = logger.at("warn").find((line) => line.message.startsWith("cut off a torn tail"));
      assert.ok(warning !== undefined, "a warning names the cut");
      assert.equal(warning.message, `cut off a torn tail of ${walPath} at byte offset ${tailOffset}`);
      assert.equal(warning.fields?.droppedBytes, tornBytes);
      assert.equal((await restarted.put("k6", "after")).status, 201, "the node appends after the cut");
    } finally {
      await restarted.stop();
    }
  }));

Deno.test("disk fault (a): seeded WAL tears on MemoryFs, after a process crash or a power cut", async () => {
  const random = Random.fromEnv("disk fault (a) seeded tears");
  for (let round = 0; round < 20; round += 1) {
    const memory = new MemoryFs();
    const faulty = new FaultyFs(memory);
    const store = await Store.open(storeOptions({ fs: faulty }));
    const keyCount = 1 + random.int(5);
    for (let index = 0; index < keyCount; index += 1) await store.put("t", `k${index}`, index, alice);
    const tailOffset = store.stats().walBytes;
    faulty.tearWriteAt({ path: "/data/wal.log", offset: tailOffset + 1 + random.int(60) });
    await assert.rejects(() => store.put("t", "torn", "x", alice));
    await store.close();
    // A process crash keeps the torn bytes the kernel was handed; a power cut loses them (never synced).
    const images = [{ image: memory.crashCopy({ keepUnsynced: true }), torn: true }, {
      image: memory.crashCopy(),
      torn: false,
    }];
    for (const { image, torn } of images) {
      const logger = new RecordingLogger();
      const recovered = await Store.open(storeOptions({ fs: image, logger }));
      const keys = Array.from({ length: keyCount }, (_, index) => `k${index}`);
      assert.deepEqual(Object.keys(dumpTable(recovered, "t")), keys, `round ${round}`);
      const expected = torn ? [`cut off a torn tail of /data/wal.log at byte offset ${tailOffset}`] : [];
      assert.deepEqual(logger.at("warn").map((line) => line.message), expected, `round ${round}`);
      await recovered.close();
    }
  }
});

Deno.test("disk fault (c): ENOSPC answers 507, reads go on, writes resume with space", () =>
  withTempDir(async (dir) => {
    const random = Random.fromEnv("disk fault (c) ENOSPC");
    const faulty = new FaultyFs(new DenoFs(), { random });
    const node = await InProcessNode.start({ dataDir: dir, fs: faulty, logger: new RecordingLogger() });
    try {
      await acknowledged(node, ["before"]);
      faulty.fillDisk();
      for (const key of ["full1", "full2", "before"]) {
        assert.deepEqual(await node.put(key, "no room"), { status: 507, code: "storage_full" }, key);
      }
      assert.ok(faulty.counts.noSpaceFailures >= 3);
      assert.deepEqual(await node.get("before"), { key: "before" }, "reads are served on a full disk");
      assert.equal(await node.get("full1"), undefined);
      faulty.heal();
      assert.equal((await node.put("full1", "room again")).status, 201);
      assert.equal((await node.put("before", "updated")).status, 201);
      assert.equal(node.handle.store.get("t", "before")?.version, 2, "a refused write takes no version");
    } finally {
      await node.stop();
    }
    const restarted = await InProcessNode.start({
      dataDir: dir,
      fs: new DenoFs(),
      logger: new RecordingLogger(),
    });
    try {
      assert.equal(await restarted.get("full1"), "room again");
      assert.equal(await restarted.get("before"), "updated");
      assert.equal(await restarted.get("full2"), undefined);
    } finally {
      await restarted.stop();
    }
  }));

Deno.test("disk fault (d): a failed fsync answers 503 and no later write is acknowledged until restart", () =>
  withTempDir(async (dir) => {
    const faulty = new FaultyFs(new DenoFs());
    const node = await InProcessNode.start({ dataDir: dir, fs: faulty, logger: new RecordingLogger() });
    try {
      await acknowledged(node, ["before"]);
      faulty.failSyncs({ path: `${dir}/wal.log` });
      assert.deepEqual(await node.put("failed", 1), { status: 503, code: "storage_failed" });
      faulty.heal();
      for (const key of ["later1", "before", "later2"]) {
        assert.deepEqual(
          await node.put(key, 2),
          { status: 503, code: "storage_failed" },
          `${key} is refused`,
        );
      }
      assert.equal(faulty.counts.syncFailures, 1, "nothing reached the disk after the failure");
      assert.deepEqual(await node.get("before"), { key: "before" }, "reads go on");
      assert.equal(await node.get("failed"), undefined);
    } finally {
      await node.stop();
    }
    const restarted = await InProcessNode.start({
      dataDir: dir,
      fs: new DenoFs(),
      logger: new RecordingLogger(),
    });
    try {
      assert.deepEqual(await restarted.get("before"), { key: "before" });
      for (const key of ["failed", "later1", "later2"]) {
        assert.equal(await restarted.get(key), undefined, `${key} got 503 and was never synced`);
      }
      assert.equal(restarted.handle.store.get("t", "before")?.version, 1);
      assert.equal((await restarted.put("failed", 3)).status, 201, "a healthy disk takes writes again");
    } finally {
      await restarted.stop();
    }
  }));

/**
 * Writes a data dir with the build key, as a node that crashed would leave it: `steps` run against a
 * Store, then the file system is crashed, so no final checkpoint cuts the WAL.
 */
async function crashedDataDir(dir: string, steps: (store: Store) => Promise<void>): Promise<void> {
  const faulty = new FaultyFs(new DenoFs());
  const store = await Store.open(storeOptions({ dir, fs: faulty, encryption: buildEncryption }));
  await steps(store);
  faulty.crash();
  await store.close();
}

async function flipByteAt(path: string, offset: number): Promise<Uint8Array> {
  await new FaultyFs(new DenoFs()).flipBit({ path, offset, bit: 3 });
  return await Deno.readFile(path);
}

async function brokenCopies(dir: string, name: string): Promise<string[]> {
  const copies: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (new RegExp(`^${name.replace(".", "\\.")}\\.broken\\.\\d+$`).test(entry.name)) copies.push(entry.name);
  }
  return copies;
}

async function getValue(node: NodeProcess, key: string): Promise<unknown> {
  const response = await node.fetch(`/t/key/${key}`);
  const body = await response.json();
  return response.status === 404 ? undefined : body.value;
}

Deno.test("disk fault (b): a flipped bit mid-WAL exits 65; --repair keeps a copy and starts", () =>
  withTempDir(async (dir) => {
    const random = Random.fromEnv("disk fault (b) WAL bit flip");
    const sizes: number[] = [];
    await crashedDataDir(dir, async (store) => {
      sizes.push(store.stats().walBytes);
      for (const key of ["k0", "k1", "k2", "k3"]) {
        await store.put("t", key, { key }, alice);
        sizes.push(store.stats().walBytes);
      }
    });
    const frameOffset = sizes[2]!;
    const frameBytes = sizes[3]! - frameOffset;
    const damaged = await flipByteAt(`${dir}/wal.log`, frameOffset + 20 + random.int(frameBytes - 20));
    const refused = await NodeProcess.runToExit(["127.0.0.1:0", "--data-dir", dir]);
    assert.equal(refused.code, 65, refused.stderr);
    assert.match(refused.stderr, new RegExp(`${dir}/wal.log is corrupt at byte offset ${frameOffset}\\b`));
    assert.match(refused.stderr, /--repair/);
    assert.deepEqual(await Deno.readFile(`${dir}/wal.log`), damaged, "refusing changes nothing");
    await using node = await NodeProcess.start({ dataDir: dir, args: ["--repair"] });
    assert.deepEqual(await getValue(node, "k1"), { key: "k1" }, "frames before the damage are kept");
    assert.equal(await getValue(node, "k2"), undefined);
    const copies = await brokenCopies(dir, "wal.log");
    assert.equal(copies.length, 1);
    assert.deepEqual(await Deno.readFile(`${dir}/${copies[0]}`), damaged);
    assert.equal((await node.stop("SIGTERM")).code, 0);
    assert.match(
      await node.stderrText(),
      new RegExp(`repair: cut ${dir}/wal.log at byte offset ${frameOffset}`),
    );
  }));

/** A storage.db of two frames or more: values of 1 KiB of random hex, written concurrently. */
async function putMany(store: Store, prefix: string, count: number): Promise<void> {
  const pad = (index: number) =>
    Array.from(crypto.getRandomValues(new Uint8Array(512)), (byte) => byte.toString(16)).join("") + index;
  await Promise.all(
    Array.from({ length: count }, (_, index) => store.put("t", `${prefix}${index}`, pad(index), alice)),
  );
}

Deno.test("disk fault (b): a flipped bit mid-storage.db exits 65; DYNA_REPAIR=1 recovers", () =>
  withTempDir(async (dir) => {
    const random = Random.fromEnv("disk fault (b) storage.db bit flip");
    await crashedDataDir(dir, async (store) => {
      await putMany(store, "a", 300); // only in the snapshot (and storage.db)
      await store.snapshot();
      await store.put("t", "b", "only in storage.db", alice);
      await store.checkpoint();
      await store.put("t", "c", "in the WAL", alice);
    });
    const storagePath = `${dir}/storage.db`;
    const original = await Deno.readFile(storagePath);
    const secondFrame = 21 + 20 + new DataView(original.buffer).getUint32(21);
    assert.ok(secondFrame < original.length, "storage.db has a second frame");
    await flipByteAt(storagePath, secondFrame + 20 + random.int(16));
    const refused = await NodeProcess.runToExit(["127.0.0.1:0", "--data-dir", dir]);
    assert.equal(refused.code, 65, refused.stderr);
    assert.match(refused.stderr, new RegExp(`${storagePath} is corrupt at byte offset ${secondFrame}\\b`));
    await using node = await NodeProcess.start({ dataDir: dir, env: { DYNA_REPAIR: "1" } });
    assert.equal(typeof await getValue(node, "a299"), "string", "the snapshot's keys are back");
    assert.equal(await getValue(node, "c"), "in the WAL");
    assert.equal(await getValue(node, "b"), undefined, "b was only in the damaged storage.db");
    assert.equal((await brokenCopies(dir, "storage.db")).length, 1);
    assert.equal((await node.stop("SIGTERM")).code, 0);
    const stderr = await node.stderrText();
    assert.match(stderr, new RegExp(`repair: moved the damaged ${storagePath}`));
    assert.match(stderr, /writes with sequences 301 to 301 are lost/);
  }));

Deno.test("disk fault (e): a missing WAL or storage.db: what the other holds is kept", async () => {
  const fs = new MemoryFs();
  const store = await Store.open(storeOptions({ fs }));
  await store.put("t", "checkpointed", 1, alice);
  await store.checkpoint();
  await store.put("t", "logged", 2, alice);
  const image = fs.crashCopy();
  await store.close();
  const withoutWal = image.crashCopy();
  await withoutWal.remove("/data/wal.log");
  const walLogger = new RecordingLogger();
  const fromStorage = await Store.open(storeOptions({ fs: withoutWal, logger: walLogger }));
  assert.deepEqual(Object.keys(dumpTable(fromStorage, "t")), ["checkpointed"]);
  assert.ok(walLogger.at("warn").some((line) => line.message.startsWith("/data/wal.log is missing")));
  assert.equal((await fromStorage.put("t", "logged", 3, alice)).version, 1);
  await fromStorage.close();
  const withoutStorage = image.crashCopy();
  await withoutStorage.remove("/data/storage.db");
  const storageLogger = new RecordingLogger();
  const fromWal = await Store.open(storeOptions({ fs: withoutStorage, logger: storageLogger }));
  assert.deepEqual(Object.keys(dumpTable(fromWal, "t")), ["logged"]);
  assert.ok(
    storageLogger.at("warn").some((line) => line.message.startsWith("writes with sequences 1 to 1 are lost")),
  );
  assert.equal(fromWal.stats().sequence, 2, "sequences go on from the WAL");
  await fromWal.close();
});

Deno.test("disk fault (e): a missing storage.db comes back from a snapshot + the WAL", async () => {
  const fs = new MemoryFs();
  const store = await Store.open(storeOptions({ fs }));
  await store.put("t", "snapshotted", 1, alice);
  await store.snapshot();
  await store.checkpoint();
  await store.put("t", "logged", 2, alice);
  const image = fs.crashCopy();
  await store.close();
  await image.remove("/data/storage.db");
  const logger = new RecordingLogger();
  const recovered = await Store.open(storeOptions({ fs: image, logger }));
  assert.deepEqual(Object.keys(dumpTable(recovered, "t")), ["logged", "snapshotted"]);
  assert.ok(
    logger.at("warn").some((line) => line.message.includes("is missing: starting from /data/snapshots/")),
  );
  assert.equal(
    logger.at("warn").filter((line) => line.message.includes("are lost")).length,
    0,
    "nothing lost",
  );
  await recovered.close();
});
