/**
 * The bench's Deno KV peer (`tools/bench/denokv_peer.ts`), run as the bench runs it (`--unstable-kv`, a
 * real data dir) and spoken to over HTTP: a PUT is a read-modify-write whose versions never repeat under
 * concurrent writes, an acknowledged record survives SIGKILL, and bad bodies get a 4xx that says why.
 * Without these the bench would compare dynarust with a peer that does less than it claims.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { waitFor } from "../../helpers/wait_for.ts";

const repositoryRoot = fileURLToPath(new URL("../../../", import.meta.url));

/** A running peer: its URL and the process to kill. */
interface RunningPeer {
  url: string;
  child: Deno.ChildProcess;
  [Symbol.asyncDispose](): Promise<void>;
}

async function startPeer(dataDir: string): Promise<RunningPeer> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-kv", "tools/bench/denokv_peer.ts", "0", dataDir],
    cwd: repositoryRoot,
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  let output = "";
  const reading = (async () => {
    for await (const text of child.stdout.pipeThrough(new TextDecoderStream())) output += text;
  })();
  const dispose = async () => {
    try {
      child.kill("SIGKILL");
    } catch {
      // It has exited already.
    }
    await child.status;
    await reading;
  };
  try {
    await waitFor(() => /listening on (\S+)/.test(output), { timeoutMs: 30_000, what: "the peer listening" });
  } catch (error) {
    await dispose();
    throw error;
  }
  return { url: /listening on (\S+)/.exec(output)![1]!, child, [Symbol.asyncDispose]: dispose };
}

async function put(url: string, body: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const response = await fetch(url, { method: "PUT", body, headers: { "content-type": "application/json" } });
  return { status: response.status, json: await response.json() };
}

Deno.test("denokv_peer.ts: concurrent PUTs of one key each commit their own version", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "denokv_peer_test_" });
  try {
    await using peer = await startPeer(dataDir);
    const writeCount = 24;
    const answers = await Promise.all(
      Array.from(
        { length: writeCount },
        (_, n) => put(`${peer.url}/x/key/a`, JSON.stringify({ value: { n } })),
      ),
    );
    assert.deepEqual(answers.map((answer) => answer.status), Array(writeCount).fill(201));
    const versions = answers.map((answer) => answer.json["version"] as number).sort((a, b) => a - b);
    assert.deepEqual(versions, Array.from({ length: writeCount }, (_, index) => index + 1));
    const last = answers.find((answer) => answer.json["version"] === writeCount)!;
    const response = await fetch(`${peer.url}/x/key/a`);
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), last.json);
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test(
  "denokv_peer.ts: an acknowledged PUT survives SIGKILL, and a restart keeps the keys it holds",
  async () => {
    const dataDir = await Deno.makeTempDir({ prefix: "denokv_peer_test_" });
    try {
      let written: Record<string, unknown>;
      {
        await using peer = await startPeer(dataDir);
        const preloaded = await fetch(`${peer.url}/t/key/k5`);
        assert.deepEqual(await preloaded.json(), {
          value: { n: 5, s: "hello" },
          version: 1,
          timestamp: 0,
          owner: "bench",
        });
        const answer = await put(`${peer.url}/t/key/k5`, JSON.stringify({ value: { kept: true } }));
        assert.equal(answer.status, 201);
        assert.equal(answer.json["version"], 2);
        written = answer.json;
      } // SIGKILL, right after the 201.
      await using restarted = await startPeer(dataDir);
      const response = await fetch(`${restarted.url}/t/key/k5`);
      assert.equal(response.status, 200);
      assert.deepEqual(await response.json(), written);
    } finally {
      await Deno.remove(dataDir, { recursive: true });
    }
  },
);

Deno.test("denokv_peer.ts: bad bodies get a 4xx saying why, an absent key 404", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "denokv_peer_test_" });
  try {
    await using peer = await startPeer(dataDir);
    const notJson = await put(`${peer.url}/x/key/b`, "not json");
    assert.equal(notJson.status, 400);
    assert.match(String(notJson.json["detail"]), /not JSON/);
    const noValue = await put(`${peer.url}/x/key/b`, JSON.stringify({ valu: 1 }));
    assert.equal(noValue.status, 400);
    assert.match(String(noValue.json["detail"]), /"value" member/);
    const atLimit = JSON.stringify({ value: "a".repeat(65_536 - 12) });
    assert.equal(atLimit.length, 65_536);
    // At the body limit, the record (value, version, timestamp, owner) is over Deno KV's 64 KiB.
    const refused = await put(`${peer.url}/x/key/b`, atLimit);
    assert.equal(refused.status, 413);
    assert.match(String(refused.json["detail"]), /Deno KV refused the record/);
    const tooLarge = await put(`${peer.url}/x/key/b`, `${atLimit} `);
    assert.equal(tooLarge.status, 413);
    assert.match(String(tooLarge.json["detail"]), /65537 bytes, limit is 65536/);
    const absent = await fetch(`${peer.url}/x/key/b`);
    assert.equal(absent.status, 404);
    await absent.body?.cancel();
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});
