// Goal: the change log holds every published change of its window, reads them back in order from memory
// or disk, and never claims to hold what it lost (a crash's unwritten tail, a failed write, a damaged
// segment, retention). Method: MemoryFs (with crash copies and a capacity), a ManualClock, and a seeded
// model of what a reader must get.
import assert from "node:assert/strict";
import {
  ChangeLog,
  type ChangeLogOptions,
  type LoggedChange,
  type LogRecord,
} from "../../../src/store/change_log.ts";
import { MemoryFs } from "../../../src/store/fs.ts";
import { ManualClock } from "../../../src/util/clock.ts";
import { createLogger, silentLogger } from "../../../src/util/log.ts";
import { testEncryption } from "../../helpers/test_key.ts";
import { Random } from "../../helpers/seed.ts";

const dir = "/data";

function optionsOf(fs: MemoryFs, overrides: Partial<ChangeLogOptions> = {}): ChangeLogOptions {
  return {
    dir,
    fs,
    encryption: testEncryption,
    clock: new ManualClock(1_700_000_000_000),
    logger: silentLogger,
    retention: { ageMs: 600_000, recordsMax: 100_000, bytesMax: 64 << 20 },
    flushMs: 1_000_000, // tests flush on purpose
    ...overrides,
  };
}

function changeOf(seq: number, names: { table?: string; key: string; version: number }): LoggedChange {
  const { table = "t", key, version } = names;
  return {
    type: "change",
    seq,
    kind: "Updated",
    table,
    key,
    version,
    json: JSON.stringify({ value: { key, version }, version, timestamp: 1, owner: "o" }),
    resyncBefore: false,
  };
}

async function collect<T>(chunks: AsyncGenerator<T[]>): Promise<T[]> {
  const all: T[] = [];
  for await (const chunk of chunks) all.push(...chunk);
  return all;
}

const seqsOf = (records: LogRecord[]) => records.map((record) => `${record.type}:${record.seq}`);

Deno.test(
  "ChangeLog reads back appended changes from memory, then from disk after a flush and a reopen",
  async () => {
    const fs = new MemoryFs();
    const log = await ChangeLog.open(optionsOf(fs, { batchBytesMax: 300 }));
    const start = log.nextSeq;
    for (let index = 0; index < 20; index += 1) {
      log.append(changeOf(start + index, { key: `k${index % 3}`, version: index + 1 }));
    }
    const fromMemory = await collect(log.recordsAfter(start + 4, { chunkCount: 7 }));
    assert.deepEqual(
      fromMemory.map((record) => record.seq),
      Array.from({ length: 15 }, (_, index) => start + 5 + index),
    );
    await log.flush();
    const fromDisk = await collect(log.recordsAfter(start + 4, { chunkCount: 7 }));
    assert.deepEqual(fromDisk, fromMemory);
    await log.close();
    const reopened = await ChangeLog.open(optionsOf(fs));
    assert.ok(reopened.nextSeq > start + 19);
    const afterReopen = await collect(reopened.recordsAfter(start + 4, { chunkCount: 100 }));
    assert.deepEqual(afterReopen.filter((record) => record.type === "change"), fromMemory);
    // A clean close leaves no gap: the client of the last change resumes with nothing missing.
    assert.deepEqual(await collect(reopened.recordsAfter(start + 19, { chunkCount: 10 })), []);
    await reopened.close();
  },
);

Deno.test("ChangeLog after a crash records a gap that a resume from before the crash meets", async () => {
  const fs = new MemoryFs();
  const log = await ChangeLog.open(optionsOf(fs, { batchBytesMax: 200 }));
  const start = log.nextSeq;
  for (let index = 0; index < 10; index += 1) {
    log.append(changeOf(start + index, { key: "k", version: index + 1 }));
  }
  await log.flush();
  log.append(changeOf(start + 10, { key: "k", version: 11 })); // batched, never written: lost in the crash
  const crashed = fs.crashCopy({ keepUnsynced: true });
  const clock = new ManualClock(1_700_000_000_000 + 5_000); // a restart takes time
  const reopened = await ChangeLog.open(optionsOf(crashed, { clock }));
  const records = await collect(reopened.recordsAfter(start + 7, { chunkCount: 100 }));
  assert.deepEqual(records.slice(0, 2).map((record) => record.seq), [start + 8, start + 9]);
  assert.equal(records.at(-1)?.type, "gap", "the unwritten change is announced as a gap");
  assert.ok(records.at(-1)!.seq >= start + 10);
  assert.ok(reopened.nextSeq > records.at(-1)!.seq, "no later change reuses a lost id");
  // A client that got the lost change resumes from it: it lies before the gap, so it meets the gap too.
  assert.equal((await collect(reopened.recordsAfter(start + 10, { chunkCount: 10 }))).at(-1)?.type, "gap");
  await reopened.close();
  await log.close();
});

Deno.test("ChangeLog.keyChangesAfter returns one key's changes above a version, across frames", async () => {
  const fs = new MemoryFs();
  const log = await ChangeLog.open(optionsOf(fs, { batchBytesMax: 250 }));
  let seq = log.nextSeq;
  for (let version = 1; version <= 30; version += 1) {
    log.append(changeOf(seq++, { key: "a", version }));
    log.append(changeOf(seq++, { key: "b", version }));
    log.append(changeOf(seq++, { table: "u", key: "a", version }));
  }
  await log.flush();
  const changes = await collect(log.keyChangesAfter({ table: "t", key: "a" }, { after: 25, chunkCount: 2 }));
  assert.deepEqual(changes.map((change) => [change.table, change.key, change.version]), [
    ["t", "a", 26],
    ["t", "a", 27],
    ["t", "a", 28],
    ["t", "a", 29],
    ["t", "a", 30],
  ]);
  assert.deepEqual(
    await collect(log.keyChangesAfter({ table: "t", key: "zz" }, { after: 0, chunkCount: 5 })),
    [],
  );
  await log.close();
});

Deno.test(
  "ChangeLog retention drops whole old segments, raises the floor and answers a resume below it with " +
    "a gap",
  async () => {
    const fs = new MemoryFs();
    const clock = new ManualClock(1_700_000_000_000);
    const retention = { ageMs: 600_000, recordsMax: 50, bytesMax: 1 << 20 };
    const log = await ChangeLog.open(optionsOf(fs, { clock, retention, batchBytesMax: 4_000 }));
    const start = log.nextSeq;
    for (let index = 0; index < 2_000; index += 1) {
      log.append(changeOf(start + index, { key: "k", version: index + 1 }));
    }
    await log.flush();
    assert.ok(log.recordCount >= 50, "at least recordsMax records stay");
    assert.ok(log.recordCount < 2_000, "older segments went");
    assert.ok(log.floorSeq > start);
    const below = await collect(log.recordsAfter(log.floorSeq - 1, { chunkCount: 10 }));
    assert.deepEqual(seqsOf(below), [`gap:${log.floorSeq}`]);
    const atFloor = await collect(log.recordsAfter(log.floorSeq, { chunkCount: 1000 }));
    assert.equal(atFloor.length, log.recordCount);
    assert.ok(
      atFloor.every((record, index) => record.seq === log.floorSeq + 1 + index),
      "nothing above the floor is missing",
    );
    // Age: once every record of the old segments is older than ageMs, the next segment drops them.
    const floorBefore = log.floorSeq;
    clock.advance(600_001);
    for (let index = 2_000; index < 4_000; index += 1) {
      log.append(changeOf(start + index, { key: "k", version: index + 1 }));
    }
    await log.flush();
    assert.ok(log.floorSeq >= start + 1_999, "every record older than ageMs went with its segment");
    assert.ok(log.floorSeq > floorBefore);
    await log.close();
    const files = (await fs.readDir(`${dir}/changes`)).length;
    assert.ok(files >= 1 && files <= 4, `${files} segment files remain`);
  },
);

Deno.test("ChangeLog keeps its files within the byte budget", async () => {
  const fs = new MemoryFs();
  const retention = { ageMs: 600_000, recordsMax: 1_000_000, bytesMax: 512 * 1024 };
  const log = await ChangeLog.open(optionsOf(fs, { retention, batchBytesMax: 16_000 }));
  const start = log.nextSeq;
  for (let index = 0; index < 10_000; index += 1) {
    log.append(changeOf(start + index, { key: `k${index}`, version: 1 }));
  }
  await log.flush();
  let bytes = 0;
  for (const name of await fs.readDir(`${dir}/changes`)) {
    bytes += (await fs.stat(`${dir}/changes/${name}`))!.sizeBytes;
  }
  assert.ok(bytes <= retention.bytesMax + 64 * 1024 + 16_000, `${bytes} bytes on disk`);
  assert.ok(bytes >= retention.bytesMax / 2, "the window is not dropped early");
  await log.close();
});

Deno.test("ChangeLog cuts a torn tail at open and keeps the frames before it", async () => {
  const fs = new MemoryFs();
  const log = await ChangeLog.open(optionsOf(fs, { batchBytesMax: 200 }));
  const start = log.nextSeq;
  for (let index = 0; index < 10; index += 1) {
    log.append(changeOf(start + index, { key: "k", version: index + 1 }));
  }
  await log.close();
  const [name] = await fs.readDir(`${dir}/changes`);
  const path = `${dir}/changes/${name}`;
  const size = (await fs.stat(path))!.sizeBytes;
  const file = await fs.openAppend(path, { permissions: 0o600 });
  await file.truncate(size - 30); // inside the last frame (the closed marker's)
  file.close();
  const lines: string[] = [];
  const logger = createLogger({ level: "warn", write: (line) => lines.push(line) });
  const reopened = await ChangeLog.open(optionsOf(fs, { logger }));
  assert.ok(lines.some((line) => line.includes("torn tail")), lines.join("\n"));
  const records = await collect(reopened.recordsAfter(start - 1, { chunkCount: 100 }));
  assert.ok(records.filter((record) => record.type === "change").length >= 5);
  assert.equal(records.at(-1)?.type, "gap", "the cut tail may have held changes");
  await reopened.close();
});

Deno.test("ChangeLog drops a damaged segment and every older one, never reading garbage", async () => {
  const fs = new MemoryFs();
  const log = await ChangeLog.open(
    optionsOf(fs, { batchBytesMax: 100, retention: { ageMs: 1e9, recordsMax: 1e6, bytesMax: 512 * 1024 } }),
  );
  const start = log.nextSeq;
  for (let index = 0; index < 3_000; index += 1) {
    log.append(changeOf(start + index, { key: "k", version: index + 1 }));
  }
  await log.close();
  const names = (await fs.readDir(`${dir}/changes`)).sort();
  assert.ok(names.length >= 2);
  const path = `${dir}/changes/${names[0]}`;
  const bytes = (await fs.readFile(path))!;
  bytes[100] = bytes[100]! ^ 0xff; // inside the first frame, with frames after it: not a torn tail
  const file = await fs.createFile(path, { permissions: 0o600 });
  await file.write(bytes);
  file.close();
  const reopened = await ChangeLog.open(optionsOf(fs));
  const records = await collect(reopened.recordsAfter(reopened.floorSeq, { chunkCount: 10_000 }));
  assert.ok(reopened.floorSeq > start, "the damaged segment's changes are below the floor");
  assert.ok(records.every((record, index) => index === 0 || record.seq > records[index - 1]!.seq));
  assert.deepEqual(seqsOf(await collect(reopened.recordsAfter(start, { chunkCount: 5 }))), [
    `gap:${reopened.floorSeq}`,
  ]);
  await reopened.close();
});

Deno.test(
  "ChangeLog marks a frame whose write failed as lost: a reader meets a gap, later frames still read",
  async () => {
    const fs = new MemoryFs();
    const log = await ChangeLog.open(optionsOf(fs, { batchBytesMax: 400 }));
    const start = log.nextSeq;
    for (let index = 0; index < 5; index += 1) {
      log.append(changeOf(start + index, { key: "k", version: index + 1 }));
    }
    await log.flush();
    fs.capacityBytes = 0; // the disk is full
    for (let index = 5; index < 10; index += 1) {
      log.append(changeOf(start + index, { key: "k", version: index + 1 }));
    }
    await log.flush();
    fs.capacityBytes = Infinity;
    for (let index = 10; index < 15; index += 1) {
      log.append(changeOf(start + index, { key: "k", version: index + 1 }));
    }
    await log.flush();
    const records = await collect(log.recordsAfter(start + 2, { chunkCount: 100 }));
    assert.equal(records.at(-1)?.type, "gap");
    assert.ok(records.slice(0, -1).every((record) => record.type === "change" && record.seq <= start + 4));
    const afterLoss = await collect(log.recordsAfter(start + 9, { chunkCount: 100 }));
    assert.deepEqual(
      afterLoss.map((record) => record.seq),
      [10, 11, 12, 13, 14].map((index) => start + index),
    );
    await log.close();
  },
);

Deno.test("ChangeLog matches a model over seeded appends, flushes, reopens and resumes", async () => {
  const rng = Random.fromEnv("change log model");
  const seed = rng.seed;
  const random = () => rng.next();
  const fs = new MemoryFs();
  const retention = { ageMs: 1e9, recordsMax: 400, bytesMax: 1 << 20 };
  let log = await ChangeLog.open(
    optionsOf(fs, { retention, batchBytesMax: 1 + Math.floor(random() * 3_000) }),
  );
  const model = new Map<number, LoggedChange>();
  const versions = new Map<string, number>();
  for (let step = 0; step < 3_000; step += 1) {
    const roll = random();
    if (roll < 0.9) {
      const key = `k${Math.floor(random() * 20)}`;
      const version = (versions.get(key) ?? 0) + 1;
      versions.set(key, version);
      const change = changeOf(log.nextSeq + Math.floor(random() * 3), { key, version });
      log.append(change);
      model.set(change.seq, change);
    } else if (roll < 0.97) {
      await log.flush();
    } else {
      await log.close();
      log = await ChangeLog.open(
        optionsOf(fs, { retention, batchBytesMax: 1 + Math.floor(random() * 3_000) }),
      );
    }
    if (step % 97 !== 0) continue;
    const from = log.floorSeq + Math.floor(random() * 50);
    const expected = [...model.values()].filter((change) => change.seq > from);
    const got = await collect(log.recordsAfter(from, { chunkCount: 1 + Math.floor(random() * 40) }));
    assert.deepEqual(got.filter((record) => record.type === "change"), expected, `seed ${seed} step ${step}`);
  }
  await log.close();
});

Deno.test(
  "ChangeLog holds records larger than a batch and names with any characters, from memory and disk",
  async () => {
    const fs = new MemoryFs();
    const log = await ChangeLog.open(optionsOf(fs));
    const start = log.nextSeq;
    const big = JSON.stringify({ value: "é".repeat(150_000), version: 1, timestamp: 1, owner: "o" });
    const odd: LoggedChange = {
      ...changeOf(start + 1, { table: 'ta,b\n"é', key: "k\n1,2", version: 2 }),
      json: '{"value":"line\\nbreak ✓","version":2,"timestamp":1,"owner":"ü"}',
      resyncBefore: true,
    };
    log.append({ ...changeOf(start, { key: "big", version: 1 }), json: big });
    log.append(odd);
    log.append(changeOf(start + 2, { key: "after", version: 1 }));
    const fromMemory = await collect(log.recordsAfter(start - 1, { chunkCount: 10 }));
    assert.equal(fromMemory.length, 3);
    assert.equal((fromMemory[0] as LoggedChange).json, big);
    assert.deepEqual(fromMemory[1], odd);
    await log.close();
    const reopened = await ChangeLog.open(optionsOf(fs));
    const fromDisk = await collect(reopened.recordsAfter(start - 1, { chunkCount: 10 }));
    assert.deepEqual(fromDisk.filter((record) => record.type === "change"), fromMemory);
    const [keyed] = await collect(
      reopened.keyChangesAfter({ table: 'ta,b\n"é', key: "k\n1,2" }, { after: 0, chunkCount: 5 }),
    );
    assert.deepEqual(keyed, odd);
    await reopened.close();
  },
);
