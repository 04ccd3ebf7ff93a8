// The durable-PUT limit of this machine and stack: a bare Hono route that parses the JSON body, keeps it in
// a Map and answers 201 only after the write is on disk, with the same group commit dynarust uses (the
// writes waiting are joined into one `write` and one `syncData`). No encryption, no checks, no events:
// whatever dynarust adds costs throughput against this.
// With `--contract` it also does what SPEC requires of every write and a bare route can do cheaply: it
// answers with the version's `ETag` and the CORS headers of any origin, and each batch is deflated and sealed
// with AES-256-GCM before it is written (encrypted at rest, as dynarust's WAL frames). That variant is the
// limit for a durable PUT that keeps the contract; what dynarust does beyond it (names, owners, conditions,
// replication, events) is its own cost. Usage: deno run -A tools/bench/put_baseline.ts <port> [--contract]
// <data dir>
import { Hono } from "hono";
import { Buffer } from "node:buffer";
import { createCipheriv, randomBytes } from "node:crypto";
import { deflateRawSync } from "node:zlib";
import { GroupCommitLog } from "./group_commit.ts";

const port = Number(Deno.args[0] ?? 8004);
const dataDir = Deno.args.slice(1).find((arg) => !arg.startsWith("--")) ??
  await Deno.makeTempDir({ prefix: "put_baseline_" });
const contract = Deno.args.includes("--contract");
const key = randomBytes(32);

/** A batch as an encrypted frame: IV, AES-256-GCM of the (deflated, from 1 KiB) batch, tag. */
function seal(batch: Uint8Array): Uint8Array {
  const body = batch.length >= 1024 ? deflateRawSync(batch) : batch;
  const iv = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", key, iv);
  return Buffer.concat([iv, cipher.update(body), cipher.final(), cipher.getAuthTag()]);
}

const log = await GroupCommitLog.open(`${dataDir}/log`, contract ? seal : undefined);
const values = new Map<string, { json: string; version: number }>();

const app = new Hono();
app.put("/t/key/:key", async (c) => {
  const text = await c.req.text();
  const body = JSON.parse(text) as { value: unknown };
  const key = c.req.param("key");
  const version = (values.get(key)?.version ?? 0) + 1;
  const json = JSON.stringify({ value: body.value, version, timestamp: Date.now(), owner: "bench" });
  await log.append(`${key}\t${json}\n`);
  values.set(key, { json, version });
  const headers: Record<string, string> = contract
    ? {
      "content-type": "application/json",
      etag: `"${version}"`,
      "access-control-allow-origin": "*",
      "access-control-expose-headers": "ETag, Retry-After",
    }
    : { "content-type": "application/json" };
  return new Response(json, { status: 201, headers });
});
Deno.serve({
  hostname: "127.0.0.1",
  port,
  onListen: () => console.log(`listening on http://127.0.0.1:${port}`),
}, app.fetch);
