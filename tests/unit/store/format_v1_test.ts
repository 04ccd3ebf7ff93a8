// Goal: a data dir written in on-disk format version 1 opens and reads the same with every later build:
// storage.db, a WAL holding records not yet checkpointed, a snapshot, a change log segment and the
// encrypted JWT secret, with puts, patches, tombstones, lifetimes (one far ahead, one already over, expiry
// tombstones), users, owners, unicode names and values, large values, ballots and promises.
// Method: fixtures/format_v1/ holds the files (written by fixtures/make_format_v1.ts with the real Store,
// ChangeLog and Broker under the tests' key) and expected.json, what the writing store held. Each test
// copies the committed bytes into Deno.makeTempDir() (they are never regenerated, nor opened in place),
// opens the copy on DenoFs at the fixture's clock, and compares whole states with deepEqual.
import assert from "node:assert/strict";
import { verifySecret } from "../../../src/auth/passwords.ts";
import { ManualClock } from "../../../src/util/clock.ts";
import {
  ForbiddenError,
  loadOrCreateSecretFile,
  type Store,
  WalCorruptError,
} from "../../../src/store/mod.ts";
import { DenoFs } from "../../../src/store/mod.ts";
import {
  changeLogStateOf,
  copyFixtureData,
  formatV1Dir,
  type FormatV1Expected,
  opCodesOf,
  openChangeLog,
  storeStateOf,
} from "./fixtures/make_format_v1.ts";
import { openStore, RecordingLogger, storeOptions, testEncryption } from "./test_store.ts";

const expected: FormatV1Expected = JSON.parse(await Deno.readTextFile(`${formatV1Dir}/expected.json`));
const { promiseKeys, clockMs } = expected;

/** Runs `body` on a fresh copy of the fixture's data dir, removed after. */
async function withCopy(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await copyFixtureData();
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function openAtFixtureClock(dir: string, logger = new RecordingLogger()): Promise<Store> {
  return openStore(storeOptions({ dir, fs: new DenoFs(), clock: new ManualClock(clockMs), logger }));
}

Deno.test("format v1 fixture: wal.log holds records not yet checkpointed, of every kind", async () => {
  await withCopy(async (dir) => {
    assert.deepEqual(await opCodesOf(`${dir}/wal.log`, "wal"), expected.walOps);
    assert.deepEqual(await opCodesOf(`${dir}/storage.db`, "state"), expected.storageOps);
    // put, delete, purge, put and delete with a ballot, promise; with a lifetime: put, delete, with a ballot
    const kinds = [1, 2, 4, 5, 6, 7, 129, 130, 133, 134];
    assert.deepEqual(kinds.filter((op) => !expected.walOps.includes(op)), [], "every kind is in the WAL");
    assert.ok(expected.storageOps.includes(7), "storage.db holds an outstanding promise");
  });
});

Deno.test(
  "Store.open() reads the format v1 fixture's storage.db and WAL exactly as they were written",
  async () => {
    await withCopy(async (dir) => {
      const logger = new RecordingLogger();
      const store = await openAtFixtureClock(dir, logger);
      try {
        assert.deepEqual(await storeStateOf(store, { promiseKeys, nowMs: clockMs }), expected.current);
        const due = store.takeExpired(clockMs, 100).map(({ table, key }) => `${table}/${key}`);
        assert.deepEqual(due, expected.current.expired, "the expiry queue is rebuilt from the files");
        assert.deepEqual(logger.at("warn"), [], "nothing to warn about in an intact data dir");
        // Owners come back: a live key is written only by its owner; a key re-created after a tombstone
        // belongs to its new writer.
        await assert.rejects(store.put("t", "a", 4, { owner: "bob" }), ForbiddenError);
        await assert.rejects(store.put("t", "b", 4, { owner: "alice" }), ForbiddenError);
        assert.equal((await store.put("t", "b", 4, { owner: "carol" })).version, 4);
        assert.equal(store.stats().sequence, expected.current.sequence + 1, "sequences go on from the files");
      } finally {
        await store.close();
      }
    });
  },
);

Deno.test(
  "Store.open() reads the format v1 fixture's storage.db alone as the checkpoint; the WAL adds the " +
    "rest",
  async () => {
    await withCopy(async (dir) => {
      await Deno.remove(`${dir}/wal.log`);
      const store = await openAtFixtureClock(dir);
      try {
        assert.deepEqual(await storeStateOf(store, { promiseKeys, nowMs: clockMs }), expected.checkpointed);
      } finally {
        await store.close();
      }
    });
    // What only wal.log holds, which the test above found: so it was replayed.
    const walOnly = Object.keys(expected.current.entries).filter((name) =>
      JSON.stringify(expected.current.entries[name]) !== JSON.stringify(expected.checkpointed.entries[name])
    );
    assert.ok(walOnly.length >= 10, `keys changed only in wal.log: ${walOnly.join(", ")}`);
    assert.notDeepEqual(expected.current.promises, expected.checkpointed.promises);
  },
);

Deno.test(
  "Store.open() recovers the format v1 fixture from its snapshot, with and without the WAL",
  async () => {
    await withCopy(async (dir) => {
      await Deno.remove(`${dir}/storage.db`);
      const store = await openAtFixtureClock(dir);
      try {
        assert.deepEqual(await storeStateOf(store, { promiseKeys, nowMs: clockMs }), expected.current);
      } finally {
        await store.close();
      }
    });
    await withCopy(async (dir) => {
      await Deno.remove(`${dir}/storage.db`);
      await Deno.remove(`${dir}/wal.log`);
      const store = await openAtFixtureClock(dir);
      try {
        assert.deepEqual(await storeStateOf(store, { promiseKeys, nowMs: clockMs }), expected.checkpointed);
      } finally {
        await store.close();
      }
    });
  },
);

Deno.test("Store.open() refuses the format v1 fixture's storage.db with one byte changed", async () => {
  await withCopy(async (dir) => {
    const path = `${dir}/storage.db`;
    const bytes = await Deno.readFile(path);
    bytes[100]! ^= 0x01; // inside the first frame's ciphertext
    await Deno.writeFile(path, bytes);
    const error = await openAtFixtureClock(dir).then(
      async (store) => {
        await store.close();
        return undefined;
      },
      (error: unknown) => error,
    );
    assert.ok(error instanceof WalCorruptError, `expected WalCorruptError, got ${error}`);
    assert.equal(error.path, path);
  });
});

Deno.test("the format v1 fixture's users verify their passwords, and only theirs", async () => {
  await withCopy(async (dir) => {
    const store = await openAtFixtureClock(dir);
    try {
      for (const [user, password] of Object.entries(expected.passwords)) {
        const entry = store.get("_users", user);
        assert.ok(entry !== undefined, `user ${user} is in _users`);
        assert.equal(entry.owner, user);
        const record = JSON.parse(entry.json).value;
        assert.equal(await verifySecret(password, record), true, `${user}'s password`);
        assert.equal(await verifySecret(`${password}!`, record), false, `not ${user}'s password`);
      }
    } finally {
      await store.close();
    }
  });
});

Deno.test("loadOrCreateSecretFile() reads the format v1 fixture's JWT secret", async () => {
  await withCopy(async (dir) => {
    const result = await loadOrCreateSecretFile({
      fs: new DenoFs(),
      path: `${dir}/jwt_secret`,
      encryption: testEncryption,
      create: () => assert.fail("the secret file is there"),
    });
    assert.deepEqual(result, { secret: expected.jwtSecret, created: false });
  });
});

Deno.test(
  "ChangeLog.open() reads the format v1 fixture's segment: every record's id, version and state",
  async () => {
    await withCopy(async (dir) => {
      const logger = new RecordingLogger();
      const log = await openChangeLog({ dir, clock: new ManualClock(clockMs), logger });
      try {
        assert.deepEqual(await changeLogStateOf(log), expected.changeLog);
        const versions: number[] = [];
        for await (
          const chunk of log.keyChangesAfter({ table: "t", key: "a" }, { after: 0, chunkCount: 8 })
        ) {
          versions.push(...chunk.map((change) => change.version));
        }
        assert.deepEqual(versions, [1, 2, 3]);
        assert.deepEqual(logger.at("warn"), [], "a segment closed cleanly: no gap, nothing cut");
      } finally {
        await log.close();
      }
    });
  },
);
