/**
 * Debian's Chromium for the browser tests (driven headless through playwright-core), or undefined with a
 * line saying which tests are skipped: a machine without it reports them as ignored, never as passed.
 */
export function chromiumPathOr(skipped: string): string | undefined {
  const path = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((candidate) => {
    try {
      return Deno.statSync(candidate).isFile;
    } catch {
      return false;
    }
  });
  if (path === undefined) console.log(`${skipped} skipped: chromium not installed`);
  return path;
}
