// Goal: `deno task compile` builds one executable that runs a node with nothing beside it, its key (the
// checkout's own, made by the task when missing) embedded.
// Method: run the compile task's commands into a temp dir, then start the binary from another directory
// and use it over HTTP. `deno compile` downloads Deno's runtime (denort) unless DENORT_BIN names one; on a
// machine that can do neither, the test is reported as ignored and the reason is printed.
import assert from "node:assert/strict";
import { listenAndWrite } from "../../helpers/node_process.ts";
import { unavailableExitCode } from "../../../tools/compile.ts";

const root = new URL("../../../", import.meta.url).pathname;
const taskCommand: string = JSON.parse(await Deno.readTextFile(`${root}deno.json`)).tasks.compile;

/**
 * Runs the task's steps (`deno task gen-key --if-missing && deno run -A tools/compile.ts`) into a temp dir.
 */
async function buildBinary(): Promise<{ path: string; dir: string } | { skipped: string }> {
  const dir = await Deno.makeTempDir({ prefix: "dynarust_compile_" });
  const [ensureKey, compile] = taskCommand.split(" && ");
  assert.equal(ensureKey, "deno task gen-key --if-missing", "the binary embeds this checkout's own key");
  const made = await new Deno.Command(Deno.execPath(), { args: ensureKey!.split(" ").slice(1), cwd: root })
    .output();
  assert.ok(made.success, "the key module exists or was made");
  const args = [...compile!.split(" ").slice(1), "--output", `${dir}/dynarust`];
  const output = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  if (output.success) return { path: `${dir}/dynarust`, dir };
  await Deno.remove(dir, { recursive: true });
  const stderr = new TextDecoder().decode(output.stderr);
  // The task's own verdict (tools/compile.ts): the runtime could not be had, and it said why.
  if (output.code === unavailableExitCode && Deno.env.get("DENORT_BIN") === undefined) {
    return {
      skipped: `deno compile cannot download its runtime (denort) here and DENORT_BIN is not set: ${stderr}`,
    };
  }
  throw new Error(`deno compile failed: ${stderr}`);
}

const built = await buildBinary();
if ("skipped" in built) console.log(`compile test skipped: ${built.skipped}`);

Deno.test({
  name:
    "compile: the one executable serves a node, its dashboard and backups with its embedded key, anywhere",
  ignore: "skipped" in built,
  async fn() {
    assert.ok("path" in built);
    const elsewhere = await Deno.makeTempDir({ prefix: "dynarust_run_" });
    try {
      const version = await new Deno.Command(built.path, { args: ["--version"], cwd: elsewhere }).output();
      assert.equal(version.code, 0);
      const child = new Deno.Command(built.path, {
        args: ["127.0.0.1:0", "--data-dir", `${elsewhere}/data`],
        cwd: elsewhere,
        stdout: "piped",
        stderr: "null",
      }).spawn();
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      const baseUrl = await listenAndWrite(reader, "from the binary");
      assert.equal((await (await fetch(`${baseUrl}/t/key/k`)).json()).value, "from the binary");
      const dashboard = await fetch(`${baseUrl}/admin`);
      assert.equal(dashboard.status, 200, "the dashboard is inside the binary");
      assert.match(await dashboard.text(), /<title>dynarust<\/title>/);
      const script = await fetch(`${baseUrl}/admin/admin.js`);
      assert.equal(script.status, 200, "the dashboard's script is inside the binary too");
      assert.match(await script.text(), /function openTable/);
      const exportHelp = await new Deno.Command(built.path, { args: ["export", "--help"], cwd: elsewhere })
        .output();
      assert.equal(exportHelp.code, 0, "the backup commands are in the binary");
      child.kill("SIGTERM");
      assert.equal((await child.status).code, 0);
      await reader.cancel();
    } finally {
      await Deno.remove(elsewhere, { recursive: true });
      await Deno.remove(built.dir, { recursive: true });
    }
  },
});
