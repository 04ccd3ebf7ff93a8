// Goal: the README's "A cluster" block works as a reader pastes it: the three nodes start together, the
// block waits until each has joined before it asks for the membership (which lists all three alive), and its
// last line stops every node (a `kill` of npx would have left them running).
// Method: the block is read from README.md and run by bash as written, with only its ports (6660-6662, free
// ports here) and its data dirs (`data/nN`, a temp dir here) replaced; then each node's port must close.
import assert from "node:assert/strict";
import { freePort } from "../../helpers/free_port.ts";
import { waitFor } from "../../helpers/wait_for.ts";

const readmeUrl = new URL("../../../README.md", import.meta.url);
const repoRoot = new URL("../../../", import.meta.url).pathname;

/** The first `sh` block after the README's `## A cluster` heading. */
async function clusterBlock(): Promise<string> {
  const readme = await Deno.readTextFile(readmeUrl);
  const section = readme.indexOf("\n## A cluster\n");
  assert.ok(section >= 0, "README has a section 'A cluster'");
  const start = readme.indexOf("```sh\n", section);
  const end = readme.indexOf("\n```", start + 6);
  assert.ok(start >= 0 && end > start, "the section has a sh block");
  return readme.slice(start + "```sh\n".length, end);
}

async function portOpen(port: number): Promise<boolean> {
  try {
    const connection = await Deno.connect({ hostname: "127.0.0.1", port });
    connection.close();
    return true;
  } catch {
    return false;
  }
}

Deno.test(
  "README: the cluster block starts three nodes, waits for each, lists them alive, and stops them",
  async () => {
    const block = await clusterBlock();
    for (const port of ["6660", "6661", "6662"]) {
      assert.ok(block.includes(port), `the block uses port ${port}`);
    }
    assert.ok(/^kill /m.test(block), "the block ends by stopping the nodes");
    const ports = [freePort(), freePort(), freePort()];
    const dataDir = await Deno.makeTempDir({ prefix: "readme_cluster_" });
    const script = block
      .replaceAll("6660 6661 6662", ports.join(" "))
      .replaceAll("6660", String(ports[0]))
      .replaceAll("6661", String(ports[1]))
      .replaceAll("6662", String(ports[2]))
      .replaceAll("data/n", `${dataDir}/n`);
    const stdoutPath = `${dataDir}/stdout`;
    const stderrPath = `${dataDir}/stderr`;
    try {
      // Output to files, not pipes: a node the block failed to stop would hold a pipe open, and the test
      // would wait for it instead of failing.
      const output = await new Deno.Command("bash", {
        args: ["-euo", "pipefail", "-c", `{\n${script}\n} >"$OUT" 2>"$ERR"`],
        cwd: repoRoot,
        env: { OUT: stdoutPath, ERR: stderrPath },
        stdout: "null",
        stderr: "null",
        signal: AbortSignal.timeout(120_000),
      }).output();
      const stdout = await Deno.readTextFile(stdoutPath);
      const stderr = await Deno.readTextFile(stderrPath);
      assert.equal(output.code, 0, `the block failed:\n${stdout}\n${stderr.slice(-3_000)}`);
      const membership = JSON.parse(stdout.slice(stdout.indexOf("{"), stdout.lastIndexOf("}") + 1));
      const members: Array<{ address: string; status: string }> = membership.nodes;
      assert.equal(members.length, 3, `three members: ${JSON.stringify(members)}`);
      assert.ok(
        members.every((member) => member.status === "alive"),
        `all alive: ${JSON.stringify(members)}`,
      );
      for (const port of ports) {
        assert.ok(members.some((member) => member.address.endsWith(`:${port}`)), `member on ${port}`);
      }
      // The last line stopped them: every port closes (a node left running would keep its port).
      await waitFor(async () => !(await Promise.all(ports.map(portOpen))).some((open) => open), {
        timeoutMs: 15_000,
        what: "every node of the README's cluster stopped",
      });
    } finally {
      await new Deno.Command("pkill", { args: ["-f", `data-dir ${dataDir}/n`] }).output();
      await Deno.remove(dataDir, { recursive: true });
    }
  },
);
