// Goal: issue 18 item 11 (SPEC §8): a real node under the usual umask 022 creates its data dir and
// `snapshots/` 0700 and every file in them 0600: the WAL, storage.db, snapshots, the generated
// jwt_secret and a repair's `.broken.<ms>` copy (its temp and probe files go through the same calls).
// Method: a node child process with SNAP_INTERVAL_SECS=1 and no JWT_SECRET writes, snapshots and
// checkpoints (SIGTERM); storage.db is damaged and a second run with --repair moves it aside and writes a
// new one; then every entry under the data dir is stat'ed.
import assert from "node:assert/strict";
import { NodeProcess, putValue, tokenFor } from "../../helpers/node_process.ts";
import { waitFor } from "../../helpers/wait_for.ts";

/** Every path under `dir` (itself included) with its permission bits, e.g. `0600`. */
async function modesUnder(dir: string): Promise<Map<string, string>> {
  const modes = new Map<string, string>();
  const pending = [dir];
  // Bounded by the number of directories under `dir`.
  while (pending.length > 0) {
    const path = pending.pop()!;
    modes.set(path, `0${(((await Deno.stat(path)).mode ?? 0) & 0o777).toString(8)}`);
    for await (const entry of Deno.readDir(path)) {
      const child = `${path}/${entry.name}`;
      if (entry.isDirectory) pending.push(child);
      else modes.set(child, `0${(((await Deno.lstat(child)).mode ?? 0) & 0o777).toString(8)}`);
    }
  }
  return modes;
}

Deno.test(
  "file modes: under umask 022 every file a node writes is 0600, its data dir and snapshots/ 0700",
  async () => {
    const root = await Deno.makeTempDir({ prefix: "dynarust_modes_" });
    const dataDir = `${root}/data`; // made by the node, not by the test
    try {
      {
        await using node = await NodeProcess.start({
          dataDir,
          umask: 0o022,
          env: { SNAP_INTERVAL_SECS: "1" },
        });
        const token = await tokenFor(node, "alice");
        for (let index = 0; index < 5; index += 1) {
          const response = await putValue(node, `/t/key/k${index}`, { index }, { token });
          assert.equal(response.status, 201);
          await response.body?.cancel();
        }
        const snapshots = async () => (await Array.fromAsync(Deno.readDir(`${dataDir}/snapshots`))).length;
        await waitFor(async () => await snapshots() > 0, { timeoutMs: 10_000, what: "a snapshot" });
        assert.equal((await node.stop("SIGTERM")).code, 0, "a graceful stop checkpoints into storage.db");
      }
      const storage = await Deno.readFile(`${dataDir}/storage.db`);
      storage[40]! ^= 0x10; // inside the first frame: the file is damaged, --repair moves it aside
      await Deno.writeFile(`${dataDir}/storage.db`, storage);
      await Deno.chmod(`${dataDir}/storage.db`, 0o600);
      {
        await using node = await NodeProcess.start({ dataDir, umask: 0o022, args: ["--repair"] });
        const response = await node.fetch("/t/key/k4");
        assert.equal((await response.json()).value?.index, 4, "recovered from the snapshot and the WAL");
        assert.equal((await node.stop("SIGTERM")).code, 0);
      }
      const modes = await modesUnder(dataDir);
      const names = [...modes.keys()].map((path) => path.slice(dataDir.length)).sort();
      for (
        const pattern of [/^\/wal\.log$/, /^\/storage\.db$/, /^\/jwt_secret$/, /^\/storage\.db\.broken\.\d+$/]
      ) {
        assert.ok(names.some((name) => pattern.test(name)), `${pattern} in ${names.join(" ")}`);
      }
      assert.ok(names.some((name) => /^\/snapshots\/snapshot_\d+\.json$/.test(name)), names.join(" "));
      assert.ok(names.some((name) => /^\/changes\/changes_\d{20}\.log$/.test(name)), names.join(" "));
      const wrong = [...modes].filter(([path, mode]) => {
        const directory = path === dataDir || path === `${dataDir}/snapshots` ||
          path === `${dataDir}/changes`;
        return mode !== (directory ? "0700" : "0600");
      });
      assert.deepEqual(wrong, [], "every directory 0700, every file 0600");
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
);
