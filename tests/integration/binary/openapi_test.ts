// Goal: `GET /openapi.json` (issues 6 and 21) describes exactly the public routes a node serves, with the
// schemas its answers follow, and is a document real OpenAPI tools accept. Method: a real node; the served
// document run through two OpenAPI 3.1 validators and Redocly's linter; every path shape × method probed to
// find what it serves, without reading the route list; every documented operation called, its status found
// among the documented ones, its JSON body parsed with the named component schema, and its documented
// security matched by what it answers without a token.
import assert from "node:assert/strict";
import SwaggerParser from "@apidevtools/swagger-parser";
import { Validator } from "@seriousme/openapi-schema-validator";
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

const repoRoot = new URL("../../../", import.meta.url).pathname;
/** The `npm:` specifier deno.json pins the Redocly CLI at (import.meta.resolve gives a file under test). */
const redoclyCli: string =
  JSON.parse(await Deno.readTextFile(`${repoRoot}deno.json`)).imports["@redocly/cli"];

/** Redocly's recommended rules, with the warnings this document must not raise made errors. */
const redoclyConfig = `extends:
  - recommended
rules:
  operation-operationId: error
  operation-operationId-unique: error
  operation-operationId-url-safe: error
  security-defined: error
  no-empty-servers: error
  # Table names "auth" and "_..." are refused (400), so /auth/{user} never meets /{table}/keys and the like.
  no-ambiguous-paths: off
  # /stats, /membership, /health, /metrics, /openapi.json and /admin take no input: they answer no 4xx.
  operation-4xx-response: off
  # The project states no license.
  info-license: off
`;

Deno.test(
  "openapi: the document passes two OpenAPI 3.1 validators (swagger-parser, openapi-schema-validator)",
  async () => {
    await using node = await NodeProcess.start();
    const document = await (await node.fetch("/openapi.json")).json();
    // Throws, naming every schema violation, when the document is not valid OpenAPI.
    await SwaggerParser.validate(structuredClone(document));
    const validator = new Validator();
    const result = await validator.validate(structuredClone(document));
    assert.ok(result.valid, `not valid OpenAPI: ${JSON.stringify(result.errors, null, 1)}`);
    assert.equal(validator.version, "3.1");
  },
);

Deno.test("openapi: Redocly's linter (recommended rules) finds no problem, offline", async () => {
  await using node = await NodeProcess.start();
  const dir = await Deno.makeTempDir({ prefix: "dynarust_redocly_" });
  try {
    await Deno.writeTextFile(`${dir}/openapi.json`, await (await node.fetch("/openapi.json")).text());
    await Deno.writeTextFile(`${dir}/redocly.yaml`, redoclyConfig);
    // The CLI is the npm package deno.json pins, run by Deno with no network permission at all.
    const output = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--deny-net",
        "--allow-read",
        "--allow-env",
        "--allow-sys",
        `${redoclyCli}/redocly`,
        "lint",
        "--config",
        `${dir}/redocly.yaml`,
        "--format",
        "json",
        `${dir}/openapi.json`,
      ],
      cwd: repoRoot,
      env: { REDOCLY_TELEMETRY: "off", REDOCLY_SUPPRESS_UPDATE_NOTICE: "true" },
      stdout: "piped",
      stderr: "piped",
      stdin: "null",
    }).output();
    const stdout = new TextDecoder().decode(output.stdout);
    const stderr = new TextDecoder().decode(output.stderr);
    assert.ok(stdout.trim().startsWith("{"), `redocly printed no report (exit ${output.code}): ${stderr}`);
    const report: { problems: Array<Record<string, unknown>> } = JSON.parse(stdout);
    const problems = report.problems.map((problem) =>
      `${problem.severity} ${problem.ruleId}: ${problem.message} ` +
      `(${(problem.location as Array<{ pointer: string }>)[0]?.pointer})`
    );
    assert.deepEqual(problems, [], `redocly lint:\n${problems.join("\n")}`);
    assert.equal(output.code, 0, stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
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
  // Relative to where the document was fetched: this node, whichever origin reached it.
  assert.deepEqual(document.servers.map((server: { url: string }) => server.url), ["/"]);
  assert.deepEqual(Object.keys(document.paths).filter((path) => path.startsWith("/_internal")), []);
  const operationIds: string[] = Object.values(document.paths as Record<string, Record<string, Document>>)
    .flatMap((operations) => Object.values(operations).map((operation) => operation.operationId));
  for (const operationId of operationIds) assert.match(operationId ?? "", /^[a-z][A-Za-z0-9]*$/);
  assert.equal(new Set(operationIds).size, operationIds.length, `operationIds repeat: ${operationIds}`);
  assert.equal(document.paths["/{table}/key/{key}"].put.operationId, "putKey");
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

/** Paths probed with every method: each public route, internal ones, and paths no route takes. */
const probedPaths = [
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

Deno.test(
  "openapi: every public route the node serves is documented, and no undocumented one answers",
  async () => {
    await using node = await NodeProcess.start();
    const document = await (await node.fetch("/openapi.json")).json();
    const served: string[] = [];
    for (const path of probedPaths) {
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
        if (path.startsWith("/_internal/")) {
          // Node-to-node: it answers (signed requests only), and the public document leaves it out.
          assert.equal(template, undefined, `${method} ${path} is internal but documented as ${template}`);
          continue;
        }
        assert.ok(
          template !== undefined,
          `${method} ${path} answers ${response.status} but is not documented`,
        );
        const documented = method === "head" ? "get" : method;
        assert.ok(
          document.paths[template][documented] !== undefined,
          `${documented} ${template} is not documented`,
        );
      }
    }
    for (const [template, operations] of Object.entries(document.paths as Record<string, object>)) {
      for (const method of Object.keys(operations)) {
        const probe = template.replace(
          /\{[^}]+\}/g,
          (name) => ({ "{table}": "t", "{key}": "k" })[name] ?? "u",
        );
        assert.ok(served.includes(`${method} ${probe}`), `documented ${method} ${template} does not answer`);
      }
    }
    assert.ok(served.includes("post /_internal/kind"), "the internal route answers, undocumented");
  },
);

Deno.test(
  "openapi: an operation needs a token (401 without one) exactly when it documents the bearer scheme",
  async () => {
    await using node = await NodeProcess.start();
    const document = await (await node.fetch("/openapi.json")).json();
    for (const [template, operations] of Object.entries(document.paths as Record<string, Document>)) {
      for (const [method, operation] of Object.entries(operations as Record<string, Document>)) {
        const path = template.replace("{table}", "t").replace("{key}", "k").replace("{user}", "bob");
        const controller = new AbortController();
        const response = await node.fetch(path, {
          method: method.toUpperCase(),
          signal: controller.signal,
          ...(method === "get" ? {} : { body: '{"value":1}' }),
        });
        if (response.headers.get("content-type") === "text/event-stream") controller.abort();
        else await response.body?.cancel();
        // POST /auth/{user}'s 401 is a wrong secret, not a missing token.
        const needsToken = response.status === 401 && path !== "/auth/bob";
        const security = needsToken ? [{ bearer: [] }] : [];
        assert.deepEqual(
          operation.security,
          security,
          `${method} ${path} answers ${response.status} untokened`,
        );
      }
    }
  },
);

Deno.test(
  "openapi: each documented operation answers a documented status with a body of its schema",
  async () => {
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
      const path = template.replace("{table}", "t").replace("{key}", "k").replace("{user}", "bob");
      const controller = new AbortController();
      const response = await node.fetch(path, {
        ...init,
        method: method.toUpperCase(),
        signal: controller.signal,
      });
      const answer = document.paths[template][method].responses[String(response.status)];
      assert.ok(
        answer !== undefined,
        `${method} ${path} answered ${response.status}, which is not documented`,
      );
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
  },
);
