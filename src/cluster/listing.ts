import type { Clock } from "../util/clock.ts";
import { KvError, UnavailableError } from "../util/errors.ts";
import { isExpired } from "./change.ts";
import type { LocalStore } from "./local_store.ts";
import type { Placement } from "./placement.ts";
import { ListReply as ListReplyWire } from "./replication_wire.ts";
import type { Transport } from "./transport.ts";

/** Keys fetched per page from each node while merging a cluster-wide listing. */
export const listPageCount = 1_000;

/** An unknown table on a listing route. */
export class TableNotFoundError extends KvError {
  constructor(table: string) {
    super("table_not_found", `table "${table}" does not exist`);
  }
}

/** One listed key: its name and the bytes a reader gets. */
export interface ListedEntry {
  key: string;
  json: string;
  version: number;
  /** The state's lifetime (absent: none): a page from a peer keeps expired states, for the merge. */
  expiresAt?: number | undefined;
}

interface Cursor {
  node: string;
  buffer: ListedEntry[];
  after: string | undefined;
  exhausted: boolean;
}

/**
 * A table's live keys in key order across the cluster: from this node alone when it holds every key,
 * else a k-way merge of sorted pages from every live node, keeping the highest version of a key seen
 * twice. A key whose newest state seen has expired by `clock` is left out (after the merge: an older live
 * copy on a lagging node must not show through). Never holds more than one page per node.
 *
 * @throws {TableNotFoundError} when no node knows the table.
 */
export async function* listTable(options: {
  table: string;
  after?: string;
  limit: number;
  placement: Placement;
  store: LocalStore;
  transport: Transport;
  timeoutMs: number;
  clock: Clock;
}): AsyncGenerator<ListedEntry> {
  const { table, placement, store } = options;
  if (placement.fullyReplicated) {
    if (!store.hasTable(table)) throw new TableNotFoundError(table);
    const local = store.entries(table, {
      limit: options.limit,
      liveAtMs: options.clock.nowMs(),
      ...(options.after === undefined ? {} : { after: options.after }),
    });
    for (const [key, entry] of local) yield { key, json: entry.json, version: entry.version };
    return;
  }
  const cursors: Cursor[] = placement.liveIds().map((node) => ({
    node,
    buffer: [],
    after: options.after,
    exhausted: false,
  }));
  let exists = false;
  for (const cursor of cursors) exists = (await fill(cursor, options)) || exists;
  if (!exists) throw new TableNotFoundError(table);
  let emitted = 0;
  // Bounded by `limit` and by the keys of the table.
  while (emitted < options.limit) {
    const next = await takeSmallest(cursors, options);
    if (next === undefined) return;
    if (next.expiresAt !== undefined && isExpired({ ...next, deleted: false }, options.clock.nowMs())) {
      continue;
    }
    yield next;
    emitted += 1;
  }
}

async function takeSmallest(
  cursors: Cursor[],
  options: Parameters<typeof listTable>[0],
): Promise<ListedEntry | undefined> {
  for (const cursor of cursors) {
    if (cursor.buffer.length === 0 && !cursor.exhausted) await fill(cursor, options);
  }
  let smallest: ListedEntry | undefined;
  for (const cursor of cursors) {
    const head = cursor.buffer[0];
    if (head === undefined) continue;
    if (smallest === undefined || head.key < smallest.key) smallest = head;
    else if (head.key === smallest.key && head.version > smallest.version) smallest = head;
  }
  if (smallest === undefined) return undefined;
  for (const cursor of cursors) if (cursor.buffer[0]?.key === smallest.key) cursor.buffer.shift();
  return smallest;
}

/** Loads the next page of one node; returns whether that node knows the table. */
async function fill(cursor: Cursor, options: Parameters<typeof listTable>[0]): Promise<boolean> {
  const request: ListRequest = { table: options.table, limit: listPageCount };
  if (cursor.after !== undefined) request.after = cursor.after;
  let reply: ListReply;
  if (cursor.node === options.placement.self) {
    reply = listLocal(options.store, request);
  } else {
    try {
      const answer = await options.transport.request(cursor.node, "list", request, {
        timeoutMs: options.timeoutMs,
      });
      reply = ListReplyWire.parse(answer);
    } catch (error) {
      throw new UnavailableError(`Cannot list table "${options.table}": ${cursor.node} did not answer`, {
        cause: error,
      });
    }
  }
  cursor.buffer.push(...reply.entries);
  cursor.exhausted = reply.entries.length < listPageCount;
  cursor.after = reply.entries.at(-1)?.key ?? cursor.after;
  return reply.exists;
}

/** A page request of the `list` kind. */
export interface ListRequest {
  table: string;
  after?: string | undefined;
  limit: number;
}

/** A page answer of the `list` kind. */
export interface ListReply {
  exists: boolean;
  entries: ListedEntry[];
}

/** One page of this node's live keys of a table; the `list` handler. */
export function listLocal(store: LocalStore, request: ListRequest): ListReply {
  const entries: ListedEntry[] = [];
  if (!store.hasTable(request.table)) return { exists: false, entries };
  const options = request.after === undefined
    ? { limit: request.limit }
    : { after: request.after, limit: request.limit };
  for (const [key, entry] of store.entries(request.table, options)) {
    const { json, version, expiresAt } = entry;
    entries.push(
      expiresAt === undefined || expiresAt === 0 ? { key, json, version } : { key, json, version, expiresAt },
    );
  }
  return { exists: true, entries };
}
