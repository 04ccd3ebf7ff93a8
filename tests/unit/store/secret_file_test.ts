// Goal: a generated secret is stored once, encrypted, with mode 0600, and read back on later starts.
// Method: loadOrCreateSecretFile on DenoFs in a temp dir and on MemoryFs (crash copy, damage, wrong key).
import assert from "node:assert/strict";
import { DenoFs, MemoryFs } from "../../../src/store/fs.ts";
import { loadOrCreateSecretFile, WalCorruptError, WrongKeyError } from "../../../src/store/mod.ts";
import { containsBytes, otherEncryption, testEncryption } from "./test_store.ts";

const secret = "generated-secret-0123456789abcdef0123456789";

Deno.test("loadOrCreateSecretFile() creates an encrypted 0600 file once and reads it back", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/nested/jwt_secret`;
    let calls = 0;
    const options = {
      fs: new DenoFs(),
      path,
      encryption: testEncryption,
      create: () => (calls += 1, secret),
    };
    assert.deepEqual(await loadOrCreateSecretFile(options), { secret, created: true });
    assert.deepEqual(await loadOrCreateSecretFile(options), { secret, created: false });
    assert.equal(calls, 1);
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
    assert(!containsBytes(await Deno.readFile(path), new TextEncoder().encode(secret)));
    assert.deepEqual([...Deno.readDirSync(`${dir}/nested`)].map((entry) => entry.name), ["jwt_secret"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test(
  "loadOrCreateSecretFile() survives a crash right after creation and refuses another key",
  async () => {
    const fs = new MemoryFs();
    const options = { fs, path: "/data/secret", encryption: testEncryption, create: () => secret };
    await loadOrCreateSecretFile(options);
    const crashed = fs.crashCopy();
    assert.deepEqual(await loadOrCreateSecretFile({ ...options, fs: crashed }), { secret, created: false });
    assert.equal((await crashed.stat("/data/secret"))?.permissions, 0o600);
    await assert.rejects(
      () => loadOrCreateSecretFile({ ...options, encryption: otherEncryption }),
      WrongKeyError,
    );
  },
);

Deno.test("loadOrCreateSecretFile() refuses a damaged file instead of replacing the secret", async () => {
  const fs = new MemoryFs();
  const options = { fs, path: "/data/secret", encryption: testEncryption, create: () => secret };
  await loadOrCreateSecretFile(options);
  const bytes = (await fs.readFile("/data/secret"))!;
  for (const damaged of [bytes.subarray(0, bytes.length - 1), bytes.subarray(0, 5)]) {
    await fs.writeFileDurably("/data/secret", damaged);
    await assert.rejects(() => loadOrCreateSecretFile(options), WalCorruptError);
  }
});
