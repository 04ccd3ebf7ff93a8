// Goal: the route list's operationIds (the OpenAPI document's) are checked when it loads: camelCase, and
// no two alike. Method: assertOperationIds on the real list, then on lists with one id broken.
import assert from "node:assert/strict";
import { apiRoutes, assertOperationIds, type RouteDoc } from "../../../src/http/api.ts";
import { AssertionError } from "../../../src/util/assert.ts";

const answers = { 200: { description: "OK" } };

Deno.test("assertOperationIds() accepts the route list as it is", () => {
  assertOperationIds(apiRoutes);
});

Deno.test("assertOperationIds() rejects an operationId used twice, and one not camelCase", () => {
  const twice: RouteDoc[] = [
    { path: "/a", operations: { get: { operationId: "getThing", summary: "a", answers } } },
    { path: "/b", operations: { post: { operationId: "getThing", summary: "b", answers } } },
  ];
  assert.throws(() => assertOperationIds(twice), AssertionError);
  for (const operationId of ["get_thing", "GetThing", "get-thing", ""]) {
    const routes: RouteDoc[] = [{ path: "/a", operations: { get: { operationId, summary: "a", answers } } }];
    assert.throws(() => assertOperationIds(routes), AssertionError, operationId);
  }
});
