/**
 * The filter language of `where=` (SPEC §3 and §4b): one parser, one validator and one evaluator for the
 * listing routes (`GET /{table}/store?where=`, `/keys?where=`) and for filtered event streams. It owns the
 * syntax, the bounds and the meaning of a filter; it knows nothing of HTTP, the store or the broker: a
 * malformed filter is an `InvalidRequestError` (`invalid_request`, mapped to 400 by the HTTP layer), and a
 * record is anything with a key, an owner and a value.
 *
 * ## The language
 *
 * A filter is a JSON object. Each name is a field path mapped to a JSON value (equality) or to an object
 * of operators; every field must hold (AND), and every operator of one field must hold.
 * `{"$or": [filter, ...]}` holds when any of its filters holds; it may stand beside fields (ANDed with
 * them) and may nest, up to {@linkcode filterOrDepthMax} deep.
 *
 * ```json
 * {"status": "open", "size": {"$gte": 10, "$lt": 100}, "$or": [{"$owner": "alice"}, {"tags.0": "urgent"}]}
 * ```
 *
 * - **Paths** are dotted into the record's value: `a.b.c`. A segment that is a non-negative integer
 *   without leading zeros (`0`, `12`, at most 9 digits) indexes an array; on an object the same segment
 *   names a member (`{"0": ...}`). There is no implicit walk into arrays: `{"tags": "x"}` compares the
 *   whole `tags` (use `tags.0`). A path's first segment may not start with `$`; later ones may. Members
 *   whose names contain `.` cannot be reached. `$key` and `$owner` name the record's key and owner.
 * - **Operators**: `$eq`, `$ne` (any JSON value), `$gt`, `$gte`, `$lt`, `$lte` (a number or a string),
 *   `$in`, `$nin` (a non-empty array of JSON values), `$exists` (`true` or `false`), `$prefix` (a
 *   string). An object value with any name starting with `$` is an operator object and every name in it
 *   must be an operator; to match an object with such names, use `{"$eq": {...}}`.
 *
 * ## What matches
 *
 * - Equality (`value`, `$eq`, `$in`) is deep JSON equality: objects equal when they have the same
 *   members, in any order; arrays when they have equal elements in the same order; `1` equals `1.0`.
 * - `$gt`, `$gte`, `$lt`, `$lte` compare numbers with numbers and strings with strings (UTF-16 code-unit
 *   order, as JavaScript's `<`); any other combination, a missing field included, does not match.
 * - A missing field equals nothing, not even `null`: it matches only `{"$exists": false}`, `$ne` and
 *   `$nin` (as in MongoDB: "not equal to 3" holds for a record without the field).
 * - `$prefix` matches strings that start with the operand (code units); anything else does not match.
 *
 * ## Bounds
 *
 * Checked before the work each bounds, each refusal naming the limit: text bytes
 * ({@linkcode filterBytesMax}, or the caller's `bytesMax`), nesting of the text
 * ({@linkcode filterJsonDepthMax}), clauses ({@linkcode filterClausesMax}: each operator of a field, and
 * each plain equality, is one), `$in`/`$nin` values ({@linkcode filterInCountMax}), path segments
 * ({@linkcode filterPathSegmentsMax}) and `$or` nesting ({@linkcode filterOrDepthMax}).
 *
 * @example
 * ```ts
 * const filter = parseFilter('{"age":{"$gte":18},"$owner":"alice"}'); // throws InvalidRequestError if bad
 * filter.text; // '{"$owner":{"$eq":"alice"},"age":{"$gte":18}}': the same for every spelling of it
 * // A change's VersionedValue text (`Entry.json`), parsed once and then evaluated by every filter:
 * const json = '{"value":{"age":30},"version":3,"timestamp":1700000000000,"owner":"alice"}';
 * const record = recordOfJson("k1", json);
 * filter.matches(record); // true
 * ```
 *
 * @module
 */
export {
  canonicalJson,
  type Filter,
  filterBytesMax,
  filterClausesMax,
  filterInCountMax,
  filterJsonDepthMax,
  type FilterOptions,
  filterOrDepthMax,
  filterPathSegmentsMax,
  type FilterRecord,
  parseFilter,
  recordOfJson,
} from "./filter.ts";
