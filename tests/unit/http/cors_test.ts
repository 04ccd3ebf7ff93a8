// Goal: CORS per SPEC §3 (issue 18 item 13) on every class of route: preflights answered with the
// route's methods, every public answer (values, errors, 404/405, event streams, node routes, 503 while
// starting) carrying Access-Control-Allow-Origin and exposing ETag; with an origin list, the request's
// Origin echoed only when listed, with Vary: Origin; node-to-node routes without CORS; and with the
// default `*`, the GET of a key answered without reading any request header.
// Method: createApp over in-memory fakes (a Map for the store, the real Broker); requests handed to
// `handle` directly, no sockets.
import assert from "node:assert/strict";
import { defaultLimits } from "../../../src/config/limits.ts";
import { allowedMethods } from "../../../src/http/api.ts";
import { corsAllowHeaders, corsMaxAgeSecs } from "../../../src/http/cors.ts";
import { type AppDeps, createApp, type EntryView, type NodePhase } from "../../../src/http/mod.ts";
import { Broker } from "../../../src/sse/mod.ts";
import { ManualClock } from "../../../src/util/clock.ts";
import type { InternalAdmission } from "../../../src/cluster/mod.ts";
import { silentLogger } from "../../../src/util/log.ts";
import { Histogram, secondsBounds } from "../../../src/util/metrics.ts";

const token = "token-of-alice";

/** Node metrics with nothing counted yet. */
const emptyNodeMetrics: AppDeps["nodeMetrics"] = () => ({
  tables: new Map(),
  walBatchRecords: new Histogram([1]),
  walSyncSeconds: new Histogram(secondsBounds),
  walBytes: 0,
  sseConnections: 0,
  sseDropped: 0,
  sseDeliverySeconds: new Histogram(secondsBounds),
  replicationBacklog: 0,
  hintBacklog: 0,
  hintsDropped: 0,
  forwardedWrites: 0,
  paxosRounds: { fastPath: 0, prepare: 0, retry: 0 },
  expiredKeys: 0,
});

/** An app over a Map of `table/key` → entry, with `corsOrigins` and a phase the test can change. */
function makeApp(options: { corsOrigins?: "*" | readonly string[]; phase?: NodePhase } = {}) {
  const entries = new Map<string, EntryView>();
  entries.set("t/k", {
    version: 3,
    timestamp: 1,
    owner: "alice",
    deleted: false,
    json: '{"value":1,"version":3,"timestamp":1,"owner":"alice"}',
  });
  const broker = new Broker({ limits: defaultLimits, logger: silentLogger, clock: new ManualClock(1) });
  const deps: AppDeps = {
    kv: {
      read: (table, key) => entries.get(`${table}/${key}`),
      write: (write) => {
        const entry = {
          version: 4,
          timestamp: 2,
          owner: "alice",
          deleted: false,
          json: `{"value":${JSON.stringify(write.value)}}`,
        };
        entries.set(`${write.table}/${write.key}`, entry);
        return Promise.resolve(entry);
      },
      list: async function* (table) {
        if (table !== "t") throw new KeyTableMissing();
        yield { key: "k", json: entries.get("t/k")!.json, version: entries.get("t/k")!.version };
      },
    },
    broker,
    auth: {
      authenticate: () => Promise.resolve({ created: true, token }),
      verify: (given) => given === token ? "alice" : Promise.reject(new Error("bad token")),
    },
    limits: defaultLimits,
    version: "test",
    clock: new ManualClock(1),
    logger: silentLogger,
    membership: () => [],
    nodeStats: () => ({ tables: new Map([["t", 1]]), activeSseConnections: broker.activeCount, extra: {} }),
    nodeMetrics: emptyNodeMetrics,
    processFiles: { readFile: () => Promise.resolve(undefined), readDir: () => Promise.resolve([]) },
    internal: {
      // Every request admitted and answered `{"ok":true}`: only the headers of the answer are under test.
      admit: (kind) => ({
        kind,
        path: `/_internal/${kind}`,
        verified: {} as InternalAdmission["verified"],
        bodyBytesMax: 1 << 20,
        bodyDeadlineMs: 1_000,
      }),
      serve: () => Promise.resolve({ ok: true }),
    },
    phase: () => options.phase ?? "serving",
    ...(options.corsOrigins === undefined ? {} : { corsOrigins: options.corsOrigins }),
  };
  return { app: createApp(deps), broker };
}

class KeyTableMissing extends Error {}

async function answer(
  app: ReturnType<typeof makeApp>["app"],
  path: string,
  init: RequestInit = {},
): Promise<Response> {
  const response = await app.handle(new Request(`http://127.0.0.1:1${path}`, init));
  if (response.headers.get("content-type") === "text/event-stream") await response.body?.cancel();
  return response;
}

/** A path of each public route, its `:params` filled in. */
function routePaths(): Array<[string, string]> {
  return allowedMethods().map(([path, allow]) => [path.replace(":table", "t").replace(/:\w+/g, "k"), allow]);
}

Deno.test(
  "createApp() answers OPTIONS on every public route with 204 and the route's preflight headers",
  async () => {
    const { app, broker } = makeApp();
    for (const [path, allow] of routePaths()) {
      const response = await answer(app, path, {
        method: "OPTIONS",
        headers: { origin: "http://page.example", "access-control-request-method": "PUT" },
      });
      assert.equal(response.status, 204, path);
      assert.match(allow, /OPTIONS$/);
      assert.equal(response.headers.get("allow"), allow, path);
      assert.equal(response.headers.get("access-control-allow-methods"), allow, path);
      assert.equal(response.headers.get("access-control-allow-headers"), corsAllowHeaders, path);
      assert.equal(response.headers.get("access-control-max-age"), String(corsMaxAgeSecs), path);
      assert.equal(response.headers.get("access-control-allow-origin"), "*", path);
    }
    const keyPreflight = await answer(app, "/t/key/k", { method: "OPTIONS" });
    assert.equal(
      keyPreflight.headers.get("access-control-allow-methods"),
      "GET, HEAD, PUT, PATCH, DELETE, OPTIONS",
    );
    assert.equal(corsAllowHeaders, "Authorization, Content-Type, If-Match, Last-Event-ID");
    const internal = await answer(app, "/_internal/apply", { method: "OPTIONS" });
    assert.equal(internal.status, 404);
    assert.equal(internal.headers.get("access-control-allow-origin"), null, "node-to-node routes: no CORS");
    broker.close();
  },
);

Deno.test(
  "createApp() puts Access-Control-Allow-Origin * and exposes ETag on every public answer",
  async () => {
    const { app, broker } = makeApp();
    const bearer = { authorization: `Bearer ${token}`, "content-type": "application/json" };
    const cases: Array<[string, RequestInit, number]> = [
      ["/t/key/k", {}, 200],
      ["/t/key/missing", {}, 404],
      ["/t/key/k", { method: "HEAD" }, 200],
      ["/t/key/k", { method: "PUT", headers: bearer, body: '{"value":2}' }, 201],
      ["/t/key/k", { method: "PUT", body: '{"value":2}' }, 401],
      ["/t/key/k", { method: "POST" }, 405],
      ["/t/store", {}, 200],
      ["/t/keys", {}, 200],
      ["/t/keys", { method: "POST", body: '["k"]' }, 200],
      ["/t/subscribe/k", {}, 200],
      ["/t/subscribe", {}, 200],
      ["/auth/alice", { method: "POST", body: '{"secret":"pw"}' }, 201],
      ["/stats", {}, 200],
      ["/health", {}, 200],
      ["/membership", {}, 200],
      ["/metrics", {}, 200],
      ["/openapi.json", {}, 200],
      ["/admin", {}, 200],
      ["/admin/admin.js", {}, 200],
      ["/no/such/route/here", {}, 404],
      ["/t/key/%FF", {}, 400],
    ];
    for (const [path, init, status] of cases) {
      const response = await answer(app, path, init);
      const what = `${init.method ?? "GET"} ${path}`;
      assert.equal(response.status, status, what);
      assert.equal(response.headers.get("access-control-allow-origin"), "*", what);
      assert.equal(response.headers.get("access-control-expose-headers"), "ETag, Retry-After", what);
      assert.equal(response.headers.get("vary"), null, `${what}: the same for every origin`);
      await response.body?.cancel();
    }
    const read = await answer(app, "/t/key/k");
    assert.equal(read.headers.get("etag"), '"4"', "the PUT above wrote version 4");
    const internal = await answer(app, "/_internal/apply", { method: "POST", body: "{}" });
    assert.equal(internal.status, 200);
    assert.equal(internal.headers.get("access-control-allow-origin"), null, "node-to-node answers: no CORS");
    const starting = makeApp({ phase: "starting" });
    const unavailable = await answer(starting.app, "/t/key/k");
    assert.equal(unavailable.status, 503);
    assert.equal(unavailable.headers.get("access-control-allow-origin"), "*");
    assert.equal(unavailable.headers.get("retry-after"), "1");
    starting.broker.close();
    broker.close();
  },
);

Deno.test(
  "createApp() with the default * answers the GET of a key without reading a request header",
  async () => {
    const { app, broker } = makeApp();
    let headerReads = 0;
    // Deno copies every header on the first read of one, 4-10% of a GET: the hot path must not read any.
    const request = {
      url: "http://127.0.0.1:1/t/key/k",
      method: "GET",
      get headers(): Headers {
        headerReads += 1;
        return new Headers();
      },
    } as unknown as Request;
    const response = await app.handle(request);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("access-control-allow-origin"), "*");
    assert.equal(response.headers.get("access-control-expose-headers"), "ETag, Retry-After");
    assert.equal(headerReads, 0);
    broker.close();
  },
);

Deno.test(
  "createApp() with an origin list echoes a listed Origin with Vary: Origin and omits the header " +
    "otherwise",
  async () => {
    const { app, broker } = makeApp({ corsOrigins: ["http://page.example", "https://app.example:8443"] });
    for (const path of ["/t/key/k", "/t/key/missing", "/stats", "/t/subscribe/k"]) {
      const listed = await answer(app, path, { headers: { origin: "https://app.example:8443" } });
      assert.equal(listed.headers.get("access-control-allow-origin"), "https://app.example:8443", path);
      assert.equal(listed.headers.get("access-control-expose-headers"), "ETag, Retry-After", path);
      assert.equal(listed.headers.get("vary"), "Origin", path);
      const unlisted = await answer(app, path, { headers: { origin: "http://evil.example" } });
      assert.equal(unlisted.headers.get("access-control-allow-origin"), null, path);
      assert.equal(unlisted.headers.get("access-control-expose-headers"), null, path);
      assert.equal(unlisted.headers.get("vary"), "Origin", path);
      const none = await answer(app, path);
      assert.equal(none.headers.get("access-control-allow-origin"), null, path);
      for (const response of [listed, unlisted, none]) await response.body?.cancel();
    }
    const preflight = await answer(app, "/t/key/k", {
      method: "OPTIONS",
      headers: { origin: "http://page.example" },
    });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers.get("access-control-allow-origin"), "http://page.example");
    const refused = await answer(app, "/t/key/k", {
      method: "OPTIONS",
      headers: { origin: "http://evil.example" },
    });
    assert.equal(refused.status, 204);
    assert.equal(refused.headers.get("access-control-allow-origin"), null, "the browser refuses the request");
    broker.close();
  },
);

Deno.test("createApp() with an empty origin list sends no CORS header and reads no Origin", async () => {
  const { app, broker } = makeApp({ corsOrigins: [] });
  const response = await answer(app, "/t/key/k", { headers: { origin: "http://page.example" } });
  assert.equal(response.status, 200);
  for (const name of ["access-control-allow-origin", "access-control-expose-headers", "vary"]) {
    assert.equal(response.headers.get(name), null, name);
  }
  broker.close();
});
