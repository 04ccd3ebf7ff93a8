/**
 * The HTTP API of a node (SPEC §3, §4): `createApp(deps)` builds a Hono app over the store, the broker
 * and the authenticator that `main.ts` hands in. This module validates every input, maps every expected
 * error to one status through `error_map.ts`, and never touches the disk, the network or the process.
 *
 * @example
 * ```ts
 * const app = createApp({ store, broker, auth, limits, clock, logger, membership, phase, onFatal });
 * Deno.serve({ hostname: "127.0.0.1", port: 0 }, app.fetch);
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
  ["/_internal/:kind", "POST"],
];

/** Builds the app. `deps` stay owned by the caller. */
export function createApp(deps: AppDeps): Hono {
  const app = new Hono();
  const requestStats: RequestStats = { requestCount: 0, latencyMsTotal: 0 };

  app.use(async (c, next) => {
    const startedMs = deps.clock.monotonicMs();
    // Peers talk to this node while it starts (it catches up) and drains (it hands its keys off).
    const exempt = c.req.path === "/health" || c.req.path.startsWith("/_internal/");
    if (deps.phase() !== "serving" && !exempt) {
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

  registerInternalRoutes(app, deps);
  registerAuthRoutes(app, deps);
  registerNodeRoutes(app, deps, requestStats);
  registerKvRoutes(app, deps);
  registerEventRoutes(app, deps);
  for (const [path, allow] of allowedMethods) {
    app.all(path, () =>
      problemResponse(
        { status: 405, code: "method_not_allowed", detail: `this path allows ${allow}` },
        { allow },
      ));
  }

  app.notFound(() => problemResponse({ status: 404, code: "not_found", detail: "no such route" }));
  app.onError((error) => {
    if (error instanceof KvError) return kvErrorResponse(error);
    if (error instanceof AssertionError) deps.onFatal(error);
    else deps.logger.error("unexpected error while serving a request", { error: String(error) });
    return problemResponse({ status: 500, code: "internal", detail: "internal error" });
  });
  return app;
}
