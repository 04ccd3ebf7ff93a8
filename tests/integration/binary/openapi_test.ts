// Goal: `GET /openapi.json` (issue 6) describes exactly the routes a node serves, with the schemas its
// answers follow. Method: a real node; every path shape × method probed to find what it serves, without
// reading the route list; every documented operation called, its status found among the documented ones
// and its JSON body parsed with the named component schema.
import assert from "node:assert/strict";
import SwaggerParser from "@apidevtools/swagger-parser";
import { components } from "../../../src/http/api.ts";
import { NodeProcess, putValue, tokenFor } from "../../helpers/node_process.ts";

const methods = ["get", "head", "post", "put", "patch", "delete"] as const;

// deno-lint-ignore no-explicit-any
type Document = any;

function templateOf(document: Document, path: string): string | undefined {
  return Object.keys(document.paths).find((template) =>
    new RegExp(`^${template.replace(/\{[^}]+\}/g, "[^/]+").replace(/\./g, "\\.")}$`).test(path)
  );
}

function refsOf(value: unknown, found: string[] = []): string[] {
  if (Array.isArray(value)) value.forEach((item) => refsOf(item, found));
  else if (typeof value === "object" && value !== null) {
    for (const [name, item] of Object.entries(value)) {
      if (name === "$ref" && typeof item === "string") found.push(item);
      else refsOf(item, found);
    }
  }
  return found;
}

Deno.test("openapi: the document passes a real OpenAPI validator (@apidevtools/swagger-parser)", async () => {
  await using node = await NodeProcess.start();
  const document = await (await node.fetch("/openapi.json")).json();
  // Throws, naming every schema violation, when the document is not valid OpenAPI.
  await SwaggerParser.validate(document);
});

Deno.test("openapi: a 3.1 document whose every $ref resolves, generated from the zod schemas", async () => {
  await using node = await NodeProcess.start();
  const response = await node.fetch("/openapi.json");
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type") ?? "", /^application\/json/);
  const document = await response.json();
  assert.equal(document.openapi, "3.1.0");
  assert.equal(typeof document.info.version, "string");
  for (const ref of refsOf(document)) {
    const match = /^#\/components\/schemas\/(\w+)$/.exec(ref);
    assert.ok(match !== null && document.components.schemas[match[1]!] !== undefined, `unresolved ${ref}`);
  }
  assert.deepEqual(Object.keys(document.components.schemas).sort(), Object.keys(components).sort());
  const put = document.paths["/{table}/key/{key}"].put;
  assert.deepEqual(put.security, [{ bearer: [] }]);
  assert.deepEqual(document.components.schemas.ValueBody.required, ["value"]);
  for (const path of ["/{table}/store", "/{table}/keys"]) {
    const parameters: Array<{ name: string; in: string; description?: string; schema: unknown }> =
      document.paths[path].get.parameters;
    const where = parameters.find((parameter) => parameter.name === "where");
    assert.equal(where?.in, "query", `${path} documents where`);
    assert.deepEqual(where.schema, { type: "string" });
    for (const word of ["$eq", "$prefix", "$or", "$key", "$owner", "limit counts matching", "400"]) {
      assert.ok(where.description?.includes(word), `${path}: where's description names ${word}`);
    }
  }
  // Keys that expire: ttl_secs on both write bodies, expires_at in the VersionedValue, all optional.
  for (const body of ["ValueBody", "MergePatchBody"]) {
    const ttlSecs = document.components.schemas[body].properties.ttl_secs;
    assert.deepEqual([ttlSecs.type, ttlSecs.minimum, ttlSecs.maximum], ["integer", 1, 315_360_000], body);
  }
  const versioned = document.components.schemas.VersionedValue;
  assert.equal(versioned.properties.expires_at.type, "integer");
  assert.equal(versioned.required.includes("expires_at"), false);
});

Deno.test("openapi: every route the node serves is documented, and no undocumented one answers", async () => {
  await using node = await NodeProcess.start();
  const document = await (await node.fetch("/openapi.json")).json();
  const paths = [
    "/x",
    "/stats",
    "/health",
    "/membership",
    "/metrics",
    "/openapi.json",
    "/admin",
    "/admin/admin.js",
    "/admin/admin.css",
    "/auth/u",
    "/_internal/kind",
    "/t/key",
    "/t/key/k",
    "/t/store",
    "/t/keys",
    "/t/subscribe",
    "/t/subscribe/k",
    "/subscribe",
    "/t/other",
    "/t/key/k/more",
    "/a/b/c/d",
  ];
  const served: string[] = [];
  for (const path of paths) {
    for (const method of methods) {
      const controller = new AbortController();
      const response = await node.fetch(path, {
        method: method.toUpperCase(),
        signal: controller.signal,
        ...(method === "get" || method === "head" ? {} : { body: "{}" }),
      });
      const body = method === "head"
        ? ""
        : response.headers.get("content-type") === "text/event-stream"
        ? (controller.abort(), "")
        : await response.text();
      // A HEAD answer has no body: its 404 is a route's when the GET of the same path was routed.
      const unknownRoute = method === "head"
        ? !served.includes(`get ${path}`)
        : /"code":"not_found"/.test(body);
      const notRouted = response.status === 405 || (response.status === 404 && unknownRoute);
      if (notRouted) continue;
      served.push(`${method} ${path}`);
      const template = templateOf(document, path);
      assert.ok(template !== undefined, `${method} ${path} answers ${response.status} but is not documented`);
      const documented = method === "head" ? "get" : method;
      assert.ok(
        document.paths[template][documented] !== undefined,
        `${documented} ${template} is not documented`,
      );
    }
  }
  for (const [template, operations] of Object.entries(document.paths as Record<string, object>)) {
    for (const method of Object.keys(operations)) {
      const probe = template.replace(/\{[^}]+\}/g, (name) => ({ "{table}": "t", "{key}": "k" })[name] ?? "u")
        .replace("/_internal/u", "/_internal/kind");
      assert.ok(served.includes(`${method} ${probe}`), `documented ${method} ${template} does not answer`);
    }
  }
});

Deno.test("openapi: each documented operation answers a documented status with a body of its schema", async () => {
  await using node = await NodeProcess.start();
  const document = await (await node.fetch("/openapi.json")).json();
  const token = await tokenFor(node, "alice");
  const written = await putValue(node, "/t/key/k", { a: 1 }, { token });
  assert.equal(written.status, 201);
  await written.body?.cancel();
  const auth = { authorization: `Bearer ${token}` };
  const calls: Array<[string, string, RequestInit]> = [
    ["post", "/auth/{user}", { body: '{"secret":"pw"}' }],
    ["get", "/{table}/key/{key}", {}],
    ["put", "/{table}/key/{key}", { headers: auth, body: '{"value":{"a":2}}' }],
    ["patch", "/{table}/key/{key}", { headers: auth, body: '{"value":{"b":3}}' }],
    ["get", "/{table}/store", {}],
    ["get", "/{table}/keys", {}],
    ["post", "/{table}/keys", { body: '["k","absent"]' }],
    ["get", "/stats", {}],
    ["get", "/membership", {}],
    ["get", "/health", {}],
    ["get", "/metrics", {}],
    ["get", "/openapi.json", {}],
    ["get", "/admin", {}],
    ["get", "/admin/admin.js", {}],
    ["get", "/admin/admin.css", {}],
    ["get", "/{table}/subscribe/{key}", {}],
    ["get", "/{table}/subscribe", {}],
    ["get", "/subscribe", {}], // no source: a documented 400 with a Problem body
    ["post", "/_internal/{kind}", { body: "{}" }],
    ["delete", "/{table}/key/{key}", { headers: auth }],
    ["get", "/{table}/key/{key}", {}], // now deleted: a documented 404 with a Problem body
  ];
  const covered = new Set(calls.map(([method, template]) => `${method} ${template}`));
  for (const [template, operations] of Object.entries(document.paths as Record<string, object>)) {
    for (const method of Object.keys(operations)) {
      assert.ok(covered.has(`${method} ${template}`), `no call for ${method} ${template}`);
    }
  }
  for (const [method, template, init] of calls) {
    const path = template.replace("{table}", "t").replace("{key}", "k").replace("{user}", "bob")
      .replace("{kind}", "write");
    const controller = new AbortController();
    const response = await node.fetch(path, {
      ...init,
      method: method.toUpperCase(),
      signal: controller.signal,
    });
    const answer = document.paths[template][method].responses[String(response.status)];
    assert.ok(answer !== undefined, `${method} ${path} answered ${response.status}, which is not documented`);
    const [contentType, media] = Object.entries(answer.content ?? {})[0] ?? [];
    if (contentType === "text/event-stream") {
      assert.equal(response.headers.get("content-type"), "text/event-stream");
      controller.abort();
      continue;
    }
    const text = await response.text();
    if (contentType === undefined) continue;
    assert.ok(response.headers.get("content-type")?.startsWith(contentType as string), `${method} ${path}`);
    const ref = (media as { schema: { $ref?: string } }).schema.$ref;
    if (ref === undefined) continue;
    const name = ref.split("/").at(-1) as keyof typeof components;
    const parsed = components[name].safeParse(JSON.parse(text));
    assert.ok(parsed.success, `${method} ${path}: ${text} is not a ${name}: ${parsed.error?.message}`);
  }
});
