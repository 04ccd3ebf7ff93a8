// The GET limit of this machine: a bare Hono route reading a prepared JSON string from a Map, the same
// body dynarust answers. With `--etag` it also sends the headers SPEC §3 requires of a GET: the `ETag`,
// which takes Deno.serve off its fastest path (a body with at most a Content-Type), and the CORS headers of
// the default `DYNA_CORS_ORIGINS=*` (allow-origin, expose-headers); that variant is the limit for a GET
// that keeps the contract. Usage: deno run -A tools/bench/hono_baseline.ts <port> [--etag]
import { Hono } from "hono";

const port = Number(Deno.args[0] ?? 8002);
const withEtag = Deno.args.includes("--etag");
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
  const headers: Record<string, string> = withEtag
    ? {
      "content-type": "application/json",
      etag: '"1"',
      "access-control-allow-origin": "*",
      "access-control-expose-headers": "ETag, Retry-After",
    }
    : { "content-type": "application/json" };
  return new Response(json, { headers });
});
Deno.serve({
  hostname: "127.0.0.1",
  port,
  onListen: () => console.log(`listening on http://127.0.0.1:${port}`),
}, app.fetch);
