import assert from "node:assert/strict";
import { isJsonObject, jsonDepth, mergePatch } from "../../../src/util/json.ts";
import { crc32 } from "../../../src/util/crc32.ts";
import { assert as invariant, AssertionError } from "../../../src/util/assert.ts";

Deno.test("jsonDepth() counts nesting and ignores brackets inside strings", () => {
  assert.equal(jsonDepth("1"), 0);
  assert.equal(jsonDepth("{}"), 1);
  assert.equal(jsonDepth('{"a":[{"b":1}]}'), 3);
  assert.equal(jsonDepth('{"a":"[[[[{{{"}'), 1);
  assert.equal(jsonDepth('{"a":"\\"[[["}'), 1);
  assert.equal(jsonDepth("[".repeat(100_000)), 100_000, "no recursion on hostile input");
});

Deno.test("mergePatch() follows RFC 7396 and leaves its inputs alone", () => {
  const target = { a: "b", c: { d: "e", f: "g" } };
  const patch = { a: "z", c: { f: null } };
  assert.deepEqual(mergePatch(target, patch), { a: "z", c: { d: "e" } });
  assert.deepEqual(target, { a: "b", c: { d: "e", f: "g" } });
  assert.deepEqual(mergePatch({ a: [1] }, { a: { b: 1 } }), { a: { b: 1 } });
  assert.deepEqual(mergePatch({ a: { b: 1 } }, { a: [2] }), { a: [2] });
  const polluted = mergePatch({}, JSON.parse('{"__proto__":{"admin":true}}'));
  assert.equal(({} as Record<string, unknown>).admin, undefined, "no prototype pollution");
  assert.deepEqual(Object.keys(polluted), ["__proto__"]);
});

Deno.test("isJsonObject() accepts only plain objects", () => {
  assert.equal(isJsonObject({}), true);
  assert.equal(isJsonObject([]), false);
  assert.equal(isJsonObject(null), false);
  assert.equal(isJsonObject("x"), false);
});

Deno.test("crc32() matches the IEEE check value", () => {
  assert.equal(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
  assert.equal(crc32(new Uint8Array()), 0);
  const bytes = new TextEncoder().encode("123456789");
  assert.equal(crc32(bytes.subarray(4), crc32(bytes.subarray(0, 4))), 0xcbf43926, "continued from a prefix");
});

Deno.test("assert() throws AssertionError with the message", () => {
  assert.throws(
    () => invariant(false, "broken"),
    (error) => error instanceof AssertionError && error.message === "broken",
  );
  invariant(true);
});
