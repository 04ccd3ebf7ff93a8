/**
 * `GET /openapi.json`: an OpenAPI 3.1 document of the public `apiRoutes` (the node-to-node ones are no
 * client's business and stay out), its schemas converted from the zod schemas the routes validate with
 * (zod's JSON Schema output, draft 2020-12, which OpenAPI 3.1 uses). Every operation states its security:
 * the bearer scheme where it needs a token, `[]` (none) where it does not.
 */
import { z } from "zod";
import { assert } from "../util/assert.ts";
import { apiRoutes, type ComponentName, components, type Operation, templateOf } from "./api.ts";

type JsonSchema = Record<string, unknown>;

const refOf = (name: ComponentName): JsonSchema => ({ $ref: `#/components/schemas/${name}` });

/** Every component, converted together so that one refers to another by `$ref`. */
function componentSchemas(): Record<string, JsonSchema> {
  const registry = z.registry<{ id: string }>();
  for (const [name, schema] of Object.entries(components)) registry.add(schema, { id: name });
  const converted = z.toJSONSchema(registry, { io: "input", uri: (id) => `#/components/schemas/${id}` });
  return Object.fromEntries(
    Object.entries(converted.schemas).map(([name, schema]) => {
      const { $schema: _dialect, $id: _id, ...rest } = schema as JsonSchema;
      return [name, rest];
    }),
  );
}

/** A schema of a parameter: simple, so it never needs `$defs` (whose refs would resolve at the root). */
function parameterSchema(schema: z.ZodType): JsonSchema {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { io: "input" }) as JsonSchema;
  assert(rest.$defs === undefined, "a parameter schema refers to no other schema");
  return rest;
}

const jsonContent = (schema: JsonSchema, type = "application/json") => ({ [type]: { schema } });

function operationObject(operation: Operation, pathParameters: JsonSchema[]): JsonSchema {
  const parameters = [...pathParameters];
  for (const [name, schema] of Object.entries(operation.query?.shape ?? {})) {
    // The schema's description is the parameter's: tools show a parameter's, not its schema's.
    const { description, ...rest } = parameterSchema(schema as z.ZodType);
    parameters.push({
      name,
      in: "query",
      required: false,
      ...(description === undefined ? {} : { description }),
      schema: rest,
    });
  }
  for (const header of operation.headers ?? []) {
    // A parameter needs a schema (OpenAPI 3.1); every header the API reads is text.
    const schema = { type: "string" };
    parameters.push({
      name: header.name,
      in: "header",
      required: false,
      description: header.description,
      schema,
    });
  }
  const responses: Record<string, JsonSchema> = {};
  for (const [status, answer] of Object.entries(operation.answers)) {
    const response: JsonSchema = { description: answer.description };
    if (answer.schema !== undefined) {
      const type = answer.schema === "Problem" ? "application/problem+json" : "application/json";
      response.content = jsonContent(refOf(answer.schema), type);
    } else if (answer.contentType !== undefined) {
      response.content = jsonContent({}, answer.contentType);
    }
    responses[status] = response;
  }
  return {
    operationId: operation.operationId,
    summary: operation.summary,
    ...(parameters.length > 0 ? { parameters } : {}),
    ...(operation.body === undefined
      ? {}
      : { requestBody: { required: true, content: jsonContent(refOf(operation.body)) } }),
    security: operation.auth === undefined ? [] : [{ bearer: [] }],
    responses,
  };
}

/** The document; `version` is the node's. */
export function openApiDocument(version: string): JsonSchema {
  const paths: Record<string, JsonSchema> = {};
  for (const route of apiRoutes.filter((route) => route.internal === undefined)) {
    const names = [...route.path.matchAll(/:(\w+)/g)].map((match) => match[1]!);
    const pathParameters = names.map((name) => ({
      name,
      in: "path",
      required: true,
      schema: { type: "string" },
    }));
    paths[templateOf(route.path)] = Object.fromEntries(
      Object.entries(route.operations).map(([method, operation]) => [
        method,
        operationObject(operation, pathParameters),
      ]),
    );
  }
  return {
    openapi: "3.1.0",
    info: {
      title: "dynarust",
      version,
      description: "A distributed key → JSON value store: anyone reads, only a key's owner writes, " +
        "every change is pushed live over Server-Sent Events. Errors are application/problem+json.",
    },
    // Relative: the node that served this document, whatever origin (scheme, proxy, port) reached it.
    servers: [{ url: "/", description: "This node" }],
    paths,
    components: {
      schemas: componentSchemas(),
      securitySchemes: { bearer: { type: "http", scheme: "bearer", bearerFormat: "JWT" } },
    },
  };
}
