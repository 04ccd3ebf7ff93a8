// Goal: the membership wire schemas accept what nodes send and refuse anything else with
// InvalidRequestError, at and beyond every bound (peersMax members, 300-character ids, safe incarnations).
// Method: parseWire over hand-made values.
import assert from "node:assert/strict";
import { isMemberId, MemberListWire, MemberWire, parseWire, peersMax } from "../../../src/cluster/mod.ts";
import { InvalidRequestError } from "../../../src/util/errors.ts";

const member = { id: "127.0.0.1:7001", status: "alive", incarnation: 1_700_000_000_000 } as const;

function invalid(pattern?: RegExp): (error: unknown) => boolean {
  return (error: unknown) => {
    assert.ok(error instanceof InvalidRequestError);
    assert.equal(error.code, "invalid_request");
    if (pattern !== undefined) assert.match(error.message, pattern);
    return true;
  };
}

Deno.test("parseWire() accepts a valid member and strips unknown fields", () => {
  assert.deepEqual(parseWire(MemberWire, { ...member, extra: true }), member);
  assert.deepEqual(parseWire(MemberWire, { ...member, id: "[::1]:7001", status: "left", incarnation: 0 }), {
    id: "[::1]:7001",
    status: "left",
    incarnation: 0,
  });
});

Deno.test("parseWire() refuses a bad status, incarnation or id with InvalidRequestError", () => {
  const bad: unknown[] = [
    { ...member, status: "zombie" },
    { ...member, incarnation: -1 },
    { ...member, incarnation: 1.5 },
    { ...member, incarnation: Number.MAX_SAFE_INTEGER + 2 },
    { ...member, id: "no-port" },
    { ...member, id: "evil.example/x:80" },
    { ...member, id: "a b:80" },
    { id: member.id, status: member.status },
    "not an object",
    null,
  ];
  for (const value of bad) {
    assert.throws(() => parseWire(MemberWire, value), invalid(/Invalid cluster message/));
  }
  assert.equal(
    parseWire(MemberWire, { ...member, incarnation: Number.MAX_SAFE_INTEGER }).incarnation,
    2 ** 53 - 1,
  );
});

Deno.test("parseWire() takes a 300-character id and refuses 301", () => {
  const idOf = (chars: number) => `${"h".repeat(chars - 5)}:7001`;
  assert.equal(idOf(300).length, 300);
  assert.equal(parseWire(MemberWire, { ...member, id: idOf(300) }).id, idOf(300));
  assert.ok(isMemberId(idOf(300)));
  assert.ok(!isMemberId(idOf(301)));
  assert.throws(() => parseWire(MemberWire, { ...member, id: idOf(301) }), invalid());
});

Deno.test("parseWire() takes a list of peersMax members and refuses peersMax + 1", () => {
  const list = (count: number) =>
    Array.from(
      { length: count },
      (_, index) => ({ ...member, id: `10.0.${index >> 8}.${index & 255}:7001` }),
    );
  assert.equal(peersMax, 256);
  assert.equal(parseWire(MemberListWire, list(peersMax)).length, peersMax);
  assert.throws(() => parseWire(MemberListWire, list(peersMax + 1)), invalid(/256/));
});
