import { z } from "zod";
import {
  filterBytesMax,
  filterClausesMax,
  filterInCountMax,
  filterOrDepthMax,
  filterPathSegmentsMax,
} from "../filter/mod.ts";
import { InvalidRequestError, KvError } from "../util/errors.ts";
import { isJsonObject } from "../util/json.ts";
import { defaultLimits } from "../config/limits.ts";

const utf8 = new TextEncoder();

/** A table or key name was refused (SPEC §2). */
export class InvalidNameError extends KvError {
  constructor(message: string) {
    super("invalid_name", message);
  }
}

/** A table name reserved for the node itself (`_*`, `auth`). */
export class ReservedTableError extends KvError {
  constructor(table: string) {
    super(
      "reserved_table",
      `table "${table}" is reserved: names starting with "_" and "auth" cannot be used`,
    );
  }
}

/** Printable ASCII but "/": a name of only these needs no Unicode check and no normalization. */
const plainName = /^[\x20-\x2e\x30-\x7e]+$/;
// deno-lint-ignore no-control-regex
const controlOrSlash = /[\u0000-\u001f\u007f-\u009f/]/;
/**
 * Characters that draw nothing or only steer the text's direction, so two names that differ by them look
 * the same: Unicode's default-ignorable code points (ZWJ, ZWNJ, soft hyphen, variation selectors, ...)
 * and the bidirectional controls (most of which are default-ignorable too).
 */
const invisibleChar = /[\p{Default_Ignorable_Code_Point}\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/u;
const bidiControl = /^[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]$/;

/**
 * Decodes one raw path segment and checks it as a name (see {@linkcode checkName}); returns its NFC form.
 * A segment of printable ASCII takes `checkName`'s fast path: one regular expression and a length check.
 *
 * @throws {InvalidNameError}
 */
export function decodeName(
  raw: string,
  options: { what: "table" | "key" | "user"; bytesMax: number },
): string {
  let name = raw;
  // Without a "%" there is nothing to decode: reads skip decodeURIComponent on the common path.
  if (raw.includes("%")) {
    try {
      name = decodeURIComponent(raw);
    } catch {
      throw new InvalidNameError(`${options.what} name is not valid percent-encoded UTF-8`);
    }
  }
  return checkName(name, options);
}

/**
 * Checks a decoded name and returns its Unicode NFC form, so names that differ only in how their
 * characters are composed (`jose\u0301` and `josé`) are one name: 1 to `bytesMax` bytes of UTF-8 after
 * normalization, no `/`, no control character, no invisible (default-ignorable) or bidirectional
 * control character.
 *
 * @throws {InvalidNameError}
 */
export function checkName(
  name: string,
  options: { what: "table" | "key" | "user"; bytesMax: number },
): string {
  const { what, bytesMax } = options;
  if (name.length === 0) throw new InvalidNameError(`${what} name is empty`);
  if (plainName.test(name)) {
    if (name.length > bytesMax) {
      throw new InvalidNameError(`${what} name is ${name.length} bytes, the limit is ${bytesMax}`);
    }
    return name;
  }
  if (controlOrSlash.test(name)) {
    throw new InvalidNameError(`${what} name contains "/" or a control character`);
  }
  if (!name.isWellFormed()) throw new InvalidNameError(`${what} name is not valid UTF-8`);
  const normalized = name.normalize("NFC");
  const invisible = invisibleChar.exec(normalized)?.[0];
  if (invisible !== undefined) {
    const codePoint = `U+${invisible.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")}`;
    const kind = bidiControl.test(invisible)
      ? "a bidirectional control character"
      : "an invisible (default-ignorable) character";
    throw new InvalidNameError(
      `${what} name contains ${codePoint}, ${kind}: names that would look like another name are refused`,
    );
  }
  // At most 3 UTF-8 bytes per UTF-16 code unit: only a long name needs encoding to be measured.
  if (normalized.length * 3 > bytesMax) {
    const bytes = utf8.encode(normalized).length;
    if (bytes > bytesMax) {
      throw new InvalidNameError(
        `${what} name is ${bytes} bytes after NFC normalization, the limit is ${bytesMax}`,
      );
    }
  }
  return normalized;
}

/** A table the node keeps for itself (users): not reachable through, nor counted by, the KV routes. */
export function isInternalTable(table: string): boolean {
  return table.startsWith("_");
}

/** Decodes and checks a table name for the KV routes (reserved names refused). */
export function decodeTable(raw: string, bytesMax: number): string {
  return refuseReserved(decodeName(raw, { what: "table", bytesMax }));
}

/** A decoded table name (a query parameter's): a valid name, not reserved. */
export function checkTableName(name: string, bytesMax: number): string {
  return refuseReserved(checkName(name, { what: "table", bytesMax }));
}

/** `table`, unless it is reserved (`_...` and `auth`, SPEC §2). @throws {ReservedTableError} */
function refuseReserved(table: string): string {
  if (isInternalTable(table) || table === "auth") throw new ReservedTableError(table);
  return table;
}

/** `POST /auth/{user}` body. */
export const AuthBody = z.object({ secret: z.string().min(1).max(1024) });

/** Any JSON value. */
export const JsonValue = z.json();

/**
 * `ttl_secs` of a `PUT` or `PATCH` body (SPEC §2): the new state's lifetime in seconds, an integer from 1 to
 * `ttlSecsMax`; absent, the new state has none (a lifetime the key had is cleared).
 */
export const TtlSecs = z.number().int().min(1).max(defaultLimits.ttlSecsMax).describe(
  "the key expires this many seconds after the write (expires_at); absent: it never expires",
);

/**
 * `PUT` body. The route checks it with `valueOfBody` and `ttlSecsOfBody` (zod would copy the value); a test
 * holds them to the same verdicts.
 */
export const ValueBody = z.object({ value: JsonValue, ttl_secs: TtlSecs.optional() });

/** `PATCH` body: an object to merge (RFC 7396). Checked like `ValueBody`. */
export const MergePatchBody = z.object({
  value: z.record(z.string(), JsonValue),
  ttl_secs: TtlSecs.optional(),
});

/** `POST /{table}/keys` body: key names. Checked by `batchKeys`, which also counts and checks each name. */
export const KeyListBody = z.array(z.string());

/**
 * What `?where=` of a listing route says, for the OpenAPI document: the language is `src/filter/mod.ts`'s,
 * and `parseFilter` validates it.
 */
export const whereDescription = "Only records this filter matches: URL-encoded JSON, an " +
  "object of field paths to a JSON value (deep equality) or to an object of operators: $eq, $ne (any " +
  "JSON value), $gt, $gte, $lt, $lte (a number or a string: numbers compare with numbers, strings with " +
  "strings), $in, $nin (a non-empty array), $exists (true or false), $prefix (a string). Fields are " +
  'ANDed; {"$or": [filter, ...]} ORs, beside fields too. Paths are dotted into the value (a.b.c; a ' +
  "number indexes an array: tags.0); $key and $owner name the record's key and owner. A missing field " +
  "matches only $exists false, $ne and $nin. limit counts matching records; the answer may hold white " +
  "space where the node scanned past records that do not match. Malformed, or over a bound " +
  `(${filterBytesMax} bytes, ${filterClausesMax} clauses, ${filterInCountMax} values in $in, ` +
  `${filterPathSegmentsMax} path segments, $or ${filterOrDepthMax} deep): 400 naming the problem. ` +
  'Example: {"age":{"$gte":18},"$or":[{"$owner":"alice"},{"tags.0":"urgent"}]}';

/** `?limit=N&after=KEY&where=FILTER` of the listing routes. */
export const ListQuery = z.object({
  limit: z.string().regex(/^\d{1,9}$/, "limit must be a positive integer").transform(Number).optional()
    .describe("Most records answered (with where: most matching records), 1 to listCountMax"),
  after: z.string().optional().describe("Start after this key (the last key of the previous page)"),
  where: z.string().optional().describe(whereDescription),
});

/** Parses a body with a zod schema, turning failures into one `InvalidRequestError`. */
export function parseWith<T>(schema: z.ZodType<T>, input: unknown, what: string): T {
  const result = schema.safeParse(input);
  if (!result.success) {
    const issues = result.error.issues.map((issue) => `${issue.path.join(".") || what}: ${issue.message}`);
    throw new InvalidRequestError(`invalid ${what}: ${issues.join("; ")}`);
  }
  return result.data;
}

/**
 * The `value` of a `PUT`/`PATCH` body `{"value": ...}`. Checked by hand, not by zod, because the value is
 * any JSON and zod would copy it.
 *
 * @throws {InvalidRequestError} when the body is not an object with a `value` member.
 */
export function valueOfBody(body: unknown, options: { objectOnly: boolean }): unknown {
  if (!isJsonObject(body) || !Object.hasOwn(body, "value")) {
    throw new InvalidRequestError('request body must be a JSON object with a "value" member');
  }
  const value = body.value;
  if (options.objectOnly && !isJsonObject(value)) {
    throw new InvalidRequestError('PATCH "value" must be a JSON object (a merge patch, RFC 7396)');
  }
  return value;
}

/** Longest part of a refused `ttl_secs` quoted back in the error. */
const ttlQuoteCharsMax = 40;

/**
 * The `ttl_secs` of a `PUT`/`PATCH` body that `valueOfBody` accepted: undefined when absent.
 *
 * @throws {InvalidRequestError} naming the limit and the value seen when it is not an integer from 1 to
 * `ttlSecsMax` (a string, `null`, 0, negative, fractional, too large).
 */
export function ttlSecsOfBody(body: unknown, ttlSecsMax: number): number | undefined {
  if (!isJsonObject(body) || !Object.hasOwn(body, "ttl_secs")) return undefined;
  const ttlSecs = body.ttl_secs;
  if (typeof ttlSecs === "number" && Number.isInteger(ttlSecs) && ttlSecs >= 1 && ttlSecs <= ttlSecsMax) {
    return ttlSecs;
  }
  const seen = JSON.stringify(ttlSecs) ?? String(ttlSecs);
  const quoted = seen.length > ttlQuoteCharsMax ? `${seen.slice(0, ttlQuoteCharsMax)}...` : seen;
  throw new InvalidRequestError(
    `ttl_secs is ${quoted}; it must be an integer from 1 to ${ttlSecsMax} (ttlSecsMax, seconds)`,
  );
}

/**
 * Parses `If-Match` into a version: `"7"`, `7` or `W/"7"`.
 *
 * @throws {InvalidRequestError} when it is not a version.
 */
export function parseIfMatch(header: string | null): number | undefined {
  if (header === null) return undefined;
  const match = /^\s*(?:W\/)?"?(\d{1,15})"?\s*$/.exec(header);
  if (match === null) throw new InvalidRequestError('If-Match must be a version, for example "7"');
  return Number(match[1]);
}

/** `Last-Event-ID` as a non-negative integer, or undefined when absent or not a number. */
export function parseLastEventId(header: string | null): number | undefined {
  if (header === null || !/^\s*\d{1,16}\s*$/.test(header)) return undefined;
  const id = Number(header);
  return Number.isSafeInteger(id) ? id : undefined;
}
