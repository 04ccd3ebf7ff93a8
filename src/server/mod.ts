/**
 * The node's listening door: the accept loop, the cap on open connections, the closing of connections
 * that send no request in time, and the process's file-descriptor limit (SPEC §8). It knows nothing of
 * routes, the store or the cluster: it serves any handler with the shape of a `Deno.serve` one.
 *
 * `Deno.serve` accepts connections inside the runtime, where a failed accept (`EMFILE`: too many open
 * files) ends its loop with an unhandled rejection, and it exposes neither a connection count nor a read
 * timeout. So this module accepts with `Deno.listen`/`Deno.listenTls` itself and hands each connection to
 * the same HTTP machinery through Deno's internal `serveHttpOnConnection` (the runtime is pinned to 2.9.6;
 * the server refuses to start on a runtime without it).
 *
 * @example
 * ```ts
 * import { createLogger } from "../util/log.ts";
 *
 * const fds = raiseFdLimit({ fallbackFds: 1024 }); // raised to the hard limit where the OS allows
 * const limits = { fdLimit: fds.soft, connectionsMax: 10_000, subscribersMax: 10_000 };
 * const { connectionsMax } = capacityOf(limits); // what the descriptors leave room for
 * const server = Server.listen({
 *   hostname: "127.0.0.1", port: 0, connectionsMax, requestTimeoutMs: 10_000,
 *   logger: createLogger({ level: "info" }), descriptorsMax: fds.soft, answerHeaders: {},
 *   handler: () => new Response("hello"), // main.ts: the HTTP app's `handle`
 * });
 * console.log(server.port); // the free port picked
 * await server.shutdown(); // lets every connection finish its answer
 * ```
 * @module
 */
export {
  type Handler,
  markStreaming,
  releaseBodyDeadline,
  Server,
  type ServerOptions,
  type ServerStats,
} from "./listener.ts";
export { type FdLimit, libcPaths, raiseFdLimit } from "./fd_limit.ts";
export { type Capacity, capacityOf } from "./capacity.ts";
