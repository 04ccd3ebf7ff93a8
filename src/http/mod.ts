/**
 * The HTTP API of a node (SPEC §3, §4): `createApp(deps)` builds a Hono app over the store, the broker
 * and the authenticator that `main.ts` hands in. This module validates every input, maps every expected
 * error to one status through `error_map.ts`, and never touches the disk, the network or the process.
 *
 * @example
 * ```ts
 * const app = createApp({ store, broker, auth, limits, clock, logger, membership, phase, onFatal });
 * Deno.serve({ hostname: "127.0.0.1", port: 0 }, app.handle);
 * ```
 * @module
 */
import { Hono } from "hono";
import { AssertionError } from "../util/assert.ts";
import { KvError } from "../util/errors.ts";
import type { AppDeps } from "./deps.ts";
import { kvErrorResponse, problemResponse } from "./error_map.ts";
import { registerAuthRoutes } from "./routes/auth.ts";
import { registerEventRoutes } from "./routes/events.ts";
import { registerKvRoutes } from "./routes/kv.ts";
import { registerInternalRoutes, registerNodeRoutes, type RequestStats } from "./routes/node.ts";

export type {
  AppDeps,
  Authenticator,
  EntryView,
  EventBroker,
  EventSubscription,
  Kv,
  KvWrite,
  MemberView,
  NodePhase,
} from "./deps.ts";
export { problemResponse } from "./error_map.ts";

/** Paths the app serves, with the methods each allows; anything else on them is a 405. */
const allowedMethods: Array<[string, string]> = [
  ["/auth/:user", "POST"],
  ["/stats", "GET, HEAD"],
  ["/health", "GET, HEAD"],
  ["/membership", "GET, HEAD"],
  ["/:table/key/:key", "GET, HEAD, PUT, PATCH, DELETE"],
  ["/:table/store", "GET, HEAD"],
  ["/:table/keys", "GET, HEAD, POST"],
  ["/:table/subscribe/:key", "GET, HEAD"],
  ["/:table/subscribe", "GET, HEAD"],
];

/** The node's HTTP handler: `handle(request, info)` has the shape of a `Deno.serve` handler. */
export interface App {
  handle(request: Request, info?: unknown): Response | Promise<Response>;
}

/** The prefix of node-to-node requests. */
const internalPrefix = "/_internal/";

/**
 * Builds the app. `deps` stay owned by the caller. Node-to-node requests (`/_internal/...`) go to an app of
 * their own, picked by prefix before any routing: on one router with the public routes, `/_internal/:kind`
 * overlaps `/:table/keys` and makes Hono fall back from its fastest router, halving public throughput.
 */
export function createApp(deps: AppDeps): App {
  const publicApp = withErrors(new Hono(), deps);
  const requestStats: RequestStats = { requestCount: 0, latencyMsTotal: 0 };
  publicApp.use(async (c, next) => {
    const startedMs = deps.clock.monotonicMs();
    if (deps.phase() !== "serving" && c.req.path !== "/health") {
      c.res = problemResponse(
        { status: 503, code: "unavailable", detail: `node is ${deps.phase()}` },
        { "retry-after": "1" },
      );
      return;
    }
    await next();
    requestStats.requestCount += 1;
    requestStats.latencyMsTotal += deps.clock.monotonicMs() - startedMs;
    if (deps.logger.enabled("debug")) {
      deps.logger.debug("request", { method: c.req.method, path: c.req.path, status: c.res.status });
    }
  });
  registerAuthRoutes(publicApp, deps);
  registerNodeRoutes(publicApp, deps, requestStats);
  registerKvRoutes(publicApp, deps);
  registerEventRoutes(publicApp, deps);
  registerMethodNotAllowed(publicApp);
  // Peers talk to this node in every phase: while it starts (it catches up) and drains (it hands off).
  const internalApp = withErrors(new Hono(), deps);
  registerInternalRoutes(internalApp, deps);
  return {
    handle: (request, info) => {
      const app = pathStart(request.url).startsWith(internalPrefix) ? internalApp : publicApp;
      return app.fetch(request, info);
    },
  };
}

/** The path and what follows it, without scheme and host. */
function pathStart(url: string): string {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  return start === -1 ? "/" : url.slice(start, start + internalPrefix.length);
}

function registerMethodNotAllowed(app: Hono): void {
  for (const [path, allow] of allowedMethods) {
    app.all(path, () =>
      problemResponse(
        { status: 405, code: "method_not_allowed", detail: `this path allows ${allow}` },
        { allow },
      ));
  }
}

/** One rendering of errors for both apps: problem+json from the error table. */
function withErrors(app: Hono, deps: AppDeps): Hono {
  app.notFound(() => problemResponse({ status: 404, code: "not_found", detail: "no such route" }));
  app.onError((error) => {
    if (error instanceof KvError) return kvErrorResponse(error);
    if (error instanceof AssertionError) deps.onFatal(error);
    else deps.logger.error("unexpected error while serving a request", { error: String(error) });
    return problemResponse({ status: 500, code: "internal", detail: "internal error" });
  });
  return app;
}
