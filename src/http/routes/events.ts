import type { Hono } from "hono";
import type { AppDeps, EventSubscription } from "../deps.ts";
import { tableAndKey, tableOf } from "../request.ts";
import { parseLastEventId } from "../schemas.ts";
import { markStreaming } from "../../server/mod.ts";

const streamHeaders = {
  "content-type": "text/event-stream",
  "cache-control": "no-store",
  "x-accel-buffering": "no",
};

/** The live-update routes of SPEC §4: one key, or a whole table. */
export function registerEventRoutes(app: Hono, deps: AppDeps): void {
  app.get("/:table/subscribe/:key", (c) => {
    const { table, key } = tableAndKey(c, deps);
    if (c.req.method === "HEAD") return new Response(null, { status: 200, headers: streamHeaders });
    const lastEventId = parseLastEventId(c.req.header("last-event-id") ?? null);
    // Only a resume can need the current value (a gap older than the history), so a fresh subscribe
    // skips the read and is answered synchronously: thousands of clients connecting at once then leave
    // no pending read, promise or context behind each.
    if (lastEventId === undefined) {
      return eventStream(deps.broker.subscribeKey(table, key, { current: undefined }));
    }
    return resumeKeyStream(deps, { table, key, lastEventId });
  });

  app.get("/:table/subscribe", (c) => {
    const table = tableOf(c, deps);
    // A HEAD must not subscribe: nobody would ever read (or cancel) the stream.
    if (c.req.method === "HEAD") return new Response(null, { status: 200, headers: streamHeaders });
    const lastEventId = parseLastEventId(c.req.header("last-event-id") ?? null);
    const subscription = deps.broker.subscribeTable(table, lastEventId === undefined ? {} : { lastEventId });
    return eventStream(subscription);
  });
}

/** A key stream resumed after `lastEventId`: reads the current value first, for a gap older than history. */
async function resumeKeyStream(
  deps: AppDeps,
  options: { table: string; key: string; lastEventId: number },
): Promise<Response> {
  const { table, key, lastEventId } = options;
  const current = await deps.kv.read(table, key);
  return eventStream(deps.broker.subscribeKey(table, key, { current, lastEventId }));
}

/** The response of a subscription; a client that goes away cancels the stream, which unsubscribes it. */
function eventStream(subscription: EventSubscription): Response {
  // Marked streaming: the connection is busy until the stream ends, never closed as idle.
  return markStreaming(new Response(subscription.stream, { status: 200, headers: streamHeaders }));
}
