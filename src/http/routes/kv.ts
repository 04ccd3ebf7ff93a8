import type { Hono } from "hono";
import { parseFilter } from "../../filter/mod.ts";
import { InvalidRequestError, KvError } from "../../util/errors.ts";
import type { AppDeps, EntryView, KvWrite } from "../deps.ts";
import { readJsonBody } from "../body.ts";
import {
  consistentOf,
  jsonText,
  jsonTextAnyOrigin,
  rawSegments,
  requireUser,
  tableAndKeyOf,
  tableOf,
} from "../request.ts";
import { checkName, ListQuery, parseIfMatch, parseWith, ttlSecsOfBody, valueOfBody } from "../schemas.ts";
import { streamListing } from "./listing.ts";

/** A key with no live value on a read route. */
export class KeyAbsentError extends KvError {
  constructor(table: string, key: string) {
    super("key_not_found", `key "${key}" does not exist in table "${table}"`);
  }
}

const deletedBody = JSON.stringify({ message: "Deleted" });

/** The key-value routes of SPEC §3 rows 2–7. */
export function registerKvRoutes(app: Hono, deps: AppDeps): void {
  const { limits, kv } = deps;

  app.get(
    "/:table/key/:key",
    (c) => readKey(rawSegments(c.req.url), deps, { anyOrigin: false, url: c.req.url }),
  );

  // GET is routed here for HEAD; GET, PUT, PATCH and DELETE of a key reach `readKey` and `writeKey`
  // from `createApp` before any routing.

  app.get("/:table/store", (c) => listing(c.req.raw, { table: tableOf(c, deps), shape: "store" }, deps));
  app.get("/:table/keys", (c) => listing(c.req.raw, { table: tableOf(c, deps), shape: "keys" }, deps));

  app.post("/:table/keys", async (c) => {
    const table = tableOf(c, deps);
    const body = await readJsonBody(c.req.raw, { bytesMax: limits.requestBytesMax, depthMax: 1 });
    const keys = [...new Set(batchKeys(body, deps))];
    const entries = await Promise.all(keys.map((key) => kv.read(table, key)));
    const parts: string[] = [];
    const nowMs = deps.clock.nowMs();
    entries.forEach((entry, index) => {
      if (isPresent(entry, nowMs)) parts.push(`${JSON.stringify(keys[index])}:${entry.json}`);
    });
    return jsonText(`{${parts.join(",")}}`);
  });
}

/**
 * `PUT`, `PATCH` and `DELETE /{table}/key/{key}` (SPEC §3 rows 3–5) from the raw path segments.
 * `createApp` calls it before any routing.
 *
 * @throws the name, authorization, body and store errors the error table maps.
 */
export async function writeKey(
  request: Request,
  segments: readonly string[],
  deps: AppDeps,
  options: KeyAnswerOptions & { op: KvWrite["op"] },
): Promise<Response> {
  const { op } = options;
  const { table, key } = tableAndKeyOf(segments, deps);
  const user = requireUser(request, deps);
  const owner = typeof user === "string" ? user : await user;
  const ifVersion = parseIfMatch(request.headers.get("if-match"));
  const conditions = ifVersion === undefined ? { owner } : { owner, ifVersion };
  if (op === "delete") {
    await deps.kv.write({ op, table, key, conditions });
    return options.anyOrigin ? jsonTextAnyOrigin(deletedBody) : jsonText(deletedBody);
  }
  const limits = { bytesMax: deps.limits.requestBytesMax, depthMax: deps.limits.valueDepthMax + 1 };
  const body = await readJsonBody(request, limits);
  const value = valueOfBody(body, { objectOnly: op === "patch" });
  const ttlSecs = ttlSecsOfBody(body, deps.limits.ttlSecsMax);
  const write: KvWrite = { op, table, key, value, conditions };
  if (ttlSecs !== undefined) write.ttlSecs = ttlSecs;
  const entry = await deps.kv.write(write);
  const etag = `"${entry.version}"`;
  return options.anyOrigin ? jsonTextAnyOrigin(entry.json, 201, etag) : jsonText(entry.json, 201, etag);
}

/** How the key routes answer, decided once per app. */
export interface KeyAnswerOptions {
  /**
   * Answer a success with the CORS headers of any origin already in its literal headers (`Cors.anyOrigin`);
   * otherwise the caller adds CORS headers.
   */
  readonly anyOrigin: boolean;
  /** The request's URL when it has a query, for `?consistent=true` (per request, not per app). */
  readonly url?: string;
}

/**
 * `GET /{table}/key/{key}` (SPEC §3 row 2) from the raw path segments. Synchronous when this node holds the
 * key: Deno.serve answers a plain Response faster than a promise. `createApp` calls it before any routing.
 *
 * `If-None-Match` is not evaluated: the answer is always the value, with its `ETag`. Reading one request
 * header makes Deno copy them all, 4–10% of a GET (measured with `deno task bench:ab`), for a `304` that
 * saves a client little on a record's small JSON; a client watches a key over SSE instead of polling it.
 *
 * @throws {KeyAbsentError} and the name errors of `decodeTable`/`decodeName`.
 */
export function readKey(
  segments: readonly string[],
  deps: AppDeps,
  options: KeyAnswerOptions = { anyOrigin: false },
): Response | Promise<Response> {
  const target = tableAndKeyOf(segments, deps);
  const consistent = options.url !== undefined && consistentOf(options.url);
  const entry = consistent
    ? deps.kv.read(target.table, target.key, { consistent })
    : deps.kv.read(target.table, target.key);
  return entry instanceof Promise
    ? entry.then((settled) => readAnswer(target, settled, options, deps.clock))
    : readAnswer(target, entry, options, deps.clock);
}

/**
 * True when `entry` is a live state whose lifetime, if any, has not ended by `nowMs`: a state that expired
 * reads as missing on every node from then on, before its expiry is decided too (SPEC §2; cluster
 * `DESIGN.md`, "Expiry (TTL)").
 */
function isPresent(entry: EntryView | undefined, nowMs: number): entry is EntryView {
  if (entry === undefined || entry.deleted) return false;
  const { expiresAt } = entry;
  return expiresAt === undefined || expiresAt === 0 || expiresAt > nowMs;
}

function readAnswer(
  target: { table: string; key: string },
  entry: EntryView | undefined,
  options: KeyAnswerOptions,
  clock: AppDeps["clock"],
): Response {
  if (entry === undefined || entry.deleted) throw new KeyAbsentError(target.table, target.key);
  // The clock is read only for a state with a lifetime: a GET of any other key costs one field test.
  const { expiresAt } = entry;
  if (expiresAt !== undefined && expiresAt !== 0 && expiresAt <= clock.nowMs()) {
    throw new KeyAbsentError(target.table, target.key);
  }
  const etag = `"${entry.version}"`;
  return options.anyOrigin ? jsonTextAnyOrigin(entry.json, 200, etag) : jsonText(entry.json, 200, etag);
}

/** Where and what a listing route reads. */
interface ListingTarget {
  table: string;
  shape: "store" | "keys";
}

async function listing(request: Request, what: ListingTarget, deps: AppDeps): Promise<Response> {
  const { limits, kv } = deps;
  const url = new URL(request.url);
  const query = parseWith(ListQuery, Object.fromEntries(url.searchParams), "query");
  const after = query.after === undefined
    ? undefined
    : checkName(query.after, { what: "key", bytesMax: limits.nameBytesMax });
  if (query.limit !== undefined && (query.limit < 1 || query.limit > limits.listCountMax)) {
    throw new InvalidRequestError(`limit is ${query.limit}; it must be between 1 and ${limits.listCountMax}`);
  }
  // A malformed filter is refused here, before the table is looked up and before any byte is answered.
  const filter = query.where === undefined ? undefined : parseFilter(query.where);
  const limit = query.limit ?? Number.MAX_SAFE_INTEGER;
  // With a filter, `limit` counts matches: the source is scanned until that many match or it ends.
  const scanLimit = filter === undefined ? limit : Number.MAX_SAFE_INTEGER;
  const options = after === undefined ? { limit: scanLimit } : { limit: scanLimit, after };
  const iterator = kv.list(what.table, options)[Symbol.asyncIterator]();
  const first = await iterator.next(); // an unknown table fails here, before the answer starts
  const answer = filter === undefined ? { shape: what.shape, limit } : { shape: what.shape, filter, limit };
  return streamListing({ first, iterator }, answer);
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
  return body.map((key: unknown) => {
    if (typeof key !== "string") throw new InvalidRequestError("every key in the batch must be a string");
    return checkName(key, { what: "key", bytesMax: deps.limits.nameBytesMax });
  });
}
