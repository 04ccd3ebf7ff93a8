// Goal: issue 20's page test, in a real browser. The README's "Live state in a web page" page
// (docs/live_page.html, the same text as in the README), served from another origin, opens one
// multiplexed EventSource with a snapshot and a filter; a writer moves records in and out of the filter,
// deletes and creates them and changes the other source; a proxy cuts the connection and restores it;
// the page's final state equals the store's, and every key's versions increase between Resyncs on what
// the page received (no event lost, doubled or out of order). Method: Debian's `chromium` headless
// through playwright-core, a real node process, a TCP proxy in front of it; the page's own `liveState`
// and a listener the test adds to its `liveSource`. Without Chromium the test is ignored and says why.
import assert from "node:assert/strict";
import { chromium, type Page } from "playwright-core";
import { NodeProcess, tokenFor } from "../../helpers/node_process.ts";
import { expectedState, writeTasks } from "../../helpers/live_tasks.ts";
import { TcpProxy } from "../../helpers/tcp_proxy.ts";
import { chromiumPathOr } from "../../helpers/chromium.ts";
import { waitFor } from "../../helpers/wait_for.ts";

const chromiumPath = chromiumPathOr("live state browser test");

const pageText = Deno.readTextFileSync(new URL("../../../docs/live_page.html", import.meta.url));

/** What the page received: each key's versions increase between Resyncs, and records left the filter. */
async function assertReceivedInOrder(page: Page): Promise<void> {
  const received = await page.evaluate(() => (globalThis as unknown as PageGlobals).received) as Array<
    [string, string, number]
  >;
  let last = new Map<string, number>();
  for (const [event, id, version] of received) {
    if (event === "Resync" && id.endsWith("/undefined")) last = new Map();
    if (version === 0) continue;
    assert.ok(version > (last.get(id) ?? 0), `${id}: ${event} v${version} after v${last.get(id)}`);
    last.set(id, version);
  }
  const counts: Record<string, number> = {};
  for (const [event] of received) counts[event] = (counts[event] ?? 0) + 1;
  assert.ok(
    received.some(([event]) => event === "Left"),
    `records left the filter while the page watched: ${JSON.stringify(counts)}`,
  );
}

Deno.test({
  name: "live state page: one multiplexed EventSource with snapshot and filter, cut by a proxy, ends equal " +
    "to the store",
  ignore: chromiumPath === undefined,
  async fn() {
    await using node = await NodeProcess.start();
    const token = await tokenFor(node, "alice");
    await writeTasks(node, { token, count: 300, seed: 1 });
    await using proxy = TcpProxy.start(Number(new URL(node.baseUrl).port));
    const pageServer = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      () => new Response(pageText, { headers: { "content-type": "text/html; charset=utf-8" } }),
    );
    const browser = await chromium.launch({ executablePath: chromiumPath!, args: ["--no-sandbox"] });
    try {
      const page = await browser.newPage();
      await page.goto(`http://127.0.0.1:${pageServer.addr.port}/?node=http://127.0.0.1:${proxy.port}`);
      // The test's own listener beside the page's: what arrived, in order.
      await page.evaluate(() => {
        const received: Array<[string, string, number]> = [];
        const win = globalThis as unknown as PageGlobals;
        win.received = received;
        win.liveSource.addEventListener("message", (message: { data: string }) => {
          const event = JSON.parse(message.data);
          const version = event.version ?? event.value?.version ?? 0;
          received.push([event.event, `${event.table}/${event.key}`, version]);
        });
      });
      await page.waitForFunction(statusIs("live"));
      const writing = writeTasks(node, { token, count: 400, seed: 2 });
      await waitFor(
        async () => (await page.evaluate(() => (globalThis as unknown as PageGlobals).received.length)) > 20,
        {
          timeoutMs: 10_000,
          what: "live changes to reach the page",
        },
      );
      proxy.cut();
      await page.waitForFunction(statusIs("reconnecting…"));
      proxy.heal();
      await writing;
      const expected = await expectedState(node);
      const shown = () =>
        page.evaluate(() =>
          Object.fromEntries(
            [...(globalThis as unknown as PageGlobals).liveState].map((
              [id, record]: [string, { version: number }],
            ) => [id, record.version]),
          )
        );
      await waitFor(async () => JSON.stringify(sorted(await shown())) === JSON.stringify(sorted(expected)), {
        timeoutMs: 30_000,
        what: "the page to show the store's open tasks and theme",
      });
      await assertReceivedInOrder(page);
    } finally {
      await browser.close();
      await pageServer.shutdown();
    }
  },
});

Deno.test("the README shows the live page test's page, word for word", async () => {
  const readme = await Deno.readTextFile(new URL("../../../README.md", import.meta.url));
  assert.ok(readme.includes(pageText.trim()), "README's page differs from docs/live_page.html");
});

/** What the page (and the test's listener) keep on `window`. */
interface PageGlobals {
  received: Array<[string, string, number]>;
  liveState: Map<string, { version: number }>;
  liveSource: { addEventListener(type: "message", listener: (message: { data: string }) => void): void };
}

/** An expression the page evaluates: its status line reads `text`. */
function statusIs(text: string): string {
  return `document.querySelector("#status")?.textContent === ${JSON.stringify(text)}`;
}

function sorted(state: Record<string, number>): Array<[string, number]> {
  return Object.entries(state).sort(([a], [b]) => a < b ? -1 : 1);
}
