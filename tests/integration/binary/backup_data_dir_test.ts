// Goal: a single node (no CLUSTER_SECRET, so no node-to-node door) is backed up and restored through its
// data dir: `dynarust export --data-dir` reads a stopped node's files without changing a byte (a torn WAL
// tail included) into the cluster export's format, `dynarust import --data-dir` restores it into a fresh
// data dir by the conflict rule, and a node started there serves every live record and both users exactly.
// The data dir's lock refuses an offline export or import while the node runs (with what to do instead,
// and no file written), and a second node on the same data dir (exit 78).
// Method: real nodes (main.ts in child processes on 127.0.0.1:0) in real temp dirs, the commands run as a
// user runs them; the data dir's files are hashed before and after the export.
import assert from "node:assert/strict";
import { NodeProcess, putValue, tokenFor } from "../../helpers/node_process.ts";

interface Record {
  value: unknown;
  version: number;
  timestamp: number;
  owner: string;
  expires_at?: number;
}

/** A PUT or PATCH of `body` through the public API; its answer, the VersionedValue. */
async function write(
  node: NodeProcess,
  path: string,
  body: { value: unknown; ttl_secs?: number },
  options: { token: string; method?: "PUT" | "PATCH" },
): Promise<Record> {
  const method = options.method ?? "PUT";
  const response = await node.fetch(path, {
    method,
    headers: { authorization: `Bearer ${options.token}` },
    body: JSON.stringify(body),
  });
  assert.ok(response.status < 300, `${method} ${path}: ${response.status}`);
  return await response.json();
}

async function remove(node: NodeProcess, path: string, token: string): Promise<void> {
  const response = await node.fetch(path, {
    method: "DELETE",
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(response.status, 200, `DELETE ${path}`);
  await response.body?.cancel();
}

async function read(node: NodeProcess, path: string): Promise<Record | undefined> {
  const response = await node.fetch(path);
  if (response.status === 404) {
    await response.body?.cancel();
    return undefined;
  }
  assert.equal(response.status, 200, path);
  return await response.json();
}

/** `POST /auth/{user}`: 200 with the user's secret, 401 with another (the user exists, the hash holds). */
async function loginStatus(node: NodeProcess, user: string, secret: string): Promise<number> {
  const response = await node.fetch(`/auth/${user}`, { method: "POST", body: JSON.stringify({ secret }) });
  await response.body?.cancel();
  return response.status;
}

/** SHA-256 of every file under `dir`, by path relative to it (directories listed too). */
async function hashTree(dir: string): Promise<Map<string, string>> {
  const hashes = new Map<string, string>();
  const pending = [""];
  // Bounded by the directories under `dir`.
  while (pending.length > 0) {
    const relative = pending.pop()!;
    for await (const entry of Deno.readDir(`${dir}${relative}`)) {
      const path = `${relative}/${entry.name}`;
      const mode = ((await Deno.stat(`${dir}${path}`)).mode ?? 0) & 0o777;
      if (entry.isDirectory) {
        hashes.set(path, `dir ${mode.toString(8)}`);
        pending.push(path);
        continue;
      }
      const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(`${dir}${path}`));
      hashes.set(path, `${mode.toString(8)} ${new Uint8Array(digest).toHex()}`);
    }
  }
  return hashes;
}

/** `dynarust export|import --data-dir DIR`, as a user runs it. */
function offline(kind: "export" | "import", dataDir: string, file: string) {
  return NodeProcess.runToExit([kind, "--data-dir", dataDir, kind === "export" ? "--to" : "--from", file]);
}

/**
 * A single node's history: two users; keys rewritten, patched, given a lifetime, deleted, re-created.
 * Returns the live records as the node answered them, and the deleted keys.
 */
async function writeHistory(node: NodeProcess): Promise<{ live: Map<string, Record>; deleted: string[] }> {
  const alice = await tokenFor(node, "alice", "alice-secret");
  const bob = await tokenFor(node, "bob", "bob-secret");
  const live = new Map<string, Record>();
  await write(node, "/fruits/key/apple", { value: { n: 1 } }, { token: alice });
  live.set(
    "/fruits/key/apple",
    await write(node, "/fruits/key/apple", { value: { n: 2 } }, { token: alice }),
  );
  live.set(
    "/fruits/key/pear",
    await write(node, "/fruits/key/pear", { value: 'quote " and é', ttl_secs: 3_600 }, {
      token: bob,
      method: "PUT",
    }),
  );
  await write(node, "/notes/key/n%201", { value: { a: 1, b: 2 } }, { token: bob });
  live.set(
    "/notes/key/n%201",
    await write(node, "/notes/key/n%201", { value: { b: null } }, { token: bob, method: "PATCH" }),
  );
  await write(node, "/notes/key/gone", { value: 1 }, { token: alice });
  await remove(node, "/notes/key/gone", alice);
  await write(node, "/notes/key/back", { value: "first life" }, { token: alice });
  await remove(node, "/notes/key/back", alice);
  live.set(
    "/notes/key/back",
    await write(node, "/notes/key/back", { value: [1, { deep: true }] }, { token: bob }),
  );
  assert.equal(typeof live.get("/fruits/key/pear")?.expires_at, "number", "pear has a lifetime");
  assert.equal(live.get("/notes/key/back")?.version, 3, "a re-created key goes on from its tombstone");
  return { live, deleted: ["/notes/key/gone"] };
}

/** Writes the history into a node on `source`, then stops it gracefully: storage.db holds it all. */
async function stopAfterHistory(source: string): Promise<Awaited<ReturnType<typeof writeHistory>>> {
  await using node = await NodeProcess.start({ dataDir: source });
  const history = await writeHistory(node);
  assert.equal((await node.stop("SIGTERM")).code, 0, "a graceful stop checkpoints into storage.db");
  return history;
}

/**
 * Exports `source` into `file`: every record, users first, the torn tail reported, the data dir untouched.
 */
async function assertExported(
  source: string,
  file: string,
  recordCount: number,
  before: Map<string, string>,
): Promise<void> {
  const exported = await offline("export", source, file);
  assert.equal(exported.code, 0, exported.stderr);
  assert.match(
    exported.stderr,
    new RegExp(`exported ${recordCount} records from ${source} to ${file}`),
  );
  assert.match(
    exported.stderr,
    /wal\.log has a torn tail at byte offset \d+: read up to its last good frame/,
  );
  assert.deepEqual(await hashTree(source), before, "read-only: every file of the data dir byte for byte");
  assert.equal(((await Deno.stat(file)).mode ?? 0) & 0o777, 0o600, "it holds password hashes");
  const lines = (await Deno.readTextFile(file)).trim().split("\n").map((line) => JSON.parse(line));
  assert.equal(lines[0].dynarust_export, 1);
  assert.deepEqual(lines.slice(1).map((line) => `${line.table}/${line.key}`), [
    "_users/alice",
    "_users/bob",
    "fruits/apple",
    "fruits/pear",
    "notes/back",
    "notes/n 1",
  ], "users first, then tables and keys in order; no deleted key");
}

Deno.test(
  "backup --data-dir: a stopped single node exported from its files (unchanged) and restored into a " +
    "new data dir",
  async () => {
    const root = await Deno.makeTempDir({ prefix: "dynarust_offline_" });
    const source = `${root}/source`;
    const restored = `${root}/restored`;
    const file = `${root}/backup.jsonl`;
    try {
      const history = await stopAfterHistory(source);
      {
        await using node = await NodeProcess.start({ dataDir: source });
        const token = await tokenFor(node, "alice", "alice-secret");
        history.live.set(
          "/fruits/key/apple",
          await write(node, "/fruits/key/apple", { value: { n: 3 } }, { token }),
        );
        // Killed this time: its WAL keeps the write, which a store that was not read-only would checkpoint
        // at close (changing storage.db and wal.log), as it would cut the torn tail added below.
        await node.stop("SIGKILL");
      }
      const wal = await Deno.open(`${source}/wal.log`, { append: true });
      await wal.write(new Uint8Array(9)); // a zero-filled tail, as a power cut can leave
      wal.close();
      const before = await hashTree(source);
      assert.ok(
        before.has("/node.lock") && before.has("/wal.log") && before.has("/storage.db"),
        [...before.keys()].join(),
      );

      await assertExported(source, file, history.live.size + 2, before);
      const imported = await offline("import", restored, file);
      assert.equal(imported.code, 0, imported.stderr);
      assert.match(
        imported.stderr,
        new RegExp(`imported ${history.live.size + 2} records from ${file} into ${restored}\n$`),
      );
      await using node = await NodeProcess.start({ dataDir: restored });
      for (const [path, record] of history.live) assert.deepEqual(await read(node, path), record, path);
      for (const path of history.deleted) assert.equal(await read(node, path), undefined, path);
      assert.equal(await loginStatus(node, "alice", "alice-secret"), 200);
      assert.equal(await loginStatus(node, "bob", "bob-secret"), 200);
      assert.equal(await loginStatus(node, "bob", "alice-secret"), 401, "bob's own hash came back");
      const alice = await tokenFor(node, "alice", "alice-secret");
      const stolen = await putValue(node, "/fruits/key/pear", "mine now", { token: alice });
      assert.equal(stolen.status, 403, "bob still owns pear");
      await stolen.body?.cancel();
      assert.equal(
        (await write(node, "/fruits/key/apple", { value: { n: 4 } }, { token: alice })).version,
        4,
      );
      await node.stop("SIGTERM");

      // Imported again into that data dir: apple keeps its newer version 4; nothing else changes.
      const again = await offline("import", restored, file);
      assert.equal(again.code, 0, again.stderr);
      assert.match(
        again.stderr,
        new RegExp(
          `imported 0 records .*; ${history.live.size + 2} kept the state the data dir already held`,
        ),
      );
      await using after = await NodeProcess.start({ dataDir: restored });
      assert.deepEqual((await read(after, "/fruits/key/apple"))?.value, { n: 4 });
      assert.deepEqual(await read(after, "/fruits/key/pear"), history.live.get("/fruits/key/pear"));
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
);

Deno.test(
  "backup --data-dir: refused while the node runs (no file written); a second node on its data dir " +
    "exits 78",
  async () => {
    const root = await Deno.makeTempDir({ prefix: "dynarust_offline_" });
    const dataDir = `${root}/data`;
    try {
      await using node = await NodeProcess.start({ dataDir });
      const token = await tokenFor(node, "alice");
      await write(node, "/t/key/k", { value: 1 }, { token });
      // The node's own change log goes on flushing meanwhile: the store's files are what must not change.
      const storeFiles = async () =>
        new Map([...await hashTree(dataDir)].filter(([path]) => !path.startsWith("/changes/")));
      const before = await storeFiles();

      const exported = await offline("export", dataDir, `${root}/backup.jsonl`);
      assert.equal(exported.code, 1, exported.stderr);
      assert.equal(
        exported.stderr,
        `dynarust export: ${dataDir} is in use: a node runs on it ` +
          `(it holds the lock ${dataDir}/node.lock): ` +
          "stop the node first, or export through the running node with --node URL and CLUSTER_SECRET\n",
      );
      assert.deepEqual(
        (await Array.fromAsync(Deno.readDir(root))).map((entry) => entry.name),
        ["data"],
        "no file",
      );

      await Deno.writeTextFile(
        `${root}/other.jsonl`,
        '{"dynarust_export":1}\n' +
          '{"table":"t","key":"k","value":2,"version":9,"timestamp":1,"owner":"alice"}\n',
      );
      const imported = await offline("import", dataDir, `${root}/other.jsonl`);
      assert.equal(imported.code, 1, imported.stderr);
      assert.match(
        imported.stderr,
        /^dynarust import: .* is in use: a node runs on it|^dynarust import: .* is in use by another process/,
      );
      assert.match(
        imported.stderr,
        /stop the node first, or import through the running node with --node URL and CLUSTER_SECRET\n$/,
      );

      const second = await NodeProcess.runToExit(["127.0.0.1:0", "--data-dir", dataDir]);
      assert.equal(second.code, 78, second.stderr);
      assert.match(
        second.stderr,
        new RegExp(
          `dynarust: ${dataDir} is in use by another process: .*; give each node its own --data-dir`,
        ),
      );
      assert.equal(second.stdout, "", "it never served");
      assert.deepEqual(
        await storeFiles(),
        before,
        "neither the refused commands nor the second node changed a file",
      );
      assert.equal((await read(node, "/t/key/k"))?.version, 1, "the first node still serves its data");
      assert.equal((await node.stop("SIGTERM")).code, 0);
      const afterStop = await offline("export", dataDir, `${root}/backup.jsonl`);
      assert.equal(afterStop.code, 0, afterStop.stderr);
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
);

Deno.test(
  "backup --data-dir: a dir without data, a missing export file, or --node beside it fail with a " +
    "clear line",
  async () => {
    const root = await Deno.makeTempDir({ prefix: "dynarust_offline_" });
    try {
      const empty = await offline("export", root, `${root}/b.jsonl`);
      assert.equal(empty.code, 1);
      assert.equal(
        empty.stderr,
        `dynarust export: --data-dir ${root} holds no dynarust data (no storage.db or wal.log)\n`,
      );
      const missing = await offline("import", `${root}/new`, `${root}/absent.jsonl`);
      assert.equal(missing.code, 1);
      assert.match(missing.stderr, /^dynarust import: .*absent\.jsonl/);
      assert.deepEqual((await Array.fromAsync(Deno.readDir(root))).length, 0, "no data dir was created");
      const both = await NodeProcess.runToExit([
        "export",
        "--data-dir",
        root,
        "--node",
        "http://127.0.0.1:1",
        "--to",
        "x",
      ]);
      assert.equal(both.code, 1);
      assert.match(both.stderr, /--data-dir works on a stopped node's files and takes no --node/);
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
);
