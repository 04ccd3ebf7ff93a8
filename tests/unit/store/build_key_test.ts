// Goal: the build's key comes only from its git-ignored module; a missing or malformed module is a
// BuildKeyError that says what to run, never a crash or a key of the repository's (issue 18 item 5).
// Method: loadBuildEncryption() with loaders standing in for the dynamic import.
import assert from "node:assert/strict";
import { BuildKeyError, importEncryptionKey, loadBuildEncryption } from "../../../src/store/mod.ts";
import { testKeyBase64 } from "../../helpers/test_key.ts";

Deno.test("loadBuildEncryption() imports the key the module exports", async () => {
  const encryption = await loadBuildEncryption(() => Promise.resolve({ encryptionKeyBase64: testKeyBase64 }));
  assert.equal(encryption.keyId, (await importEncryptionKey(testKeyBase64)).keyId);
});

Deno.test("loadBuildEncryption() without the module says to run gen-key and to keep the file", async () => {
  const missing = () =>
    Promise.reject(new TypeError('Module not found "file:///repo/src/store/encryption_key.ts".'));
  await assert.rejects(() => loadBuildEncryption(missing), (error: unknown) => {
    assert.ok(error instanceof BuildKeyError);
    assert.equal(error.code, "config_invalid");
    assert.match(error.message, /^no encryption key: src\/store\/encryption_key\.ts does not exist/);
    assert.match(error.message, /deno task gen-key/);
    assert.match(error.message, /keep that file/);
    return true;
  });
  const broken = () => Promise.reject(new SyntaxError("Unexpected token"));
  await assert.rejects(
    () => loadBuildEncryption(broken),
    /cannot load the encryption key module .*Unexpected/,
  );
});

Deno.test("loadBuildEncryption() refuses a module whose key is not the base64 of 32 bytes", async () => {
  for (const encryptionKeyBase64 of [undefined, 42, "", btoa("short"), `${testKeyBase64}A`]) {
    await assert.rejects(
      () => loadBuildEncryption(() => Promise.resolve({ encryptionKeyBase64 })),
      (error: unknown) =>
        error instanceof BuildKeyError && /not export encryptionKeyBase64/.test(error.message),
      String(encryptionKeyBase64),
    );
  }
});
