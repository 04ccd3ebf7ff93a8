// Goal: nodes of a cluster can be started together (SPEC §8, issue 18 items 15 and 16): a node whose seed
// does not listen yet keeps trying for DYNA_JOIN_TIMEOUT_SECS, saying so, and its `listening on` line comes
// only once it serves, so a script that waits for the line can use the node at once.
// Method: real `main.ts` processes on fixed free ports of 127.0.0.1; the joiner starts first, the seed later.
import assert from "node:assert/strict";
import { NodeProcess } from "../../helpers/node_process.ts";
import { clusterSecret, jwtSecret } from "../../helpers/test_cluster.ts";
import { freePort } from "../../helpers/free_port.ts";
import { waitFor } from "../../helpers/wait_for.ts";

const mainPath = new URL("../../../main.ts", import.meta.url).pathname;
const secrets = { CLUSTER_SECRET: clusterSecret, JWT_SECRET: jwtSecret, DYNA_CLUSTER_PRESET: "local-test" };

/** A node process whose output is collected as it comes. */
class Joiner implements AsyncDisposable {
  stdout = "";
  stderr = "";
  readonly #child: Deno.ChildProcess;
  readonly #drained: Promise<unknown>;

  constructor(args: string[], env: Record<string, string>) {
    this.#child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", mainPath, ...args],
      env: { DYNA_LOG: "info", ...secrets, ...env },
      stdout: "piped",
      stderr: "piped",
      stdin: "null",
    }).spawn();
    this.#drained = Promise.all([
      this.#collect(this.#child.stdout, (text) => this.stdout += text),
      this.#collect(this.#child.stderr, (text) => this.stderr += text),
    ]);
  }

  async #collect(stream: ReadableStream<Uint8Array>, append: (text: string) => void): Promise<void> {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) append(text);
  }

  get status(): Promise<Deno.CommandStatus> {
    return this.#child.status;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // already exited
    }
    await this.#child.status;
    await this.#drained;
  }
}

async function healthStatus(port: number): Promise<number> {
  const response = await fetch(`http://127.0.0.1:${port}/health`);
  await response.body?.cancel();
  return response.status;
}

Deno.test(
  "a node started before its seed retries the join and prints `listening on` only once it serves",
  async () => {
    const seedPort = freePort();
    const joinerPort = freePort();
    const dataDir = await Deno.makeTempDir({ prefix: "dynarust_join_" });
    await using joiner = new Joiner(
      [`127.0.0.1:${joinerPort}`, `127.0.0.1:${seedPort}`, "--data-dir", dataDir],
      {},
    );
    await waitFor(() => joiner.stderr.includes(`cannot join 127.0.0.1:${seedPort} yet; retrying`), {
      timeoutMs: 20_000,
      what: "the joiner to say it retries",
    });
    assert.equal(await healthStatus(joinerPort), 503, "not serving while it has not joined");
    assert.equal(joiner.stdout, "", "no `listening on` before the node serves");
    await using seed = await NodeProcess.start({ listen: `127.0.0.1:${seedPort}`, env: secrets });
    await waitFor(() => joiner.stdout.includes("\n"), { timeoutMs: 30_000, what: "the joiner's first line" });
    assert.equal(joiner.stdout, `listening on http://127.0.0.1:${joinerPort}\n`);
    assert.equal(await healthStatus(joinerPort), 200, "serving from the moment the line is printed");
    const membership = await (await seed.fetch("/membership")).json() as { nodes: Array<{ id: string }> };
    assert.ok(
      membership.nodes.some((node) => node.id === `127.0.0.1:${joinerPort}`),
      "the seed knows the joiner",
    );
    await Deno.remove(dataDir, { recursive: true });
  },
);

Deno.test(
  "a node whose seed never listens gives up after DYNA_JOIN_TIMEOUT_SECS, exit 1, naming the cause",
  async () => {
    const dataDir = await Deno.makeTempDir({ prefix: "dynarust_join_" });
    const seedPort = freePort();
    await using joiner = new Joiner(["127.0.0.1:0", `127.0.0.1:${seedPort}`, "--data-dir", dataDir], {
      DYNA_JOIN_TIMEOUT_SECS: "2",
    });
    const status = await joiner.status;
    assert.equal(status.code, 1);
    await waitFor(() => /gave up after \d+ attempts in 2 s/.test(joiner.stderr), {
      timeoutMs: 5_000,
      what: "the reason on stderr",
    });
    assert.match(joiner.stderr, new RegExp(`cannot join 127\\.0\\.0\\.1:${seedPort}: gave up`));
    assert.match(joiner.stderr, /DYNA_JOIN_TIMEOUT_SECS/);
    assert.equal(joiner.stdout, "", "a node that never served never printed `listening on`");
    await Deno.remove(dataDir, { recursive: true });
  },
);
