import assert from "node:assert/strict";
import { ConfigError, isLoopback, loadConfig } from "../../../src/config/load.ts";
import { defaultLimits } from "../../../src/config/limits.ts";

const secret = "x".repeat(32);

function run(args: string[], env: Record<string, string> = {}) {
  const invocation = loadConfig({ args, env });
  assert.equal(invocation.kind, "run");
  return invocation.config;
}

function issuesOf(args: string[], env: Record<string, string> = {}): readonly string[] {
  try {
    loadConfig({ args, env });
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    return error.issues;
  }
  assert.fail("expected a ConfigError");
}

Deno.test("loadConfig() applies defaults, env and flags, flags winning", () => {
  const config = run(["127.0.0.1:6660"]);
  assert.deepEqual(config.listen, { hostname: "127.0.0.1", port: 6660 });
  assert.equal(config.join, undefined);
  assert.equal(config.dataDir, ".");
  assert.equal(config.snapLimit, 100);
  assert.equal(config.snapIntervalSecs, 3600);
  assert.equal(config.logLevel, "info");
  assert.deepEqual(config.limits, defaultLimits);
  assert.ok(Object.isFrozen(config) && Object.isFrozen(config.limits));
  const env = { SNAP_LIMIT: "5", RUST_LOG: "debug", DYNA_REQUEST_BYTES_MAX: "2048", JWT_SECRET: secret };
  const fromEnv = run(["[::1]:0", "--snap-limit", "7", "--data-dir", "/tmp/x"], env);
  assert.deepEqual(fromEnv.listen, { hostname: "::1", port: 0 });
  assert.equal(fromEnv.snapLimit, 7);
  assert.equal(fromEnv.logLevel, "debug");
  assert.equal(fromEnv.limits.requestBytesMax, 2048);
  assert.equal(fromEnv.dataDir, "/tmp/x");
  assert.equal(run(["127.0.0.1:1"], { DYNA_LOG: "warn", RUST_LOG: "debug" }).logLevel, "warn");
});

Deno.test("loadConfig() takes the log format from --log-format or DYNA_LOG_FORMAT, text by default", () => {
  assert.equal(run(["127.0.0.1:1"]).logFormat, "text");
  assert.equal(run(["127.0.0.1:1"], { DYNA_LOG_FORMAT: "json" }).logFormat, "json");
  assert.equal(run(["127.0.0.1:1", "--log-format", "text"], { DYNA_LOG_FORMAT: "json" }).logFormat, "text");
  assert.match(issuesOf(["127.0.0.1:1", "--log-format", "xml"])[0]!, /^DYNA_LOG_FORMAT: /);
});

Deno.test("loadConfig() lists every problem at once", () => {
  const issues = issuesOf(["bad", "also bad"], { SNAP_LIMIT: "x", DYNA_MODE: "ftp" });
  assert.equal(issues.length, 4, issues.join("\n"));
  assert.ok(issues.some((issue) => issue.startsWith("LISTEN_ADDRESS")));
  assert.ok(issues.some((issue) => issue.startsWith("JOIN_ADDRESS")));
  assert.ok(issues.some((issue) => issue.startsWith("SNAP_LIMIT")));
  assert.ok(issues.some((issue) => issue.startsWith("DYNA_MODE")));
});

Deno.test("loadConfig() requires secrets off loopback and to join, at least 32 bytes", () => {
  assert.match(issuesOf(["0.0.0.0:6660"])[0]!, /JWT_SECRET is required/);
  assert.equal(run(["0.0.0.0:6660"], { JWT_SECRET: secret }).jwtSecret, secret);
  assert.match(
    issuesOf(["127.0.0.1:0"], { JWT_SECRET: "x".repeat(31) })[0]!,
    /JWT_SECRET: must be at least 32 bytes/,
  );
  assert.match(issuesOf(["127.0.0.1:0", "127.0.0.1:6660"])[0]!, /CLUSTER_SECRET is required/);
  assert.equal(run(["127.0.0.1:0", "127.0.0.1:6660"], { CLUSTER_SECRET: secret }).join?.port, 6660);
});

Deno.test("loadConfig() checks ports and limits at their bounds", () => {
  assert.equal(run(["127.0.0.1:65535"]).listen.port, 65535);
  assert.match(issuesOf(["127.0.0.1:65536"])[0]!, /LISTEN_ADDRESS/);
  assert.equal(run(["127.0.0.1:0"], { DYNA_SSE_KEEPALIVE_MS: "15000" }).limits.sseKeepaliveMs, 15_000);
  assert.match(issuesOf(["127.0.0.1:0"], { DYNA_SSE_KEEPALIVE_MS: "15001" })[0]!, /at most 15000/);
  assert.match(issuesOf(["127.0.0.1:0"], { DYNA_REQUEST_BYTES_MAX: "0" })[0]!, /DYNA_REQUEST_BYTES_MAX/);
});

Deno.test("loadConfig() answers --help and --version, refuses unknown flags", () => {
  assert.equal(loadConfig({ args: ["--help"], env: {} }).kind, "help");
  assert.equal(loadConfig({ args: ["--version"], env: {} }).kind, "version");
  assert.match(issuesOf(["127.0.0.1:0", "--bogus", "1"])[0]!, /bogus/);
  assert.match(issuesOf([])[0]!, /LISTEN_ADDRESS is required/);
});

Deno.test("isLoopback() knows loopback names", () => {
  for (const name of ["127.0.0.1", "127.1.2.3", "localhost", "::1"]) assert.ok(isLoopback(name), name);
  for (const name of ["0.0.0.0", "10.0.0.1", "::", "example.com"]) assert.ok(!isLoopback(name), name);
});

Deno.test("loadConfig() takes CORS origins from --cors-origins or DYNA_CORS_ORIGINS, * by default", () => {
  assert.equal(run(["127.0.0.1:0"]).corsOrigins, "*");
  const listed = run(["127.0.0.1:0"], {
    DYNA_CORS_ORIGINS: " https://App.Example.com ,http://127.0.0.1:8080",
  });
  assert.deepEqual(listed.corsOrigins, ["https://app.example.com", "http://127.0.0.1:8080"]);
  assert.ok(Object.isFrozen(listed.corsOrigins));
  const flagged = run(["127.0.0.1:0", "--cors-origins", "http://[::1]:65535"], { DYNA_CORS_ORIGINS: "*" });
  assert.deepEqual(flagged.corsOrigins, ["http://[::1]:65535"]);
  assert.deepEqual(run(["127.0.0.1:0"], { DYNA_CORS_ORIGINS: "" }).corsOrigins, [], "no other origin");
});

Deno.test("loadConfig() refuses a CORS origin that is not scheme://host[:port], naming the setting", () => {
  for (
    const bad of [
      "example.com",
      "https://example.com/",
      "https://example.com/app",
      "https://example.com:65536",
      "https://exa mple.com",
      "https://a.com,,https://b.com",
      "*,https://a.com",
    ]
  ) {
    const issues = issuesOf(["127.0.0.1:0"], { DYNA_CORS_ORIGINS: bad });
    assert.equal(issues.length, 1, bad);
    assert.match(issues[0]!, /^DYNA_CORS_ORIGINS: /, bad);
  }
});

Deno.test(
  "loadConfig() takes DYNA_LISTEN when no address is given; an address given is always the node's own",
  () => {
    const alone = run([], { DYNA_LISTEN: "127.0.0.1:6660" });
    assert.equal(`${alone.listen.hostname}:${alone.listen.port}`, "127.0.0.1:6660");
    assert.equal(alone.join, undefined);
    // `deno task start 127.0.0.1:7150` (the task sets DYNA_LISTEN): the address is where the node listens.
    const given = run(["127.0.0.1:7150"], { DYNA_LISTEN: "127.0.0.1:6660" });
    assert.equal(`${given.listen.hostname}:${given.listen.port}`, "127.0.0.1:7150");
    assert.equal(given.join, undefined);
    // Two addresses: its own, then a member to join.
    const joining = run(["127.0.0.1:7151", "127.0.0.1:7150"], {
      DYNA_LISTEN: "127.0.0.1:6660",
      CLUSTER_SECRET: secret,
    });
    assert.equal(`${joining.listen.hostname}:${joining.listen.port}`, "127.0.0.1:7151");
    assert.equal(`${joining.join?.hostname}:${joining.join?.port}`, "127.0.0.1:7150");
  },
);
