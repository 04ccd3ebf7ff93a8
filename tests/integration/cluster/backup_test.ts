// Goal: `dynarust export` and `dynarust import` (issue 6) move a cluster's data to a fresh cluster with
// every record's value, owner, version, timestamp and lifetime, users included (they log in with their old
// secret and still own their keys); bad input is refused with a clear line and a non-zero exit.
// Method: two real 3-node TestClusters; the commands run as the user runs them (main.ts in a child
// process, output not a terminal, so progress is plain lines).
import assert from "node:assert/strict";
import { NodeProcess, putValue, tokenFor } from "../../helpers/node_process.ts";
import { clusterSecret, TestCluster } from "../../helpers/test_cluster.ts";
import { waitFor } from "../../helpers/wait_for.ts";

interface Record {
  value: unknown;
  version: number;
  timestamp: number;
  owner: string;
  expires_at?: number;
}

/** A write; its answer (the VersionedValue of a PUT or PATCH). */
async function write(node: NodeProcess, path: string, value: unknown, token: string, method = "PUT") {
  const response = method === "PUT" ? await putValue(node, path, value, { token }) : await node.fetch(path, {
    method,
    headers: { authorization: `Bearer ${token}` },
    ...(value === undefined ? {} : { body: JSON.stringify({ value }) }),
  });
  assert.ok(response.status < 300, `${method} ${path}: ${response.status}`);
  return await response.json() as Record;
}

/** `dynarust export --to FILE` or `import --from FILE` against `nodeUrl`, as a user runs it. */
function backup(kind: "export" | "import", nodeUrl: string, file: string, secret = clusterSecret) {
  return NodeProcess.runToExit([kind, "--node", nodeUrl, kind === "export" ? "--to" : "--from", file], {
    CLUSTER_SECRET: secret,
  });
}

async function read(node: NodeProcess, path: string): Promise<Record | undefined> {
  const response = await node.fetch(path);
  if (response.status === 404) {
    await response.body?.cancel();
    return undefined;
  }
  return await response.json();
}

/**
 * Writes records with owners, versions, a lifetime, a patch, a deletion and two users into a 3-node
 * cluster, waits until every replica holds them, then exports it into `file`; answers the live records.
 */
async function exportSourceCluster(file: string): Promise<Map<string, Record>> {
  const expected = new Map<string, Record>();
  await using source = await TestCluster.start({ nodeCount: 3 });
  const alice = await tokenFor(source.node(0), "alice", "alice-secret");
  const bob = await tokenFor(source.node(1), "bob", "bob-secret");
  await write(source.node(0), "/fruits/key/apple", { n: 1 }, alice);
  await write(source.node(1), "/fruits/key/apple", { n: 2 }, alice);
  expected.set("fruits/key/apple", await write(source.node(1), "/fruits/key/apple", { n: 3 }, alice));
  // With a lifetime (SPEC §2): the import restores its expires_at too.
  const pear = await source.node(2).fetch("/fruits/key/pear", {
    method: "PUT",
    headers: { authorization: `Bearer ${bob}` },
    body: JSON.stringify({ value: 'quote " and \\ and é', ttl_secs: 3_600 }),
  });
  expected.set("fruits/key/pear", await pear.json());
  assert.equal(typeof expected.get("fruits/key/pear")?.expires_at, "number");
  await write(source.node(0), "/notes/key/n%201", { a: 1 }, bob);
  expected.set(
    "notes/key/n%201",
    await write(source.node(0), "/notes/key/n%201", { b: null }, bob, "PATCH"),
  );
  expected.set(
    "notes/key/%F0%9F%8D%8E",
    await write(source.node(1), "/notes/key/%F0%9F%8D%8E", [1, { deep: [true] }], alice),
  );
  await write(source.node(1), "/notes/key/gone", 1, alice);
  await write(source.node(1), "/notes/key/gone", undefined, alice, "DELETE");
  assert.equal(expected.get("fruits/key/apple")?.version, 3);
  // A write is acknowledged by a quorum; the export is taken once the third replica has it too.
  await waitFor(async () => {
    for (const [key, record] of expected) {
      for (const index of [0, 1, 2]) {
        if (JSON.stringify(await read(source.node(index), `/${key}`)) !== JSON.stringify(record)) {
          return false;
        }
      }
    }
    return (await read(source.node(2), "/notes/key/gone")) === undefined;
  }, { timeoutMs: 10_000, what: "every replica to hold every write" });

  const help = await NodeProcess.runToExit(["export", "--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /usage: dynarust export --to FILE/);
  const exported = await backup("export", source.node(1).baseUrl, file);
  assert.equal(exported.code, 0, exported.stderr);
  assert.match(exported.stderr, /exported 6 records to /, "2 users and 4 live keys");
  return expected;
}

Deno.test(
  "backup: export a cluster, import it into a fresh one: every record, owner, version, user",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "dynarust_backup_" });
    const file = `${dir}/backup.jsonl`;
    try {
      const expected = await exportSourceCluster(file);
      const lines = (await Deno.readTextFile(file)).trim().split("\n").map((line) => JSON.parse(line));
      assert.equal(lines[0].dynarust_export, 1);
      assert.deepEqual(lines.slice(1).map((line) => line.table).sort(), [
        "_users",
        "_users",
        "fruits",
        "fruits",
        "notes",
        "notes",
      ]);

      await using target = await TestCluster.start({ nodeCount: 3 });
      const imported = await backup("import", target.node(2).baseUrl, file);
      assert.equal(imported.code, 0, imported.stderr);
      assert.match(imported.stderr, /imported 6 records from /);
      for (const [key, record] of expected) {
        for (const index of [0, 1, 2]) {
          assert.deepEqual(await read(target.node(index), `/${key}`), record, key);
        }
      }
      assert.equal(await read(target.node(0), "/notes/key/gone"), undefined);
      const login = await target.node(0).fetch("/auth/alice", {
        method: "POST",
        body: '{"secret":"alice-secret"}',
      });
      assert.equal(login.status, 200, "alice exists on the new cluster, with her secret");
      const { token: alice } = await login.json();
      const wrong = await target.node(1).fetch("/auth/bob", { method: "POST", body: '{"secret":"not bob"}' });
      assert.equal(wrong.status, 401, "bob's secret still protects bob");
      await wrong.body?.cancel();
      const stolen = await putValue(target.node(1), "/fruits/key/pear", "mine now", { token: alice });
      assert.equal(stolen.status, 403, "bob still owns his key");
      await stolen.body?.cancel();
      await write(target.node(1), "/fruits/key/apple", { n: 4 }, alice);
      // A write acknowledged by a quorum reaches the third replica soon after: versions go on from 3.
      await waitFor(async () => (await read(target.node(2), "/fruits/key/apple"))?.version === 4, {
        timeoutMs: 5_000,
        what: "version 4 of apple on the third node",
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test(
  "backup: a wrong secret, a file that is not an export, or a missing flag fail with a clear line",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "dynarust_backup_" });
    try {
      await using node = await NodeProcess.start({ env: { CLUSTER_SECRET: clusterSecret } });
      const wrongSecret = await backup(
        "export",
        node.baseUrl,
        `${dir}/x.jsonl`,
        "another-secret-0123456789-0123456789",
      );
      assert.equal(wrongSecret.code, 1);
      assert.equal(
        wrongSecret.stderr,
        `dynarust export: ${node.baseUrl} refused the request: CLUSTER_SECRET does not match (403)\n`,
      );
      await Deno.writeTextFile(`${dir}/notes.txt`, "hello\n");
      const notExport = await backup("import", node.baseUrl, `${dir}/notes.txt`);
      assert.equal(notExport.code, 1);
      assert.match(notExport.stderr, /line 1 is not JSON/);
      await Deno.writeTextFile(
        `${dir}/bad.jsonl`,
        '{"dynarust_export":1}\n{"table":"t","key":"k","value":1}\n',
      );
      const badLine = await backup("import", node.baseUrl, `${dir}/bad.jsonl`);
      assert.equal(badLine.code, 1);
      assert.match(badLine.stderr, /line 2 is not a record/);
      assert.equal((await node.fetch("/t/key/k")).status, 404, "nothing was written");
      const missing = await NodeProcess.runToExit(["import", "--node", node.baseUrl], {
        CLUSTER_SECRET: clusterSecret,
      });
      assert.equal(missing.code, 1);
      assert.match(missing.stderr, /--from FILE is required/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

/** A port nothing listens on (bound, then closed). */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

Deno.test(
  "backup: a refused or unreachable export leaves the previous backup byte for byte (issue 18 item " +
    "14)",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "dynarust_backup_" });
    const file = `${dir}/backup.jsonl`;
    try {
      await using node = await NodeProcess.start({ env: { CLUSTER_SECRET: clusterSecret } });
      const token = await tokenFor(node, "alice");
      await write(node, "/t/key/first", "first", token);
      const first = await backup("export", node.baseUrl, file);
      assert.equal(first.code, 0, first.stderr);
      const previous = await Deno.readFile(file);
      assert.ok(previous.length > 100, "a real backup: header, alice, one key");
      await write(node, "/t/key/second", "second", token);

      const unreachable = `http://127.0.0.1:${closedPort()}`;
      const failures = [
        {
          result: await backup("export", node.baseUrl, file, "another-secret-0123456789-0123456789"),
          line: `dynarust export: ${node.baseUrl} refused the request: CLUSTER_SECRET does not match (403)`,
        },
        {
          result: await backup("export", unreachable, file),
          line: `dynarust export: ${unreachable} cannot be reached: Connection refused (os error 111)`,
        },
      ];
      for (const { result, line } of failures) {
        const after = await Deno.readFile(file);
        assert.equal(after.length, previous.length, `the previous backup is unchanged (${result.stderr})`);
        assert.deepEqual(after, previous, "byte for byte");
        assert.equal(result.code, 1, result.stderr);
        assert.equal(result.stderr, `${line}\n`, "one line naming the node and the cause");
        assert.deepEqual((await Array.fromAsync(Deno.readDir(dir))).map((entry) => entry.name), [
          "backup.jsonl",
        ]);
      }

      const replaced = await backup("export", node.baseUrl, file);
      assert.equal(replaced.code, 0, replaced.stderr);
      const keys = (await Deno.readTextFile(file)).trim().split("\n").slice(1).map((text) =>
        JSON.parse(text).key
      );
      assert.deepEqual(keys, ["alice", "first", "second"], "a successful export replaces it");
      assert.equal(((await Deno.stat(file)).mode ?? 0) & 0o777, 0o600, "a backup holds password hashes");
      assert.deepEqual((await Array.fromAsync(Deno.readDir(dir))).map((entry) => entry.name), [
        "backup.jsonl",
      ]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test(
  "backup: values that together pass a node-to-node message's 4 MiB are restored in several requests",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "dynarust_backup_" });
    try {
      const env = { CLUSTER_SECRET: clusterSecret };
      const big = "x".repeat(600_000);
      {
        await using source = await NodeProcess.start({ env });
        const token = await tokenFor(source, "alice");
        for (let index = 0; index < 8; index += 1) {
          await write(source, `/big/key/k${index}`, `${index}${big}`, token);
        }
        const exported = await backup("export", source.baseUrl, `${dir}/b.jsonl`);
        assert.equal(exported.code, 0, exported.stderr);
      }
      await using target = await NodeProcess.start({ env });
      const imported = await backup("import", target.baseUrl, `${dir}/b.jsonl`);
      assert.equal(imported.code, 0, imported.stderr);
      assert.match(imported.stderr, /imported 9 records/);
      for (let index = 0; index < 8; index += 1) {
        assert.equal((await read(target, `/big/key/k${index}`))?.value, `${index}${big}`);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
