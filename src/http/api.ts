/**
 * The one list of the routes a node serves, with what each takes and answers. The app's method checks
 * (405 with `Allow`) and `GET /openapi.json` are both built from it, so the document cannot drift from
 * the routes. Request schemas are those `schemas.ts` validates with.
 */
import { z } from "zod";
import { assert } from "../util/assert.ts";
import { AuthBody, JsonValue, KeyListBody, ListQuery, MergePatchBody, ValueBody } from "./schemas.ts";

export type Method = "get" | "post" | "put" | "patch" | "delete";

/** One answer of an operation: JSON of a named schema, or another content type. */
export interface Answer {
  description: string;
  schema?: ComponentName;
  contentType?: string;
}

export interface Operation {
  /**
   * The operation's `operationId` in the OpenAPI document: camelCase, unique among the operations, and
   * never renamed, since client generators name their methods after it.
   */
  operationId: string;
  summary: string;
  /** Needs `Authorization: Bearer <token>`. */
  auth?: true;
  /** A JSON body of a named schema. */
  body?: ComponentName;
  query?: z.ZodObject;
  headers?: ReadonlyArray<{ name: string; description: string }>;
  answers: Readonly<Record<number, Answer>>;
}

export interface RouteDoc {
  /** In Hono's form: `/:table/key/:key`. */
  path: string;
  /** A node-to-node route: not routed by the public apps, and not part of their method checks. */
  internal?: true;
  operations: Partial<Record<Method, Operation>>;
}

const VersionedValue = z.object({
  value: JsonValue,
  version: z.number().int().min(1),
  timestamp: z.number().int().describe("ms since the epoch"),
  owner: z.string(),
  expires_at: z.number().int().optional().describe(
    "ms since the epoch when the key expires (timestamp + ttl_secs * 1000); only when it was written " +
      "with ttl_secs. From then on it reads as missing, and subscribers get a Deleted event with " +
      '"reason":"expired"',
  ),
});

/** Every schema of a body or an answer, by the name the document's components give it. */
export const components = {
  JsonValue,
  VersionedValue,
  AuthBody,
  ValueBody,
  MergePatchBody,
  KeyList: KeyListBody,
  ValueMap: z.record(z.string(), VersionedValue),
  KeyNames: z.array(z.string()),
  Problem: z.object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    code: z.string().describe("stable snake_case error code, e.g. key_not_found"),
  }),
  Token: z.object({ status: z.literal("User created").optional(), token: z.string() }),
  Stats: z.looseObject({
    tables: z.record(z.string(), z.number().int()),
    total_keys: z.number().int(),
    total_requests: z.number().int(),
    average_latency_ms: z.number(),
    active_sse_connections: z.number().int(),
  }),
  Membership: z.object({
    nodes: z.array(z.object({
      id: z.string(),
      address: z.string(),
      status: z.enum(["alive", "suspect", "dead", "left"]),
      incarnation: z.number().int(),
      last_seen_ms: z.number(),
    })),
  }),
  Health: z.object({ status: z.literal("ok") }),
  Deleted: z.object({ message: z.literal("Deleted") }),
} as const;
export type ComponentName = keyof typeof components;

const problem = (description: string): Answer => ({ description, schema: "Problem" });
const eventStream: Answer = {
  description: "An event stream (SSE): first `event: ready` with the stream's position as id, then " +
    "`Updated` and `Deleted` events (a key's id is its version; a table's, the node's change sequence)",
  contentType: "text/event-stream",
};
const listQuery = ListQuery;
/** `?since=`: the query twin of `Last-Event-ID` (SPEC §4b). */
const sinceQuery = z.object({
  since: z.string().regex(/^\d{1,16}$/).optional().describe(
    "Resume after this event id, as Last-Event-ID does (for a new EventSource); not a number: 400",
  ),
});
/** `?snapshot=true` on event streams (SPEC §4b). */
const snapshotField = z.enum(["true", "false"]).optional().describe(
  "true: first the current state as Updated events (a table's in key order, without ids), then " +
    '{"event":"Synced"} (with the id live changes follow), then live; a resume the node can replay ' +
    "skips it, one it cannot gets Resync then the state",
);
/** `?where=` on table and multiplexed streams (SPEC §4b). */
const whereStreamField = z.string().optional().describe(
  "Only changes after which a record matches this filter (the language of GET /{table}/store?where=), " +
    'and {"event":"Left","table","key","version"} when a record that matched stops matching; on ' +
    "/subscribe it applies to the table sources. Malformed: 400",
);
const keyStreamQuery = sinceQuery.extend({ snapshot: snapshotField });
const tableStreamQuery = sinceQuery.extend({ snapshot: snapshotField, where: whereStreamField });
const multiStreamQuery = tableStreamQuery.extend({
  table: z.string().optional().describe("A table to follow (repeatable); with key, at most 100 sources"),
  key: z.string().optional().describe('A key to follow as "<table>/<key>" (repeatable)'),
});
/** `?consistent=true` on a key read (SPEC §3). */
const consistentQuery = z.object({
  consistent: z.enum(["true", "false"]).optional().describe(
    "true: linearizable (a majority of the key's replicas is asked), or 503; default: one replica",
  ),
});
const ifMatch = {
  name: "if-match",
  description: 'Only write when the current version is this one, e.g. "7"',
};
const lastEventId = {
  name: "last-event-id",
  description: "Resume after this id, e.g. the ready block's (sent by EventSource); garbage is ignored",
};

/** Every route, in the order of SPEC §3. */
export const apiRoutes: readonly RouteDoc[] = [
  {
    path: "/auth/:user",
    operations: {
      post: {
        operationId: "authenticate",
        summary: "Register (first call for a name) or log in; answers a bearer token",
        body: "AuthBody",
        answers: {
          200: { description: "Logged in", schema: "Token" },
          201: { description: "User created", schema: "Token" },
          400: problem("Bad body or user name"),
          401: problem("Wrong secret"),
          429: problem("Too many failed attempts"),
        },
      },
    },
  },
  {
    path: "/:table/key/:key",
    operations: {
      get: {
        operationId: "getKey",
        summary: "Read a key",
        query: consistentQuery,
        answers: {
          200: { description: "The value, with `ETag` its version", schema: "VersionedValue" },
          400: problem("consistent is neither true nor false"),
          404: problem("No such key"),
          503: problem("consistent=true and no majority of the key's replicas answered"),
        },
      },
      put: {
        operationId: "putKey",
        summary: "Create or replace a key (201 once durable); ttl_secs gives it a lifetime",
        auth: true,
        body: "ValueBody",
        headers: [ifMatch],
        answers: {
          201: { description: "Written and durable", schema: "VersionedValue" },
          400: problem("Body not JSON, no value, or ttl_secs not an integer from 1 to ttlSecsMax"),
          401: problem("Missing, invalid or expired token"),
          403: problem("The key belongs to another user"),
          412: problem("If-Match is not the current version"),
          413: problem("Body over the limit"),
          503: problem("Not enough replicas answered"),
        },
      },
      patch: {
        operationId: "patchKey",
        summary:
          "Merge an object into a key's object value (JSON Merge Patch, RFC 7396); ttl_secs as for PUT",
        auth: true,
        body: "MergePatchBody",
        headers: [ifMatch],
        answers: {
          201: { description: "Merged and durable", schema: "VersionedValue" },
          400: problem("The patch or the stored value is not an object, or ttl_secs is invalid"),
          401: problem("Missing, invalid or expired token"),
          403: problem("The key belongs to another user"),
          404: problem("No such key"),
          412: problem("If-Match is not the current version"),
        },
      },
      delete: {
        operationId: "deleteKey",
        summary: "Delete a key",
        auth: true,
        headers: [ifMatch],
        answers: {
          200: { description: "Deleted", schema: "Deleted" },
          401: problem("Missing, invalid or expired token"),
          403: problem("The key belongs to another user"),
          404: problem("No such key"),
        },
      },
    },
  },
  {
    path: "/:table/store",
    operations: {
      get: {
        operationId: "listValues",
        summary: "Every key of a table with its value, in key order, streamed; paged with limit and after, " +
          "filtered with where",
        query: listQuery,
        answers: {
          200: { description: "key → VersionedValue", schema: "ValueMap" },
          400: problem("Bad limit or after, or a malformed where filter"),
          404: problem("No such table"),
        },
      },
    },
  },
  {
    path: "/:table/keys",
    operations: {
      get: {
        operationId: "listKeys",
        summary: "The key names of a table, in key order, streamed; paged with limit and after, filtered " +
          "with where",
        query: listQuery,
        answers: {
          200: { description: "Key names", schema: "KeyNames" },
          400: problem("Bad limit or after, or a malformed where filter"),
          404: problem("No such table"),
        },
      },
      post: {
        operationId: "getKeys",
        summary: "Read many keys at once; missing keys are left out",
        body: "KeyList",
        answers: {
          200: { description: "key → VersionedValue", schema: "ValueMap" },
          400: problem("Not an array of key names, or too many"),
        },
      },
    },
  },
  {
    path: "/:table/subscribe/:key",
    operations: {
      get: {
        operationId: "subscribeKey",
        summary: "Live changes of one key",
        headers: [lastEventId],
        query: keyStreamQuery,
        answers: {
          200: eventStream,
          400: problem("since is not an event id, or snapshot is not true or false"),
          503: problem("Too many subscribers"),
        },
      },
    },
  },
  {
    path: "/:table/subscribe",
    operations: {
      get: {
        operationId: "subscribeTable",
        summary: "Live changes of every key of a table",
        headers: [lastEventId],
        query: tableStreamQuery,
        answers: {
          200: eventStream,
          400: problem("since, snapshot or where is malformed"),
          503: problem("Too many subscribers"),
        },
      },
    },
  },
  {
    path: "/subscribe",
    operations: {
      get: {
        operationId: "subscribeMany",
        summary: "One stream of several tables and keys (each event names its table and key)",
        headers: [lastEventId],
        query: multiStreamQuery,
        answers: {
          200: eventStream,
          400: problem(
            "No source, over 100, a name that is not valid, or since, snapshot or where malformed",
          ),
          503: problem("Too many subscribers"),
        },
      },
    },
  },
  {
    path: "/stats",
    operations: {
      get: {
        operationId: "getStats",
        summary: "Counters of this node",
        answers: { 200: { description: "Counters", schema: "Stats" } },
      },
    },
  },
  {
    path: "/membership",
    operations: {
      get: {
        operationId: "getMembership",
        summary: "Every known node with its gossip state",
        answers: { 200: { description: "Members", schema: "Membership" } },
      },
    },
  },
  {
    path: "/health",
    operations: {
      get: {
        operationId: "getHealth",
        summary: "Whether this node serves",
        answers: { 200: { description: "Serving", schema: "Health" }, 503: problem("Starting or draining") },
      },
    },
  },
  {
    path: "/metrics",
    operations: {
      get: {
        operationId: "getMetrics",
        summary: "Counters in the Prometheus text format",
        answers: { 200: { description: "Prometheus exposition 0.0.4", contentType: "text/plain" } },
      },
    },
  },
  {
    path: "/openapi.json",
    operations: {
      get: {
        operationId: "getOpenApiDocument",
        summary: "This document",
        answers: { 200: { description: "OpenAPI 3.1", contentType: "application/json" } },
      },
    },
  },
  {
    path: "/admin",
    operations: {
      get: {
        operationId: "getAdminPage",
        summary: "The dashboard: members, tables, a key browser, live changes; log in to edit your keys",
        answers: {
          200: { description: "The page; it loads its script and style below", contentType: "text/html" },
          304: { description: "Unchanged since the ETag sent in If-None-Match" },
        },
      },
    },
  },
  {
    path: "/admin/admin.js",
    operations: {
      get: {
        operationId: "getAdminScript",
        summary: "The dashboard's script",
        answers: {
          200: { description: "JavaScript", contentType: "text/javascript" },
          304: { description: "Unchanged since the ETag sent in If-None-Match" },
        },
      },
    },
  },
  {
    path: "/admin/admin.css",
    operations: {
      get: {
        operationId: "getAdminStyle",
        summary: "The dashboard's style",
        answers: {
          200: { description: "CSS", contentType: "text/css" },
          304: { description: "Unchanged since the ETag sent in If-None-Match" },
        },
      },
    },
  },
  {
    path: "/_internal/:kind",
    internal: true,
    operations: {
      post: {
        operationId: "postInternal",
        summary: "Node-to-node requests, signed with CLUSTER_SECRET; not for clients",
        answers: {
          200: { description: "The peer's answer", contentType: "application/json" },
          400: problem("A message that is not valid"),
          403: problem("Not signed by a member, signed for another, replayed, or unlike its digest"),
          404: problem("Unknown kind"),
          408: problem("The body did not arrive by its deadline"),
          413: problem("Declared or sent body over the message limit"),
          503: problem("The replay memory is full"),
        },
      },
    },
  },
];

/**
 * Checks that every `operationId` of `routes` is camelCase and that no two are alike; called at load. They
 * are declared by hand, not derived from paths, so that they stay as they are when a route's path changes.
 */
export function assertOperationIds(routes: readonly RouteDoc[]): void {
  const operationIds = new Set<string>();
  for (const { operationId } of routes.flatMap((route) => Object.values(route.operations))) {
    assert(/^[a-z][A-Za-z0-9]*$/.test(operationId), `operationId "${operationId}" is camelCase`);
    assert(!operationIds.has(operationId), `operationId "${operationId}" is unique`);
    operationIds.add(operationId);
  }
}

assertOperationIds(apiRoutes);

/** A route's path in the OpenAPI form, which metrics use as its label too: `/{table}/key/{key}`. */
export function templateOf(path: string): string {
  return path.replace(/:(\w+)/g, "{$1}");
}

/**
 * The public routes as `[path, Allow]` pairs, HEAD allowed wherever GET is, and OPTIONS everywhere (the
 * CORS preflight, SPEC §3).
 */
export function allowedMethods(): Array<[string, string]> {
  return apiRoutes.filter((route) => route.internal === undefined).map((route) => {
    const methods = Object.keys(route.operations).map((method) => method.toUpperCase());
    if (methods.includes("GET")) methods.splice(methods.indexOf("GET") + 1, 0, "HEAD");
    methods.push("OPTIONS");
    return [route.path, methods.join(", ")];
  });
}
