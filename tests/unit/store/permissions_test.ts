// Goal: every file the store writes is created 0600 and its directories 0700 (SPEC §8, issue 18 item 11),
// whatever path wrote it: the WAL, storage.db, snapshots, a secret file, a repair's `.broken.<ms>` copy.
// A data dir someone else made wider is left as it is with a warning; `snapshots/`, `wal.log` and
// `storage.db` that an older build made wider are narrowed.
// Method: Stores on MemoryFs (which keeps permission bits), every file and directory listed and stat'ed.
import assert from "node:assert/strict";
import { loadOrCreateSecretFile, MemoryFs, Store } from "../../../src/store/mod.ts";
import { fileHeaderBytes } from "../../../src/store/frame.ts";
import { RecordingLogger, storeOptions, testEncryption } from "./test_store.ts";

const alice = { owner: "alice" };

/** `/data`, `/data/snapshots` and every file in them, with their permission bits. */
async function permissionsUnder(fs: MemoryFs): Promise<Map<string, number>> {
  const found = new Map<string, number>();
  for (const dir of ["/data", "/data/snapshots"]) {
    found.set(dir, (await fs.stat(dir))!.permissions);
    for (const name of await fs.readDir(dir)) {
      if (name !== "snapshots") found.set(`${dir}/${name}`, (await fs.stat(`${dir}/${name}`))!.permissions);
    }
  }
  return found;
}

Deno.test(
  "Store: the WAL, storage.db, snapshots, secrets and .broken copies are 0600, its dirs 0700",
  async () => {
    const fs = new MemoryFs();
    const store = await Store.open(storeOptions({ fs }));
    await store.put("t", "a", 1, alice);
    await store.snapshot();
    await store.put("t", "b", 2, alice);
    await loadOrCreateSecretFile({
      fs,
      path: "/data/jwt_secret",
      encryption: testEncryption,
      create: () => "s",
    });
    const image = fs.crashCopy();
    await store.close();
    // A flipped byte in the WAL's first frame (of two), then a repair: it keeps a `.broken.<ms>` copy.
    const wal = (await image.readFile("/data/wal.log"))!.slice();
    wal[fileHeaderBytes + 30]! ^= 0x10;
    await image.writeFileDurably("/data/wal.log", wal);
    const second = await Store.open(storeOptions({ fs: image, repair: true }));
    await second.close();

    for (const memory of [fs, image]) {
      const modes = await permissionsUnder(memory);
      const names = [...modes.keys()].map((path) => path.slice("/data".length)).sort();
      assert.ok(names.includes("/storage.db") && names.includes("/wal.log") && names.includes("/jwt_secret"));
      assert.ok(names.some((name) => /^\/snapshots\/snapshot_\d+\.json$/.test(name)), names.join(" "));
      if (memory === image) {
        assert.ok(names.some((name) => name.startsWith("/wal.log.broken.")), names.join());
      }
      for (const [path, permissions] of modes) {
        const expected = path === "/data" || path === "/data/snapshots" ? 0o700 : 0o600;
        assert.equal(permissions.toString(8), expected.toString(8), path);
      }
    }
  },
);

Deno.test(
  "Store: a wider data dir is kept with a warning; snapshots/, wal.log, storage.db are narrowed",
  async () => {
    const fs = new MemoryFs();
    const first = await Store.open(storeOptions({ fs }));
    await first.put("t", "a", 1, alice);
    await first.close();
    fs.setDirPermissions("/data", 0o755);
    fs.setDirPermissions("/data/snapshots", 0o755);
    for (const path of ["/data/wal.log", "/data/storage.db"]) {
      const bytes = (await fs.readFile(path))!;
      const file = await fs.createFile(path, { permissions: 0o644 }); // as a build before 0600 wrote them
      await file.write(bytes);
      await file.syncData();
      file.close();
    }
    const logger = new RecordingLogger();
    const store = await Store.open(storeOptions({ fs, logger }));
    assert.equal(store.get("t", "a")?.version, 1);
    const warnings = logger.at("warn");
    const dirWarning = warnings.find((line) =>
      line.message.startsWith("data dir /data has permissions 0755")
    );
    assert.ok(dirWarning !== undefined, JSON.stringify(warnings));
    assert.match(dirWarning.message, /each file is 0600.*chmod 700 \/data/);
    assert.equal((await fs.stat("/data"))?.permissions, 0o755, "a directory it may not own is left as it is");
    const narrowed = warnings.find((line) => line.message.startsWith("narrowed the permissions"));
    assert.deepEqual(narrowed?.fields?.narrowed, [
      "/data/snapshots 0755 -> 0700",
      "/data/wal.log 0644 -> 0600",
      "/data/storage.db 0644 -> 0600",
    ]);
    for (const path of ["/data/wal.log", "/data/storage.db"]) {
      assert.equal((await fs.stat(path))?.permissions, 0o600);
    }
    assert.equal((await fs.stat("/data/snapshots"))?.permissions, 0o700);
    await store.close();

    const quiet = new RecordingLogger();
    fs.setDirPermissions("/data", 0o700);
    await (await Store.open(storeOptions({ fs, logger: quiet }))).close();
    assert.deepEqual(quiet.at("warn"), [], "nothing to say about a private data dir");
  },
);
