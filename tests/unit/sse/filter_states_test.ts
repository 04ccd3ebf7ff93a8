// Goal: the states a filtered table remembers stay within their bounds (entries and chars per table),
// forgetting the least recently changed first, and a forgotten or dropped state reads as unknown.
import assert from "node:assert/strict";
import { FilterStates } from "../../../src/sse/filter_states.ts";

Deno.test("FilterStates keeps entriesMax states per table, least recently changed forgotten first", () => {
  const states = new FilterStates({ entriesMax: 3, charsMax: 1_000 });
  for (const key of ["a", "b", "c"]) states.set("t", key, `{"${key}":1}`);
  states.set("t", "a", '{"a":2}'); // a is now the most recent: b goes first
  states.set("t", "d", '{"d":1}');
  assert.equal(states.get("t", "b"), undefined);
  assert.equal(states.get("t", "a"), '{"a":2}');
  assert.equal(states.get("t", "d"), '{"d":1}');
  assert.equal(states.get("u", "a"), undefined, "tables are apart");
});

Deno.test("FilterStates keeps charsMax chars per table and never remembers a state larger than it", () => {
  const states = new FilterStates({ entriesMax: 100, charsMax: 10 });
  states.set("t", "a", "12345");
  states.set("t", "b", "12345");
  assert.equal(states.get("t", "a"), "12345", "at charsMax");
  states.set("t", "c", "1");
  assert.equal(states.get("t", "a"), undefined, "one over: the oldest went");
  states.set("t", "b", "x".repeat(11));
  assert.equal(states.get("t", "b"), undefined, "too large: unknown, and its old state is gone too");
  states.dropTable("t");
  assert.equal(states.get("t", "c"), undefined);
  assert.equal(states.tableCount, 0);
});
