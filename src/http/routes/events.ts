import type { Hono } from "hono";
import type { AppDeps, EventSubscription } from "../deps.ts";
import { tableAndKey, tableOf } from "../request.ts";
import { parseLastEventId } from "../schemas.ts";

const streamHeaders = {
  "content-type": "text/event-stream",
  "cache-control": "no-store",
  "x-accel-buffering": "no",
};

/** The live-update routes of SPEC §4: one key, or a whole table. */
export function registerEventRoutes(app: Hono, deps: AppDeps): void {
  app.get("/:table/subscribe/:key", async (c) => {
    const { table, key } = tableAndKey(c, deps);
    if (c.req.method === "HEAD") return new Response(null, { status: 200, headers: streamHeaders });
    const lastEventId = parseLastEventId(c.req.header("last-event-id") ?? null);
    const current = await deps.kv.read(table, key);
    const subscription = deps.broker.subscribeKey(
      table,
      key,
      lastEventId === undefined ? { current } : { current, lastEventId },
    );
    return eventStream(subscription);
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

/** The response of a subscription; a client that goes away cancels the stream, which unsubscribes it. */
function eventStream(subscription: EventSubscription): Response {
  return new Response(subscription.stream, { status: 200, headers: streamHeaders });
}
