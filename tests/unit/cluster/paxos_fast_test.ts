// Goal: the schema-free check of usual paxos messages (paxos_fast.ts) accepts exactly what the zod schema
// accepts and yields exactly its output, and takes the usual messages itself (else it saves nothing).
// Method: seeded valid messages of every kind, each also mutated field by field (removed, retyped, out of
// range, extra keys, bad names and JSON); both checks judge every one. KV_TEST_SEED replays a run.
import assert from "node:assert/strict";
import {
  PaxosReplyChecked,
  PaxosRequestChecked,
  usualPaxosItems,
  usualPaxosResults,
} from "../../../src/cluster/paxos_fast.ts";
import { PaxosReply, PaxosRequest } from "../../../src/cluster/paxos_wire.ts";
import { Random } from "../../helpers/seed.ts";

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const weird: Json[] = [
  null,
  true,
  0,
  -1,
  1.5,
  2 ** 52,
  2 ** 52 + 1,
  Number.MAX_SAFE_INTEGER,
  "",
  "a",
  "a/b",
  "\u0001x",
  "\ud800",
  "x".repeat(1025),
  "x".repeat(301),
  '{"a":1}',
  '{"a":\n1}',
  "{bad",
  "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]",
  "1e999",
  [],
  ["127.0.0.1:1"],
  [[]],
  {},
  { counter: 0, node: "" },
  { counter: 3, node: "" },
  { counter: 2, node: "127.0.0.1:2" },
  { counter: 2, node: "127.0.0.1:2", extra: 1 },
];

function ballot(random: Random): Json {
  return { counter: 1 + random.int(1000), node: `127.0.0.1:${7300 + random.int(3)}` };
}

function entry(random: Random): Json {
  const deleted = random.next() < 0.2;
  const base: { [key: string]: Json } = {
    version: 1 + random.int(99),
    timestamp: random.int(1e12),
    owner: "alice",
  };
  base.deleted = deleted;
  if (!deleted) base.valueJson = JSON.stringify({ n: random.int(1e6), s: "hé", list: [1, { x: null }] });
  if (random.next() < 0.7) base.ballot = random.next() < 0.2 ? { counter: 0, node: "" } : ballot(random);
  // A lifetime (a live state's, or the one an expiry tombstone ended); mutations try the invalid ones.
  if (random.next() < 0.3) base.expiresAt = random.pick([1_700_000_000_000 + random.int(1e9), 1]);
  return base;
}

function item(random: Random): { [key: string]: Json } {
  const names = { table: random.pick(["t", "users", "ta ble"]), key: `k${random.int(50)}` };
  const replicas = ["127.0.0.1:7301", "127.0.0.1:7302", "127.0.0.1:7303"];
  const proposal = { ...names, ballot: ballot(random), replicas } as { [key: string]: Json };
  if (random.next() < 0.6) proposal.joint = random.next() < 0.8 ? [] : [replicas.slice(0, 2)];
  switch (random.int(4)) {
    case 0:
      return { op: "accept", ...proposal, entry: entry(random) };
    case 1:
      return { op: "prepare", ...proposal };
    case 2:
      return { op: "peek", ...proposal };
    default: {
      const notice: { [key: string]: Json } = {
        op: "chosen",
        ...names,
        kind: random.pick(["Updated", "Deleted"]),
        version: 1 + random.int(99),
        json: `{"value":${random.int(9)},"version":3}`,
      };
      if (random.next() < 0.3) notice.settled = random.next() < 0.5;
      return notice;
    }
  }
}

/** Every path to a value inside `value` (the root is `[]`). */
function pathsOf(value: Json, prefix: string[] = []): string[][] {
  const paths = [prefix];
  if (typeof value === "object" && value !== null) {
    for (const [key, inner] of Object.entries(value)) paths.push(...pathsOf(inner, [...prefix, key]));
  }
  return paths;
}

/** A deep copy of `value` with one value at a random path removed, replaced, or given an extra key. */
function mutate(random: Random, value: Json): Json {
  const copy = structuredClone(value);
  const path = random.pick(pathsOf(copy));
  if (path.length === 0) return random.pick(weird);
  let parent = copy as Record<string, Json>;
  for (const key of path.slice(0, -1)) parent = parent[key] as Record<string, Json>;
  const last = path.at(-1)!;
  const target = parent[last]!;
  const action = random.int(3);
  if (action === 0 && !Array.isArray(parent)) delete parent[last];
  else if (action === 1 && typeof target === "object" && target !== null && !Array.isArray(target)) {
    (target as Record<string, Json>)[random.pick(["extra", "op", "ballot", "json", "joint", "expiresAt"])] =
      random.pick(
        weird,
      );
  } else parent[last] = random.pick(weird);
  return copy;
}

function sameJudgement(body: Json, schema: typeof PaxosRequest | typeof PaxosReply, checked: {
  safeParse(value: unknown): { success: boolean; data?: unknown };
}): boolean {
  const expected = schema.safeParse(body);
  const actual = checked.safeParse(body);
  assert.equal(actual.success, expected.success, `judged apart: ${JSON.stringify(body)}`);
  if (expected.success) {
    assert.deepEqual(actual.data, expected.data, `different output: ${JSON.stringify(body)}`);
  }
  return expected.success;
}

Deno.test(
  "paxos_fast: usual requests are checked without the schema, exactly as the schema checks them",
  () => {
    const random = Random.fromEnv("paxos fast requests");
    let fast = 0;
    let accepted = 0;
    for (let round = 0; round < 3_000; round += 1) {
      const items = Array.from({ length: 1 + random.int(4) }, () => item(random));
      const body: Json = { items };
      if (usualPaxosItems(body) !== undefined) fast += 1;
      assert.ok(sameJudgement(body, PaxosRequest, PaxosRequestChecked), "a generated message is valid");
      for (let mutation = 0; mutation < 4; mutation += 1) {
        if (sameJudgement(mutate(random, body), PaxosRequest, PaxosRequestChecked)) {
          accepted += 1;
        }
      }
    }
    assert.ok(fast > 300, `the fast path took ${fast} of 3000 valid messages`);
    assert.ok(accepted > 100 && accepted < 10_000, `mutations judged valid: ${accepted}`);
  },
);

Deno.test(
  "paxos_fast: usual replies are checked without the schema, exactly as the schema checks them",
  () => {
    const random = Random.fromEnv("paxos fast replies");
    const results: Json[] = [
      { result: "accepted" },
      { result: "noted" },
      { result: "refused", promised: { counter: 4, node: "127.0.0.1:1" } },
      { result: "misplaced" },
    ];
    let fast = 0;
    for (let round = 0; round < 2_000; round += 1) {
      const body: Json = {
        results: Array.from({ length: random.int(5) }, () => random.pick(results.slice(0, 2))),
      };
      if (usualPaxosResults(body) !== undefined) fast += 1;
      assert.ok(sameJudgement(body, PaxosReply, PaxosReplyChecked));
      const other: Json = { results: Array.from({ length: 1 + random.int(4) }, () => random.pick(results)) };
      sameJudgement(other, PaxosReply, PaxosReplyChecked);
      for (let mutation = 0; mutation < 3; mutation += 1) {
        sameJudgement(mutate(random, other), PaxosReply, PaxosReplyChecked);
      }
    }
    assert.equal(fast, 2_000, "every reply of accepts and notices takes the fast path");
  },
);
