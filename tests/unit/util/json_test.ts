import assert from "node:assert/strict";
import { isJsonObject, jsonDepth, mergePatch, scanJson } from "../../../src/util/json.ts";
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

Deno.test("scanJson() finds a number that overflows a double, at the largest double and one past it", () => {
  const overflowAt = (text: string) => scanJson(text).inexactNumber;
  for (
    const carried of [
      "1.7976931348623157e308", // Number.MAX_VALUE
      "-1.7976931348623157e308",
      "1.7976931348623158e308", // rounds down to MAX_VALUE
      "1e308",
      `1${"0".repeat(308)}`, // 309 digits: 1e308
      `0.${"1".repeat(400)}`, // long, but a fraction
      "123",
      "-0.5e-3",
    ]
  ) {
    assert.equal(overflowAt(carried), undefined, carried);
    assert.equal(JSON.stringify(JSON.parse(carried)) !== "null", true);
  }
  for (
    const overflowing of [
      "1.7976931348623159e308",
      "1.8e308",
      "1e400",
      "-1e400",
      "1E+400",
      `1${"0".repeat(399)}`, // a 400-digit integer
      `-${"9".repeat(400)}`,
    ]
  ) {
    assert.deepEqual(overflowAt(overflowing), { index: 0, kind: "overflow" }, overflowing);
    assert.equal(Math.abs(JSON.parse(overflowing)), Infinity, "what JSON.parse would have made of it");
  }
  assert.deepEqual(overflowAt('{"value":1e400}'), { index: 9, kind: "overflow" });
  assert.deepEqual(overflowAt("[1, 2e400, -3e500]"), { index: 4, kind: "overflow" }, "the first one");
});

Deno.test("scanJson() finds a non-zero number that underflows to 0, and keeps zeros", () => {
  for (const carried of ["5e-324", "2.4703282292062328e-324", "0", "-0", "0e999", "0.0e-400", "0.000"]) {
    assert.equal(scanJson(carried).inexactNumber, undefined, carried);
  }
  for (const underflowing of ["1e-400", "-1e-400", "2.4703282292062327e-324", `0.${"0".repeat(400)}1`]) {
    assert.deepEqual(scanJson(underflowing).inexactNumber, { index: 0, kind: "underflow" }, underflowing);
    assert.equal(Math.abs(JSON.parse(underflowing)), 0, "what JSON.parse would have made of it");
  }
});

Deno.test("scanJson() ignores numbers inside strings and leaves malformed numbers to JSON.parse", () => {
  assert.equal(scanJson('{"value":"1e400"}').inexactNumber, undefined);
  assert.equal(scanJson('{"1e400":"\\"}').inexactNumber, undefined);
  assert.equal(
    scanJson('{"a":"\\"1e400"}').inexactNumber,
    undefined,
    "an escaped quote keeps the string open",
  );
  assert.equal(scanJson("[1e, --1, 1e+]").inexactNumber, undefined, "not numbers: JSON.parse refuses them");
  assert.equal(scanJson("[true, false, null]").inexactNumber, undefined);
  assert.deepEqual(scanJson('{"a":[{"b":1e999}]}'), {
    depth: 3,
    inexactNumber: { index: 11, kind: "overflow" },
    overflowNumber: { index: 11, kind: "overflow" },
  });
  assert.deepEqual(
    scanJson("[1e-400,1e400]").overflowNumber,
    { index: 8, kind: "overflow" },
    "after an underflow",
  );
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
