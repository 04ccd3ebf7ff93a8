// The durable-PUT limit of this machine and stack: a bare Hono route that parses the JSON body, keeps it in
// a Map and answers 201 only after the write is on disk, with the same group commit dynarust uses (the
// writes waiting are joined into one `write` and one `syncData`). No encryption, no checks, no events:
// whatever dynarust adds costs throughput against this.
// Usage: deno run -A tools/bench/put_baseline.ts <port> <data dir>
import { Hono } from "hono";
import { GroupCommitLog } from "./group_commit.ts";

const port = Number(Deno.args[0] ?? 8004);
const dataDir = Deno.args[1] ?? await Deno.makeTempDir({ prefix: "put_baseline_" });
const log = await GroupCommitLog.open(`${dataDir}/log`);
const values = new Map<string, string>();

const app = new Hono();
app.put("/t/key/:key", async (c) => {
  const text = await c.req.text();
  const body = JSON.parse(text) as { value: unknown };
  const key = c.req.param("key");
  const json = JSON.stringify({ value: body.value, version: 1, timestamp: Date.now(), owner: "bench" });
  await log.append(`${key}\t${json}\n`);
  values.set(key, json);
  return new Response(json, { status: 201, headers: { "content-type": "application/json" } });
});
Deno.serve({
  hostname: "127.0.0.1",
  port,
  onListen: () => console.log(`listening on http://127.0.0.1:${port}`),
}, app.fetch);
