/**
 * Deno KV as a peer: what a Deno user would pick instead of dynarust. A Hono server with the routes and
 * body and answer shapes of the bare baselines (`hono_baseline.ts`, `put_baseline.ts`), each record kept
 * in a Deno KV database (`Deno.openKv(path)`, SQLite underneath) in the data dir:
 *
 * - `PUT /{table}/key/{key}` body `{"value": ...}`: a read-modify-write like dynarust's. It reads the
 *   record, commits `{value, version + 1, timestamp, owner}` with an atomic check on the versionstamp it
 *   read, and reads again when another write got in between (at most {@linkcode commitAttemptsMax} times);
 *   answers 201 with the record once the commit resolved. No authentication, no events.
 * - `GET /{table}/key/{key}`: 200 with the record (a strongly consistent `kv.get`), 404 when absent.
 *
 * Durability: the local backend runs SQLite in WAL mode at its default `synchronous=FULL`, so a commit
 * resolves after an fsync of the `-wal` file (traced: one fsync per commit, none shared between
 * concurrent commits): a 201 here is after an fsync, as dynarust's.
 *
 * On an empty database it first writes `k0`..`k999` of table `t` (version 1), the keys `get.lua` and
 * `put.lua` use. Needs `--unstable-kv`.
 * Usage: `deno run -A --unstable-kv tools/bench/denokv_peer.ts <port> <data dir>`; prints
 * `listening on http://127.0.0.1:PORT` (the port it got, for port 0).
 *
 * @module
 */
import { Hono } from "hono";

/** Deno KV refuses a value over 64 KiB (its serialized form); a larger body cannot fit in one. */
const bodyBytesMax = 65_536;
/**
 * Rounds of read, then commit with a versionstamp check, before a PUT gives up with 409. An attempt fails
 * only when another write to the key committed since its read, so n writers of one key all commit within
 * n attempts: the bench's 64 connections never see a 409, even all on one key.
 */
const commitAttemptsMax = 64;
const preloadCount = 1000;
const preloadBatchCount = 100;
const jsonHeaders = { "content-type": "application/json" };

/** What a key holds, and what a PUT and a GET answer: the same shape as dynarust's record. */
interface BenchRecord {
  value: unknown;
  version: number;
  timestamp: number;
  owner: string;
}

/**
 * `k0`..`k999` of table `t`, version 1, the values `hono_baseline.ts` answers; only into an empty database.
 */
async function preload(kv: Deno.Kv): Promise<void> {
  for await (const _entry of kv.list({ prefix: [] }, { limit: 1 })) return;
  for (let start = 0; start < preloadCount; start += preloadBatchCount) {
    const batch = kv.atomic();
    for (let index = start; index < start + preloadBatchCount; index += 1) {
      const record: BenchRecord = {
        value: { n: index, s: "hello" },
        version: 1,
        timestamp: 0,
        owner: "bench",
      };
      batch.set(["t", `k${index}`], record);
    }
    const result = await batch.commit();
    if (!result.ok) throw new Error(`preloading k${start}..: the commit was refused`);
  }
}

function problem(status: 400 | 409 | 413, detail: string): Response {
  return new Response(JSON.stringify({ status, detail }), { status, headers: jsonHeaders });
}

/** The `value` of a PUT body, or the 4xx that says what is wrong with it. */
async function readValue(request: Request): Promise<{ value: unknown } | Response> {
  const bytes = new Uint8Array(await request.arrayBuffer());
  if (bytes.length > bodyBytesMax) {
    return problem(413, `The body is ${bytes.length} bytes, limit is ${bodyBytesMax} (a Deno KV value).`);
  }
  let body: unknown;
  try {
    body = JSON.parse(new TextDecoder().decode(bytes));
  } catch (error) {
    return problem(400, `The body is not JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
  if (typeof body !== "object" || body === null || !("value" in body)) {
    return problem(400, 'The body must be a JSON object with a "value" member.');
  }
  return { value: body.value };
}

/** Commits the next version of `key` with `value`; undefined when other writes won every attempt. */
async function writeRecord(kv: Deno.Kv, key: Deno.KvKey, value: unknown): Promise<BenchRecord | undefined> {
  for (let attempt = 0; attempt < commitAttemptsMax; attempt += 1) {
    const current = await kv.get<BenchRecord>(key);
    const version = (current.value?.version ?? 0) + 1;
    const record: BenchRecord = { value, version, timestamp: Date.now(), owner: "bench" };
    const result = await kv.atomic().check(current).set(key, record).commit();
    if (result.ok) return record;
  }
  return undefined;
}

function createApp(kv: Deno.Kv): Hono {
  const app = new Hono();
  app.get("/:table/key/:key", async (c) => {
    const entry = await kv.get<BenchRecord>([c.req.param("table"), c.req.param("key")]);
    if (entry.value === null) return c.json({ status: 404, detail: "The key does not exist." }, 404);
    return new Response(JSON.stringify(entry.value), { headers: jsonHeaders });
  });
  app.put("/:table/key/:key", async (c) => {
    const body = await readValue(c.req.raw);
    if (body instanceof Response) return body;
    let record: BenchRecord | undefined;
    try {
      record = await writeRecord(kv, [c.req.param("table"), c.req.param("key")], body.value);
    } catch (error) {
      // Deno KV measures its 64 KiB on the serialized value, which a body under the limit can still pass.
      if (error instanceof TypeError) return problem(413, `Deno KV refused the record: ${error.message}`);
      throw error;
    }
    if (record === undefined) {
      return problem(409, `Other writes to the key won all ${commitAttemptsMax} attempts; retry.`);
    }
    return new Response(JSON.stringify(record), { status: 201, headers: jsonHeaders });
  });
  return app;
}

const port = Number(Deno.args[0] ?? 8005);
const dataDir = Deno.args[1] ?? await Deno.makeTempDir({ prefix: "denokv_peer_" });
const kv = await Deno.openKv(`${dataDir}/kv.sqlite3`);
await preload(kv);
Deno.serve({
  hostname: "127.0.0.1",
  port,
  onListen: (address) => console.log(`listening on http://127.0.0.1:${address.port}`),
}, createApp(kv).fetch);
