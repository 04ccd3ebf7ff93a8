// Goal: issue 18 items 12 and 13 in a real browser. A page served from another origin writes with
// `fetch` (Authorization and If-Match: preflighted), reads the ETag, and follows a key with EventSource;
// the stream, cut before any change, resumes from its ready id and misses none of the writes made while
// it was cut. With DYNA_CORS_ORIGINS naming another origin, the same page's requests all fail; naming
// the page's origin, they succeed. The typed client, bundled for browsers, works from such a page too.
// Method: Debian's `chromium`, headless through playwright-core; the page from a tiny Deno.serve on
// another port of 127.0.0.1; a real node; a TCP proxy the test cuts in front of the node. Without
// Chromium the tests are reported as ignored and why.
import assert from "node:assert/strict";
import { type Browser, chromium, type Page } from "playwright-core";
import { NodeProcess, putValue, tokenFor } from "../../helpers/node_process.ts";
import { TcpProxy } from "../../helpers/tcp_proxy.ts";
import { chromiumPathOr } from "../../helpers/chromium.ts";
import { waitFor } from "../../helpers/wait_for.ts";

const chromiumPath = chromiumPathOr("browser CORS tests");

/** What the page's EventSource saw, kept on `window.log` by the page itself. */
interface PageLog {
  readyIds: string[];
  versions: number[];
  values: unknown[];
  opens: number;
  errors: number;
  state: number;
}

/**
 * A page on its own origin (a server on another port), the browser that shows it, and its closing. The
 * server also serves `scripts` by path (e.g. the typed client, bundled).
 */
async function openPage(
  scripts: Record<string, string> = {},
): Promise<{ page: Page; origin: string } & AsyncDisposable> {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (request) => {
    const script = scripts[new URL(request.url).pathname];
    if (script !== undefined) return new Response(script, { headers: { "content-type": "text/javascript" } });
    return new Response("<!doctype html><title>another origin</title><p>dynarust CORS test</p>", {
      headers: { "content-type": "text/html; charset=utf-8" },
    });
  });
  const origin = `http://127.0.0.1:${server.addr.port}`;
  let browser: Browser | undefined;
  try {
    browser = await chromium.launch({ executablePath: chromiumPath!, args: ["--no-sandbox"] });
    const page = await browser.newPage();
    await page.goto(`${origin}/`);
    const opened = browser;
    return {
      page,
      origin,
      async [Symbol.asyncDispose]() {
        await opened.close();
        await server.shutdown();
      },
    };
  } catch (error) {
    await browser?.close();
    await server.shutdown();
    throw error;
  }
}

/** In the page: a PUT, a conditional PUT and a GET by fetch, with what a script can read of each. */
function writeAndRead(page: Page, options: { base: string; token: string }) {
  return page.evaluate(async ({ base, token }) => {
    const put = (value: unknown, headers: Record<string, string>) =>
      fetch(`${base}/web/key/k`, {
        method: "PUT",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json", ...headers },
        body: JSON.stringify({ value }),
      });
    try {
      const first = await put({ n: 1 }, {});
      const second = await put({ n: 2 }, { "if-match": first.headers.get("etag") ?? "" });
      const stale = await put({ n: 0 }, { "if-match": '"1"' });
      const read = await fetch(`${base}/web/key/k`);
      return {
        statuses: [first.status, second.status, stale.status, read.status],
        etags: [first.headers.get("etag"), second.headers.get("etag"), read.headers.get("etag")],
        value: (await read.json()).value,
      };
    } catch (error) {
      return { failed: String(error) };
    }
  }, options);
}

/** In the page: opens an EventSource on `url` that records into `window.log`. */
function follow(page: Page, url: string): Promise<void> {
  return page.evaluate((url) => {
    const log = {
      readyIds: [] as string[],
      versions: [] as number[],
      values: [] as unknown[],
      opens: 0,
      errors: 0,
    };
    const source = new EventSource(url);
    Object.assign(globalThis, { log, source });
    source.onopen = () => log.opens += 1;
    source.onerror = () => log.errors += 1;
    source.addEventListener("ready", (event) => log.readyIds.push((event as MessageEvent).lastEventId));
    source.onmessage = (event) => {
      const change = JSON.parse(event.data);
      log.versions.push(change.value.version);
      log.values.push(change.value.value);
    };
  }, url);
}

function pageLog(page: Page): Promise<PageLog> {
  return page.evaluate(() => {
    const { log, source } = globalThis as unknown as { log: PageLog; source: EventSource };
    return { ...log, state: source.readyState };
  });
}

async function waitForLog(page: Page, predicate: string, timeoutMs = 15_000): Promise<void> {
  await page.waitForFunction(`(() => { const log = globalThis.log; return ${predicate}; })()`, null, {
    timeout: timeoutMs,
  });
}

async function write(node: NodeProcess, token: string, ns: number[]): Promise<void> {
  for (const n of ns) {
    const response = await putValue(node, "/web/key/k", { n }, { token });
    assert.equal(response.status, 201);
    await response.body?.cancel();
  }
}

Deno.test({
  name: "browser: a page on another origin writes with If-Match, reads the ETag, and its EventSource " +
    "misses no change across a cut",
  ignore: chromiumPath === undefined,
  // playwright keeps its pipe to the browser open in ways Deno's sanitizers count; the browser is closed.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using node = await NodeProcess.start();
    const token = await tokenFor(node, "alice");
    await using proxy = TcpProxy.start(Number(new URL(node.baseUrl).port));
    await using opened = await openPage();
    const { page } = opened;
    const written = await writeAndRead(page, { base: node.baseUrl, token });
    assert.deepEqual(written, {
      statuses: [201, 201, 412, 200],
      etags: ['"1"', '"2"', '"2"'],
      value: { n: 2 },
    });
    await follow(page, `http://127.0.0.1:${proxy.port}/web/subscribe/k`);
    await waitForLog(page, "log.opens === 1 && log.readyIds.length === 1"); // it has its position
    proxy.cut(); // before any change reached the page
    await waitForLog(page, "log.errors >= 1");
    await write(node, token, [3, 4, 5]);
    proxy.heal();
    await waitForLog(page, "log.opens === 2", 20_000); // Chromium retries after about 3 s
    await write(node, token, [6]);
    await waitForLog(page, "log.versions.includes(6)");
    const log = await pageLog(page);
    assert.deepEqual(log.versions, [3, 4, 5, 6], "every change once, in order, none missed");
    assert.deepEqual(log.values, [{ n: 3 }, { n: 4 }, { n: 5 }, { n: 6 }]);
    assert.deepEqual(log.readyIds, ["2", "2"], "ready at the key's version, then resumed from it");
  },
});

Deno.test({
  name: "browser: with DYNA_CORS_ORIGINS naming another origin the page's requests fail, naming the page's " +
    "they succeed",
  ignore: chromiumPath === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using opened = await openPage();
    const { page, origin } = opened;
    {
      await using node = await NodeProcess.start({ env: { DYNA_CORS_ORIGINS: "http://127.0.0.1:1" } });
      const token = await tokenFor(node, "alice");
      await write(node, token, [1]);
      const written = await writeAndRead(page, { base: node.baseUrl, token });
      assert.match(
        (written as { failed?: string }).failed ?? "",
        /TypeError/,
        "the preflighted PUT is refused",
      );
      const read = await page.evaluate(
        (url) => fetch(url).then((r) => r.status, (e) => String(e)),
        `${node.baseUrl}/web/key/k`,
      );
      assert.match(String(read), /TypeError/, "a simple GET's answer is hidden from the page");
      await follow(page, `${node.baseUrl}/web/subscribe/k`);
      await waitForLog(page, "log.errors >= 1 && globalThis.source.readyState === 2");
      assert.deepEqual((await pageLog(page)).readyIds, [], "the EventSource failed for good");
    }
    {
      await using node = await NodeProcess.start({
        env: { DYNA_CORS_ORIGINS: `http://example.com,${origin}` },
      });
      const token = await tokenFor(node, "alice");
      const written = await writeAndRead(page, { base: node.baseUrl, token });
      assert.deepEqual(written, {
        statuses: [201, 201, 412, 200],
        etags: ['"1"', '"2"', '"2"'],
        value: { n: 2 },
      });
      await follow(page, `${node.baseUrl}/web/subscribe/k`);
      await waitForLog(page, "log.readyIds.length === 1");
      assert.deepEqual((await pageLog(page)).readyIds, ["2"]);
    }
  },
});

const clientPath = new URL("../../../src/client/mod.ts", import.meta.url).pathname;

/** `src/client/mod.ts` bundled to one browser module, as the README tells browser users to do. */
async function bundledClient(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "dynarust_client_browser_" });
  try {
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["bundle", "--platform", "browser", clientPath, "-o", `${dir}/client.mjs`],
      stdout: "null",
      stderr: "piped",
    }).output();
    assert.ok(output.success, new TextDecoder().decode(output.stderr));
    return await Deno.readTextFile(`${dir}/client.mjs`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name: "browser: the typed client on a page of another origin logs in, writes, reads and follows a key " +
    "across a cut",
  ignore: chromiumPath === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using node = await NodeProcess.start();
    await using proxy = TcpProxy.start(Number(new URL(node.baseUrl).port));
    await using opened = await openPage({ "/client.mjs": await bundledClient() });
    const { page } = opened;
    const used = await page.evaluate(async ({ base, followed }) => {
      const { DynaClient, DynaError } = await import(`${location.origin}/client.mjs`);
      const client = new DynaClient({ baseUrl: base });
      await client.login("alice", "pw");
      const notes = client.table("web");
      const first = await notes.put("k", { n: 1 });
      let refused = "";
      await notes.put("k", { n: 0 }, { ifVersion: 7 }).catch((error: unknown) => {
        refused = error instanceof DynaError ? (error as { code: string }).code : String(error);
      });
      const read = await notes.get("k");
      const log = { versions: [] as number[], readyIds: [] as number[] };
      Object.assign(globalThis, { log });
      const watcher = new DynaClient({ baseUrl: followed }).table("web");
      const onReady = (position: number) => log.readyIds.push(position);
      void (async () => {
        for await (const change of watcher.subscribe("k", { retryMs: 50, onReady })) {
          log.versions.push(change.id);
        }
      })();
      return { version: first.version, refused, read: read?.value, token: client.token as string };
    }, { base: node.baseUrl, followed: `http://127.0.0.1:${proxy.port}` });
    assert.deepEqual([used.version, used.refused, used.read], [1, "version_conflict", { n: 1 }]);
    const streams = async () => (await (await node.fetch("/stats")).json()).active_sse_connections;
    await waitForLog(page, "log.readyIds.length === 1"); // the client has its position
    proxy.cut(); // before any change reached the page
    await waitFor(async () => await streams() === 0, { timeoutMs: 10_000, what: "the cut" });
    await write(node, used.token, [2, 3]);
    proxy.heal();
    await waitFor(async () => await streams() === 1, { timeoutMs: 10_000, what: "the reconnect" });
    await write(node, used.token, [4]);
    await waitForLog(page, "log.versions.includes(4)");
    const versions = await page.evaluate(() => (globalThis as unknown as { log: PageLog }).log.versions);
    assert.deepEqual(versions, [2, 3, 4], "none of the writes made while cut is missed");
    const readyIds = await page.evaluate(() =>
      (globalThis as unknown as { log: { readyIds: number[] } }).log.readyIds
    );
    assert.deepEqual(readyIds, [1, 1], "at the key's version, then resumed from it");
  },
});
