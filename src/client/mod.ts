/**
 * A typed client for dynarust, for Deno, Node (18+) and browsers: it needs only `fetch`, streams and
 * `TextDecoder`, and imports nothing.
 *
 * @example
 * ```ts
 * import { DynaClient } from "./mod.ts"; // src/client/mod.ts
 *
 * interface Task { title: string; done: boolean }
 * const client = new DynaClient({ baseUrl: "http://127.0.0.1:6660" });
 * await client.login("alice", "s3cr3t");
 * const tasks = client.table<Task>("tasks");
 * const written = await tasks.put("t1", { title: "write docs", done: false });
 * await tasks.put("t1", { title: "write docs", done: true }, { ifVersion: written.version }); // 412 if stale
 * for await (const [key, entry] of tasks.entries()) console.log(key, entry.value.title);
 * for await (const change of tasks.subscribe("t1")) console.log(change.event, change.id); // reconnects
 * ```
 * @module
 */

/** A key's value with its version (SPEC §2). */
export interface VersionedValue<T> {
  value: T;
  version: number;
  timestamp: number;
  owner: string;
  /** When the key expires (ms since the epoch): present only when it was written with a `ttlSecs`. */
  expires_at?: number;
}

/**
 * A change of one key, as its stream sends it (`id` is the key's version), or the key's `Resync`: the next
 * event skips versions this stream cannot show (it has no id).
 */
export type KeyEvent<T> =
  | { event: "Updated"; id: number; value: VersionedValue<T> }
  | {
    event: "Deleted";
    id: number;
    /** `reason` is `"expired"` when the key's lifetime ended, absent for a delete. */
    value: { key: string; version: number; timestamp: number; reason?: "expired" };
  }
  | KeyResync;

/** A stream's announcement that the next event of `key` skips versions it cannot show. */
export interface KeyResync {
  event: "Resync";
  table: string;
  key: string;
  id: undefined;
}

/**
 * A change of a table's stream (`id` is the node's change sequence), a key's `Resync`, or the table's
 * `Resync` (no `key`): the node no longer remembers the gap since the last event; re-read the table.
 */
export type TableEvent<T> =
  | (Exclude<KeyEvent<T>, KeyResync> & { table: string; key: string })
  | { event: "Left"; id: number | undefined; table: string; key: string; version: number }
  | KeyResync
  | { event: "Resync"; id: number | undefined }
  | SyncedEvent;

/** With `snapshot`: the current state has been sent; live changes follow (a table's carries their id). */
export interface SyncedEvent {
  event: "Synced";
  id: number | undefined;
}

/** An event of a multiplexed stream ({@linkcode DynaClient.watch}): a table event of any of its sources. */
export type WatchEvent<T> = TableEvent<T>;

/** The sources of {@linkcode DynaClient.watch}: tables, and keys as `[table, key]` pairs (100 at most). */
export interface WatchSources {
  tables?: readonly string[];
  keys?: ReadonlyArray<readonly [string, string]>;
}

/** A refused request: the node's problem document (`code` is stable, e.g. `version_conflict`). */
export class DynaError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, detail: string) {
    super(`${status} ${code}: ${detail}`);
    this.name = "DynaError";
    this.status = status;
    this.code = code;
  }
}

/** Options of {@linkcode DynaClient}. */
export interface ClientOptions {
  /** The node, e.g. `http://127.0.0.1:6660`. */
  baseUrl: string;
  /** A token from an earlier `login`. */
  token?: string;
  /** The `fetch` to use; default: the platform's. */
  fetch?: typeof fetch;
}

/**
 * A filter of a listing (`where=`, SPEC §3 and §4b): field paths (dotted into the value; `$key`, `$owner`)
 * to a JSON value (equality) or an operator object (`$eq $ne $gt $gte $lt $lte $in $nin $exists
 * $prefix`); fields are ANDed, `{"$or": [...]}` ORs. For example
 * `{ age: { $gte: 18 }, $or: [{ $owner: "alice" }, { "tags.0": "urgent" }] }`.
 */
export type Where = Readonly<Record<string, unknown>>;

/** Options of a listing page. */
export interface PageOptions {
  /** Most records answered; with `where`, most matching records. */
  limit?: number;
  /** Start after this key: the last key of the previous page. */
  after?: string;
  /** Only records this filter matches; sent as JSON. Malformed: a `DynaError` 400 `invalid_request`. */
  where?: Where;
}

/** Options of a subscription. */
export interface SubscribeOptions {
  /** Start after this event id (a version, for a key): only later changes are delivered. */
  lastEventId?: number;
  /** The same as `lastEventId` (the name of the query parameter, `?since=`); `lastEventId` wins. */
  since?: number;
  /**
   * First the current state (a key's value, or a table's records in key order, without ids), then a
   * `Synced` event, then live changes; after a reconnect the node replays what was missed, or sends a
   * `Resync` (drop what you have) and the state again.
   */
  snapshot?: boolean;
  /**
   * Table and multiplexed streams: only changes after which a record matches, and `Left` events when a
   * record stops matching (drop it). Malformed: a `DynaError` 400 `invalid_request`.
   */
  where?: Where;
  /** First wait before reconnecting, doubled per failed attempt up to 5 s. @default 200 */
  retryMs?: number;
  /** Ends the subscription. */
  signal?: AbortSignal;
  /**
   * Called each time a connection starts, with the stream's position (its `ready` id): every change
   * after it follows. A change you read (a GET) at or after this position is then never missed.
   */
  onReady?: (position: number) => void;
}

/** Conditions of a write. */
export interface WriteOptions {
  /** Write only when the key is at this version (`If-Match`); else a `DynaError` 412 `version_conflict`. */
  ifVersion?: number;
}

/** Options of a put or patch. */
export interface PutOptions extends WriteOptions {
  /**
   * The key's lifetime in seconds (an integer from 1 to the node's limit, ten years by default): the key
   * reads as missing from `expires_at` on. Absent: the new value never expires, whatever the key had.
   */
  ttlSecs?: number;
}

/** A connection to one node. */
export class DynaClient {
  readonly baseUrl: string;
  /** The bearer token writes send; set by `login`. */
  token: string | undefined;
  readonly #fetch: typeof fetch;

  constructor(options: ClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.token = options.token;
    this.#fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  }

  /** Registers `user` on first use, else logs in; keeps the token for later writes. */
  async login(user: string, secret: string): Promise<{ token: string; created: boolean }> {
    const response = await this.request("POST", `/auth/${encodeURIComponent(user)}`, { body: { secret } });
    const body = await response.json() as { token: string };
    this.token = body.token;
    return { token: body.token, created: response.status === 201 };
  }

  /** The keys of table `name`, with values of type `T` (not checked: the store holds any JSON). */
  table<T = unknown>(name: string): Table<T> {
    return new Table<T>(this, name);
  }

  /** `/stats` of this node. */
  async stats(): Promise<Record<string, unknown> & { tables: Record<string, number>; total_keys: number }> {
    return await (await this.request("GET", "/stats")).json();
  }

  /**
   * One stream of several tables and keys (`GET /subscribe`), every event naming its table and key, resumed
   * by itself after a cut as `Table.subscribe` is (the node's change sequence is the position: keep using
   * the same node). With `snapshot` and `where` as there.
   */
  watch<T = unknown>(sources: WatchSources, options: SubscribeOptions = {}): AsyncGenerator<WatchEvent<T>> {
    const query = new URLSearchParams();
    for (const table of sources.tables ?? []) query.append("table", table);
    for (const [table, key] of sources.keys ?? []) query.append("key", `${table}/${key}`);
    return subscribeStream<WatchEvent<T>>(this, `/subscribe?${query}${streamQuery(options, "&")}`, options);
  }

  /**
   * `GET /health`: resolves once the node answers 200 (it serves: joined, caught up, not draining).
   *
   * @throws {DynaError} 503 `unavailable` while the node starts or shuts down.
   */
  async health(options: { signal?: AbortSignal } = {}): Promise<{ status: string }> {
    const signal = options.signal === undefined ? {} : { signal: options.signal };
    return await (await this.request("GET", "/health", signal)).json();
  }

  /** Members as this node sees them. */
  async membership(): Promise<Array<{ id: string; address: string; status: string; last_seen_ms: number }>> {
    return (await (await this.request("GET", "/membership")).json()).nodes;
  }

  /**
   * One request; a problem answer (status 400 and up) becomes a `DynaError`.
   *
   * @throws {DynaError}
   */
  async request(
    method: string,
    path: string,
    options: { body?: unknown; headers?: Record<string, string>; signal?: AbortSignal; auth?: boolean } = {},
  ): Promise<Response> {
    const headers: Record<string, string> = { ...options.headers };
    if (options.body !== undefined) headers["content-type"] = "application/json";
    if (options.auth === true) {
      if (this.token === undefined) throw new DynaError(401, "unauthorized", "call login() before writing");
      headers.authorization = `Bearer ${this.token}`;
    }
    const init: RequestInit = { method, headers };
    if (options.body !== undefined) init.body = JSON.stringify(options.body);
    if (options.signal !== undefined) init.signal = options.signal;
    const response = await this.#fetch(`${this.baseUrl}${path}`, init);
    if (response.status < 400) return response;
    const text = await response.text();
    let problem: { code?: string; detail?: string } = {};
    try {
      problem = JSON.parse(text);
    } catch {
      // not a problem document (a proxy's page): keep the text
    }
    throw new DynaError(response.status, problem.code ?? "http_error", problem.detail ?? text.slice(0, 200));
  }
}

/** The keys of one table. */
export class Table<T> {
  readonly name: string;
  readonly #client: DynaClient;

  constructor(client: DynaClient, name: string) {
    this.#client = client;
    this.name = name;
  }

  #path(suffix: string): string {
    return `/${encodeURIComponent(this.name)}${suffix}`;
  }

  #keyPath(key: string): string {
    return this.#path(`/key/${encodeURIComponent(key)}`);
  }

  /** The key's value, or undefined when it does not exist. */
  async get(key: string): Promise<VersionedValue<T> | undefined> {
    try {
      return await (await this.#client.request("GET", this.#keyPath(key))).json();
    } catch (error) {
      if (error instanceof DynaError && error.code === "key_not_found") return undefined;
      throw error;
    }
  }

  /** Creates or replaces the key (yours, or new); resolves once durable. */
  async put(key: string, value: T, options: PutOptions = {}): Promise<VersionedValue<T>> {
    return await this.#write("PUT", key, value, options);
  }

  /** Merges `patch` into the key's object value (JSON Merge Patch: `null` removes a field). */
  async patch(key: string, patch: Partial<T>, options: PutOptions = {}): Promise<VersionedValue<T>> {
    return await this.#write("PATCH", key, patch, options);
  }

  /** Deletes the key (yours). */
  async delete(key: string, options: WriteOptions = {}): Promise<void> {
    await (await this.#client.request("DELETE", this.#keyPath(key), {
      auth: true,
      headers: conditionHeaders(options),
    })).body?.cancel();
  }

  async #write(
    method: string,
    key: string,
    value: unknown,
    options: PutOptions,
  ): Promise<VersionedValue<T>> {
    const response = await this.#client.request(method, this.#keyPath(key), {
      auth: true,
      body: options.ttlSecs === undefined ? { value } : { value, ttl_secs: options.ttlSecs },
      headers: conditionHeaders(options),
    });
    return await response.json();
  }

  /** Several keys at once; missing keys are not in the map. */
  async getMany(keys: readonly string[]): Promise<Map<string, VersionedValue<T>>> {
    const response = await this.#client.request("POST", this.#path("/keys"), { body: keys });
    return new Map(Object.entries(await response.json() as Record<string, VersionedValue<T>>));
  }

  /**
   * One page of entries in key order, after `after`, matching `where` if given; the next page starts after
   * its last key.
   */
  async list(options: PageOptions = {}): Promise<Array<[string, VersionedValue<T>]>> {
    const response = await this.#client.request("GET", this.#path(`/store${pageQuery(options)}`));
    return Object.entries(await response.json() as Record<string, VersionedValue<T>>);
  }

  /** One page of key names in order, after `after`, of the records matching `where` if given. */
  async keys(options: PageOptions = {}): Promise<string[]> {
    return await (await this.#client.request("GET", this.#path(`/keys${pageQuery(options)}`))).json();
  }

  /** Every entry (matching `where` if given), in key order, fetched a page at a time. */
  async *entries(
    options: { pageSize?: number; where?: Where } = {},
  ): AsyncGenerator<[string, VersionedValue<T>]> {
    const limit = options.pageSize ?? 500;
    const where = options.where === undefined ? {} : { where: options.where };
    let after: string | undefined;
    for (;;) {
      // A page shorter than `limit` is the last: with a filter, `limit` counts matches.
      const page = await this.list(after === undefined ? { limit, ...where } : { limit, after, ...where });
      yield* page;
      if (page.length < limit) return;
      after = page[page.length - 1]![0];
    }
  }

  /**
   * The changes of one key, or of the whole table when `key` is omitted. Reconnects by itself (with
   * `Last-Event-ID`) when the stream breaks, and never delivers an id twice or out of order. A stream's
   * first block, `ready`, is not delivered: its id is the position the stream starts from, which a
   * reconnect before any change resumes from, so changes made while it was cut are not missed. Ends when
   * the loop breaks or `options.signal` aborts.
   */
  subscribe(key: string, options?: SubscribeOptions): AsyncGenerator<KeyEvent<T>>;
  subscribe(key?: undefined, options?: SubscribeOptions): AsyncGenerator<TableEvent<T>>;
  subscribe(key?: string, options: SubscribeOptions = {}): AsyncGenerator<KeyEvent<T> | TableEvent<T>> {
    const path = key === undefined
      ? this.#path("/subscribe")
      : this.#path(`/subscribe/${encodeURIComponent(key)}`);
    return subscribeStream<KeyEvent<T> | TableEvent<T>>(
      this.#client,
      `${path}${streamQuery(options, "?")}`,
      options,
    );
  }
}

/** `snapshot` and `where` of a stream as query parameters, after `separator` (`?` or `&`); "" for none. */
function streamQuery(options: SubscribeOptions, separator: "?" | "&"): string {
  const query = new URLSearchParams();
  if (options.snapshot === true) query.set("snapshot", "true");
  if (options.where !== undefined) query.set("where", JSON.stringify(options.where));
  const text = query.toString();
  return text === "" ? "" : `${separator}${text}`;
}

function conditionHeaders(options: WriteOptions): Record<string, string> {
  return options.ifVersion === undefined ? {} : { "if-match": `"${options.ifVersion}"` };
}

function pageQuery(options: PageOptions): string {
  const query = new URLSearchParams();
  if (options.limit !== undefined) query.set("limit", String(options.limit));
  if (options.after !== undefined) query.set("after", options.after);
  if (options.where !== undefined) query.set("where", JSON.stringify(options.where));
  const text = query.toString();
  return text === "" ? "" : `?${text}`;
}

/** One `event:`/`id:`/`data:` block of a stream; comments and other fields are skipped. */
interface RawEvent {
  /** The `event:` field: `ready` for a stream's first block, undefined for a change. */
  type: string | undefined;
  id: number | undefined;
  data: string;
}

async function* subscribeStream<Event extends { id: number | undefined }>(
  client: DynaClient,
  path: string,
  options: SubscribeOptions,
): AsyncGenerator<Event> {
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  options.signal?.addEventListener("abort", onAbort);
  let lastId = options.lastEventId ?? options.since;
  const firstRetryMs = options.retryMs ?? 200;
  let retryMs = firstRetryMs;
  try {
    while (!stop.signal.aborted) {
      try {
        const headers: Record<string, string> = { accept: "text/event-stream" };
        if (lastId !== undefined) headers["last-event-id"] = String(lastId);
        const response = await client.request("GET", path, { headers, signal: stop.signal });
        retryMs = firstRetryMs;
        for await (const raw of readEvents(response.body!)) {
          if (raw.type === "ready") {
            // The stream's position: from now on a reconnect resumes after it, even before any change.
            if (raw.id !== undefined && (lastId === undefined || raw.id > lastId)) lastId = raw.id;
            if (raw.id !== undefined) options.onReady?.(raw.id);
            continue;
          }
          if (raw.id !== undefined && lastId !== undefined && raw.id <= lastId) continue; // seen already
          const parsed = JSON.parse(raw.data) as Omit<Event, "id">;
          if (raw.id !== undefined) lastId = raw.id;
          yield { ...parsed, id: raw.id } as Event;
        }
      } catch (error) {
        if (stop.signal.aborted) return;
        // A refusal that a retry cannot change (a bad name, a reserved table) ends the subscription.
        if (error instanceof DynaError && error.status < 500 && error.status !== 429) throw error;
      }
      if (stop.signal.aborted) return;
      await sleep(retryMs, stop.signal);
      retryMs = Math.min(retryMs * 2, 5_000);
    }
  } finally {
    options.signal?.removeEventListener("abort", onAbort);
    stop.abort(); // the consumer stopped: close the stream
  }
}

async function* readEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<RawEvent> {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, "\n");
      let end: number;
      while ((end = buffer.indexOf("\n\n")) !== -1) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = parseBlock(block);
        if (event !== undefined) yield event;
      }
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
}

function parseBlock(block: string): RawEvent | undefined {
  let id: number | undefined;
  let type: string | undefined;
  const data: string[] = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("id:")) id = Number(line.slice(3).trim());
    else if (line.startsWith("event:")) type = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(line.startsWith("data: ") ? 6 : 5));
  }
  return data.length === 0
    ? undefined
    : { type, id: Number.isSafeInteger(id) ? id : undefined, data: data.join("\n") };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}
