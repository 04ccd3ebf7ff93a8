// Goal: deploy/dynarust.service (issue 21 item 4) is a unit systemd accepts without a warning, sandboxed to
// an exposure below 5.0, that does not restart the node on the exit codes a restart cannot fix, and whose
// system-call filter and address families let a real node run: start, join a peer, serve, stream, stop.
// Method: the real tool. `systemd-analyze verify` checks the unit as it is, inside a temporary root
// (`--root`) that holds a copy of this system's units and an empty executable at the unit's ExecStart path:
// verify requires that binary to exist, and the node's binary is not installed here. `systemd-analyze
// security --offline=true` scores it. A real node that joins a peer and serves is traced with strace; every
// system call it makes must pass the unit's SystemCallFilter (expanded by `systemd-analyze syscall-filter`),
// and every socket it opens must be of a family RestrictAddressFamilies allows. Without systemd-analyze or
// strace, the tests that need them say they were skipped and why.
import assert from "node:assert/strict";
import { configExitCode } from "../../../src/config/load.ts";
import { dataExitCode } from "../../../main.ts";
import { NodeProcess } from "../../helpers/node_process.ts";
import { clusterSecret, jwtSecret } from "../../helpers/test_cluster.ts";

const root = new URL("../../../", import.meta.url).pathname;
const unitPath = `${root}deploy/dynarust.service`;
const unitText = await Deno.readTextFile(unitPath);
const mainPath = `${root}main.ts`;
const systemdAnalyze = "/usr/bin/systemd-analyze";
const systemUnitsDir = "/usr/lib/systemd/system";

async function run(
  command: string,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const output = await new Deno.Command(command, { args, stdout: "piped", stderr: "piped", stdin: "null" })
    .output();
  const decoder = new TextDecoder();
  return { code: output.code, stdout: decoder.decode(output.stdout), stderr: decoder.decode(output.stderr) };
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

/** Why a tool cannot be used here, printed once; undefined when it can. */
async function missingTool(path: string, reason: string): Promise<string | undefined> {
  if (await exists(path)) return undefined;
  console.log(`systemd test skipped: ${reason}`);
  return reason;
}

const noAnalyze = await missingTool(
  systemdAnalyze,
  `${systemdAnalyze} is not installed (apt-get install systemd)`,
);
const strace = "/usr/bin/strace";
const noStrace = await missingTool(strace, `${strace} is not installed (apt-get install strace)`);

/** The values of `key=` in the unit's lines, in order (comments and blank lines skipped). */
function unitValues(key: string): string[] {
  return unitText.split("\n").filter((line) => line.startsWith(`${key}=`)).map((line) =>
    line.slice(key.length + 1)
  );
}

Deno.test({
  name: "dynarust.service: systemd-analyze verify reports nothing about it",
  ignore: noAnalyze !== undefined,
  async fn() {
    const fakeRoot = await Deno.makeTempDir({ prefix: "dynarust_systemd_root_" });
    try {
      await Deno.mkdir(`${fakeRoot}/usr/lib/systemd/system`, { recursive: true });
      const copied = await run("cp", ["-r", `${systemUnitsDir}/.`, `${fakeRoot}/usr/lib/systemd/system/`]);
      assert.equal(copied.code, 0, copied.stderr);
      const executable = unitValues("ExecStart")[0]!.split(" ")[0]!;
      assert.ok(executable.startsWith("/"), `ExecStart is not an absolute path: ${executable}`);
      await Deno.mkdir(`${fakeRoot}${executable.slice(0, executable.lastIndexOf("/"))}`, { recursive: true });
      await Deno.writeTextFile(`${fakeRoot}${executable}`, "#!/bin/sh\n", { mode: 0o755 });
      await Deno.mkdir(`${fakeRoot}/etc/systemd/system`, { recursive: true });
      await Deno.copyFile(unitPath, `${fakeRoot}/etc/systemd/system/dynarust.service`);
      const verify = await run(systemdAnalyze, [
        "verify",
        `--root=${fakeRoot}`,
        "/etc/systemd/system/dynarust.service",
      ]);
      const ours = verify.stderr.split("\n").filter((line) => line.includes("dynarust"));
      assert.deepEqual(ours, [], "systemd-analyze verify warned about dynarust.service");
      assert.equal(verify.code, 0, verify.stderr);
    } finally {
      await Deno.remove(fakeRoot, { recursive: true });
    }
  },
});

Deno.test({
  name: "dynarust.service: systemd-analyze security scores its exposure below 5.0",
  ignore: noAnalyze !== undefined,
  async fn(context) {
    const help = await run(systemdAnalyze, ["security", "--help"]);
    if (!help.stdout.includes("--offline")) {
      console.log("systemd-analyze security --offline is not supported by this systemd: not scored");
      return;
    }
    const security = await run(systemdAnalyze, ["security", "--offline=true", "--no-pager", unitPath]);
    const score = /Overall exposure level for dynarust\.service: (\d+\.\d+)/.exec(security.stdout);
    assert.ok(score !== null, security.stdout + security.stderr);
    const exposure = Number(score[1]);
    await context.step(`exposure ${exposure} (0 is the most sandboxed, 10 the least)`, () => {});
    console.log(`systemd-analyze security: exposure level of dynarust.service: ${exposure}`);
    assert.ok(exposure < 5, `exposure ${exposure} is 5.0 or more:\n${security.stdout}`);
  },
});

Deno.test(
  "dynarust.service: a restart is prevented exactly on the exit codes for bad config and damaged data",
  () => {
    const prevented = unitValues("RestartPreventExitStatus").flatMap((value) => value.split(/\s+/)).map(
      Number,
    );
    assert.deepEqual(prevented.toSorted(), [configExitCode, dataExitCode].toSorted());
    assert.deepEqual(unitValues("Restart"), ["on-failure"]);
  },
);

/** Every system call the unit's SystemCallFilter lines allow, groups expanded by systemd-analyze. */
async function allowedSyscalls(): Promise<Set<string>> {
  const expanded = new Map<string, string[]>();
  const expand = async (name: string): Promise<string[]> => {
    if (!name.startsWith("@")) return [name];
    if (!expanded.has(name)) {
      const listed = await run(systemdAnalyze, ["syscall-filter", "--no-pager", name]);
      assert.equal(listed.code, 0, listed.stderr);
      const members = listed.stdout.split("\n").slice(1).map((line) => line.replace(/#.*/, "").trim())
        .filter((line) => line !== "");
      const names: string[] = [];
      for (const member of members) names.push(...await expand(member));
      expanded.set(name, names);
    }
    return expanded.get(name)!;
  };
  const allowed = new Set<string>();
  const denied = new Set<string>();
  for (const value of unitValues("SystemCallFilter")) {
    const deny = value.startsWith("~");
    for (const item of value.replace(/^~/, "").split(/\s+/).filter((item) => item !== "")) {
      for (const name of await expand(item)) (deny ? denied : allowed).add(name);
    }
  }
  assert.ok(allowed.size > 0, "the unit has an allow-list SystemCallFilter");
  return new Set([...allowed].filter((name) => !denied.has(name)));
}

/** Deno's module cache: `deno run` keeps it (SQLite files, chowned when run as root); the binary has none. */
async function denoDir(): Promise<string> {
  const info = await run(Deno.execPath(), ["info", "--json"]);
  return JSON.parse(info.stdout).denoDir;
}

/**
 * Traces a node that joins `peer` and serves a client (register, write, read, a live stream, metrics),
 * then stops gracefully; returns the system calls it made (those on files of Deno's module cache left out)
 * and the address families of the sockets it opened.
 */
async function traceNode(peer: NodeProcess): Promise<{ syscalls: Set<string>; families: Set<string> }> {
  const work = await Deno.makeTempDir({ prefix: "dynarust_strace_" });
  const tracePath = `${work}/trace`;
  const child = new Deno.Command(strace, {
    args: [
      "-f",
      "-qq",
      "-y",
      "-o",
      tracePath,
      Deno.execPath(),
      "run",
      "-A",
      mainPath,
      "127.0.0.1:0",
      `localhost:${new URL(peer.baseUrl).port}`,
      "--data-dir",
      `${work}/data`,
    ],
    env: {
      CLUSTER_SECRET: clusterSecret,
      JWT_SECRET: jwtSecret,
      DYNA_CLUSTER_PRESET: "local-test",
      DYNA_LOG: "warn",
      SNAP_INTERVAL_SECS: "1",
    },
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  try {
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let output = "";
    while (!output.includes("\n")) {
      const { done, value } = await reader.read();
      if (done) break;
      output += value;
    }
    const match = /^listening on (http:\/\/\S+)/.exec(output);
    if (match === null) assert.fail(`the traced node did not start: ${output}${await stderr}`);
    await exerciseNode(match[1]!);
    // SIGTERM to strace would only detach it: the node itself gets the graceful stop.
    const nodePid = await tracedPid(tracePath);
    Deno.kill(nodePid, "SIGTERM");
    while (!(await reader.read()).done) { /* drain until the node exits */ }
    const status = await child.status;
    if (status.code !== 0) assert.fail(`the traced node exited ${status.code}: ${await stderr}`);
    return parseTrace(await Deno.readTextFile(tracePath), await denoDir());
  } finally {
    try {
      child.kill("SIGKILL");
    } catch {
      // exited already
    }
    await child.status;
    await stderr;
    await Deno.remove(work, { recursive: true });
  }
}

/** The node's pid: the first process of the trace (strace -f names each line by its pid). */
async function tracedPid(tracePath: string): Promise<number> {
  const first = /^(\d+)\s/.exec(await Deno.readTextFile(tracePath));
  assert.ok(first !== null, "the trace names no process");
  return Number(first[1]);
}

/** What a client does with a node: register, write, read, follow a key live for one change, scrape. */
async function exerciseNode(baseUrl: string): Promise<void> {
  const json = { "content-type": "application/json" };
  const login = await fetch(`${baseUrl}/auth/alice`, {
    method: "POST",
    headers: json,
    body: JSON.stringify({ secret: "correct horse battery" }),
  });
  const { token } = await login.json();
  const stream = await fetch(`${baseUrl}/t/subscribe/k`);
  const reader = stream.body!.pipeThrough(new TextDecoderStream()).getReader();
  const written = await fetch(`${baseUrl}/t/key/k`, {
    method: "PUT",
    headers: { ...json, authorization: `Bearer ${token}` },
    body: JSON.stringify({ value: { n: 1 } }),
  });
  assert.equal(written.status, 201, await written.text());
  let events = "";
  while (!events.includes('"n":1')) events += (await reader.read()).value ?? "";
  await reader.cancel();
  assert.equal((await (await fetch(`${baseUrl}/t/key/k`)).json()).value.n, 1);
  await (await fetch(`${baseUrl}/metrics`)).text();
}

/** The system calls of an strace -f -y log, and the families of its socket() calls. */
function parseTrace(text: string, cacheDir: string): { syscalls: Set<string>; families: Set<string> } {
  const syscalls = new Set<string>();
  const families = new Set<string>();
  for (const line of text.split("\n")) {
    const call = /^\d+\s+([a-z0-9_]+)\((.*)/.exec(line);
    if (call === null) continue;
    if (line.includes(`<${cacheDir}/`)) continue; // a file of `deno run`'s module cache
    syscalls.add(call[1]!);
    if (call[1] === "socket" || call[1] === "socketpair") families.add(call[2]!.split(",")[0]!.trim());
  }
  return { syscalls, families };
}

Deno.test({
  name:
    "dynarust.service: a node that joins, serves and stops makes only calls its filter and families allow",
  ignore: noAnalyze !== undefined || noStrace !== undefined,
  async fn() {
    await using peer = await NodeProcess.start({
      env: { CLUSTER_SECRET: clusterSecret, JWT_SECRET: jwtSecret, DYNA_CLUSTER_PRESET: "local-test" },
    });
    const { syscalls, families } = await traceNode(peer);
    assert.ok(
      syscalls.has("connect") && syscalls.has("accept4"),
      `the trace misses the node's network calls`,
    );
    const allowed = await allowedSyscalls();
    const refused = [...syscalls].filter((name) => !allowed.has(name)).toSorted();
    assert.deepEqual(refused, [], "system calls of the node that SystemCallFilter refuses");
    const allowedFamilies = new Set(
      unitValues("RestrictAddressFamilies").flatMap((value) => value.split(/\s+/)),
    );
    const refusedFamilies = [...families].filter((family) => !allowedFamilies.has(family));
    assert.deepEqual(refusedFamilies, [], "socket families of the node that RestrictAddressFamilies refuses");
  },
});
