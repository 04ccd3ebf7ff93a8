// Goal: replaceFile() swaps a file for a new one atomically and durably, or leaves it as it was.
// Method: MemoryFs, whose crashCopy() keeps only what was synced; a fill that fails, one that succeeds.
import assert from "node:assert/strict";
import { MemoryFs, replaceFile } from "../../../src/store/mod.ts";

const bytesOf = (text: string) => new TextEncoder().encode(text);
const textOf = (bytes: Uint8Array | undefined) =>
  bytes === undefined ? undefined : new TextDecoder().decode(bytes);

Deno.test(
  "replaceFile() leaves the target as it was and removes the temporary file when fill fails",
  async () => {
    const fs = new MemoryFs();
    await fs.mkdir("/b", { permissions: 0o700 });
    await fs.writeFileDurably("/b/backup", bytesOf("previous"));
    const options = { fs, path: "/b/backup", tmpPath: "/b/backup.tmp.7", permissions: 0o600 };
    await assert.rejects(
      () =>
        replaceFile(options, async (file) => {
          await file.write(bytesOf("half"));
          throw new Error("the node refused");
        }),
      /the node refused/,
    );
    assert.equal(textOf(await fs.readFile("/b/backup")), "previous");
    assert.deepEqual(await fs.readDir("/b"), ["backup"]);
  },
);

Deno.test("replaceFile() replaces the target durably, with the permissions asked", async () => {
  const fs = new MemoryFs();
  await fs.mkdir("/b", { permissions: 0o700 });
  await fs.writeFileDurably("/b/backup", bytesOf("previous"));
  const options = { fs, path: "/b/backup", tmpPath: "/b/backup.tmp.7", permissions: 0o600 };
  const result = await replaceFile(options, async (file) => {
    await file.write(bytesOf("new backup"));
    return 42;
  });
  assert.equal(result, 42);
  assert.equal(textOf(await fs.crashCopy().readFile("/b/backup")), "new backup", "synced data and entry");
  assert.equal((await fs.stat("/b/backup"))?.permissions, 0o600);
  assert.deepEqual(await fs.readDir("/b"), ["backup"]);
  await assert.rejects(() => replaceFile({ ...options, tmpPath: "/elsewhere/tmp" }, () => Promise.resolve()));
});
