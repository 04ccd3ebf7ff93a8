// The GET limit of this machine: a bare Hono route reading a prepared JSON string from a Map, the same
// shape of answer dynarust gives. Usage: deno run -A tools/bench/hono_baseline.ts <port>
import { Hono } from "hono";

const port = Number(Deno.args[0] ?? 8002);
const values = new Map<string, string>();
for (let index = 0; index < 1000; index += 1) {
  values.set(
    `k${index}`,
    JSON.stringify({ value: { n: index, s: "hello" }, version: 1, timestamp: 0, owner: "bench" }),
  );
}
const app = new Hono();
app.get("/t/key/:key", (c) => {
  const json = values.get(c.req.param("key"));
  if (json === undefined) return c.json({ error: "not found" }, 404);
  return new Response(json, { headers: { "content-type": "application/json" } });
});
Deno.serve({
  hostname: "127.0.0.1",
  port,
  onListen: () => console.log(`listening on http://127.0.0.1:${port}`),
}, app.fetch);
