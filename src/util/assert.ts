/** Thrown when an internal invariant does not hold: a programmer error, never bad input. */
export class AssertionError extends Error {
  override name = "AssertionError";
}

/**
 * Asserts an internal invariant. Never use it on outside input: validate that with zod instead.
 *
 * @throws {AssertionError} when `condition` is false.
 */
export function assert(condition: unknown, message = "assertion failed"): asserts condition {
  if (!condition) throw new AssertionError(message);
}
