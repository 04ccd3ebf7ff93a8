// Goal: the dashboard (`GET /admin`, issue 6) works in a real browser: it lists the members of a 2-node
// cluster, shows a change made on the other node within a second, and lets a user log in and edit a key;
// all under its Content-Security-Policy (issue 21), which the browser enforces without one violation (an
// inline script or style left in the page would be refused and reported in the console).
// Method: Debian's `chromium`, driven headless by playwright-core, against a real TestCluster. Without
// Chromium (`apt-get install chromium`; `.ci/run` installs it) the test is reported as ignored and why.
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { putValue, tokenFor } from "../../helpers/node_process.ts";
import { TestCluster } from "../../helpers/test_cluster.ts";
import { chromiumPathOr } from "../../helpers/chromium.ts";

const chromiumPath = chromiumPathOr("dashboard test");

Deno.test({
  name: "dashboard: lists a 2-node cluster, shows a change within a second, edits a key after login",
  ignore: chromiumPath === undefined,
  // playwright keeps its pipe to the browser open in ways Deno's sanitizers count; the browser is closed.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using cluster = await TestCluster.start({ nodeCount: 2 });
    await cluster.waitConverged();
    const [first, second] = [cluster.node(0), cluster.node(1)];
    const token = await tokenFor(first, "alice", "s3cr3t-pw");
    const seeded = await putValue(first, "/t/key/first", { n: 1 }, { token });
    assert.equal(seeded.status, 201);
    await seeded.body?.cancel();
    assert.ok(chromiumPath !== undefined);
    const browser = await chromium.launch({ executablePath: chromiumPath, args: ["--no-sandbox"] });
    try {
      const page = await browser.newPage();
      const problems: string[] = [];
      page.on("pageerror", (error) => problems.push(String(error)));
      const violations: string[] = [];
      page.on("console", (message) => {
        if (/Content.Security.Policy/i.test(message.text())) violations.push(message.text());
      });
      const loaded = await page.goto(`${first.baseUrl}/admin#t`);
      const policy = loaded?.headers()["content-security-policy"] ?? "";
      assert.match(policy, /script-src 'self'/, "the page is served with its Content-Security-Policy");
      assert.match(policy, /frame-ancestors 'none'/);
      await page.waitForFunction(
        `document.querySelectorAll('#members tr[data-status="alive"]').length === 2`,
        null,
        { timeout: 10_000 },
      );
      const addresses = await page.locator("#members tr td:first-child").allTextContents();
      assert.deepEqual(addresses.sort(), [cluster.id(0), cluster.id(1)].sort());
      await page.locator("#tail-state", { hasText: "(live)" }).waitFor({ timeout: 10_000 });
      await page.locator("#tables td", { hasText: /^t$/ }).waitFor({ timeout: 10_000 });

      const sentMs = performance.now();
      const change = await putValue(second, "/t/key/from-node-2", { hello: "dashboard" }, { token });
      assert.equal(change.status, 201);
      await change.body?.cancel();
      await page.locator('#tail li[data-key="from-node-2"]').waitFor({ timeout: 1_000 });
      const shownMs = performance.now() - sentMs;
      assert.ok(shownMs <= 1_000, `the change showed after ${shownMs} ms`);
      await page.locator("#keys td", { hasText: "from-node-2" }).waitFor({ timeout: 1_000 });
      const screenshot = Deno.env.get("DYNARUST_SCREENSHOT");
      if (screenshot !== undefined) await page.screenshot({ path: screenshot, fullPage: true });

      await page.fill("#user", "alice");
      await page.fill("#secret", "s3cr3t-pw");
      await page.click("#login button");
      await page.locator("#who", { hasText: "signed in as alice" }).waitFor({ timeout: 5_000 });
      await page.fill("#key", "first");
      await page.click("#load");
      await page.locator("#meta", { hasText: "version 1" }).waitFor({ timeout: 5_000 });
      await page.fill("#value", '{"n": 2}');
      await page.click("#save");
      await page.locator("#meta", { hasText: "version 2" }).waitFor({ timeout: 5_000 });
      const saved = await (await first.fetch("/t/key/first")).json();
      assert.deepEqual([saved.version, saved.value, saved.owner], [2, { n: 2 }, "alice"]);
      assert.deepEqual(problems, [], "no script error on the page");
      assert.deepEqual(violations, [], "no Content-Security-Policy violation on the page");
    } finally {
      await browser.close();
    }
  },
});
