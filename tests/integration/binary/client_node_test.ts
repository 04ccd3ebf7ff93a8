// Goal: the typed client runs outside Deno: bundled to one JavaScript file (`deno bundle`, as the README
// says), Node uses it against a real node: login, a typed write and read, a conditional write refused,
// and a subscription that sees a change. Method: `node` in a child process; without Node on the machine
// the test is reported as ignored and why.
import assert from "node:assert/strict";
import { NodeProcess } from "../../helpers/node_process.ts";

const root = new URL("../../../", import.meta.url).pathname;
const nodeVersion = await new Deno.Command("node", { args: ["--version"], stdout: "piped", stderr: "null" })
  .output().then((output) => output.success ? new TextDecoder().decode(output.stdout).trim() : undefined)
  .catch(() => undefined);
if (nodeVersion === undefined) console.log("client in Node test skipped: `node` is not installed");

const script = `
import { DynaClient, DynaError } from "./dynarust-client.mjs";
const client = new DynaClient({ baseUrl: process.argv[2] });
const { created } = await client.login("nodeuser", "node-secret");
const notes = client.table("from-node");
const first = await notes.put("k", { runtime: "node" });
let refused = "";
try { await notes.put("k", { stale: true }, { ifVersion: 7 }); } catch (error) {
  refused = error instanceof DynaError ? error.code : String(error);
}
const stop = new AbortController();
const changes = notes.subscribe("k", { signal: stop.signal, lastEventId: first.version });
// Resuming after version 1, the change arrives whether the stream connects before or after it.
const next = changes.next();
await notes.put("k", { runtime: "node", n: 2 });
const change = (await next).value;
stop.abort();
const read = await notes.get("k");
console.log(JSON.stringify({ created, version: first.version, refused, change, read }));
`;

Deno.test({
  name: "client: bundled, it runs in Node against a real node",
  ignore: nodeVersion === undefined,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "dynarust_client_node_" });
    try {
      const bundle = await new Deno.Command(Deno.execPath(), {
        args: [
          "bundle",
          "--platform",
          "browser",
          `${root}src/client/mod.ts`,
          "-o",
          `${dir}/dynarust-client.mjs`,
        ],
        stdout: "null",
        stderr: "piped",
      }).output();
      assert.ok(bundle.success, new TextDecoder().decode(bundle.stderr));
      await Deno.writeTextFile(`${dir}/use.mjs`, script);
      await using server = await NodeProcess.start();
      const run = await new Deno.Command("node", {
        args: [`${dir}/use.mjs`, server.baseUrl],
        cwd: dir,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stdout = new TextDecoder().decode(run.stdout);
      assert.ok(run.success, `node ${nodeVersion}: ${new TextDecoder().decode(run.stderr)}`);
      const result = JSON.parse(stdout);
      assert.equal(result.created, true);
      assert.equal(result.version, 1);
      assert.equal(result.refused, "version_conflict");
      assert.deepEqual([result.change.event, result.change.id], ["Updated", 2]);
      assert.deepEqual(result.read.value, { runtime: "node", n: 2 });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
