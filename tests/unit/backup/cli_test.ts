import assert from "node:assert/strict";
import { BackupError, linesOf, parseBackupCommand, progressDisplay } from "../../../src/backup/mod.ts";

const env = { CLUSTER_SECRET: "s".repeat(32) };

Deno.test("parseBackupCommand() reads flags and env, with clear errors", () => {
  assert.deepEqual(parseBackupCommand("export", ["--to", "b.jsonl"], env), {
    kind: "export",
    nodeUrl: "http://127.0.0.1:6660",
    path: "b.jsonl",
    clusterSecret: env.CLUSTER_SECRET,
    caPath: undefined,
  });
  const command = parseBackupCommand(
    "import",
    ["--from", "b", "--node", "https://n1:6660", "--ca", "ca.pem"],
    {
      ...env,
    },
  );
  assert.ok(
    "nodeUrl" in command && command.nodeUrl === "https://n1:6660" && command.caPath === "ca.pem",
  );
  // A stopped node's data dir: no network, so no CLUSTER_SECRET needed (and none used when set).
  assert.deepEqual(parseBackupCommand("export", ["--data-dir", "./data", "--to", "b"], {}), {
    kind: "export",
    dataDir: "./data",
    path: "b",
  });
  assert.deepEqual(parseBackupCommand("import", ["--from", "b", "--data-dir", "/new"], env), {
    kind: "import",
    dataDir: "/new",
    path: "b",
  });
  assert.equal(parseBackupCommand("import", ["--help"], {}).kind, "help");
  const refusals: Array<[string[], Record<string, string>, RegExp]> = [
    [["--to", "x"], {}, /CLUSTER_SECRET/],
    [[], env, /--to FILE is required/],
    [["--to", "x", "--node", "ftp://x"], env, /not an http/],
    [["--to", "x", "--bogus"], env, /bogus.*--help/],
    [["--to", "x", "--data-dir", ""], {}, /--data-dir DIR is empty/],
    [["--data-dir", "d"], {}, /--to FILE is required/],
    [
      ["--to", "x", "--data-dir", "d", "--node", "http://n:1", "--ca", "c.pem"],
      env,
      /--data-dir works on a stopped node's files and takes no --node, --ca: use one or the other/,
    ],
    [["--to", "x"], {}, /a single node without one is backed up while stopped, with --data-dir DIR/],
  ];
  for (const [args, environment, message] of refusals) {
    assert.throws(() => parseBackupCommand("export", args, environment), (error: unknown) => {
      return error instanceof BackupError && message.test(error.message);
    });
  }
});

Deno.test("progressDisplay(): a bar redrawn in place on a terminal, plain lines otherwise", () => {
  const plain: string[] = [];
  const lines = progressDisplay({
    verb: "exported",
    terminal: false,
    write: (text) => plain.push(text),
    lineEvery: 2,
  });
  for (let done = 1; done <= 5; done += 1) lines.update(done, 5);
  lines.finish("exported 5 records");
  assert.deepEqual(plain, ["exported 2 records\n", "exported 4 records\n", "exported 5 records\n"]);
  const drawn: string[] = [];
  const bar = progressDisplay({ verb: "imported", terminal: true, write: (text) => drawn.push(text) });
  bar.update(50, 100);
  bar.finish("imported 100 records");
  assert.match(drawn[0]!, /^\r\[#{15}\.{15}\] 50% imported 50 records$/);
  assert.equal(drawn[1], "\r\x1b[Kimported 100 records\n");
});

Deno.test(
  "linesOf() splits a stream at line breaks, across chunks, CRLF and a last line without one",
  async () => {
    const stream = ReadableStream.from(["a\nb", "c\r\n", "\nd"]);
    const lines: string[] = [];
    for await (const line of linesOf(stream)) lines.push(line);
    assert.deepEqual(lines, ["a", "bc", "", "d"]);
  },
);
