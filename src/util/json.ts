/**
 * Nesting depth of a JSON text, measured by scanning it once without recursion, so a hostile document
 * is rejected before `JSON.parse` builds it. Brackets inside strings are skipped. The text need not be
 * valid JSON; `JSON.parse` decides that afterwards.
 *
 * @returns the deepest nesting of `[` and `{` (0 for a scalar).
 */
export function jsonDepth(text: string): number {
  let depth = 0;
  let depthMax = 0;
  let inString = false;
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
    }
  }
  return depthMax;
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
