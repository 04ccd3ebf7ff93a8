// Goal: the dashboard's three files (issue 21: the page, `admin.js`, `admin.css`, in src/http/admin/) are
// served as they are in the checkout, each with its content type, the security headers (a CSP without
// inline script or style, no framing, nosniff, no referrer) and revalidation by ETag; their paths do not
// take a table named "admin" away from its own routes.
// Method: a real node (main.ts in a child process), used over HTTP only; the files are read from src/.
import assert from "node:assert/strict";
import { NodeProcess, putValue, tokenFor } from "../../helpers/node_process.ts";

const adminDir = new URL("../../../src/http/admin/", import.meta.url);
const files: Array<{ path: string; file: string; contentType: string }> = [
  { path: "/admin", file: "index.html", contentType: "text/html; charset=utf-8" },
  { path: "/admin/admin.js", file: "admin.js", contentType: "text/javascript; charset=utf-8" },
  { path: "/admin/admin.css", file: "admin.css", contentType: "text/css; charset=utf-8" },
];
const policy = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "frame-ancestors 'none'",
  "form-action 'self'",
  "base-uri 'none'",
];

Deno.test(
  "dashboard: each file is served as in src/http/admin/, with its type and security headers",
  async () => {
    await using node = await NodeProcess.start();
    for (const { path, file, contentType } of files) {
      const response = await node.fetch(path);
      assert.equal(response.status, 200, path);
      assert.equal(await response.text(), await Deno.readTextFile(new URL(file, adminDir)), path);
      const headers = response.headers;
      assert.equal(headers.get("content-type"), contentType, path);
      assert.deepEqual(headers.get("content-security-policy")?.split("; "), policy, path);
      assert.equal(headers.get("x-frame-options"), "DENY", path);
      assert.equal(headers.get("x-content-type-options"), "nosniff", path);
      assert.equal(headers.get("referrer-policy"), "no-referrer", path);
      assert.equal(headers.get("strict-transport-security"), null, `${path}: TLS is the node's choice`);
      assert.equal(headers.get("cache-control"), "no-cache", path);
      const etag = headers.get("etag");
      assert.match(etag ?? "", /^"[0-9a-f]{8}"$/, path);

      const unchanged = await node.fetch(path, { headers: { "if-none-match": `W/"other", ${etag}` } });
      assert.equal(unchanged.status, 304, `${path}: revalidated by its ETag`);
      assert.equal(await unchanged.text(), "");
      const changed = await node.fetch(path, { headers: { "if-none-match": '"00000000"' } });
      assert.equal(changed.status, 200, `${path}: another ETag gets the file`);
      await changed.body?.cancel();
    }
    const page = await (await node.fetch("/admin")).text();
    assert.doesNotMatch(page, /<script(?![^>]*\bsrc=)/, "no inline script");
    assert.doesNotMatch(page, /<style|\sstyle=/, "no inline style");
    const posted = await node.fetch("/admin/admin.js", { method: "POST", body: "{}" });
    assert.equal(posted.status, 405);
    assert.equal(posted.headers.get("allow"), "GET, HEAD, OPTIONS");
    await posted.body?.cancel();
  },
);

Deno.test("dashboard: a table named admin keeps its routes beside the dashboard's files", async () => {
  await using node = await NodeProcess.start();
  const token = await tokenFor(node, "alice");
  const written = await putValue(node, "/admin/key/admin.js", { n: 1 }, { token });
  assert.equal(written.status, 201);
  await written.body?.cancel();
  assert.deepEqual(await (await node.fetch("/admin/keys")).json(), ["admin.js"]);
  assert.equal((await (await node.fetch("/admin/key/admin.js")).json()).value.n, 1);
  const script = await node.fetch("/admin/admin.js");
  assert.equal(script.headers.get("content-type"), "text/javascript; charset=utf-8");
  await script.body?.cancel();
});
