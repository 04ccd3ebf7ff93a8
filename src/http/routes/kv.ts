import type { Hono } from "hono";
import { InvalidRequestError, KvError } from "../../util/errors.ts";
import type { AppDeps, Entry } from "../deps.ts";
import { readJsonBody } from "../body.ts";
import { jsonText, requireUser, tableAndKey, tableOf } from "../request.ts";
import { checkName, ListQuery, parseIfMatch, parseWith, valueOfBody } from "../schemas.ts";
import { streamListing } from "./listing.ts";

/** An unknown table on a listing route. */
export class TableNotFoundError extends KvError {
  constructor(table: string) {
    super("table_not_found", `table "${table}" does not exist`);
  }
}

/** A key with no live value on a read route. */
export class KeyAbsentError extends KvError {
  constructor(table: string, key: string) {
    super("key_not_found", `key "${key}" does not exist in table "${table}"`);
  }
}

const deletedBody = JSON.stringify({ message: "Deleted" });

/** The key-value routes of SPEC §3 rows 2–7. */
export function registerKvRoutes(app: Hono, deps: AppDeps): void {
  const { limits, store } = deps;
  const bodyLimits = { bytesMax: limits.requestBytesMax, depthMax: limits.valueDepthMax + 1 };

  app.get("/:table/key/:key", (c) => {
    const { table, key } = tableAndKey(c, deps);
    const entry = store.get(table, key);
    if (entry === undefined) throw new KeyAbsentError(table, key);
    const etag = `"${entry.version}"`;
    if (c.req.header("if-none-match") === etag) return new Response(null, { status: 304, headers: { etag } });
    return jsonText(entry.json, 200, { etag });
  });

  app.put("/:table/key/:key", async (c) => {
    const { table, key } = tableAndKey(c, deps);
    const user = await requireUser(c, deps);
    const ifVersion = parseIfMatch(c.req.header("if-match") ?? null);
    const value = valueOfBody(await readJsonBody(c.req.raw, bodyLimits), { objectOnly: false });
    const entry = await store.put(table, key, value, withVersion(user, ifVersion));
    return written(entry);
  });

  app.patch("/:table/key/:key", async (c) => {
    const { table, key } = tableAndKey(c, deps);
    const user = await requireUser(c, deps);
    const ifVersion = parseIfMatch(c.req.header("if-match") ?? null);
    const patch = valueOfBody(await readJsonBody(c.req.raw, bodyLimits), { objectOnly: true });
    const entry = await store.patch(
      table,
      key,
      patch as Record<string, unknown>,
      withVersion(user, ifVersion),
    );
    return written(entry);
  });

  app.delete("/:table/key/:key", async (c) => {
    const { table, key } = tableAndKey(c, deps);
    const user = await requireUser(c, deps);
    const ifVersion = parseIfMatch(c.req.header("if-match") ?? null);
    await store.delete(table, key, withVersion(user, ifVersion));
    return jsonText(deletedBody);
  });

  app.get("/:table/store", (c) => listing(c.req.raw, { table: tableOf(c, deps), shape: "store" }, deps));
  app.get("/:table/keys", (c) => listing(c.req.raw, { table: tableOf(c, deps), shape: "keys" }, deps));

  app.post("/:table/keys", async (c) => {
    const table = tableOf(c, deps);
    const body = await readJsonBody(c.req.raw, { bytesMax: limits.requestBytesMax, depthMax: 1 });
    const keys = batchKeys(body, deps);
    const parts: string[] = [];
    for (const key of new Set(keys)) {
      const entry = store.get(table, key);
      if (entry !== undefined) parts.push(`${JSON.stringify(key)}:${entry.json}`);
    }
    return jsonText(`{${parts.join(",")}}`);
  });
}

/** Where and what a listing route reads. */
interface ListingTarget {
  table: string;
  shape: "store" | "keys";
}

function listing(request: Request, what: ListingTarget, deps: AppDeps): Response {
  const { limits, store } = deps;
  const url = new URL(request.url);
  const query = parseWith(ListQuery, Object.fromEntries(url.searchParams), "query");
  if (query.after !== undefined) checkName(query.after, { what: "key", bytesMax: limits.nameBytesMax });
  if (query.limit !== undefined && (query.limit < 1 || query.limit > limits.listCountMax)) {
    throw new InvalidRequestError(`limit is ${query.limit}; it must be between 1 and ${limits.listCountMax}`);
  }
  if (!store.hasTable(what.table)) throw new TableNotFoundError(what.table);
  const limit = query.limit ?? Number.MAX_SAFE_INTEGER;
  const options = query.after === undefined ? { limit } : { limit, after: query.after };
  return streamListing(store.entries(what.table, options), what.shape);
}

function withVersion(owner: string, ifVersion: number | undefined) {
  return ifVersion === undefined ? { owner } : { owner, ifVersion };
}

function written(entry: Entry): Response {
  return jsonText(entry.json, 201, { etag: `"${entry.version}"` });
}

function batchKeys(body: unknown, deps: AppDeps): string[] {
  if (!Array.isArray(body)) {
    throw new InvalidRequestError('body must be a JSON array of key names, e.g. ["k1","k2"]');
  }
  if (body.length > deps.limits.batchKeysMax) {
    throw new InvalidRequestError(
      `batch holds ${body.length} keys, the limit is ${deps.limits.batchKeysMax}`,
    );
  }
  for (const key of body) {
    if (typeof key !== "string") throw new InvalidRequestError("every key in the batch must be a string");
    checkName(key, { what: "key", bytesMax: deps.limits.nameBytesMax });
  }
  return body as string[];
}
