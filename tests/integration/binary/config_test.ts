// Goal: SPEC §1 start-up behaviour of the real entry point: refusal of bad configuration with one clear
// line and exit 78, --help and --version, the loopback-only generated JWT secret.
// Method: run main.ts as a child process to completion (or to its first line) and read its output.
import { compileArgs } from "../../../tools/compile.ts";
import assert from "node:assert/strict";
import { listenAndWrite, NodeProcess } from "../../helpers/node_process.ts";
import { DenoFs, importEncryptionKey, Store } from "../../../src/store/mod.ts";
import { defaultLimits } from "../../../src/config/limits.ts";
import { systemClock } from "../../../src/util/clock.ts";
import { silentLogger } from "../../../src/util/log.ts";

Deno.test("config: --help and --version exit 0", async () => {
  const help = await NodeProcess.runToExit(["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /usage: dynarust <LISTEN_ADDRESS> \[JOIN_ADDRESS\]/);
  assert.match(help.stdout, /JWT_SECRET/);
  const version = await NodeProcess.runToExit(["--version"]);
  assert.equal(version.code, 0);
  assert.match(version.stdout, /^dynarust \d+\.\d+\.\d+/);
});

Deno.test("config: bad configuration is refused with exit 78 and a line naming the setting", async () => {
  const cases: Array<[string[], Record<string, string>, RegExp]> = [
    [[], {}, /LISTEN_ADDRESS is required/],
    [["nonsense"], {}, /LISTEN_ADDRESS.*not host:port/],
    [["127.0.0.1:99999"], {}, /LISTEN_ADDRESS/],
    [["0.0.0.0:0"], {}, /JWT_SECRET is required/],
    [["127.0.0.1:0"], { JWT_SECRET: "short" }, /JWT_SECRET: must be at least 32 bytes/],
    [["127.0.0.1:0"], { DYNA_MODE: "gopher" }, /DYNA_MODE/],
    [["127.0.0.1:0"], { SNAP_LIMIT: "-1" }, /SNAP_LIMIT/],
    [["127.0.0.1:0", "127.0.0.1:1"], {}, /CLUSTER_SECRET is required/],
    [["127.0.0.1:0", "--no-such-flag"], {}, /no-such-flag/],
    [["127.0.0.1:0"], { DYNA_MODE: "https", DYNA_CERT: "/nonexistent/cert.pem" }, /DYNA_CERT/],
    [["127.0.0.1:0", "--data-dir", "/proc/forbidden"], {}, /data/i],
    [["127.0.0.1:0"], { DYNA_CORS_ORIGINS: "app.example.com" }, /DYNA_CORS_ORIGINS: .*not an origin/],
    [["127.0.0.1:0", "--cors-origins", "https://app.example.com/path"], {}, /DYNA_CORS_ORIGINS/],
  ];
  for (const [args, env, expected] of cases) {
    const result = await NodeProcess.runToExit(args, env);
    assert.equal(result.code, 78, `${args.join(" ")} ${JSON.stringify(env)}: ${result.stderr}`);
    assert.match(result.stderr, expected);
    assert.equal(result.stdout, "", "nothing was served");
    assert.ok(!result.stderr.includes("short"), "a secret is never echoed");
  }
});

Deno.test(
  "config: without JWT_SECRET a loopback node generates one, keeps it, and tokens survive restarts",
  async () => {
    const dataDir = await Deno.makeTempDir({ prefix: "dynarust_config_" });
    try {
      const login = (node: NodeProcess) =>
        node.fetch("/auth/alice", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ secret: "pw" }),
        }).then((response) => response.json());
      let token: string;
      {
        await using node = await NodeProcess.start({ dataDir });
        token = (await login(node)).token;
        await node.stop("SIGTERM");
        assert.match(await node.stderrText(), /JWT_SECRET is not set/);
      }
      const info = await Deno.stat(`${dataDir}/jwt_secret`);
      assert.equal((info.mode ?? 0) & 0o777, 0o600);
      await using node = await NodeProcess.start({ dataDir });
      const response = await node.fetch("/t/key/k", {
        method: "PUT",
        headers: { authorization: `Bearer ${token}` },
        body: '{"value":1}',
      });
      assert.equal(response.status, 201, "a token of the first run is valid after a restart");
      await response.body?.cancel();
    } finally {
      await Deno.remove(dataDir, { recursive: true });
    }
  },
);

Deno.test(
  "config: a data dir written under another build key is refused with exit 78 and left untouched",
  async () => {
    const dataDir = await Deno.makeTempDir({ prefix: "dynarust_otherkey_" });
    try {
      const otherKey = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))));
      const encryption = await importEncryptionKey(otherKey);
      const store = await Store.open({
        dir: dataDir,
        fs: new DenoFs(),
        clock: systemClock,
        logger: silentLogger,
        limits: defaultLimits,
        encryption,
        snapshotLimit: 1,
        snapshotIntervalSecs: 0,
      });
      await store.put("t", "k", "written under another key", { owner: "alice" });
      await store.close();
      const before = await Deno.readFile(`${dataDir}/storage.db`);
      const result = await NodeProcess.runToExit(["127.0.0.1:0", "--data-dir", dataDir]);
      assert.equal(result.code, 78, result.stderr);
      assert.match(result.stderr, new RegExp(`key id ${encryption.keyId}`));
      assert.equal(result.stdout, "");
      assert.deepEqual(
        await Deno.readFile(`${dataDir}/storage.db`),
        before,
        "the refused file is not modified",
      );
    } finally {
      await Deno.remove(dataDir, { recursive: true });
    }
  },
);

Deno.test(
  "config: --log-format json writes every log line as one JSON object, request logs at debug",
  async () => {
    await using node = await NodeProcess.start({ args: ["--log-format", "json", "--log", "debug"] });
    const health = await node.fetch("/health");
    assert.equal(health.status, 200);
    await health.body?.cancel();
    const missing = await node.fetch("/t/key/nothing-here");
    assert.equal(missing.status, 404);
    await missing.body?.cancel();
    assert.equal((await node.stop("SIGTERM")).code, 0);
    const lines = (await node.stderrText()).split("\n").filter((line) => line !== "");
    const events = lines.map((line) => {
      const event = JSON.parse(line);
      assert.equal(typeof event.time, "string", line);
      assert.ok(["error", "warn", "info", "debug"].includes(event.level), line);
      assert.equal(typeof event.msg, "string", line);
      return event;
    });
    assert.ok(events.some((event) => event.level === "warn" && /JWT_SECRET is not set/.test(event.msg)));
    assert.ok(events.some((event) => event.msg === "serving" && event.level === "info"));
    const requests = events.filter((event) => event.msg === "request");
    assert.ok(requests.some((event) => event.method === "GET" && event.status === 404), lines.join("\n"));
    assert.ok(events.some((event) => event.msg === "stopped"));
  },
);

Deno.test(
  "config: the node runs with the permissions deno.json gives it, and they cover every variable it " +
    "reads",
  async () => {
    const root = new URL("../../../", import.meta.url).pathname;
    const tasks = JSON.parse(await Deno.readTextFile(`${root}deno.json`)).tasks as Record<string, string>;
    const permissionsOf = (task: string) => task.split(" ").filter((arg) => arg.startsWith("--allow-"));
    const permissions = permissionsOf(tasks.start!);
    // `task compile` runs tools/compile.ts, which holds deno compile's arguments.
    const compiled = compileArgs("dynarust").filter((arg) => arg.startsWith("--allow-"));
    assert.deepEqual(compiled, permissions, "the binary gets what `task start` gets");
    const allowed = permissions.find((flag) => flag.startsWith("--allow-env="))!.slice("--allow-env=".length)
      .split(",");
    const { envNames } = await import("../../../src/config/load.ts");
    for (const name of envNames()) {
      const covered = allowed.some((pattern) =>
        pattern.endsWith("*") ? name.startsWith(pattern.slice(0, -1)) : pattern === name
      );
      assert.ok(covered, `${name} is read by the config but not allowed by --allow-env`);
    }
    // FFI reaches libc alone (to raise the descriptor limit), at the paths the server looks it up at.
    const { libcPaths } = await import("../../../src/server/mod.ts");
    const ffi = permissions.find((flag) => flag.startsWith("--allow-ffi="))?.slice("--allow-ffi=".length);
    assert.deepEqual(
      ffi?.split(","),
      libcPaths,
      "--allow-ffi names exactly the C libraries fd_limit.ts opens",
    );
    const dataDir = await Deno.makeTempDir({ prefix: "dynarust_permissions_" });
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", ...permissions, `${root}main.ts`, "127.0.0.1:0", "--data-dir", dataDir],
      env: { DYNA_LOG: "warn", DYNA_LOG_FORMAT: "json", SNAP_LIMIT: "3" },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stderr = new Response(child.stderr).text();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    try {
      await listenAndWrite(reader, 1);
    } finally {
      child.kill("SIGTERM");
      assert.equal((await child.status).code, 0);
      await reader.cancel();
      const lines = (await stderr).trim().split("\n").filter((line) => line !== "");
      assert.ok(lines.every((line) => JSON.parse(line).level !== "error"), lines.join("\n"));
      // With these permissions the node reads and raises its descriptor limit: no "capacity: ..." warning.
      assert.ok(
        lines.every((line) => !String(JSON.parse(line).msg).startsWith("capacity")),
        lines.join("\n"),
      );
      await Deno.remove(dataDir, { recursive: true });
    }
  },
);
