// Goal: the `where=` filter language of src/filter (SPEC §3, §4b): every operator's meaning, every
// malformed filter refused with a message naming the problem and its place, every bound at its max and
// max + 1, one canonical text for equivalent filters, and `matches` agreeing with a plain reference.
// Method: tables of filters and records; a seeded randomized comparison (KV_TEST_SEED replays it) of
// `matches` against a small recursive evaluator written here, independently of the compiled one.
import assert from "node:assert/strict";
import {
  canonicalJson,
  filterBytesMax,
  filterClausesMax,
  filterInCountMax,
  filterJsonDepthMax,
  filterOrDepthMax,
  filterPathSegmentsMax,
  type FilterRecord,
  parseFilter,
  recordOfJson,
} from "../../../src/filter/mod.ts";
import { InvalidRequestError } from "../../../src/util/errors.ts";
import { Random } from "../../helpers/seed.ts";

const rec = (value: unknown, key = "k1", owner = "alice"): FilterRecord => ({ key, owner, value });

/** The keys of `records` whose record `where` matches. */
function matching(where: unknown, records: Record<string, unknown>): string[] {
  const filter = parseFilter(JSON.stringify(where));
  return Object.entries(records).filter(([key, value]) => filter.matches(rec(value, key))).map(([key]) =>
    key
  );
}

/** Asserts `text` is refused with an `invalid_request` whose message holds every one of `words`. */
function assertRefused(text: string, words: readonly string[], options: { bytesMax?: number } = {}) {
  assert.throws(
    () => parseFilter(text, options),
    (error: unknown) => {
      assert.ok(error instanceof InvalidRequestError, `${text}: ${String(error)}`);
      assert.equal(error.code, "invalid_request");
      for (const word of words) assert.ok(error.message.includes(word), `"${error.message}" lacks "${word}"`);
      return true;
    },
    text,
  );
}

const people: Record<string, unknown> = {
  ann: { age: 30, name: "Ann", tags: ["a", "b"], address: { city: "Oslo", zip: "0150" } },
  bob: { age: 17, name: "Bob", tags: ["b"], address: { city: "Bergen" } },
  cid: { age: "30", name: "cid", tags: [], nick: null },
  dee: { age: 30.0, name: "Dee", address: { zip: "0150", city: "Oslo" } },
  eve: [1, 2, 3],
  fay: "just a string",
};

Deno.test(
  "parseFilter() equality: plain values and $eq are deep JSON equality, objects in any key order",
  () => {
    assert.deepEqual(matching({ age: 30 }, people), ["ann", "dee"], "30 equals 30.0, not the string");
    assert.deepEqual(matching({ age: { $eq: "30" } }, people), ["cid"]);
    assert.deepEqual(matching({ address: { zip: "0150", city: "Oslo" } }, people), ["ann", "dee"]);
    assert.deepEqual(matching({ address: { city: "Oslo" } }, people), [], "an object equals only whole");
    assert.deepEqual(matching({ tags: ["a", "b"] }, people), ["ann"], "arrays in order");
    assert.deepEqual(matching({ tags: ["b", "a"] }, people), []);
    assert.deepEqual(matching({ tags: [] }, people), ["cid"]);
    assert.deepEqual(matching({ tags: {} }, people), [], "an empty array is not an empty object");
    assert.deepEqual(matching({ nick: null }, people), ["cid"], "null equals only a present null");
    assert.deepEqual(matching({ tags: "b" }, people), [], "no implicit walk into arrays");
    assert.deepEqual(matching({ age: { $eq: { $gt: 1 } } }, { x: { age: { $gt: 1 } } }), ["x"]);
  },
);

Deno.test("parseFilter() $ne and $nin match a missing field; $eq and $in never do", () => {
  assert.deepEqual(matching({ age: { $ne: 30 } }, people), ["bob", "cid", "eve", "fay"]);
  assert.deepEqual(matching({ nick: { $ne: null } }, people), ["ann", "bob", "dee", "eve", "fay"]);
  assert.deepEqual(matching({ age: { $in: [17, "30"] } }, people), ["bob", "cid"]);
  assert.deepEqual(matching({ age: { $nin: [17, "30"] } }, people), ["ann", "dee", "eve", "fay"]);
  assert.deepEqual(matching({ address: { $in: [{ city: "Bergen" }, 1] } }, people), ["bob"]);
  assert.deepEqual(matching({ tags: { $in: [["b"], []] } }, people), ["bob", "cid"]);
  assert.deepEqual(matching({ tags: { $nin: [["b"], []] } }, people), ["ann", "dee", "eve", "fay"]);
});

Deno.test("parseFilter() $gt/$gte/$lt/$lte compare numbers with numbers and strings with strings", () => {
  assert.deepEqual(matching({ age: { $gt: 17 } }, people), ["ann", "dee"], "the string 30 is not > 17");
  assert.deepEqual(matching({ age: { $gte: 17 } }, people), ["ann", "bob", "dee"]);
  assert.deepEqual(matching({ age: { $lt: 30 } }, people), ["bob"]);
  assert.deepEqual(matching({ age: { $lte: 30 } }, people), ["ann", "bob", "dee"]);
  assert.deepEqual(matching({ age: { $gt: "2" } }, people), ["cid"], "strings only with strings");
  assert.deepEqual(matching({ name: { $gte: "B", $lt: "D" } }, people), ["bob"], "code-unit order: c > D");
  assert.deepEqual(matching({ name: { $gt: "Z" } }, people), ["cid"]);
  assert.deepEqual(matching({ nick: { $lt: 1 } }, people), [], "null is neither");
  const mixed = { a: { v: 1 }, b: { v: "1" }, c: { v: true }, d: { v: [1] }, e: { v: -0.5 } };
  assert.deepEqual(matching({ v: { $lt: 1 } }, mixed), ["e"]);
  assert.deepEqual(matching({ v: { $lte: 1 } }, mixed), ["a", "e"]);
});

Deno.test("parseFilter() $exists and $prefix", () => {
  assert.deepEqual(matching({ nick: { $exists: true } }, people), ["cid"], "a present null exists");
  assert.deepEqual(matching({ address: { $exists: false } }, people), ["cid", "eve", "fay"]);
  assert.deepEqual(matching({ name: { $prefix: "B" } }, people), ["bob"]);
  assert.deepEqual(matching({ name: { $prefix: "" } }, people), ["ann", "bob", "cid", "dee"]);
  assert.deepEqual(matching({ age: { $prefix: "3" } }, people), ["cid"], "strings only");
  assert.deepEqual(matching({ tags: { $prefix: "a" } }, people), []);
});

Deno.test("parseFilter() paths: dotted into objects, numeric segments index arrays, $key and $owner", () => {
  assert.deepEqual(matching({ "address.city": "Oslo" }, people), ["ann", "dee"]);
  assert.deepEqual(matching({ "address.zip": { $exists: false } }, people), ["bob", "cid", "eve", "fay"]);
  assert.deepEqual(matching({ "tags.0": "b" }, people), ["bob"]);
  assert.deepEqual(matching({ "tags.1": "b" }, people), ["ann"]);
  assert.deepEqual(matching({ "0": 1 }, people), ["eve"], "the whole value may be an array");
  assert.deepEqual(matching({ "00": 1 }, people), [], "a leading zero is not an index");
  assert.deepEqual(matching({ "2": { $exists: true } }, people), ["eve"]);
  assert.deepEqual(matching({ "x.0": 5 }, { a: { x: { "0": 5 } }, b: { x: [5] } }), ["a", "b"]);
  assert.deepEqual(
    matching({ "a.$b": 1 }, { a: { a: { $b: 1 } } }),
    ["a"],
    "later segments may start with $",
  );
  assert.deepEqual(matching({ constructor: { $exists: true } }, people), [], "own members only");
  assert.deepEqual(matching({ "name.length": 3 }, people), [], "no members of strings");
  assert.deepEqual(matching({ length: 3 }, people), [], "no length of arrays");
  const filter = parseFilter('{"$key":{"$prefix":"user/"},"$owner":{"$in":["alice","bob"]}}');
  assert.equal(filter.matches(rec(1, "user/1", "bob")), true);
  assert.equal(filter.matches(rec(1, "user/1", "carol")), false);
  assert.equal(filter.matches(rec(1, "post/1", "alice")), false);
  assert.equal(parseFilter('{"$key":"k1"}').matches(rec(undefined, "k1")), true, "a record without a value");
  assert.equal(parseFilter('{"a":{"$exists":false}}').matches(rec(undefined)), true);
});

Deno.test("parseFilter() fields are ANDed, $or ORs, and $or beside fields is ANDed with them", () => {
  assert.deepEqual(matching({ age: 30, name: "Ann" }, people), ["ann"]);
  assert.deepEqual(matching({ $or: [{ name: "Bob" }, { age: "30" }] }, people), ["bob", "cid"]);
  assert.deepEqual(matching({ age: 30, $or: [{ name: "Ann" }, { name: "Bob" }] }, people), ["ann"]);
  assert.deepEqual(
    matching({ $or: [{ $or: [{ name: "Bob" }, { name: "Dee" }] }, { "tags.0": "a" }] }, people),
    ["ann", "bob", "dee"],
  );
});

Deno.test(
  "parseFilter() refuses malformed filters with invalid_request naming the problem and its place",
  () => {
    const cases: Array<[string, string[]]> = [
      ["not json", ["where is not JSON"]],
      ["", ["where is not JSON"]],
      ["[]", ["where must be a JSON object", "got array"]],
      ["3", ["where must be a JSON object", "got number"]],
      ["null", ["got null"]],
      ["{}", ["where is an empty object"]],
      ['{"$foo":1}', ['unknown operator "$foo"']],
      ['{"$and":[{"a":1}]}', ['unknown operator "$and"']],
      ['{"a":{"$foo":1}}', ['field "a"', 'unknown operator "$foo"']],
      ['{"a":{"$gt":1,"b":2}}', ['field "a"', '"b" is not an operator']],
      ['{"age":{"$gt":{}}}', ['field "age"', 'operator "$gt" needs a number or string, got object']],
      ['{"age":{"$gte":null}}', ['operator "$gte" needs a number or string, got null']],
      ['{"age":{"$lt":true}}', ['operator "$lt" needs a number or string, got boolean']],
      ['{"age":{"$lte":[1]}}', ['operator "$lte" needs a number or string, got array']],
      ['{"a":{"$in":[]}}', ['operator "$in" needs a non-empty array', "got an empty array"]],
      ['{"a":{"$in":1}}', ['operator "$in" needs a non-empty array', "got number"]],
      ['{"a":{"$nin":{}}}', ['operator "$nin" needs a non-empty array', "got object"]],
      ['{"a":{"$exists":"yes"}}', ['operator "$exists" needs true or false, got string']],
      ['{"a":{"$exists":1}}', ['operator "$exists" needs true or false, got number']],
      ['{"a":{"$prefix":3}}', ['operator "$prefix" needs a string, got number']],
      ['{"$or":{}}', ['"$or" needs a non-empty array of filters, got object']],
      ['{"$or":[]}', ['"$or" needs a non-empty array', "got an empty array"]],
      ['{"$or":[1]}', ["where: $or[0] must be a JSON object", "got number"]],
      ['{"$or":[{"a":1},{}]}', ["where: $or[1] is an empty object"]],
      ['{"$or":[{"$or":[{"a":{"$gt":[]}}]}]}', ['where: $or[0].$or[0]: field "a": operator "$gt"']],
      ['{"":1}', ['field ""', "the path is empty"]],
      ['{"a..b":1}', ['field "a..b"', "empty segment"]],
      ['{"a.":1}', ["empty segment"]],
      ['{"$key.x":1}', ['unknown operator "$key.x"']],
      ['{"a":1e400}', ["does not fit a double", "overflow"]],
      ['{"a":1e-400}', ["does not fit a double", "underflow"]],
    ];
    for (const [text, words] of cases) assertRefused(text, words);
  },
);

Deno.test("parseFilter() bounds the text's bytes at bytesMax and bytesMax + 1, in UTF-8 bytes", () => {
  const padded = (bytes: number, char = "x") => {
    const frame = '{"a":""}';
    const charBytes = new TextEncoder().encode(char).length;
    const count = Math.floor((bytes - frame.length) / charBytes);
    const text = `{"a":"${char.repeat(count)}${"x".repeat(bytes - frame.length - count * charBytes)}"}`;
    assert.equal(new TextEncoder().encode(text).length, bytes);
    return text;
  };
  assert.equal(parseFilter(padded(filterBytesMax)).matches(rec({ a: 1 })), false);
  assertRefused(padded(filterBytesMax + 1), [`where is ${filterBytesMax + 1} bytes, the limit is 4096`]);
  parseFilter(padded(filterBytesMax, "é"));
  assertRefused(padded(filterBytesMax + 1, "é"), [`${filterBytesMax + 1} bytes`]);
  parseFilter(padded(100), { bytesMax: 100 });
  assertRefused(padded(101), ["where is 101 bytes, the limit is 100"], { bytesMax: 100 });
});

Deno.test("parseFilter() bounds clauses, $in values, path segments, $or nesting and text nesting", () => {
  const fields = (count: number) =>
    JSON.stringify(Object.fromEntries(Array.from({ length: count }, (_, index) => [`f${index}`, index])));
  parseFilter(fields(filterClausesMax));
  assertRefused(fields(filterClausesMax + 1), [`more than ${filterClausesMax} clauses`]);
  const operators = JSON.stringify({ a: { $gt: 1, $lt: 9 }, $or: [{ b: { $exists: true, $ne: 2 } }] });
  assert.equal(parseFilter(operators).text.length > 0, true, "each operator is a clause, across $or");

  const inList = (count: number) =>
    JSON.stringify({ a: { $in: Array.from({ length: count }, (_, i) => i) } });
  assert.equal(parseFilter(inList(filterInCountMax)).matches(rec({ a: filterInCountMax - 1 })), true);
  assertRefused(inList(filterInCountMax + 1), [
    `"$in" holds ${filterInCountMax + 1} values, the limit is 256`,
  ]);
  assertRefused(JSON.stringify({ a: { $nin: Array(filterInCountMax + 1).fill(0) } }), [`"$nin" holds 257`]);

  const path = (count: number) => Array.from({ length: count }, () => "p").join(".");
  const deep = Array.from({ length: filterPathSegmentsMax - 1 }).reduce<unknown>(
    (inner) => ({ p: inner }),
    7,
  );
  assert.equal(
    parseFilter(JSON.stringify({ [path(filterPathSegmentsMax)]: 7 })).matches(rec({ p: deep })),
    true,
  );
  assertRefused(JSON.stringify({ [path(filterPathSegmentsMax + 1)]: 7 }), ["17 segments, the limit is 16"]);

  const ors = (depth: number): unknown => depth === 0 ? { a: 1 } : { $or: [ors(depth - 1)] };
  assert.equal(parseFilter(JSON.stringify(ors(filterOrDepthMax))).matches(rec({ a: 1 })), true);
  assertRefused(JSON.stringify(ors(filterOrDepthMax + 1)), ['"$or" is nested 5 deep, the limit is 4']);

  // `{"a":{"$eq":[[...]]}}`: 2 levels of objects, then arrays.
  const nested = (depth: number) => `{"a":{"$eq":${"[".repeat(depth - 2)}${"]".repeat(depth - 2)}}}`;
  parseFilter(nested(filterJsonDepthMax));
  assertRefused(nested(filterJsonDepthMax + 1), [`nested ${filterJsonDepthMax + 1} deep, the limit is 32`]);
  assertRefused("[".repeat(100_000), ["nested 100000 deep"], { bytesMax: 1 << 20 });
  assertRefused("[".repeat(100_000), ["where is 100000 bytes"], {});
});

Deno.test("Filter.text is one canonical text for filters of the same meaning, and parses to itself", () => {
  const groups: string[][] = [
    ['{"a":1,"b":2}', '{"b":2,"a":1}', '{"b":{"$eq":2},"a":{"$eq":1}}', '{"a":1.0,"b":2e0}'],
    ['{"a":{"$gt":1,"$lt":5}}', '{"a":{"$lt":5,"$gt":1}}'],
    ['{"a":{"x":1,"y":[{"p":1,"q":2}]}}', '{"a":{"$eq":{"y":[{"q":2,"p":1}],"x":1}}}'],
    ['{"a":{"$in":[3,1,2]}}', '{"a":{"$in":[1,2,3,3,1]}}'],
    ['{"a":{"$nin":[{"x":1,"y":2},"s"]}}', '{"a":{"$nin":["s",{"y":2,"x":1}]}}'],
    ['{"$or":[{"a":1},{"b":2}]}', '{"$or":[{"b":2},{"a":1},{"b":{"$eq":2}}]}'],
    ['{"z":true,"$or":[{"$key":"k"}]}', '{"$or":[{"$key":{"$eq":"k"}}],"z":{"$eq":true}}'],
  ];
  const seen = new Set<string>();
  for (const group of groups) {
    const texts = group.map((text) => parseFilter(text).text);
    for (const text of texts) assert.equal(text, texts[0], group.join("  vs  "));
    assert.equal(parseFilter(texts[0]!).text, texts[0], "the canonical text is its own canonical text");
    assert.ok(!seen.has(texts[0]!), "different meanings keep different texts");
    seen.add(texts[0]!);
  }
  assert.equal(parseFilter('{"b":1,"a":{"$in":[2,1]}}').text, '{"a":{"$in":[1,2]},"b":{"$eq":1}}');
  assert.notEqual(parseFilter('{"a":[1,2]}').text, parseFilter('{"a":[2,1]}').text, "arrays keep order");
});

Deno.test("recordOfJson() reads key, owner and value of a VersionedValue text, and of a tombstone's", () => {
  const json = '{"value":{"n":3},"version":2,"timestamp":5,"owner":"bob"}';
  assert.deepEqual(recordOfJson("k", json), { key: "k", owner: "bob", value: { n: 3 } });
  assert.equal(parseFilter('{"n":3,"$owner":"bob"}').matches(recordOfJson("k", json)), true);
  const tombstone = recordOfJson("k", '{"key":"k","version":3,"timestamp":6}');
  assert.deepEqual(tombstone, { key: "k", owner: "", value: undefined });
  assert.equal(parseFilter('{"n":{"$exists":true}}').matches(tombstone), false);
});

Deno.test("canonicalJson() sorts keys at every depth without recursion", () => {
  assert.equal(canonicalJson({ b: [{ d: 1, c: null }], a: "x" }), '{"a":"x","b":[{"c":null,"d":1}]}');
  assert.equal(canonicalJson([]), "[]");
  assert.equal(canonicalJson({}), "{}");
  assert.equal(canonicalJson("é\u2028"), JSON.stringify("é\u2028"));
  let deep: unknown = 0;
  for (let index = 0; index < 100_000; index += 1) deep = [deep];
  assert.equal(canonicalJson(deep).length, 200_001);
});

// A plain, recursive evaluator of the language, written from the description in src/filter/mod.ts.
const missing = Symbol("missing");

function referenceGet(record: FilterRecord, path: string): unknown {
  if (path === "$key") return record.key;
  if (path === "$owner") return record.owner;
  let current: unknown = record.value === undefined ? missing : record.value;
  for (const segment of path.split(".")) {
    if (Array.isArray(current) && /^(0|[1-9]\d*)$/.test(segment) && Number(segment) < current.length) {
      current = current[Number(segment)];
    } else if (
      current !== null && typeof current === "object" && !Array.isArray(current) &&
      Object.keys(current).includes(segment)
    ) {
      current = (current as Record<string, unknown>)[segment];
    } else {
      return missing;
    }
  }
  return current;
}

function referenceEqual(left: unknown, right: unknown): boolean {
  if (Array.isArray(left) || Array.isArray(right)) {
    return Array.isArray(left) && Array.isArray(right) && left.length === right.length &&
      left.every((item, index) => referenceEqual(item, right[index]));
  }
  if (typeof left === "object" && left !== null && typeof right === "object" && right !== null) {
    const leftKeys = Object.keys(left);
    const rightKeys = Object.keys(right);
    return leftKeys.length === rightKeys.length && leftKeys.every((key) =>
      rightKeys.includes(key) &&
      referenceEqual((left as Record<string, unknown>)[key], (right as Record<string, unknown>)[key])
    );
  }
  return left === right;
}

function referenceOperator(operator: string, operand: unknown, value: unknown): boolean {
  const present = value !== missing;
  const sameKind = present && (typeof value === "number" || typeof value === "string") &&
    typeof value === typeof operand;
  const order = sameKind ? ((value as number) < (operand as number) ? -1 : value === operand ? 0 : 1) : NaN;
  const inList = () => (operand as unknown[]).some((item) => referenceEqual(item, value));
  if (operator === "$eq") return present && referenceEqual(value, operand);
  if (operator === "$ne") return !present || !referenceEqual(value, operand);
  if (operator === "$gt") return order === 1;
  if (operator === "$gte") return order === 1 || order === 0;
  if (operator === "$lt") return order === -1;
  if (operator === "$lte") return order === -1 || order === 0;
  if (operator === "$in") return present && inList();
  if (operator === "$nin") return !present || !inList();
  if (operator === "$exists") return present === operand;
  if (operator === "$prefix") return typeof value === "string" && value.startsWith(operand as string);
  throw new Error(`no operator ${operator}`);
}

function referenceMatches(filter: Record<string, unknown>, record: FilterRecord): boolean {
  return Object.entries(filter).every(([name, spec]) => {
    if (name === "$or") {
      return (spec as Record<string, unknown>[]).some((item) => referenceMatches(item, record));
    }
    const value = referenceGet(record, name);
    const isOperators = spec !== null && typeof spec === "object" && !Array.isArray(spec) &&
      Object.keys(spec).some((key) => key.startsWith("$"));
    if (!isOperators) return referenceOperator("$eq", spec, value);
    return Object.entries(spec).every(([operator, operand]) => referenceOperator(operator, operand, value));
  });
}

const scalars: readonly unknown[] = [0, 1, 2, -1, 1.5, "", "a", "ab", "b", "B", true, false, null];
const composites: readonly unknown[] = [[], [1, 2], [2, 1], { x: 1, y: 2 }, { y: 2, x: 1 }, { x: 1 }, {}];
const paths = ["a", "b", "o.x", "o.y", "arr.0", "arr.1", "$key", "$owner", "missing"];

function randomValue(random: Random): unknown {
  return random.next() < 0.8 ? random.pick(scalars) : random.pick(composites);
}

function randomRecord(random: Random): FilterRecord {
  const value: Record<string, unknown> = {};
  for (const name of ["a", "b"]) if (random.next() < 0.8) value[name] = randomValue(random);
  if (random.next() < 0.7) {
    value.o = random.next() < 0.8 ? { x: randomValue(random), y: 1 } : randomValue(random);
  }
  if (random.next() < 0.7) value.arr = random.next() < 0.8 ? [randomValue(random)] : randomValue(random);
  const whole = random.next() < 0.1 ? random.pick([...scalars, ...composites]) : value;
  return { key: random.pick(["k1", "k2", "", "a"]), owner: random.pick(["alice", "bob", "a"]), value: whole };
}

function randomOperators(random: Random): Record<string, unknown> {
  const operators: Record<string, unknown> = {};
  const count = 1 + random.int(2);
  for (let index = 0; index < count; index += 1) {
    const operator = random.pick([
      "$eq",
      "$ne",
      "$gt",
      "$gte",
      "$lt",
      "$lte",
      "$in",
      "$nin",
      "$exists",
      "$prefix",
    ]);
    if (operator === "$gt" || operator === "$gte" || operator === "$lt" || operator === "$lte") {
      operators[operator] = random.pick([0, 1, 1.5, -1, "", "a", "ab", "b"]);
    } else if (operator === "$in" || operator === "$nin") {
      operators[operator] = Array.from({ length: 1 + random.int(3) }, () => randomValue(random));
    } else if (operator === "$exists") {
      operators[operator] = random.next() < 0.5;
    } else if (operator === "$prefix") {
      operators[operator] = random.pick(["", "a", "b", "k", "al"]);
    } else {
      operators[operator] = randomValue(random);
    }
  }
  return operators;
}

function randomFilter(random: Random, orDepth: number): Record<string, unknown> {
  const filter: Record<string, unknown> = {};
  const count = 1 + random.int(3);
  for (let index = 0; index < count; index += 1) {
    const path = random.pick(paths);
    const plain = random.next() < 0.3 && !(isObjectWithDollar(filter[path]));
    filter[path] = plain ? randomValue(random) : randomOperators(random);
  }
  if (orDepth < 2 && random.next() < 0.3) {
    filter.$or = Array.from({ length: 1 + random.int(3) }, () => randomFilter(random, orDepth + 1));
  }
  return filter;
}

function isObjectWithDollar(value: unknown): boolean {
  return value !== null && typeof value === "object" && Object.keys(value).some((key) => key.startsWith("$"));
}

Deno.test("Filter.matches() agrees with a plain reference evaluator on random filters and records", () => {
  const random = Random.fromEnv("filter reference");
  const records = Array.from({ length: 200 }, () => randomRecord(random));
  let matchCount = 0;
  for (let round = 0; round < 500; round += 1) {
    const where = randomFilter(random, 0);
    const filter = parseFilter(JSON.stringify(where));
    const again = parseFilter(filter.text);
    assert.equal(again.text, filter.text, `canonical text is stable (KV_TEST_SEED=${random.seed})`);
    for (const record of records) {
      const expected = referenceMatches(where, record);
      const context = `KV_TEST_SEED=${random.seed} where=${JSON.stringify(where)} record=${
        JSON.stringify(record)
      } text=${filter.text}`;
      assert.equal(filter.matches(record), expected, context);
      assert.equal(again.matches(record), expected, `canonical form: ${context}`);
      if (expected) matchCount += 1;
    }
  }
  assert.ok(matchCount > 1_000, `the random filters match some records (${matchCount})`);
  assert.ok(matchCount < 90_000, `and miss others (${matchCount})`);
});
