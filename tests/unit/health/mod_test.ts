// Goal: `dynarust health` parses its command line strictly and turns every answer but a 200 (and every
// failure to get one) into an unhealthy result that says why. Method: `parseHealthCommand` at its bounds;
// `checkHealth` against fake `fetch` functions (the real node and a closed port are in
// tests/integration/binary/health_test.ts).
import assert from "node:assert/strict";
import {
  checkHealth,
  healthTimeoutMsDefault,
  healthTimeoutMsMax,
  healthUrlDefault,
  HealthUsageError,
  parseHealthCommand,
} from "../../../src/health/mod.ts";

function usageError(args: string[]): string {
  try {
    parseHealthCommand(args);
  } catch (error) {
    assert.ok(error instanceof HealthUsageError);
    return error.message;
  }
  assert.fail(`expected a HealthUsageError for ${args.join(" ")}`);
}

Deno.test("parseHealthCommand() defaults to the local node and a short timeout", () => {
  assert.deepEqual(parseHealthCommand([]), {
    kind: "check",
    url: healthUrlDefault,
    timeoutMs: healthTimeoutMsDefault,
    caPath: undefined,
  });
  const given = parseHealthCommand(["10.0.0.1:6660", "--timeout-ms", "500", "--ca", "ca.pem"]);
  assert.deepEqual(given, { kind: "check", url: "http://10.0.0.1:6660", timeoutMs: 500, caPath: "ca.pem" });
  assert.equal(
    (parseHealthCommand(["https://node.example:6660/"]) as { url: string }).url,
    "https://node.example:6660",
  );
  assert.equal(parseHealthCommand(["--help"]).kind, "help");
});

Deno.test("parseHealthCommand() takes --timeout-ms from 1 to its maximum, and refuses the rest", () => {
  assert.equal((parseHealthCommand(["--timeout-ms", "1"]) as { timeoutMs: number }).timeoutMs, 1);
  const atMax = parseHealthCommand(["--timeout-ms", String(healthTimeoutMsMax)]) as { timeoutMs: number };
  assert.equal(atMax.timeoutMs, healthTimeoutMsMax);
  assert.match(
    usageError(["--timeout-ms", String(healthTimeoutMsMax + 1)]),
    new RegExp(`from 1 to ${healthTimeoutMsMax}, not ${healthTimeoutMsMax + 1}`),
  );
  assert.match(usageError(["--timeout-ms", "0"]), /not 0/);
  assert.match(usageError(["--timeout-ms", "1.5"]), /not 1\.5/);
});

Deno.test("parseHealthCommand() refuses unknown flags, extra arguments and URLs that are not http(s)", () => {
  assert.match(usageError(["--bogus"]), /bogus/);
  assert.match(usageError(["a:1", "b:2"]), /unexpected argument "b:2"/);
  assert.match(usageError(["ftp://node:21"]), /not an http:\/\/ or https:\/\/ URL/);
  assert.match(usageError(["http://["]), /not a URL/);
});

/** A `fetch` that answers `response` to `GET <url>/health` and records what it was asked. */
function answering(response: () => Response, asked: string[] = []): typeof fetch {
  return (input, init) => {
    asked.push(`${init?.method} ${String(input)}`);
    return Promise.resolve(response());
  };
}

Deno.test("checkHealth() is healthy on a 200 from GET /health", async () => {
  const asked: string[] = [];
  const result = await checkHealth({
    url: "http://127.0.0.1:6660",
    timeoutMs: 1_000,
    fetch: answering(() => Response.json({ status: "ok" }), asked),
  });
  assert.deepEqual(result, { healthy: true, message: "http://127.0.0.1:6660/health: ok" });
  assert.deepEqual(asked, ["GET http://127.0.0.1:6660/health"]);
});

Deno.test("checkHealth() is unhealthy on a 503, saying what the node answered", async () => {
  const problem = { type: "about:blank", title: "Service Unavailable", status: 503, code: "unavailable" };
  const result = await checkHealth({
    url: "http://127.0.0.1:6660",
    timeoutMs: 1_000,
    fetch: answering(() => Response.json({ ...problem, detail: "node is starting" }, { status: 503 })),
  });
  assert.equal(result.healthy, false);
  assert.match(result.message, /answered 503 unavailable: node is starting/);
});

Deno.test("checkHealth() is unhealthy when fetch fails, with the cause's message", async () => {
  const refused = new TypeError("fetch failed", { cause: new Error("Connection refused (os error 111)") });
  const result = await checkHealth({
    url: "http://127.0.0.1:6660",
    timeoutMs: 1_000,
    fetch: () => Promise.reject(refused),
  });
  assert.equal(result.healthy, false);
  assert.match(result.message, /fetch failed: Connection refused/);
});

Deno.test("checkHealth() gives up after timeoutMs when no answer comes", async () => {
  const result = await checkHealth({
    url: "http://127.0.0.1:6660",
    timeoutMs: 20,
    fetch: (_input, init) =>
      new Promise((_resolve, reject) =>
        init!.signal!.addEventListener("abort", () => reject(init!.signal!.reason))
      ),
  });
  assert.deepEqual(result, {
    healthy: false,
    message: "http://127.0.0.1:6660/health: no answer within 20 ms",
  });
});
