import type { Hono } from "hono";
import { InvalidRequestError, KvError } from "../../util/errors.ts";
import type { AppDeps, EntryView, EventSubscription } from "../deps.ts";
import {
  type MultiSources,
  multiSourcesMax,
  type SnapshotRecord,
  type TableSnapshot,
} from "../../sse/mod.ts";

import { type Filter, parseFilter } from "../../filter/mod.ts";
import { queryParamOf, tableAndKey, tableOf } from "../request.ts";
import { checkName, checkTableName, parseLastEventId } from "../schemas.ts";
import { markStreaming } from "../../server/mod.ts";

const streamHeaders = {
  "content-type": "text/event-stream",
  "cache-control": "no-store",
  "x-accel-buffering": "no",
};

/**
 * The position a stream resumes from: the `Last-Event-ID` header (a browser's EventSource sends it on its
 * own reconnects, so it wins), else `?since=` (SPEC §4b: its twin for a client that opens a new stream).
 * A header that is not a safe integer >= 0 (garbage, negative, huge) is treated as absent; such a `since`,
 * which the client wrote on purpose, is a 400.
 */
function resumeIdOf(header: string | undefined, url: string): number | undefined {
  const fromHeader = parseLastEventId(header ?? null);
  if (fromHeader !== undefined) return fromHeader;
  const since = queryParamOf(url, "since");
  if (since === null) return undefined;
  const id = parseLastEventId(since);
  if (id === undefined) {
    throw new InvalidRequestError(
      `"since" must be an event id (an integer >= 0), got "${since.slice(0, 20)}"`,
    );
  }
  return id;
}

/** `GET /subscribe?table=T&key=T/K` (SPEC §4b): a node path, served by the node app. */
export function registerMultiStream(app: Hono, deps: AppDeps): void {
  app.get("/subscribe", (c) => {
    const sources = multiSourcesOf(c.req.url, deps);
    const filter = filterOf(c.req.url);
    if (c.req.method === "HEAD") return new Response(null, { status: 200, headers: streamHeaders });
    return multiStream(c.req.raw, { deps, sources, filter });
  });
}

/**
 * The live-update routes of SPEC §4: one key, or a whole table. Every stream starts with a ready block
 * whose id is its position (SPEC §4b); it resumes from `Last-Event-ID` or `?since=` (`resumeIdOf`).
 */
export function registerEventRoutes(app: Hono, deps: AppDeps): void {
  app.get("/:table/subscribe/:key", (c): Response | Promise<Response> => {
    const { table, key } = tableAndKey(c, deps);
    if (c.req.method === "HEAD") return new Response(null, { status: 200, headers: streamHeaders });
    const lastEventId = resumeIdOf(c.req.header("last-event-id"), c.req.url);
    const snapshot = snapshotOf(c.req.url);
    // A key this node holds is read synchronously, and the stream answered at once: thousands of
    // clients connecting together then leave no pending read, promise or context behind each. A resume
    // may be answered with the current value (its gap is older than what this node remembers): that must
    // be a committed state, never one this node's replica accepted from a write that failed (SPEC §4b), so
    // it is read consistently (a quorum's; 503 when there is none, and the client reconnects).
    // A snapshot's value, like a resume's, is shown to the client: a committed state, read consistently.
    const current = lastEventId === undefined && !snapshot
      ? readPosition(deps, { table, key })
      : deps.kv.read(table, key, { consistent: true });
    const subscribe = (entry: EntryView | undefined) => {
      const options = lastEventId === undefined
        ? { current: entry, snapshot }
        : { current: entry, lastEventId, snapshot };
      return eventStream(deps.broker.subscribeKey(table, key, options));
    };
    return current instanceof Promise ? current.then(subscribe) : subscribe(current);
  });

  app.get("/:table/subscribe", (c) => {
    const table = tableOf(c, deps);
    const filter = filterOf(c.req.url);
    // A HEAD must not subscribe: nobody would ever read (or cancel) the stream.
    if (c.req.method === "HEAD") return new Response(null, { status: 200, headers: streamHeaders });
    // A filtered table stream is a multiplexed stream of one table: it resumes from the change log.
    if (filter !== undefined) {
      return multiStream(c.req.raw, { deps, sources: { tables: [table], keys: [] }, filter });
    }
    const lastEventId = resumeIdOf(c.req.header("last-event-id"), c.req.url);
    const snapshot = snapshotOf(c.req.url) ? tableSnapshotOf(deps, table) : undefined;
    const options = {
      ...(lastEventId === undefined ? {} : { lastEventId }),
      ...(snapshot === undefined ? {} : { snapshot }),
    };
    return eventStream(deps.broker.subscribeTable(table, options));
  });
}

/** A multiplexed (or filtered) stream: resumed from `Last-Event-ID`/`since`, with `snapshot` and `where`. */
function multiStream(
  request: Request,
  options: { deps: AppDeps; sources: MultiSources; filter: Filter | undefined },
): Response {
  const { deps, sources, filter } = options;
  const lastEventId = resumeIdOf(request.headers.get("last-event-id") ?? undefined, request.url);
  const snapshot = snapshotOf(request.url) ? sourcesSnapshot(deps, multiPages(deps, sources)) : undefined;
  const subscribeOptions = {
    ...(lastEventId === undefined ? {} : { lastEventId }),
    ...(snapshot === undefined ? {} : { snapshot }),
    ...(filter === undefined ? {} : { filter }),
  };
  return eventStream(deps.broker.subscribeMulti(sources, subscribeOptions));
}

/** `?where=`: a filter (SPEC §4b), or undefined; a malformed one is a 400 naming the problem. */
function filterOf(url: string): Filter | undefined {
  const text = queryParamOf(url, "where");
  return text === null ? undefined : parseFilter(text);
}

/** `?snapshot=`: `true` or `false` (absent: false); anything else is a 400. */
function snapshotOf(url: string): boolean {
  const text = queryParamOf(url, "snapshot");
  if (text === null || text === "false") return false;
  if (text === "true") return true;
  throw new InvalidRequestError(`"snapshot" must be true or false, got "${text.slice(0, 20)}"`);
}

/** Records of a table snapshot per page, read a page ahead of the client at most. */
const snapshotPageCount = 256;

/**
 * Where a table snapshot comes from: the listing (`GET /{table}/store`'s source) in pages, and in a
 * cluster a consistent read of the keys the broker cannot vouch for. A table that does not exist yet has
 * an empty snapshot (a stream may wait for a table's first write).
 */
function tableSnapshotOf(deps: AppDeps, table: string): TableSnapshot {
  return sourcesSnapshot(deps, listingPages(deps, table));
}

/** A snapshot of `pages`; in a cluster with the consistent reads that confirm what the broker cannot. */
function sourcesSnapshot(deps: AppDeps, pages: AsyncIterable<SnapshotRecord[]>): TableSnapshot {
  const { kv } = deps;
  if (kv.clustered !== true) return { pages };
  const confirm = (names: Array<{ table: string; key: string }>) =>
    Promise.all(names.map((name) => kv.read(name.table, name.key, { consistent: true })));
  return { pages, confirm };
}

/** A table's live records in key order, `snapshotPageCount` a page; none for a table that does not exist. */
async function* listingPages(deps: AppDeps, table: string): AsyncGenerator<SnapshotRecord[]> {
  let page: SnapshotRecord[] = [];
  try {
    for await (const entry of deps.kv.list(table, { limit: Number.MAX_SAFE_INTEGER })) {
      page.push({ table, key: entry.key, version: entry.version, json: entry.json });
      if (page.length < snapshotPageCount) continue;
      yield page;
      page = [];
    }
  } catch (error) {
    if (!(error instanceof KvError && error.code === "table_not_found")) throw error;
  }
  if (page.length > 0) yield page;
}

/**
 * The records of a multiplexed stream's sources: each table's pages, then the keys whose table is not a
 * source too (read one by one; a missing key or a tombstone has no record).
 */
async function* multiPages(deps: AppDeps, sources: MultiSources): AsyncGenerator<SnapshotRecord[]> {
  for (const table of sources.tables) yield* listingPages(deps, table);
  const tables = new Set(sources.tables);
  const page: SnapshotRecord[] = [];
  for (const { table, key } of sources.keys) {
    if (tables.has(table)) continue;
    const entry = await deps.kv.read(table, key);
    if (entry !== undefined && !entry.deleted) {
      page.push({ table, key, version: entry.version, json: entry.json });
    }
  }
  if (page.length > 0) yield page;
}

/**
 * `GET /subscribe?table=T&key=T/K` (each repeatable): the sources of a multiplexed stream, each name
 * checked as on its own route; at least one and at most `multiSourcesMax`, else a 400 naming the count.
 */
function multiSourcesOf(url: string, deps: AppDeps): MultiSources {
  const params = new URL(url).searchParams;
  const tableNames = params.getAll("table");
  const keyNames = params.getAll("key");
  const count = tableNames.length + keyNames.length;
  if (count === 0) {
    throw new InvalidRequestError('name at least one source: "?table=<table>" or "?key=<table>/<key>"');
  }
  if (count > multiSourcesMax) {
    throw new InvalidRequestError(`a stream may follow at most ${multiSourcesMax} sources, got ${count}`);
  }
  const bytesMax = deps.limits.nameBytesMax;
  const tables = [...new Set(tableNames.map((name) => checkTableName(name, bytesMax)))];
  const keys = keyNames.map((name) => {
    const slash = name.indexOf("/");
    if (slash < 0) throw new InvalidRequestError(`key source "${name.slice(0, 40)}" must be "<table>/<key>"`);
    return {
      table: checkTableName(name.slice(0, slash), bytesMax),
      key: checkName(name.slice(slash + 1), { what: "key", bytesMax }),
    };
  });
  return { tables, keys };
}

/**
 * The key's current state for a fresh stream's position. A read that fails (no replica answered) gives
 * undefined: the broker then starts from the newest version it published, a position at or below the
 * key's, from which a resume is answered with the current value; a fresh stream is never refused for it.
 * A resume reads without this fallback: there the current value may be what the client must get.
 */
function readPosition(
  deps: AppDeps,
  options: { table: string; key: string },
): EntryView | undefined | Promise<EntryView | undefined> {
  try {
    const current = deps.kv.read(options.table, options.key);
    return current instanceof Promise ? current.catch(unlessOperating) : current;
  } catch (error) {
    return unlessOperating(error);
  }
}

/** Undefined for an operating error (a `KvError`); anything else, a programmer error, is rethrown. */
function unlessOperating(error: unknown): undefined {
  if (error instanceof KvError) return undefined;
  throw error;
}

/** The response of a subscription; a client that goes away cancels the stream, which unsubscribes it. */
function eventStream(subscription: EventSubscription): Response {
  // Marked streaming: the connection is busy until the subscription ends, never closed as idle.
  const response = new Response(subscription.stream, { status: 200, headers: streamHeaders });
  return markStreaming(response, (listener) => subscription.onEnd(listener));
}
