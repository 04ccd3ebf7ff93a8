// Goal: issue 4, item 5 (attacks) over HTTP against a real node: forged, confused, expired, not yet
// valid, tampered and incomplete user tokens are all 401 and change nothing; a login brute force is
// stopped with 429 and Retry-After; internal requests replayed outside their time window, or to
// another path, are 403. (Unsigned and badly signed internal requests: membership_test.ts and
// fuzz_test.ts.)
// Method: tokens built by hand with WebCrypto (so no library guards the attacker's side) against a
// one-node TestCluster whose JWT_SECRET and CLUSTER_SECRET the test knows; internal requests signed with
// RequestSigner exactly as a peer signs them, then replayed with changed time, path or body.
import assert from "node:assert/strict";
import { RequestSigner } from "../../src/cluster/mod.ts";
import { NodeProcess, putValue, tokenFor } from "../helpers/node_process.ts";
import { InProcessCluster } from "../helpers/in_process_cluster.ts";
import { clusterSecret, jwtSecret, TestCluster } from "../helpers/test_cluster.ts";
import { concatBytes } from "../../src/util/bytes.ts";

const encoder = new TextEncoder();
const nowSecs = () => Math.floor(Date.now() / 1000);

function base64url(bytes: Uint8Array): string {
  return bytes.toBase64({ alphabet: "base64url", omitPadding: true });
}

function encodePart(value: unknown): string {
  return base64url(encoder.encode(JSON.stringify(value)));
}

async function hmac(key: Uint8Array, text: string, hash = "SHA-256"): Promise<string> {
  const cryptoKey = await crypto.subtle.importKey("raw", new Uint8Array(key), { name: "HMAC", hash }, false, [
    "sign",
  ]);
  return base64url(new Uint8Array(await crypto.subtle.sign("HMAC", cryptoKey, encoder.encode(text))));
}

/** A JWT assembled by hand and HMAC-signed with `key` (`hash` picks HS256/384/512). */
async function hmacToken(
  header: Record<string, unknown>,
  payload: Record<string, unknown>,
  key: Uint8Array | string = jwtSecret,
  hash = "SHA-256",
): Promise<string> {
  const input = `${encodePart(header)}.${encodePart(payload)}`;
  const keyBytes = typeof key === "string" ? encoder.encode(key) : key;
  return `${input}.${await hmac(keyBytes, input, hash)}`;
}

/** Claims of a token that would be valid for `sub` if signed right. */
function claims(sub = "alice", extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { sub, iat: nowSecs(), exp: nowSecs() + 3600, ...extra };
}

const hs256 = { alg: "HS256", typ: "JWT" };

/** An RSA key pair and its public key as SPKI PEM text (what an HS/RS confusion attack uses as a secret). */
async function rsaKeys(): Promise<{ privateKey: CryptoKey; publicPem: string }> {
  const pair = await crypto.subtle.generateKey(
    {
      name: "RSASSA-PKCS1-v1_5",
      modulusLength: 2048,
      publicExponent: new Uint8Array([1, 0, 1]),
      hash: "SHA-256",
    },
    true,
    ["sign", "verify"],
  );
  const spki = new Uint8Array(await crypto.subtle.exportKey("spki", pair.publicKey));
  const body = spki.toBase64().match(/.{1,64}/g)!.join("\n");
  return {
    privateKey: pair.privateKey,
    publicPem: `-----BEGIN PUBLIC KEY-----\n${body}\n-----END PUBLIC KEY-----\n`,
  };
}

async function rs256Token(privateKey: CryptoKey, payload: Record<string, unknown>): Promise<string> {
  const input = `${encodePart({ alg: "RS256", typ: "JWT" })}.${encodePart(payload)}`;
  const signature = await crypto.subtle.sign("RSASSA-PKCS1-v1_5", privateKey, encoder.encode(input));
  return `${input}.${base64url(new Uint8Array(signature))}`;
}

/** Every forged or unusable token, by name. Each must be refused with 401. */
async function attackTokens(realToken: string): Promise<Array<[string, string]>> {
  const { privateKey, publicPem } = await rsaKeys();
  const [header, payload, signature] = realToken.split(".") as [string, string, string];
  const unsigned = (alg: string) => `${encodePart({ alg, typ: "JWT" })}.${encodePart(claims())}.`;
  return [
    ["alg none", unsigned("none")],
    ["alg None", unsigned("None")],
    ["alg NONE", unsigned("NONE")],
    ["alg none with the real signature", `${encodePart({ alg: "none" })}.${payload}.${signature}`],
    ["alg none with an HMAC signature", await hmacToken({ alg: "none", typ: "JWT" }, claims())],
    ["RS256 whose public key is the HMAC secret", await hmacToken({ alg: "RS256", typ: "JWT" }, claims())],
    ["HS256 signed with a public key's PEM text", await hmacToken(hs256, claims(), publicPem)],
    ["RS256 signed with an attacker's RSA key", await rs256Token(privateKey, claims())],
    [
      "HS256 with an embedded jwk",
      await hmacToken(
        { ...hs256, jwk: { kty: "oct", k: base64url(encoder.encode("attacker-key-0123456789abcdef0123")) } },
        claims(),
        "attacker-key-0123456789abcdef0123",
      ),
    ],
    [
      "HS384 with the right secret",
      await hmacToken({ alg: "HS384", typ: "JWT" }, claims(), jwtSecret, "SHA-384"),
    ],
    [
      "HS512 with the right secret",
      await hmacToken({ alg: "HS512", typ: "JWT" }, claims(), jwtSecret, "SHA-512"),
    ],
    ["wrong key", await hmacToken(hs256, claims(), "a-completely-different-secret-0123456789")],
    ["one-byte key", await hmacToken(hs256, claims(), new Uint8Array(1))],
    ["expired", await hmacToken(hs256, claims("alice", { iat: nowSecs() - 7200, exp: nowSecs() - 60 }))],
    ["expired at exactly now - 1 s", await hmacToken(hs256, claims("alice", { exp: nowSecs() - 1 }))],
    ["nbf in the future", await hmacToken(hs256, claims("alice", { nbf: nowSecs() + 3600 }))],
    ["tampered payload (sub changed)", `${header}.${encodePart(claims("mallory"))}.${signature}`],
    [
      "tampered payload (exp extended)",
      `${header}.${encodePart(claims("alice", { exp: nowSecs() + 1e8 }))}.${signature}`,
    ],
    ["tampered header (alg none)", `${encodePart({ alg: "none", typ: "JWT" })}.${payload}.${signature}`],
    ["signature cut short", `${header}.${payload}.${signature.slice(0, 10)}`],
    ["signature removed", `${header}.${payload}.`],
    ["no sub", await hmacToken(hs256, { iat: nowSecs(), exp: nowSecs() + 3600 })],
    ["no exp", await hmacToken(hs256, { sub: "alice", iat: nowSecs() })],
    ["empty sub", await hmacToken(hs256, claims(""))],
    ["numeric sub", await hmacToken(hs256, { sub: 7, iat: nowSecs(), exp: nowSecs() + 3600 })],
    ["exp as a string", await hmacToken(hs256, claims("alice", { exp: String(nowSecs() + 3600) }))],
    ["payload not JSON", `${header}.${base64url(encoder.encode("alice"))}.${signature}`],
    ["unknown crit header", await hmacToken({ ...hs256, crit: ["x-dyna"], "x-dyna": 1 }, claims())],
    ["b64:false", await hmacToken({ ...hs256, b64: false, crit: ["b64"] }, claims())],
    ["four segments", `${realToken}.${signature}`],
    ["two segments", `${header}.${payload}`],
    ["JWE-shaped", `${header}.${payload}.${signature}.${signature}.${signature}`],
    ["padding added", `${header}==.${payload}.${signature}`],
  ];
}

Deno.test(
  "attacks: forged, confused, expired, tampered and incomplete tokens are all 401 and change nothing",
  async () => {
    await using cluster = await TestCluster.start({ nodeCount: 1 });
    const node = cluster.node(0);
    const realToken = await tokenFor(node, "alice");
    const original = await putValue(node, "/t/key/owned", "original", { token: realToken });
    assert.equal(original.status, 201);
    await original.body?.cancel();
    // The hand-made tokens are right except for the attack: a correct one is accepted.
    const control = await putValue(node, "/t/key/control", 1, { token: await hmacToken(hs256, claims()) });
    assert.equal(control.status, 201, "a hand-made HS256 token with the right key is accepted");
    await control.body?.cancel();
    const accepted: string[] = [];
    for (const [name, token] of await attackTokens(realToken)) {
      for (const method of ["PUT", "PATCH", "DELETE"]) {
        const response = await node.fetch("/t/key/owned", {
          method,
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
          body: method === "DELETE" ? null : JSON.stringify({ value: { forged: name } }),
        });
        const text = await response.text();
        if (response.status !== 401) {
          accepted.push(`${name}: ${method} -> ${response.status} ${text.slice(0, 120)}`);
        } else {
          assert.equal(JSON.parse(text).code, "token_invalid", `${name}: ${text}`);
          assert.equal(response.headers.get("www-authenticate"), "Bearer");
          assert.ok(!text.includes(token.split(".")[1] ?? token), `${name}: the error quotes the token`);
        }
      }
    }
    assert.deepEqual(accepted, [], "attack tokens that were not refused with 401");
    const read = await node.fetch("/t/key/owned");
    const entry = await read.json();
    assert.equal(entry.value, "original", "no attack changed the key");
    assert.equal(entry.version, 1);
  },
);

Deno.test({
  name: "attacks: a token whose iat is in the future is refused",
  fn: async () => {
    await using cluster = await TestCluster.start({ nodeCount: 1 });
    const token = await hmacToken(hs256, { sub: "alice", iat: nowSecs() + 3600, exp: nowSecs() + 7200 });
    const response = await putValue(cluster.node(0), "/t/key/future", 1, { token });
    await response.body?.cancel();
    assert.equal(response.status, 401);
  },
});

Deno.test(
  "attacks: a login brute force gets 429 with Retry-After, for that user from that address",
  async () => {
    await using node = await NodeProcess.start({ env: { JWT_SECRET: jwtSecret } });
    await tokenFor(node, "victim", "the-right-secret");
    const login = async (user: string, secret: string) => {
      const response = await node.fetch(`/auth/${user}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ secret }),
      });
      const body = await response.json();
      return { status: response.status, retryAfter: response.headers.get("retry-after"), body };
    };
    // A burst of concurrent guesses cannot slip past the limit while the slow hashes run.
    const burst = await Promise.all(
      Array.from({ length: 25 }, (_, index) => login("victim", `guess-${index}`)),
    );
    const statuses = burst.map((result) => result.status);
    assert.ok(statuses.every((status) => status === 401 || status === 429), `statuses ${statuses}`);
    const wrongCount = statuses.filter((status) => status === 401).length;
    assert.ok(wrongCount <= 10, `${wrongCount} guesses were checked; the limit is 10 a minute`);
    assert.ok(statuses.includes(429), "the burst was stopped");
    for (const result of burst.filter((result) => result.status === 429)) {
      assert.equal(result.body.code, "rate_limited");
      const retryAfter = Number(result.retryAfter);
      assert.ok(
        Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60,
        `Retry-After ${result.retryAfter}`,
      );
      assert.ok(!JSON.stringify(result.body).includes("guess-"), "the error quotes no secret");
    }
    // While locked, even the right secret is refused, so the lock is no oracle.
    const right = await login("victim", "the-right-secret");
    assert.equal(right.status, 429);
    assert.ok(Number(right.retryAfter) >= 1);
    // Only this user from this address is locked (SPEC §8): a neighbour behind the same address is not,
    // until the address's own ceiling across users (100 failures a minute) is reached.
    const other = await login("someone-else", "x");
    assert.equal(other.status, 201, "another user from the same address is not refused");
  },
);

/** Sends one internal request as a peer would; answers its status and body text. */
type InternalSend = (
  path: string,
  headers: Record<string, string>,
  body: string,
) => Promise<{ status: number; text: string }>;

/** A captured signed read, replayed to every other internal path (and an encoded one), is 403. */
async function assertReplayedToOtherPathsRefused(
  send: InternalSend,
  captured: Record<string, string>,
  body: string,
): Promise<void> {
  const kinds = [
    "list",
    "write",
    "writes",
    "restore",
    "apply",
    "leave",
    "join",
    "ping",
    "ping-req",
    "digest",
    "sync",
    "read%2f",
  ];
  for (const kind of kinds) {
    const replayed = await send(`/_internal/${kind}`, captured, body);
    assert.equal(replayed.status, 403, `the captured read replayed to ${kind}: ${replayed.text}`);
  }
}

Deno.test(
  "attacks: internal requests replayed outside their time window or to another path are 403",
  async () => {
    await using cluster = await TestCluster.start({ nodeCount: 1 });
    const node = cluster.node(0);
    const token = await tokenFor(node, "alice");
    const written = await putValue(node, "/t/key/k", "v", { token });
    assert.equal(written.status, 201);
    await written.body?.cancel();
    const signer = await RequestSigner.create(clusterSecret);
    const sender = "127.0.0.1:1";
    const send: InternalSend = async (path, headers, body) => {
      const response = await node.fetch(path, { method: "POST", headers, body });
      const text = await response.text();
      return { status: response.status, text };
    };
    const body = JSON.stringify({ table: "t", key: "k" });
    const target = cluster.id(0);
    const captured = await signer.sign({
      path: "/_internal/read",
      sender,
      target,
      bodyText: body,
      nowMs: Date.now(),
    });
    const fresh = await send("/_internal/read", captured, body);
    assert.equal(fresh.status, 200, `the captured request itself is accepted: ${fresh.text}`);

    for (
      const [label, offsetMs] of [["an hour old", -3_600_000], ["an hour ahead", 3_600_000], [
        "a day old",
        -86_400_000,
      ]] as const
    ) {
      const headers = await signer.sign({
        path: "/_internal/read",
        sender,
        target,
        bodyText: body,
        nowMs: Date.now() + offsetMs,
      });
      const replayed = await send("/_internal/read", headers, body);
      assert.equal(replayed.status, 403, `${label}: ${replayed.text}`);
      assert.equal(JSON.parse(replayed.text).code, "cluster_unauthorized");
    }
    const leaveBody = JSON.stringify({ member: { id: cluster.id(0), status: "left", incarnation: 1e15 } });
    const oldLeave = await signer.sign({
      path: "/_internal/leave",
      sender,
      target,
      bodyText: leaveBody,
      nowMs: Date.now() - 3_600_000,
    });
    assert.equal(
      (await send("/_internal/leave", oldLeave, leaveBody)).status,
      403,
      "an old leave is refused",
    );

    await assertReplayedToOtherPathsRefused(send, captured, body);
    const otherBody = JSON.stringify({ table: "t", key: "other" });
    assert.equal(
      (await send("/_internal/read", captured, otherBody)).status,
      403,
      "the captured MAC over another body",
    );
    const listBody = JSON.stringify({ table: "t", limit: 10 });
    assert.equal((await send("/_internal/list", captured, listBody)).status, 403, "another path and body");
    assert.equal((await cluster.membership(0)).get(cluster.id(0)), "alive", "no replay changed membership");
  },
);

/** One node-to-node request as a node sent it: enough to send it again byte for byte. */
interface CapturedRequest {
  url: string;
  headers: Record<string, string>;
  body: string;
}

/**
 * Records every node-to-node request the nodes of this process send, as the bytes they write on their
 * connections (all opened with `Deno.connect` by the cluster's HTTP/1.1 client): what an attacker on the
 * network would see. `requests` parses the streams written so far; `[Symbol.dispose]` puts `Deno.connect`
 * back.
 */
function captureInternalRequests(): { readonly requests: CapturedRequest[] } & Disposable {
  const original = Deno.connect;
  const streams: Array<{ origin: string; chunks: Uint8Array[] }> = [];
  Deno.connect = (async (options: Deno.ConnectOptions) => {
    const conn = await original(options);
    const stream = {
      origin: `http://${options.hostname ?? "127.0.0.1"}:${options.port}`,
      chunks: [] as Uint8Array[],
    };
    streams.push(stream);
    const write = conn.write.bind(conn);
    conn.write = async (bytes: Uint8Array) => {
      const written = await write(bytes);
      stream.chunks.push(bytes.slice(0, written));
      return written;
    };
    return conn;
  }) as typeof Deno.connect;
  return {
    get requests() {
      return streams.flatMap((stream) => parseRequests(stream.origin, concatBytes(stream.chunks)));
    },
    [Symbol.dispose]: () => void (Deno.connect = original),
  };
}

/** The HTTP/1.1 requests written back to back in `bytes` (each with a Content-Length body). */
function parseRequests(origin: string, bytes: Uint8Array): CapturedRequest[] {
  const text = new TextDecoder().decode(bytes);
  const requests: CapturedRequest[] = [];
  let offset = 0;
  while (offset < text.length) {
    const headEnd = text.indexOf("\r\n\r\n", offset);
    if (headEnd < 0) break;
    const [requestLine, ...lines] = text.slice(offset, headEnd).split("\r\n");
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(":");
      headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
    }
    const bodyStart = headEnd + 4;
    const bodyBytes = Number(headers["content-length"] ?? "0");
    // Bodies are JSON written as UTF-8: count bytes, not characters, to find the next request.
    const rest = new TextEncoder().encode(text.slice(bodyStart));
    const body = new TextDecoder().decode(rest.subarray(0, bodyBytes));
    delete headers["host"];
    delete headers["content-length"];
    requests.push({ url: `${origin}${requestLine!.split(" ")[1]}`, headers, body });
    offset = bodyStart + body.length;
  }
  return requests;
}

/** The key's value and version as node `index` serves it, or the status when it has none. */
async function stateOf(cluster: InProcessCluster, index: number, path: string): Promise<unknown> {
  const response = await cluster.fetch(index, path);
  if (response.status !== 200) {
    await response.body?.cancel();
    return response.status;
  }
  const { value, version } = await response.json();
  return { value, version };
}

/** A key of table `t` whose coordinator (first replica) is node `index`, so node 0 forwards its writes. */
function keyCoordinatedBy(cluster: InProcessCluster, index: number): string {
  const placement = cluster.node(0).cluster.replicator.placement;
  for (let attempt = 0; attempt < 1_000; attempt += 1) {
    if (placement.replicasOf("t", `key-${attempt}`)[0] === cluster.id(index)) return `key-${attempt}`;
  }
  throw new Error(`no key is coordinated by node ${index}`);
}

async function replay(request: CapturedRequest): Promise<{ status: number; text: string }> {
  const response = await fetch(request.url, { method: "POST", headers: request.headers, body: request.body });
  return { status: response.status, text: await response.text() };
}

Deno.test(
  "attacks: a captured node-to-node write or delete replayed verbatim is 403 and changes nothing, " +
    "also after restarts (issue 18, item 6)",
  async () => {
    await using cluster = await InProcessCluster.start({ nodeCount: 2 });
    using capture = captureInternalRequests();
    const auth = await cluster.fetch(0, "/auth/alice", { method: "POST", body: '{"secret":"alice secret"}' });
    const { token } = await auth.json();
    const key = keyCoordinatedBy(cluster, 1);
    const path = `/t/key/${key}`;
    const write = async (method: string, value?: unknown) => {
      const response = await cluster.fetch(0, path, {
        method,
        headers: { authorization: `Bearer ${token}` },
        ...(value === undefined ? {} : { body: JSON.stringify({ value }) }),
      });
      await response.body?.cancel();
      return response.status;
    };
    /** The forwarded write node 0 sent node 1 for the last client request: what an attacker captures. */
    const forwarded = (marker: string): CapturedRequest => {
      const found = capture.requests.filter((request) =>
        request.url.startsWith(`${cluster.node(1).url}/_internal/write`) && request.body.includes(marker)
      ).at(-1);
      assert.ok(found !== undefined, `node 0 forwarded ${marker} to node 1`);
      return found;
    };
    // Node 1 takes the key first: node 0 then forwards its writes of it to node 1, their usual proposer.
    const first = await cluster.fetch(1, path, {
      method: "PUT",
      headers: { authorization: `Bearer ${token}` },
      body: JSON.stringify({ value: "first" }),
    });
    assert.equal(first.status, 201);
    await first.body?.cancel();
    assert.equal(await write("PUT", "old value"), 201);
    const capturedPut = forwarded('"old value"');
    assert.equal(await write("PUT", "new value"), 201);
    const expected = { value: "new value", version: 3 };
    const replayed = await replay(capturedPut);
    assert.equal(replayed.status, 403, replayed.text);
    assert.match(replayed.text, /it is a replay/);
    assert.deepEqual(await stateOf(cluster, 1, path), expected, "the old value did not come back");

    assert.equal(await write("DELETE"), 200);
    const capturedDelete = forwarded('"op":"delete"');
    assert.equal(await write("PUT", "re-created"), 201);
    const recreated = { value: "re-created", version: 5 };
    assert.equal((await replay(capturedDelete)).status, 403);
    assert.deepEqual(await stateOf(cluster, 1, path), recreated, "the re-created key was not deleted");

    // The sender restarts (a new epoch): its old requests stay refused.
    await cluster.crash(0);
    await cluster.restart(0);
    await cluster.waitConverged();
    for (const request of [capturedPut, capturedDelete]) {
      const again = await replay(request);
      assert.equal(again.status, 403, `after the sender restarted: ${again.text}`);
    }
    // The receiver restarts (its memory starts empty): requests signed before it started are refused.
    await cluster.crash(1);
    await cluster.restart(1);
    await cluster.waitConverged();
    for (const request of [capturedPut, capturedDelete]) {
      const again = await replay(request);
      assert.equal(again.status, 403, `after the receiver restarted: ${again.text}`);
    }
    assert.deepEqual(await stateOf(cluster, 1, path), recreated);
    assert.deepEqual(await stateOf(cluster, 0, path), recreated);
  },
);

Deno.test(
  "attacks: concurrent node-to-node requests arriving out of order are each accepted once",
  async () => {
    await using cluster = await InProcessCluster.start({ nodeCount: 2 });
    const signer = await RequestSigner.create(clusterSecret);
    const target = cluster.id(1);
    const path = "/_internal/read";
    const signed = Array.from({ length: 300 }, (_, index) => {
      const body = JSON.stringify({ table: "t", key: `k${index}` });
      return {
        body,
        headers: signer.sign({ path, sender: "127.0.0.1:1", target, bodyText: body, nowMs: Date.now() }),
      };
    });
    // Reversed and interleaved, 50 at a time: every one is new to the receiver, in whatever order it comes.
    const order = signed.map((_, index) => index).sort((a, b) => (a % 7) - (b % 7) || b - a);
    const send = async (index: number) => {
      const { body, headers } = signed[index]!;
      const response = await cluster.fetch(1, path, { method: "POST", headers, body });
      await response.body?.cancel();
      return response.status;
    };
    const statuses: number[] = [];
    for (let start = 0; start < order.length; start += 50) {
      statuses.push(...await Promise.all(order.slice(start, start + 50).map(send)));
    }
    assert.deepEqual([...new Set(statuses)], [200], "every first delivery is accepted");
    const again = await Promise.all(order.slice(0, 50).map(send));
    assert.deepEqual([...new Set(again)], [403], "every second delivery is a replay");
    // Real traffic between the nodes: concurrent writes forwarded and replicated through the same door.
    const auth = await cluster.fetch(0, "/auth/bob", { method: "POST", body: '{"secret":"bob secret"}' });
    const { token } = await auth.json();
    const writes = await Promise.all(Array.from({ length: 100 }, async (_, index) => {
      const response = await cluster.fetch(index % 2, `/t/key/w${index}`, {
        method: "PUT",
        headers: { authorization: `Bearer ${token}` },
        body: JSON.stringify({ value: index }),
      });
      await response.body?.cancel();
      return response.status;
    }));
    assert.deepEqual([...new Set(writes)], [201]);
  },
);
