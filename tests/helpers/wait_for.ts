/** Polls `predicate` until it returns true, or throws after `timeoutMs`. Never a bare sleep in a test. */
export async function waitFor(
  predicate: () => boolean | Promise<boolean>,
  options: { timeoutMs: number; intervalMs?: number; what?: string },
): Promise<void> {
  const deadline = performance.now() + options.timeoutMs;
  for (;;) {
    if (await predicate()) return;
    if (performance.now() > deadline) {
      throw new Error(`timed out after ${options.timeoutMs} ms waiting for ${options.what ?? "a condition"}`);
    }
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 10));
  }
}
