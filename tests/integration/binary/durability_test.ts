// Goal: SPEC §3 and §6 durability against a real node: a 201 survives SIGTERM restarts and SIGKILL in the
// middle of concurrent writes; versions continue across restarts; no file of the data dir holds a value
// in clear.
// Method: node child processes sharing one temp data dir across restarts; writes acknowledged before a
// SIGKILL are read back after the restart.
import assert from "node:assert/strict";
import { NodeProcess, putValue, tokenFor } from "../../helpers/node_process.ts";

async function withDataDir(run: (dataDir: string) => Promise<void>): Promise<void> {
  const dataDir = await Deno.makeTempDir({ prefix: "dynarust_durability_" });
  try {
    await run(dataDir);
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
}

async function filesUnder(dir: string): Promise<string[]> {
  const files: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) files.push(...await filesUnder(path));
    else if (entry.isFile) files.push(path);
  }
  return files;
}

Deno.test("durability: SIGTERM exits 0; restart keeps data, owners, users and versions", () =>
  withDataDir(async (dataDir) => {
    {
      const node = await NodeProcess.start({ dataDir });
      const token = await tokenFor(node, "alice", "pw-alice");
      for (let index = 1; index <= 3; index += 1) {
        await (await putValue(node, "/t/key/k", index, { token })).body?.cancel();
      }
      await (await node.fetch("/t/key/k", {
        method: "DELETE",
        headers: { authorization: `Bearer ${token}` },
      })).body
        ?.cancel();
      await (await putValue(node, "/t/key/other", "kept", { token })).body?.cancel();
      const status = await node.stop("SIGTERM");
      assert.equal(status.code, 0);
      await node[Symbol.asyncDispose]();
    }
    await using node = await NodeProcess.start({ dataDir });
    const kept = await (await node.fetch("/t/key/other")).json();
    assert.equal(kept.value, "kept");
    assert.equal(kept.owner, "alice");
    assert.equal((await node.fetch("/t/key/k")).status, 404);
    const login = await node.fetch("/auth/alice", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ secret: "pw-alice" }),
    });
    assert.equal(login.status, 200, "the user survived the restart");
    const { token } = await login.json();
    const recreated = await (await putValue(node, "/t/key/k", "back", { token })).json();
    assert.equal(recreated.version, 5, "versions continue after the tombstone across a restart");
  }));

Deno.test("durability: SIGKILL during concurrent writes loses no acknowledged write", () =>
  withDataDir(async (dataDir) => {
    const acknowledged = new Map<string, number>();
    {
      const node = await NodeProcess.start({ dataDir });
      const token = await tokenFor(node, "writer");
      let stop = false;
      const writers = Array.from({ length: 16 }, async (_, writer) => {
        for (let index = 0; !stop; index += 1) {
          const key = `w${writer}-${index % 25}`;
          try {
            const response = await putValue(node, `/crash/key/${key}`, { writer, index }, { token });
            if (response.status === 201) acknowledged.set(key, (await response.json()).version);
            else await response.body?.cancel();
          } catch {
            return; // the node died under us: this write was never acknowledged
          }
        }
      });
      while (acknowledged.size < 200) await new Promise((resolve) => setTimeout(resolve, 5));
      await node.stop("SIGKILL");
      stop = true;
      await Promise.all(writers);
      await node[Symbol.asyncDispose]();
    }
    assert.ok(acknowledged.size >= 200);
    await using node = await NodeProcess.start({ dataDir });
    for (const [key, version] of acknowledged) {
      const response = await node.fetch(`/crash/key/${key}`);
      assert.equal(response.status, 200, `acknowledged key ${key} survived`);
      const body = await response.json();
      assert.ok(body.version >= version, `${key}: version ${body.version} >= acknowledged ${version}`);
    }
  }));

Deno.test("durability: a marker value appears in no file of the data dir", () =>
  withDataDir(async (dataDir) => {
    const marker = `MARKER-${crypto.randomUUID()}`;
    {
      const node = await NodeProcess.start({ dataDir, env: { SNAP_INTERVAL_SECS: "1" } });
      const token = await tokenFor(node, "alice", `${marker}-password`);
      await (await putValue(node, "/t/key/small", marker, { token })).body?.cancel();
      await (await putValue(node, "/t/key/big", `${marker}${"lorem ipsum ".repeat(2000)}`, { token })).body
        ?.cancel();
      await (await putValue(node, `/t/key/${marker}`, 1, { token })).body?.cancel();
      assert.equal((await node.stop("SIGTERM")).code, 0);
      await node[Symbol.asyncDispose]();
    }
    const files = await filesUnder(dataDir);
    assert.ok(files.some((path) => path.endsWith("storage.db")), `storage.db written: ${files.join(", ")}`);
    // The change log holds every change's value too, under its own cipher.
    assert.ok(
      files.some((path) => /\/changes\/changes_\d{20}\.log$/.test(path)),
      `change log: ${files.join(", ")}`,
    );
    const needle = new TextEncoder().encode(marker);
    for (const path of files) {
      const bytes = await Deno.readFile(path);
      const text = new TextDecoder("latin1").decode(bytes);
      assert.ok(!text.includes(marker), `${path} holds the marker in clear`);
      assert.ok(bytes.length >= 0 && needle.length > 0);
    }
  }));
