/**
 * The HTTP API of a node (SPEC §3, §4): `createApp(deps)` builds a Hono app over the store, the broker
 * and the authenticator that `main.ts` hands in. This module validates every input, maps every expected
 * error to one status through `error_map.ts`, and never touches the disk, the network or the process.
 *
 * @example
 * ```ts
 * // main.ts: { kv: cluster, broker, auth, limits, clock, logger, internal: cluster.door, phase, ... }
 * declare const deps: AppDeps;
 *
 * const app = createApp(deps); // main.ts serves it: Server.listen({ ..., handler: app.handle })
 * const response = await app.handle(new Request("http://127.0.0.1:6660/health")); // 200 while serving
 * ```
 * @module
 */
import { Hono } from "hono";
import { RegExpRouter } from "hono/router/reg-exp-router";
import { AssertionError } from "../util/assert.ts";
import { KvError } from "../util/errors.ts";
import type { AppDeps, KvWrite } from "./deps.ts";
import { kvErrorResponse, problemResponse } from "./error_map.ts";
import { registerAuthRoutes } from "./routes/auth.ts";
import { registerEventRoutes, registerMultiStream } from "./routes/events.ts";
import { type KeyAnswerOptions, readKey, registerKvRoutes, writeKey } from "./routes/kv.ts";
import { pathOf } from "./request.ts";
import { internalAnswer, registerNodeRoutes } from "./routes/node.ts";
import { RequestMetrics, routeOf } from "./metrics.ts";
import { allowedMethods, templateOf } from "./api.ts";
import { Cors, preflightResponse } from "./cors.ts";
import { adminAssetPaths } from "./admin_page.ts";

export type {
  AppDeps,
  Authenticator,
  EntryView,
  EventBroker,
  EventSubscription,
  Kv,
  KvWrite,
  MemberView,
  NodeMetrics,
  NodePhase,
} from "./deps.ts";
export { problemResponse } from "./error_map.ts";
export { fixedCorsHeaders } from "./cors.ts";

/** Node-level paths (one segment, or `/auth/{user}`) and table paths (`/{table}/...`), with their methods. */
const nodeMethods = allowedMethods().filter(([path]) => !path.startsWith("/:table/"));
const tableMethods = allowedMethods().filter(([path]) => path.startsWith("/:table/"));

/** The node's HTTP handler: `handle(request, info)` has the shape of a `Deno.serve` handler. */
export interface App {
  handle(request: Request, info?: unknown): Response | Promise<Response>;
}

/** The prefix of node-to-node requests. */
const internalPrefix = "/_internal/";
/** The route template of `/{table}/key/{key}` in metrics. */
const keyRoute = templateOf("/:table/key/:key");
/** The prefix of the login route, the one node path with two segments. */
const authPrefix = "/auth/";

/**
 * Builds the app. `deps` stay owned by the caller. Requests go to one of three Hono apps, picked by the
 * shape of the path before any routing: node-to-node requests (`/_internal/...`), node paths (`/stats`,
 * `/auth/{user}`, ...) and table paths (`/{table}/...`). Apart, each route set fits Hono's RegExpRouter;
 * together, `/auth/:user` and `/_internal/:kind` overlap `/:table/...`, which RegExpRouter refuses, and
 * Hono falls back to its slower trie router.
 */
export function createApp(deps: AppDeps): App {
  const requestStats = new RequestMetrics();
  const cors = new Cors(deps.corsOrigins ?? "*");
  const keyAnswers: KeyAnswerOptions = { anyOrigin: cors.anyOrigin };
  const nodeApp = withErrors(new Hono({ router: new RegExpRouter() }), deps);
  registerAuthRoutes(nodeApp, deps);
  registerNodeRoutes(nodeApp, deps, requestStats);
  registerMultiStream(nodeApp, deps);
  registerMethodNotAllowed(nodeApp, nodeMethods);
  const tableApp = withErrors(new Hono({ router: new RegExpRouter() }), deps);
  registerKvRoutes(tableApp, deps);
  registerEventRoutes(tableApp, deps);
  registerMethodNotAllowed(tableApp, tableMethods);
  // Peers talk to this node in every phase: while it starts (it catches up) and drains (it hands off).
  // Their POSTs go to `internalAnswer` before any routing; this app only answers anything else with a 404.
  const internalApp = withErrors(new Hono({ router: new RegExpRouter() }), deps);
  const finish = (request: Request, route: string, response: Response, startedMs: number | undefined) => {
    const latencyMs = startedMs === undefined ? 0 : deps.clock.monotonicMs() - startedMs;
    requestStats.record(request.method, route, response.status, latencyMs);
    if (deps.logger.enabled("debug")) {
      deps.logger.debug("request", { method: request.method, url: request.url, status: response.status });
    }
    return response;
  };
  return {
    // Counting and the phase check live here rather than in a Hono middleware: an async middleware turns
    // every answer into a promise, which Deno.serve answers on a slower path.
    handle: (request, info) => {
      const path = pathOf(request.url);
      if (path.startsWith(internalPrefix)) {
        // A peer's request: straight to the cluster, without Hono's routing (anything else gets its 404).
        const kind = path.slice(internalPrefix.length);
        if (request.method !== "POST" || kind.length === 0 || kind.includes("/")) {
          return internalApp.fetch(request, info);
        }
        return internalAnswer(request, kind, deps).catch((error) => errorResponse(error, deps));
      }
      if (deps.phase() !== "serving" && path !== "/health") return cors.apply(request, notServing(deps));
      const keyPath = isKeyPath(path);
      if (keyPath && request.method === "GET") {
        // Answered synchronously unless the key lives on another node. A synchronous answer takes a few
        // microseconds, counted as 0 ms: reading the clock twice would cost a tenth of such a request.
        const url = request.url;
        const response = readKeyOrError(path, deps, url.includes("?") ? { ...keyAnswers, url } : keyAnswers);
        if (!(response instanceof Promise)) {
          return finish(request, keyRoute, cors.applyToKey(request, response), undefined);
        }
        const waitedFromMs = deps.clock.monotonicMs();
        return response.then((settled) =>
          finish(request, keyRoute, cors.applyToKey(request, settled), waitedFromMs)
        );
      }
      const startedMs = deps.clock.monotonicMs();
      const op = keyPath ? writeOpOf(request.method) : undefined;
      if (op !== undefined) {
        return writeKey(request, path.slice(1).split("/"), deps, { op, anyOrigin: cors.anyOrigin })
          .catch((error) => errorResponse(error, deps))
          .then((settled) => finish(request, keyRoute, cors.applyToKey(request, settled), startedMs));
      }
      const route = keyPath ? keyRoute : routeOf(path);
      const response = (isNodePath(path) ? nodeApp : tableApp).fetch(request, info);
      return response instanceof Promise
        ? response.then((settled) => finish(request, route, cors.apply(request, settled), startedMs))
        : finish(request, route, cors.apply(request, response), startedMs);
    },
  };
}

/** The answer of a node that is starting or draining: 503, retry in a second. */
function notServing(deps: AppDeps): Response {
  return problemResponse(
    { status: 503, code: "unavailable", detail: `node is ${deps.phase()}` },
    { "retry-after": "1" },
  );
}

/**
 * A `/{table}/key/{key}` path: the most frequent requests (GET, PUT, PATCH, DELETE) go straight to their
 * handler, without Hono's routing and context.
 */
function isKeyPath(path: string): boolean {
  const second = path.indexOf("/", 1);
  return second > 1 && path.startsWith("/key/", second) && path.indexOf("/", second + 5) === -1 &&
    second + 5 < path.length;
}

/** The write a method makes on a key path, or undefined for another method (Hono answers it). */
function writeOpOf(method: string): KvWrite["op"] | undefined {
  switch (method) {
    case "PUT":
      return "put";
    case "PATCH":
      return "patch";
    case "DELETE":
      return "delete";
    default:
      return undefined;
  }
}

function readKeyOrError(
  path: string,
  deps: AppDeps,
  options: KeyAnswerOptions,
): Response | Promise<Response> {
  try {
    const response = readKey(path.slice(1).split("/"), deps, options);
    return response instanceof Promise ? response.catch((error) => errorResponse(error, deps)) : response;
  } catch (error) {
    return errorResponse(error, deps);
  }
}

/** A path of one segment, `/auth/{user}`, or a file of the dashboard: served by the node app. */
function isNodePath(path: string): boolean {
  const second = path.indexOf("/", 1);
  if (second === -1) return true;
  if (adminAssetPaths.has(path)) return true;
  return path.startsWith(authPrefix) && path.indexOf("/", authPrefix.length) === -1;
}

/**
 * Answers every method a route does not serve itself: `OPTIONS` with the route's CORS preflight (SPEC §3),
 * anything else with `405` and `Allow`.
 */
function registerMethodNotAllowed(app: Hono, methods: Array<[string, string]>): void {
  for (const [path, allow] of methods) {
    app.options(path, () => preflightResponse(allow));
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
  app.onError((error) => errorResponse(error, deps));
  return app;
}

/**
 * The answer to an error thrown while serving: problem+json from the error table, or a logged 500. A
 * broken invariant (`AssertionError`) fails this request only and the node keeps serving (STYLE B3): one
 * that puts the store's own state in doubt was already reported by the store's guard, which stops the node.
 */
function errorResponse(error: unknown, deps: AppDeps): Response {
  if (error instanceof KvError) return kvErrorResponse(error);
  const stack = error instanceof Error ? error.stack : undefined;
  if (error instanceof AssertionError) {
    deps.logger.error("invariant broken while serving a request; it failed, the node serves on", { stack });
  } else {
    deps.logger.error("unexpected error while serving a request", { error: String(error), stack });
  }
  return problemResponse({ status: 500, code: "internal", detail: "internal error" });
}
