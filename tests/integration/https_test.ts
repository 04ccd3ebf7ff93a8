// Goal: DYNA_MODE=https end to end (issue 4 item 5, issue 6 item 2): with certificates from
// `tools/cert.ts`, a node serves the whole API over TLS, and a 3-node cluster gossips and replicates over
// https, each node with its own certificate signed by the one shared CA.
// Method: real node processes (main.ts) with DYNA_MODE/DYNA_CERT/DYNA_KEY; a TLS client that trusts only
// the generated CA (`Deno.createHttpClient({ caCerts })`). A client without the CA must be refused, and
// plain http to the TLS port must fail. Without the openssl command the tests are ignored and say why.
import assert from "node:assert/strict";
import { createCertificates } from "../../tools/cert.ts";
import { NodeProcess } from "../helpers/node_process.ts";
import { clusterSecret, jwtSecret } from "../helpers/test_cluster.ts";
import { waitFor } from "../helpers/wait_for.ts";

async function hasOpenssl(): Promise<boolean> {
  try {
    return (await new Deno.Command("openssl", { args: ["version"], stdout: "null" }).output()).success;
  } catch {
    return false;
  }
}

const skipReason = (await hasOpenssl()) ? undefined : "the openssl command is not installed";
if (skipReason !== undefined) console.log(`https tests skipped: ${skipReason} (tools/cert.ts needs it)`);

/** A node's certificate chain and key, signed by the CA of its directory. */
interface NodeCertificate {
  certPath: string;
  keyPath: string;
}

/** Creates one CA in `dir` and a certificate per node name, as an operator would with `deno task cert`. */
async function makeCertificates(dir: string, nodeCount: number) {
  const nodes: NodeCertificate[] = [];
  for (let index = 0; index < nodeCount; index += 1) {
    const result = await createCertificates({ dir, hosts: ["127.0.0.1", `node${index}.test`], days: 2 });
    assert.equal(result.caCreated, index === 0, "the first run makes the CA, later ones reuse it");
    const node = { certPath: `${dir}/node${index}-cert.pem`, keyPath: `${dir}/node${index}-key.pem` };
    await Deno.rename(result.certPath, node.certPath);
    await Deno.rename(result.keyPath, node.keyPath);
    nodes.push(node);
  }
  return { ca: await Deno.readTextFile(`${dir}/ca.pem`), nodes };
}

function httpsEnv(certificate: NodeCertificate): Record<string, string> {
  return { DYNA_MODE: "https", DYNA_CERT: certificate.certPath, DYNA_KEY: certificate.keyPath };
}

/** `fetch` through `client`, the one that trusts the generated CA. */
function tlsFetch(client: Deno.HttpClient, url: string, init: RequestInit = {}): Promise<Response> {
  return fetch(url, { ...init, client, signal: AbortSignal.timeout(10_000) });
}

async function jsonOf(response: Response): Promise<Record<string, unknown>> {
  return await response.json() as Record<string, unknown>;
}

async function serving(client: Deno.HttpClient, baseUrl: string): Promise<boolean> {
  const response = await tlsFetch(client, `${baseUrl}/health`);
  await response.body?.cancel();
  return response.status === 200;
}

/** Registers `user` and returns its token. */
async function register(client: Deno.HttpClient, baseUrl: string, user: string): Promise<string> {
  const response = await tlsFetch(client, `${baseUrl}/auth/${user}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ secret: "correct horse battery" }),
  });
  assert.equal(response.status, 201);
  const { token } = await jsonOf(response);
  assert.equal(typeof token, "string");
  return token as string;
}

function put(client: Deno.HttpClient, url: string, options: { token: string; value: unknown }) {
  return tlsFetch(client, url, {
    method: "PUT",
    headers: { "content-type": "application/json", authorization: `Bearer ${options.token}` },
    body: JSON.stringify({ value: options.value }),
  });
}

/** The message of a failed fetch and of its cause, where Deno puts the TLS or HTTP reason. */
function failureText(error: unknown): string {
  return error instanceof Error ? `${error.message}: ${String(error.cause)}` : String(error);
}

/** Checks that a client without the CA, and plain http, cannot talk to the node. */
async function assertOnlyTlsWithTheCa(baseUrl: string): Promise<void> {
  await assert.rejects(fetch(`${baseUrl}/health`, { signal: AbortSignal.timeout(10_000) }), (error) => {
    assert.match(failureText(error), /invalid peer certificate: UnknownIssuer/, "a client without the CA");
    return true;
  });
  const plainUrl = `${baseUrl.replace(/^https:/, "http:")}/health`;
  await assert.rejects(fetch(plainUrl, { signal: AbortSignal.timeout(10_000) }), (error) => {
    assert.match(failureText(error), /invalid HTTP version|connection|closed|reset/i, "plain http to TLS");
    return true;
  });
}

/** Reads an event stream until its first `data:` line; resolves with the parsed data. */
async function firstEvent(body: ReadableStream<Uint8Array>): Promise<Record<string, unknown>> {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) { // until a change's data line arrives or the stream ends
      const { done, value } = await reader.read();
      if (done) throw new Error(`the event stream ended before an event; got: ${buffer}`);
      buffer += value;
      // Whole blocks only, and not the stream's ready block (SPEC §4b), which names its event.
      const blocks = buffer.split("\n\n").slice(0, -1).filter((block) => !block.startsWith("event: ready"));
      const line = blocks.flatMap((block) => block.split("\n")).find((candidate) =>
        candidate.startsWith("data: ")
      );
      if (line !== undefined) return JSON.parse(line.slice(6));
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
}

Deno.test({
  name: "https: one node serves register, PUT, GET and SSE over TLS to a client that trusts only the CA",
  ignore: skipReason !== undefined,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "dynarust_https_" });
    try {
      const { ca, nodes } = await makeCertificates(dir, 1);
      using client = Deno.createHttpClient({ caCerts: [ca] });
      await using node = await NodeProcess.start({ env: httpsEnv(nodes[0]!) });
      assert.match(node.baseUrl, /^https:\/\/127\.0\.0\.1:[0-9]+$/, "prints listening on https://...");
      await waitFor(() => serving(client, node.baseUrl), { timeoutMs: 20_000, what: "the node to serve" });

      const token = await register(client, node.baseUrl, "alice");
      const events = await tlsFetch(client, `${node.baseUrl}/t/subscribe/k`);
      assert.equal(events.status, 200);
      assert.equal(events.headers.get("content-type"), "text/event-stream");
      const event = firstEvent(events.body!);
      const written = await put(client, `${node.baseUrl}/t/key/k`, { token, value: { over: "tls" } });
      assert.equal(written.status, 201);
      assert.equal((await jsonOf(written)).version, 1);
      const read = await tlsFetch(client, `${node.baseUrl}/t/key/k`);
      assert.equal(read.status, 200);
      assert.deepEqual((await jsonOf(read)).value, { over: "tls" });
      const received = await event;
      assert.equal(received.event, "Updated");
      assert.deepEqual((received.value as { value: unknown }).value, { over: "tls" });

      await assertOnlyTlsWithTheCa(node.baseUrl);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/**
 * Starts a node of an https cluster on a port of its own, joining `seed` when given, and waits until it
 * serves.
 */
async function startClusterNode(
  options: { client: Deno.HttpClient; certificate: NodeCertificate; seed?: string },
): Promise<NodeProcess> {
  // Port 0: a port probed free beforehand could be taken by a parallel test before the node binds it.
  const node = await NodeProcess.start({
    listen: "127.0.0.1:0",
    env: {
      CLUSTER_SECRET: clusterSecret,
      JWT_SECRET: jwtSecret,
      DYNA_CLUSTER_PRESET: "local-test",
      ...httpsEnv(options.certificate),
    },
    args: options.seed === undefined ? [] : [options.seed],
  });
  try {
    assert.match(node.baseUrl, /^https:\/\/127\.0\.0\.1:[0-9]+$/);
    await waitFor(() => serving(options.client, node.baseUrl), {
      timeoutMs: 30_000,
      what: "a node to serve",
    });
  } catch (error) {
    await node[Symbol.asyncDispose]();
    throw error;
  }
  return node;
}

/** Whether every node sees every one of `ids` alive. */
async function converged(client: Deno.HttpClient, nodes: NodeProcess[], ids: string[]): Promise<boolean> {
  for (const node of nodes) {
    const response = await tlsFetch(client, `${node.baseUrl}/membership`);
    const body = await jsonOf(response);
    if (response.status !== 200) return false;
    const view = new Map(
      (body.nodes as { id: string; status: string }[]).map((peer) => [peer.id, peer.status]),
    );
    if (!ids.every((id) => view.get(id) === "alive")) return false;
  }
  return true;
}

Deno.test({
  name: "https: a 3-node cluster converges and replicates over TLS with one CA and a certificate per node",
  ignore: skipReason !== undefined,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "dynarust_https_cluster_" });
    await using stack = new AsyncDisposableStack();
    stack.defer(() => Deno.remove(dir, { recursive: true }));
    const { ca, nodes: certificates } = await makeCertificates(dir, 3);
    const client = stack.adopt(Deno.createHttpClient({ caCerts: [ca] }), (used) => used.close());
    const nodes: NodeProcess[] = [];
    for (const [index, certificate] of certificates.entries()) {
      const seed = index === 0 ? {} : { seed: new URL(nodes[0]!.baseUrl).host };
      nodes.push(stack.use(await startClusterNode({ client, certificate, ...seed })));
    }
    const ids = nodes.map((node) => new URL(node.baseUrl).host);
    await waitFor(() => converged(client, nodes, ids), { timeoutMs: 20_000, what: "membership over https" });

    const token = await register(client, nodes[0]!.baseUrl, "alice");
    const written = await put(client, `${nodes[0]!.baseUrl}/t/key/k`, { token, value: "across tls" });
    assert.equal(written.status, 201);
    await written.body?.cancel();
    await waitFor(async () => {
      const read = await tlsFetch(client, `${nodes[2]!.baseUrl}/t/key/k`);
      const body = await jsonOf(read);
      return read.status === 200 && body.value === "across tls";
    }, { timeoutMs: 10_000, what: "node 2 to read the write taken by node 0" });
    const login = await tlsFetch(client, `${nodes[1]!.baseUrl}/auth/alice`, {
      method: "POST",
      body: JSON.stringify({ secret: "correct horse battery" }),
    });
    assert.equal(login.status, 200, "a user registered on node 0 logs in on node 1");
    await login.body?.cancel();

    for (const node of nodes) await assertOnlyTlsWithTheCa(node.baseUrl);

    // A node whose certificate comes from another CA trusts only that CA: it cannot join.
    const { nodes: [stranger] } = await makeCertificates(`${dir}/other_ca`, 1);
    const outsiderDir = await Deno.makeTempDir({ prefix: "dynarust_https_outsider_" });
    stack.defer(() => Deno.remove(outsiderDir, { recursive: true }));
    const outsider = await NodeProcess.runToExit(["127.0.0.1:0", ids[0]!, "--data-dir", outsiderDir], {
      CLUSTER_SECRET: clusterSecret,
      JWT_SECRET: jwtSecret,
      DYNA_JOIN_TIMEOUT_SECS: "1",
      ...httpsEnv(stranger!),
    });
    assert.match(outsider.stderr, /cannot join 127\.0\.0\.1:[0-9]+: gave up/);
    assert.equal(outsider.code, 1);
    assert.equal(outsider.stdout, "", "a node that never joined never said it was listening");
  },
});

Deno.test({
  name:
    "https: TLS clients that never handshake are cut after the request timeout, at most the cap at a time",
  ignore: skipReason !== undefined,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "dynarust_https_silent_" });
    await using stack = new AsyncDisposableStack();
    stack.defer(() => Deno.remove(dir, { recursive: true }));
    const { ca, nodes: [certificate] } = await makeCertificates(dir, 1);
    const client = stack.adopt(Deno.createHttpClient({ caCerts: [ca] }), (used) => used.close());
    const node = stack.use(
      await NodeProcess.start({
        env: { ...httpsEnv(certificate!), DYNA_CONNECTIONS_MAX: "20", DYNA_REQUEST_TIMEOUT_MS: "500" },
      }),
    );
    const port = Number(new URL(node.baseUrl).port);
    // Thirty TCP connections that never start their TLS handshake: twenty at a time fill the cap, the rest
    // wait in the kernel's backlog; each is cut once its handshake is older than the request timeout.
    const silent: Deno.TcpConn[] = [];
    for (let index = 0; index < 30; index += 1) {
      silent.push(await Deno.connect({ hostname: "127.0.0.1", port }));
    }
    const startedMs = performance.now();
    const cut = await Promise.all(silent.map((connection) => closedWithinMs(connection, 10_000)));
    const waitedMs = performance.now() - startedMs;
    for (const connection of silent) connection.close();
    assert.deepEqual(cut, Array(30).fill(true), "every silent client was cut");
    assert.ok(waitedMs >= 400, `not before the timeout: ${Math.round(waitedMs)} ms`);
    await waitFor(() => serving(client, node.baseUrl).catch(() => false), {
      timeoutMs: 10_000,
      what: "the node to serve after the silent clients",
    });
  },
});

/** Whether the peer closes `connection` within `timeoutMs`. */
async function closedWithinMs(connection: Deno.TcpConn, timeoutMs: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((resolve) =>
    timer = setTimeout(() => resolve("timeout"), timeoutMs)
  );
  const read = connection.read(new Uint8Array(64)).catch(() => null);
  const outcome = await Promise.race([read, timeout]);
  clearTimeout(timer);
  return outcome === null;
}

async function curlArgs(args: string[]): Promise<{ code: number; stdout: string }> {
  const output = await new Deno.Command("curl", { args, stdout: "piped", stderr: "null" }).output();
  return { code: output.code, stdout: new TextDecoder().decode(output.stdout) };
}

const hasCurl = await curlArgs(["--version"]).then((result) => result.stdout.includes("HTTP2"), () => false);
if (!hasCurl) console.log("https HTTP/2 test skipped: no curl with HTTP/2 (nghttp2)");

Deno.test({
  name:
    "https: the node speaks HTTP/2 (curl --http2): a read, and a multiplexed event stream over one h2 stream",
  ignore: skipReason !== undefined || !hasCurl,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "dynarust_h2_" });
    try {
      const { nodes } = await makeCertificates(dir, 1);
      await using node = await NodeProcess.start({ env: httpsEnv(nodes[0]!) });
      const ca = `${dir}/ca.pem`;
      const health = await curlArgs([
        "--http2",
        "--cacert",
        ca,
        "-s",
        "-w",
        "\n%{http_version}",
        `${node.baseUrl}/health`,
      ]);
      assert.equal(health.code, 0);
      assert.deepEqual(health.stdout.split("\n"), ['{"status":"ok"}', "2"], "answered over HTTP/2");
      // An event stream over h2: curl reads its ready block and gives up after a second (exit 28).
      const stream = await curlArgs([
        "--http2",
        "--cacert",
        ca,
        "-s",
        "-N",
        "--max-time",
        "1",
        "-w",
        "\n%{http_version}",
        `${node.baseUrl}/subscribe?table=a&key=b/c`,
      ]);
      assert.equal(stream.code, 28, "the stream stays open until curl stops");
      assert.match(stream.stdout, /^event: ready\nid: \d+\ndata: \{"event":"Ready"\}\n\n/);
      assert.ok(stream.stdout.endsWith("\n2"), stream.stdout);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
