import { z } from "zod";
import { assert } from "../util/assert.ts";
import { InvalidRequestError } from "../util/errors.ts";
import { isJsonObject, scanJson } from "../util/json.ts";

/** Longest filter text in UTF-8 bytes, unless the caller gives another `bytesMax`. */
export const filterBytesMax = 4 * 1024;
/** Deepest nesting of `[` and `{` in a filter text: bounds every walk over it before `JSON.parse`. */
export const filterJsonDepthMax = 32;
/** Most comparisons in one filter: each operator of a field, and each plain equality, is one. */
export const filterClausesMax = 64;
/** Most values in one `$in` or `$nin` list. */
export const filterInCountMax = 256;
/** Most segments of one field path (`a.b.c` has 3). */
export const filterPathSegmentsMax = 16;
/** Deepest nesting of `$or`: a top-level `$or` is 1, an `$or` inside one of its items 2, and so on. */
export const filterOrDepthMax = 4;

/** What a filter looks at: a record's key, its owner, and its value (`undefined` when it has none). */
export interface FilterRecord {
  readonly key: string;
  readonly owner: string;
  readonly value: unknown;
}

/** A parsed, validated and compiled filter (see `src/filter/mod.ts` for the language). */
export interface Filter {
  /**
   * The canonical form of the filter, itself a valid filter text of the same meaning: every plain
   * equality written as `{"$eq": ...}`, keys sorted (also inside constant objects), `$in`/`$nin` values and
   * `$or` items sorted and deduplicated. Filters of the same meaning written differently in these ways
   * have the same text, so subscribers with the same filter can share one evaluation. It may be longer
   * than the text it came from.
   */
  readonly text: string;
  /** Whether `record` passes the filter. Never throws on any record. */
  matches(record: FilterRecord): boolean;
}

/** Options of {@linkcode parseFilter}. */
export interface FilterOptions {
  /** Longest filter text in UTF-8 bytes. @default 4096 ({@linkcode filterBytesMax}) */
  bytesMax?: number;
}

type Operator = "$eq" | "$ne" | "$gt" | "$gte" | "$lt" | "$lte" | "$in" | "$nin" | "$exists" | "$prefix";
type ValueTest = (value: unknown) => boolean;
type RecordTest = (record: FilterRecord) => boolean;
/** A compiled part of a filter: its canonical text and its test. */
interface Compiled<Test> {
  text: string;
  test: Test;
}
/** Where the walk is: the message prefix naming the place, the `$or` depth and the clauses counted. */
interface Walk {
  at: string;
  orDepth: number;
  budget: { clauseCount: number };
}

const comparable = z.union([z.number(), z.string()]);
const valueList = z.array(z.json()).min(1).max(filterInCountMax);
/** The operand each operator takes, validated with zod. */
const operandSchemas = {
  $eq: z.json(),
  $ne: z.json(),
  $gt: comparable,
  $gte: comparable,
  $lt: comparable,
  $lte: comparable,
  $in: valueList,
  $nin: valueList,
  $exists: z.boolean(),
  $prefix: z.string(),
} as const satisfies Record<Operator, z.ZodType>;
/** What each operator's operand must be, for messages. */
const operandNeeds: Record<Operator, string> = {
  $eq: "a JSON value",
  $ne: "a JSON value",
  $gt: "a number or string",
  $gte: "a number or string",
  $lt: "a number or string",
  $lte: "a number or string",
  $in: "a non-empty array of JSON values",
  $nin: "a non-empty array of JSON values",
  $exists: "true or false",
  $prefix: "a string",
};
const utf8 = new TextEncoder();
/** A path segment that may index an array: a canonical non-negative integer of at most 9 digits. */
const indexSegment = /^(?:0|[1-9][0-9]{0,8})$/;

/**
 * Parses the text of a `where=` parameter (already URL-decoded) into a {@linkcode Filter}, compiled once
 * so that {@linkcode Filter.matches} walks no text and parses nothing. Checks the size, then the nesting
 * of the text, before `JSON.parse` and before any walk over it; every bound is checked before the work it
 * bounds.
 *
 * @throws {InvalidRequestError} naming the problem and where it is, for any malformed filter: not JSON,
 * not an object, empty, an unknown operator, an operand of the wrong type, or over a bound (bytes,
 * nesting, clauses, `$in` length, path segments, `$or` depth).
 */
export function parseFilter(text: string, options: FilterOptions = {}): Filter {
  const bytesMax = options.bytesMax ?? filterBytesMax;
  assert(Number.isSafeInteger(bytesMax) && bytesMax > 0, "bytesMax is a positive integer");
  // At most 3 UTF-8 bytes per UTF-16 code unit: only a long text needs encoding to be measured.
  if (text.length * 3 > bytesMax) {
    const bytes = utf8.encode(text).length;
    if (bytes > bytesMax) throw new InvalidRequestError(`where is ${bytes} bytes, the limit is ${bytesMax}`);
  }
  const scan = scanJson(text);
  if (scan.depth > filterJsonDepthMax) {
    throw new InvalidRequestError(`where is nested ${scan.depth} deep, the limit is ${filterJsonDepthMax}`);
  }
  if (scan.inexactNumber !== undefined) {
    throw new InvalidRequestError(
      `where: the number at index ${scan.inexactNumber.index} does not fit a double ` +
        `(${scan.inexactNumber.kind})`,
    );
  }
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (error) {
    throw new InvalidRequestError(`where is not JSON: ${(error as Error).message}`, { cause: error });
  }
  const compiled = compileAll(document, { at: "where", orDepth: 0, budget: { clauseCount: 0 } });
  return { text: compiled.text, matches: compiled.test };
}

/**
 * The record a filter sees in the stored JSON text of a VersionedValue
 * (`{"value":...,"version":n,"timestamp":t,"owner":"o"}`), parsed once: parse a change's text once and
 * evaluate every filter on the result. A text without `owner` (a tombstone's) gives the owner `""`; one
 * without `value` gives a record whose every field is missing.
 */
export function recordOfJson(key: string, json: string): FilterRecord {
  const parsed: unknown = JSON.parse(json);
  assert(isJsonObject(parsed), "a stored VersionedValue is a JSON object");
  const owner = parsed.owner;
  return { key, owner: typeof owner === "string" ? owner : "", value: parsed.value };
}

/**
 * A filter object: its fields ANDed with its `$or`. Recursion is bounded: the text's nesting was checked
 * before parsing, and each `$or` level is checked against {@linkcode filterOrDepthMax} before descending.
 */
function compileAll(node: unknown, walk: Walk): Compiled<RecordTest> {
  if (!isJsonObject(node)) {
    throw new InvalidRequestError(`${walk.at} must be a JSON object of fields, got ${kindOf(node)}`);
  }
  const names = Object.keys(node).sort(compareText);
  if (names.length === 0) {
    throw new InvalidRequestError(`${walk.at} is an empty object: name at least one field`);
  }
  const parts: string[] = [];
  const tests: RecordTest[] = [];
  for (const name of names) {
    const part = name === "$or" ? compileOr(node[name], walk) : compileField(name, node[name], walk);
    parts.push(`${JSON.stringify(name)}:${part.text}`);
    tests.push(part.test);
  }
  return { text: `{${parts.join(",")}}`, test: allOf(tests) };
}

/** `"$or": [filter, ...]`: any item. Items are sorted and deduplicated by their canonical text. */
function compileOr(list: unknown, walk: Walk): Compiled<RecordTest> {
  const orDepth = walk.orDepth + 1;
  if (orDepth > filterOrDepthMax) {
    throw new InvalidRequestError(
      `${walk.at}: "$or" is nested ${orDepth} deep, the limit is ${filterOrDepthMax}`,
    );
  }
  const items = z.array(z.unknown()).min(1).safeParse(list);
  if (!items.success) {
    const got = Array.isArray(list) ? "an empty array" : kindOf(list);
    throw new InvalidRequestError(`${walk.at}: "$or" needs a non-empty array of filters, got ${got}`);
  }
  const byText = new Map<string, RecordTest>();
  items.data.forEach((item, index) => {
    const at = walk.at === "where" ? `where: $or[${index}]` : `${walk.at}.$or[${index}]`;
    const compiled = compileAll(item, { at, orDepth, budget: walk.budget });
    byText.set(compiled.text, compiled.test);
  });
  const texts = [...byText.keys()].sort(compareText);
  return { text: `[${texts.join(",")}]`, test: anyOf(texts.map((text) => byText.get(text)!)) };
}

/** One field: a plain JSON value (equality) or an object of operators, all of which must hold. */
function compileField(path: string, spec: unknown, walk: Walk): Compiled<RecordTest> {
  const get = compileGetter(path, walk);
  const at = `${walk.at}: field ${JSON.stringify(path)}`;
  const operators = isJsonObject(spec) && Object.keys(spec).some((name) => name.startsWith("$"))
    ? Object.keys(spec).sort(compareText)
    : undefined;
  const parts: string[] = [];
  const tests: ValueTest[] = [];
  for (const operator of operators ?? ["$eq"]) {
    walk.budget.clauseCount += 1;
    if (walk.budget.clauseCount > filterClausesMax) {
      throw new InvalidRequestError(
        `where has more than ${filterClausesMax} clauses, the limit is ${filterClausesMax}`,
      );
    }
    const operand = operators === undefined ? spec : (spec as Record<string, unknown>)[operator];
    const compiled = compileOperator(operator, operand, at);
    parts.push(`${JSON.stringify(operator)}:${compiled.text}`);
    tests.push(compiled.test);
  }
  const text = `{${parts.join(",")}}`;
  if (tests.length === 1) {
    const only = tests[0]!;
    return { text, test: (record) => only(get(record)) };
  }
  return {
    text,
    test: (record) => {
      const value = get(record);
      for (const test of tests) if (!test(value)) return false;
      return true;
    },
  };
}

/** The getter of a field path: `$key`, `$owner`, or dotted segments into the value. */
function compileGetter(path: string, walk: Walk): (record: FilterRecord) => unknown {
  if (path === "$key") return (record) => record.key;
  if (path === "$owner") return (record) => record.owner;
  if (path.startsWith("$")) {
    throw new InvalidRequestError(
      `${walk.at}: unknown operator ${JSON.stringify(path)} (a filter's names are field paths, ` +
        `"$key", "$owner" and "$or")`,
    );
  }
  const at = `${walk.at}: field ${JSON.stringify(path)}`;
  if (path.length === 0) throw new InvalidRequestError(`${at}: the path is empty`);
  const names = path.split(".");
  if (names.length > filterPathSegmentsMax) {
    throw new InvalidRequestError(
      `${at}: the path has ${names.length} segments, the limit is ${filterPathSegmentsMax}`,
    );
  }
  if (names.includes("")) throw new InvalidRequestError(`${at}: the path has an empty segment`);
  const segments = names.map((name) => ({ name, index: indexSegment.test(name) ? Number(name) : -1 }));
  if (segments.length === 1) {
    const only = segments[0]!;
    return (record) => memberOf(record.value, only);
  }
  return (record) => {
    let current = record.value;
    for (const segment of segments) {
      current = memberOf(current, segment);
      if (current === undefined) return undefined;
    }
    return current;
  };
}

/** The member `segment` names in `value`: an array's element by index, an object's own property. */
function memberOf(value: unknown, segment: { name: string; index: number }): unknown {
  if (typeof value !== "object" || value === null) return undefined;
  if (Array.isArray(value)) return segment.index >= 0 ? value[segment.index] : undefined;
  return Object.hasOwn(value, segment.name) ? (value as Record<string, unknown>)[segment.name] : undefined;
}

/** One operator with its operand, validated by its zod schema. */
function compileOperator(name: string, operand: unknown, at: string): Compiled<ValueTest> {
  if (!Object.hasOwn(operandSchemas, name)) {
    if (!name.startsWith("$")) {
      throw new InvalidRequestError(
        `${at}: ${JSON.stringify(name)} is not an operator; an object of operators holds nothing else ` +
          `(to match an object with names starting with "$", use {"$eq": {...}})`,
      );
    }
    throw new InvalidRequestError(`${at}: unknown operator ${JSON.stringify(name)}`);
  }
  const operator = name as Operator;
  const parsed = operandSchemas[operator].safeParse(operand);
  if (!parsed.success) {
    throw new InvalidRequestError(`${at}: ${operandProblem(operator, operand, parsed.error)}`);
  }
  switch (operator) {
    case "$eq":
      return { text: canonicalJson(operand), test: equalityTest(operand) };
    case "$ne": {
      const equal = equalityTest(operand);
      return { text: canonicalJson(operand), test: (value) => !equal(value) };
    }
    case "$gt":
    case "$gte":
    case "$lt":
    case "$lte":
      return { text: JSON.stringify(operand), test: orderTest(operator, operand as number | string) };
    case "$in":
    case "$nin":
      return membershipTest(operand as unknown[], { negated: operator === "$nin" });
    case "$exists":
      return {
        text: String(operand),
        test: operand === true ? (value) => value !== undefined : (value) => value === undefined,
      };
    case "$prefix": {
      const prefix = operand as string;
      return {
        text: JSON.stringify(prefix),
        test: (value) => typeof value === "string" && value.startsWith(prefix),
      };
    }
  }
}

/** The message for an operand its operator's schema refused. */
function operandProblem(operator: Operator, operand: unknown, error: z.ZodError): string {
  const issue = error.issues[0];
  if (Array.isArray(operand) && issue?.code === "too_big" && issue.path.length === 0) {
    return `operator "${operator}" holds ${operand.length} values, the limit is ${filterInCountMax}`;
  }
  const got = Array.isArray(operand) && operand.length === 0 ? "an empty array" : kindOf(operand);
  return `operator "${operator}" needs ${operandNeeds[operator]}, got ${got}`;
}

/** Deep JSON equality with a constant; a missing field (`undefined`) equals nothing. */
function equalityTest(constant: unknown): ValueTest {
  if (typeof constant !== "object" || constant === null) return (value) => value === constant;
  const text = canonicalJson(constant);
  const isArray = Array.isArray(constant);
  return (value) =>
    typeof value === "object" && value !== null && Array.isArray(value) === isArray &&
    canonicalJson(value) === text;
}

/** `$gt`/`$gte`/`$lt`/`$lte`: numbers with numbers, strings with strings (code-unit order), else false. */
function orderTest(operator: "$gt" | "$gte" | "$lt" | "$lte", bound: number | string): ValueTest {
  return typeof bound === "number"
    ? orderTestOf<number>({ operator, type: "number", bound })
    : orderTestOf<string>({ operator, type: "string", bound });
}

function orderTestOf<T extends number | string>(
  options: { operator: "$gt" | "$gte" | "$lt" | "$lte"; type: "number" | "string"; bound: T },
): ValueTest {
  const { type, bound } = options;
  switch (options.operator) {
    case "$gt":
      return (value) => typeof value === type && (value as T) > bound;
    case "$gte":
      return (value) => typeof value === type && (value as T) >= bound;
    case "$lt":
      return (value) => typeof value === type && (value as T) < bound;
    case "$lte":
      return (value) => typeof value === type && (value as T) <= bound;
  }
}

/** `$in` (or, negated, `$nin`): scalars looked up in a Set, objects and arrays by their canonical text. */
function membershipTest(list: readonly unknown[], options: { negated: boolean }): Compiled<ValueTest> {
  const scalars = new Set<unknown>();
  const composites = new Set<string>();
  const texts = new Set<string>();
  for (const item of list) {
    const text = canonicalJson(item);
    texts.add(text);
    if (typeof item === "object" && item !== null) composites.add(text);
    else scalars.add(item);
  }
  const contains = (value: unknown): boolean => {
    if (value === undefined) return false;
    if (typeof value !== "object" || value === null) return scalars.has(value);
    return composites.size > 0 && composites.has(canonicalJson(value));
  };
  const text = `[${[...texts].sort(compareText).join(",")}]`;
  return { text, test: options.negated ? (value) => !contains(value) : contains };
}

function allOf(tests: readonly RecordTest[]): RecordTest {
  if (tests.length === 1) return tests[0]!;
  return (record) => {
    for (const test of tests) if (!test(record)) return false;
    return true;
  };
}

function anyOf(tests: readonly RecordTest[]): RecordTest {
  if (tests.length === 1) return tests[0]!;
  return (record) => {
    for (const test of tests) if (test(record)) return true;
    return false;
  };
}

/** Code-unit order, the order `<` gives strings (not the locale's). */
function compareText(left: string, right: string): number {
  return left < right ? -1 : left > right ? 1 : 0;
}

/** `null`, `array`, `object`, `string`, `number` or `boolean`: a JSON value's kind, for messages. */
function kindOf(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  return typeof value;
}

/** Marks text to emit on the stack of {@linkcode canonicalJson}, apart from values still to write. */
class Emit {
  constructor(readonly text: string) {}
}

/**
 * The canonical JSON text of a JSON value: object keys sorted by code unit, no white space. Iterative,
 * so a deeply nested record costs memory on the heap, not stack frames; two values are deeply equal
 * (objects in any key order) exactly when their canonical texts are equal.
 */
export function canonicalJson(value: unknown): string {
  if (typeof value !== "object" || value === null) return JSON.stringify(value);
  const out: string[] = [];
  const stack: unknown[] = [value];
  // Bounded by the size of `value`: each member is pushed once, with at most one Emit beside it.
  while (stack.length > 0) {
    const item = stack.pop();
    if (item instanceof Emit) {
      out.push(item.text);
    } else if (typeof item !== "object" || item === null) {
      out.push(JSON.stringify(item));
    } else if (Array.isArray(item)) {
      out.push("[");
      stack.push(new Emit("]"));
      for (let index = item.length - 1; index >= 0; index -= 1) {
        stack.push(item[index]);
        if (index > 0) stack.push(new Emit(","));
      }
    } else {
      out.push("{");
      stack.push(new Emit("}"));
      const record = item as Record<string, unknown>;
      const names = Object.keys(record).sort(compareText);
      for (let index = names.length - 1; index >= 0; index -= 1) {
        stack.push(record[names[index]!]);
        stack.push(new Emit(`${index > 0 ? "," : ""}${JSON.stringify(names[index])}:`));
      }
    }
  }
  return out.join("");
}
