// Goal: `dynarust health [URL]` (src/health/, the container's HEALTHCHECK) exits 0 against a node that
// serves and 1 otherwise: a node still starting (503), a closed port, and a peer that accepts the
// connection but never answers, the last one after its --timeout-ms and not much later.
// Method: real `main.ts` processes: a node on 127.0.0.1:0; a node that cannot join its seed (it answers 503
// while it retries); a closed port (bound, then released); and a TCP listener of this test that accepts
// and stays silent. Each check is `main.ts health` in its own process, timed.
import assert from "node:assert/strict";
import { NodeProcess } from "../../helpers/node_process.ts";
import { clusterSecret, jwtSecret } from "../../helpers/test_cluster.ts";
import { freePort } from "../../helpers/free_port.ts";
import { waitFor } from "../../helpers/wait_for.ts";

const mainPath = new URL("../../../main.ts", import.meta.url).pathname;

/** Runs `main.ts health ...args` to its end; the elapsed time includes the process's start. */
async function health(args: string[]): Promise<{ code: number; output: string; elapsedMs: number }> {
  const startedMs = performance.now();
  const result = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", mainPath, "health", ...args],
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: result.code,
    output: decoder.decode(result.stdout) + decoder.decode(result.stderr),
    elapsedMs: performance.now() - startedMs,
  };
}

Deno.test("dynarust health exits 0 against a serving node, with its address or the URL", async () => {
  await using node = await NodeProcess.start();
  const byUrl = await health([node.baseUrl, "--timeout-ms", "5000"]);
  assert.equal(byUrl.code, 0, byUrl.output);
  assert.match(byUrl.output, /\/health: ok/);
  const byAddress = await health([node.baseUrl.replace("http://", "")]);
  assert.equal(byAddress.code, 0, byAddress.output);
});

Deno.test("dynarust health exits 1 against a node that is starting (503 while it joins)", async () => {
  const port = freePort();
  const dataDir = await Deno.makeTempDir({ prefix: "dynarust_health_" });
  const joiner = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", mainPath, `127.0.0.1:${port}`, `127.0.0.1:${freePort()}`, "--data-dir", dataDir],
    env: {
      CLUSTER_SECRET: clusterSecret,
      JWT_SECRET: jwtSecret,
      DYNA_LOG: "error",
      DYNA_JOIN_TIMEOUT_SECS: "60",
    },
    stdout: "null",
    stderr: "null",
    stdin: "null",
  }).spawn();
  try {
    await waitFor(async () => {
      const response = await fetch(`http://127.0.0.1:${port}/health`).catch(() => undefined);
      await response?.body?.cancel();
      return response?.status === 503;
    }, { timeoutMs: 15_000 });
    const result = await health([`127.0.0.1:${port}`]);
    assert.equal(result.code, 1, result.output);
    assert.match(result.output, /answered 503 unavailable: node is starting/);
  } finally {
    joiner.kill("SIGKILL");
    await joiner.status;
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("dynarust health exits 1 against a closed port, without waiting for its timeout", async () => {
  const timeoutMs = 30_000;
  const result = await health([`127.0.0.1:${freePort()}`, "--timeout-ms", String(timeoutMs)]);
  assert.equal(result.code, 1, result.output);
  assert.match(result.output, /Connection refused/);
  assert.ok(result.elapsedMs < timeoutMs, `took ${Math.round(result.elapsedMs)} ms`);
});

Deno.test("dynarust health exits 1 once --timeout-ms passes without an answer", async () => {
  const timeoutMs = 1_500;
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const connection of listener) held.push(connection); // accepted, never answered
  })().catch(() => {});
  try {
    const result = await health([`127.0.0.1:${listener.addr.port}`, "--timeout-ms", String(timeoutMs)]);
    assert.equal(result.code, 1, result.output);
    assert.match(result.output, new RegExp(`no answer within ${timeoutMs} ms`));
    assert.ok(result.elapsedMs >= timeoutMs, `took ${Math.round(result.elapsedMs)} ms`);
    // The process's own start (type-checked and cached by now) takes well under 10 s even on a busy machine.
    assert.ok(result.elapsedMs < timeoutMs + 10_000, `took ${Math.round(result.elapsedMs)} ms`);
  } finally {
    listener.close();
    for (const connection of held) connection.close();
    await accepting;
  }
});
