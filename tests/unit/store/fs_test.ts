// Goal: both Fs implementations behave alike, and MemoryFs models what a power cut keeps.
// Method: run the same operations on DenoFs (a temp dir) and MemoryFs; crash MemoryFs at chosen points.
import assert from "node:assert/strict";
import { DenoFs, type Fs, isNoSpaceError, MemoryFs, parentDir } from "../../../src/store/fs.ts";

const text = (bytes: Uint8Array | undefined) =>
  bytes === undefined ? undefined : new TextDecoder().decode(bytes);
const bytesOf = (value: string) => new TextEncoder().encode(value);

async function exerciseFs(fs: Fs, dir: string): Promise<void> {
  await fs.mkdir(`${dir}/a/b`, { permissions: 0o700 });
  assert.deepEqual((await fs.readDir(dir)).sort(), ["a"]);
  assert.equal(await fs.readFile(`${dir}/missing`), undefined);
  assert.equal(await fs.openRead(`${dir}/missing`), undefined);
  assert.equal(await fs.stat(`${dir}/missing`), undefined);
  const appended = await fs.openAppend(`${dir}/log`, { permissions: 0o600 });
  await appended.write(bytesOf("hello "));
  await appended.write(bytesOf("world"));
  await appended.truncate(5);
  await appended.write(bytesOf("!"));
  await appended.syncData();
  assert.equal(await appended.sizeBytes(), 6);
  assert.equal(await appended.read(new Uint8Array(4)), null, "appends leave the position at the end");
  appended.close();
  const reader = await fs.openRead(`${dir}/log`);
  assert(reader !== undefined);
  const readBuffer = new Uint8Array(4);
  assert.equal(await reader.read(readBuffer), 4);
  assert.equal(text(readBuffer), "hell");
  assert.equal(await reader.read(new Uint8Array(8)), 2);
  assert.equal(await reader.read(new Uint8Array(8)), null);
  reader.close();
  assert.equal(text(await fs.readFile(`${dir}/log`)), "hello!");
  const created = await fs.createFile(`${dir}/secret`, { permissions: 0o600 });
  await created.write(bytesOf("s"));
  created.close();
  assert.equal((await fs.stat(`${dir}/secret`))?.permissions, 0o600);
  await fs.rename(`${dir}/secret`, `${dir}/a/moved`);
  await fs.syncDir(dir);
  await fs.syncDir(`${dir}/a`);
  assert.equal(text(await fs.readFile(`${dir}/a/moved`)), "s");
  assert.deepEqual((await fs.readDir(`${dir}/a`)).sort(), ["b", "moved"]);
  await fs.remove(`${dir}/a/moved`);
  await fs.remove(`${dir}/a/moved`);
  assert.equal(await fs.readFile(`${dir}/a/moved`), undefined);
  assert.deepEqual(await fs.readDir(`${dir}/nothing`), []);
}

Deno.test("DenoFs reads, appends, truncates, renames, syncs directories and sets permissions", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await exerciseFs(new DenoFs(), dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Creates, narrows and stats files and directories; `mode` reads a path's bits as the OS has them. */
async function exercisePermissions(fs: Fs, dir: string): Promise<void> {
  await fs.mkdir(`${dir}/d/e`, { permissions: 0o700 });
  assert.equal((await fs.stat(`${dir}/d`))?.permissions, 0o700, "missing parents get the bits too");
  assert.equal((await fs.stat(`${dir}/d/e`))?.permissions, 0o700);
  const appended = await fs.openAppend(`${dir}/d/wal`, { permissions: 0o600 });
  appended.close();
  assert.equal((await fs.stat(`${dir}/d/wal`))?.permissions, 0o600);
  const wide = await fs.createFile(`${dir}/d/old`, { permissions: 0o644 });
  wide.close();
  assert.equal((await fs.stat(`${dir}/d/old`))?.permissions, 0o644);
  const emptied = await fs.createFile(`${dir}/d/old`, { permissions: 0o600 });
  emptied.close();
  assert.equal((await fs.stat(`${dir}/d/old`))?.permissions, 0o600, "an emptied file gets exactly the bits");
  await fs.mkdir(`${dir}/d`, { permissions: 0o755 });
  assert.equal(
    (await fs.stat(`${dir}/d`))?.permissions,
    0o700,
    "mkdir leaves an existing directory as it is",
  );
  const reopened = await fs.createFile(`${dir}/d/old`, { permissions: 0o644 });
  reopened.close();
  assert.equal(await fs.narrowPermissions(`${dir}/d/old`, 0o600), 0o644);
  assert.equal((await fs.stat(`${dir}/d/old`))?.permissions, 0o600);
  assert.equal(await fs.narrowPermissions(`${dir}/d/old`, 0o600), undefined, "nothing left to clear");
  assert.equal(await fs.narrowPermissions(`${dir}/d/missing`, 0o600), undefined);
  assert.equal(await fs.narrowPermissions(`${dir}/d/e`, 0o500), 0o700);
  assert.equal((await fs.stat(`${dir}/d/e`))?.permissions, 0o500, "only bits are cleared, none added");
}

Deno.test("DenoFs creates files and directories with exactly the bits asked, under the umask", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await exercisePermissions(new DenoFs(), dir);
    const bits = async (path: string) => ((await Deno.stat(path)).mode ?? 0) & 0o777;
    assert.equal(await bits(`${dir}/d/wal`), 0o600, "as the OS reports it");
    assert.equal(await bits(`${dir}/d`), 0o700);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("MemoryFs keeps permission bits like DenoFs", async () => {
  const fs = new MemoryFs();
  await fs.mkdir("/tmp", { permissions: 0o755 });
  await exercisePermissions(fs, "/tmp");
});

Deno.test("MemoryFs behaves like DenoFs", async () => {
  await exerciseFs(new MemoryFs(), "/tmp/x");
});

Deno.test("MemoryFs.crashCopy() keeps synced data and drops unsynced data", async () => {
  const fs = new MemoryFs();
  await fs.mkdir("/d", { permissions: 0o700 });
  const file = await fs.openAppend("/d/wal", { permissions: 0o600 });
  await file.write(bytesOf("durable"));
  await file.syncData();
  await fs.syncDir("/d");
  await file.write(bytesOf(" lost"));
  assert.equal(text(await fs.crashCopy().readFile("/d/wal")), "durable");
  await file.truncate(3);
  await file.write(bytesOf("XY"));
  assert.equal(text(await fs.readFile("/d/wal")), "durXY");
  assert.equal(text(await fs.crashCopy().readFile("/d/wal")), "durable", "a truncation is undone too");
  await file.syncData();
  assert.equal(text(await fs.crashCopy().readFile("/d/wal")), "durXY");
  file.close();
});

Deno.test("MemoryFs.crashCopy() drops directory changes until syncDir", async () => {
  const fs = new MemoryFs();
  await fs.mkdir("/d", { permissions: 0o700 });
  await fs.writeFileDurably("/d/old", bytesOf("old"));
  const tmp = await fs.createFile("/d/new.tmp", { permissions: 0o600 });
  await tmp.write(bytesOf("new"));
  await tmp.syncData();
  tmp.close();
  await fs.rename("/d/new.tmp", "/d/old");
  assert.equal(text(await fs.crashCopy().readFile("/d/old")), "old", "rename not durable before syncDir");
  assert.equal(await fs.crashCopy().readFile("/d/new.tmp"), undefined);
  await fs.syncDir("/d");
  const after = fs.crashCopy();
  assert.equal(text(await after.readFile("/d/old")), "new");
  assert.deepEqual(await after.readDir("/d"), ["old"]);
});

Deno.test("MemoryFs with capacityBytes writes what fits, then fails with ENOSPC", async () => {
  const fs = new MemoryFs({ capacityBytes: 10 });
  await fs.mkdir("/d", { permissions: 0o700 });
  const file = await fs.openAppend("/d/f", { permissions: 0o600 });
  await file.write(bytesOf("12345678"));
  const error = await file.write(bytesOf("abcd")).then(() => undefined, (caught: unknown) => caught);
  assert(isNoSpaceError(error));
  assert.equal(text(await fs.readFile("/d/f")), "12345678ab");
  await file.truncate(8);
  fs.capacityBytes = 100;
  await file.write(bytesOf("abcd"));
  assert.equal(text(await fs.readFile("/d/f")), "12345678abcd");
  file.close();
  assert.throws(() => file.close());
});

Deno.test("isNoSpaceError() recognises ENOSPC by code or message only", () => {
  assert(isNoSpaceError(Object.assign(new Error("x"), { code: "ENOSPC" })));
  assert(isNoSpaceError(new Error("No space left on device (os error 28)")));
  assert(!isNoSpaceError(new Error("Permission denied (os error 13)")));
  assert(!isNoSpaceError("ENOSPC"));
});

Deno.test("parentDir() returns the directory part of a path", () => {
  assert.equal(parentDir("/a/b/c"), "/a/b");
  assert.equal(parentDir("/a"), "/");
  assert.equal(parentDir("a"), ".");
});

/** The lock rules both Fs implementations follow (`flock`): one exclusive holder, or many shared ones. */
async function exerciseLocks(fs: Fs, dir: string): Promise<void> {
  const path = `${dir}/node.lock`;
  await assert.rejects(() => fs.tryLock(path, { exclusive: false }), Deno.errors.NotFound);
  const create = { permissions: 0o600 };
  const exclusive = await fs.tryLock(path, { exclusive: true, create });
  assert(exclusive !== undefined);
  assert.equal((await fs.stat(path))?.permissions, 0o600, "created with the bits asked");
  assert.equal(await fs.tryLock(path, { exclusive: true, create }), undefined, "a second opener is refused");
  assert.equal(await fs.tryLock(path, { exclusive: false }), undefined, "no shared lock beside it");
  exclusive.release();
  exclusive.release(); // a second release does nothing
  const shared = await fs.tryLock(path, { exclusive: false });
  const alsoShared = await fs.tryLock(path, { exclusive: false });
  assert(shared !== undefined && alsoShared !== undefined, "shared locks share");
  assert.equal(await fs.tryLock(path, { exclusive: true }), undefined, "no exclusive lock beside them");
  shared.release();
  assert.equal(await fs.tryLock(path, { exclusive: true }), undefined, "until the last one goes");
  alsoShared.release();
  const again = await fs.tryLock(path, { exclusive: true });
  assert(again !== undefined);
  again.release();
}

Deno.test(
  "DenoFs.tryLock() and MemoryFs.tryLock(): one exclusive holder or many shared, never waiting",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "dynarust_fs_lock_" });
    try {
      await exerciseLocks(new DenoFs(), dir);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
    const memory = new MemoryFs();
    await memory.mkdir("/data", { permissions: 0o700 });
    await exerciseLocks(memory, "/data");
    const held = await memory.tryLock("/data/node.lock", { exclusive: true });
    assert(held !== undefined);
    const crashed = memory.crashCopy({ keepUnsynced: true });
    const after = await crashed.tryLock("/data/node.lock", { exclusive: true });
    assert(after !== undefined, "a crash ends the process that held the lock");
    after.release();
    held.release();
  },
);
