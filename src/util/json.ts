/** A number in a JSON text that `JSON.parse` would not keep: it would become ±Infinity or 0. */
export interface InexactNumber {
  /** Index (UTF-16 code units) of the number's first character in the text. */
  index: number;
  /** `overflow`: over ±1.7976931348623157e308, parsed as ±Infinity (and stored as `null`); `underflow`: a
   * non-zero number under 5e-324, parsed as 0. */
  kind: "overflow" | "underflow";
}

/** What one scan of a JSON text finds before `JSON.parse` builds it. */
export interface JsonScan {
  /** The deepest nesting of `[` and `{` (0 for a scalar). */
  depth: number;
  /** The first number `JSON.parse` would change to ±Infinity or 0, if any. */
  inexactNumber: InexactNumber | undefined;
  /** The first number `JSON.parse` would change to ±Infinity, if any (it may follow an underflow). */
  overflowNumber: InexactNumber | undefined;
}

/** Digits a number may have before it can overflow a double without an exponent (1e308 has 309). */
const plainNumberCharsMax = 308;

/**
 * Scans a JSON text once, without recursion, so a hostile document is refused before `JSON.parse` builds
 * it: measures its nesting depth and finds numbers that a double cannot carry (SPEC §8: refused, never
 * changed). Brackets and digits inside strings are skipped. Only a number with an exponent or more than
 * 308 characters can overflow or underflow, and only those are converted with `Number` to check, so an
 * ordinary text costs what the depth scan alone did. The text need not be valid JSON; `JSON.parse`
 * decides that afterwards (a malformed number is left to it).
 */
export function scanJson(text: string): JsonScan {
  let depth = 0;
  let depthMax = 0;
  let inString = false;
  let inexactNumber: InexactNumber | undefined;
  let overflowNumber: InexactNumber | undefined;
  for (let index = 0; index < text.length; index += 1) {
    const code = text.charCodeAt(index);
    if (inString) {
      if (code === 0x5c) index += 1; // backslash: skip the escaped character
      else if (code === 0x22) inString = false;
    } else if (code === 0x22) {
      inString = true;
    } else if (code === 0x7b || code === 0x5b) {
      depth += 1;
      if (depth > depthMax) depthMax = depth;
    } else if (code === 0x7d || code === 0x5d) {
      depth -= 1;
    } else if ((code >= 0x30 && code <= 0x39) || code === 0x2d) {
      // A number: digits, ".", "e", "E", "+", "-"; scanned here once, its end is the next other character.
      const start = index;
      let exponent = false;
      for (index += 1; index < text.length; index += 1) {
        const next = text.charCodeAt(index);
        if (next === 0x65 || next === 0x45) exponent = true;
        else if (!((next >= 0x30 && next <= 0x39) || next === 0x2e || next === 0x2b || next === 0x2d)) break;
      }
      if ((exponent || index - start > plainNumberCharsMax) && overflowNumber === undefined) {
        const found = inexactNumberAt(text.slice(start, index), start);
        inexactNumber ??= found;
        if (found?.kind === "overflow") overflowNumber = found;
      }
      index -= 1; // the loop's step moves to the character after the number
    }
  }
  return { depth: depthMax, inexactNumber, overflowNumber };
}

/**
 * Nesting depth of a JSON text (see {@linkcode scanJson}).
 *
 * @returns the deepest nesting of `[` and `{` (0 for a scalar).
 */
export function jsonDepth(text: string): number {
  return scanJson(text).depth;
}

/** The number `literal` found at `index` as an {@linkcode InexactNumber}, when a double cannot carry it. */
function inexactNumberAt(literal: string, index: number): InexactNumber | undefined {
  const value = Number(literal);
  if (value === Infinity || value === -Infinity) return { index, kind: "overflow" };
  if (value !== 0) return undefined; // NaN (not a JSON number: JSON.parse refuses it) or carried
  const exponentIndex = literal.search(/[eE]/);
  const mantissa = exponentIndex === -1 ? literal : literal.slice(0, exponentIndex);
  return /[1-9]/.test(mantissa) ? { index, kind: "underflow" } : undefined;
}

/** A JSON object (not an array, not null). */
export function isJsonObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * RFC 7396 JSON Merge Patch of `patch` onto `target`, iteratively (no recursion over client data).
 * Neither argument is modified.
 */
export function mergePatch(
  target: Record<string, unknown>,
  patch: Record<string, unknown>,
): Record<string, unknown> {
  const result = structuredClone(target);
  const work: Array<{ into: Record<string, unknown>; from: Record<string, unknown> }> = [
    { into: result, from: patch },
  ];
  // Bounded by the number of objects in `patch`, whose depth the caller has already limited.
  while (work.length > 0) {
    const { into, from } = work.pop()!;
    for (const [name, value] of Object.entries(from)) {
      if (value === null) {
        delete into[name];
      } else if (isJsonObject(value)) {
        const existing = into[name];
        const child: Record<string, unknown> = isJsonObject(existing) ? existing : {};
        Object.defineProperty(into, name, {
          value: child,
          enumerable: true,
          writable: true,
          configurable: true,
        });
        work.push({ into: child, from: value });
      } else {
        Object.defineProperty(into, name, { value, enumerable: true, writable: true, configurable: true });
      }
    }
  }
  return result;
}
