// Goal: RequestSigner authenticates node-to-node requests: a round trip verifies, and a wrong secret, a
// tampered path, body or sender, a missing header or a time outside the replay window is refused.
// Method: sign with one signer and verify with another built from the same or another secret.
import assert from "node:assert/strict";
import { ClusterAuthError, RequestSigner } from "../../../src/cluster/mod.ts";

const secret = "mac-test-secret-0123456789abcdef0123";
const nowMs = 1_700_000_000_000;
const windowMs = 30_000;
const request = { path: "/_internal/ping", sender: "127.0.0.1:7001", bodyText: '{"members":[]}', nowMs };

async function signedHeaders(
  signer: RequestSigner,
  overrides: Partial<typeof request> = {},
): Promise<Headers> {
  return new Headers(await signer.sign({ ...request, ...overrides }));
}

/** Asserts a ClusterAuthError whose message matches `pattern` and leaks neither secret nor MAC. */
function refused(pattern: RegExp, mac?: string): (error: unknown) => boolean {
  return (error: unknown) => {
    assert.ok(error instanceof ClusterAuthError);
    assert.equal(error.code, "cluster_unauthorized");
    assert.match(error.message, pattern);
    assert.ok(!error.message.includes(secret));
    if (mac !== undefined) assert.ok(!error.message.includes(mac));
    return true;
  };
}

Deno.test("RequestSigner.sign() then verify() returns the sender", async () => {
  const signer = await RequestSigner.create(secret);
  const headers = await signedHeaders(signer);
  assert.equal(headers.get("x-dyna-node"), request.sender);
  assert.equal(headers.get("x-dyna-time"), String(nowMs));
  assert.match(headers.get("x-dyna-mac")!, /^[A-Za-z0-9_-]{43}$/);
  const verifier = await RequestSigner.create(secret);
  const sender = verifier.verify({
    path: request.path,
    headers,
    bodyText: request.bodyText,
    nowMs,
    windowMs,
  });
  assert.equal(sender, request.sender);
});

Deno.test("RequestSigner.verify() refuses a MAC made with another secret", async () => {
  const other = await RequestSigner.create("another-secret-0123456789abcdef01234");
  const headers = await signedHeaders(other);
  const verifier = await RequestSigner.create(secret);
  assert.throws(
    () => verifier.verify({ path: request.path, headers, bodyText: request.bodyText, nowMs, windowMs }),
    refused(/MAC does not match/, headers.get("x-dyna-mac")!),
  );
});

Deno.test("RequestSigner.verify() refuses a tampered body, path or sender", async () => {
  const signer = await RequestSigner.create(secret);
  const headers = await signedHeaders(signer);
  const base = { path: request.path, headers, bodyText: request.bodyText, nowMs, windowMs };
  assert.throws(() => signer.verify({ ...base, bodyText: '{"members":[1]}' }), refused(/MAC does not match/));
  assert.throws(() => signer.verify({ ...base, path: "/_internal/join" }), refused(/MAC does not match/));
  const forged = new Headers(headers);
  forged.set("x-dyna-node", "127.0.0.1:7002");
  assert.throws(() => signer.verify({ ...base, headers: forged }), refused(/MAC does not match/));
  const retimed = new Headers(headers);
  retimed.set("x-dyna-time", String(nowMs + 1));
  assert.throws(() => signer.verify({ ...base, headers: retimed }), refused(/MAC does not match/));
});

Deno.test("RequestSigner.verify() accepts a time at the window's edge and refuses one 1 ms beyond", async () => {
  const signer = await RequestSigner.create(secret);
  for (const skewMs of [windowMs, -windowMs]) {
    const headers = await signedHeaders(signer, { nowMs: nowMs + skewMs });
    const base = { path: request.path, headers, bodyText: request.bodyText, windowMs };
    assert.equal(await signer.verify({ ...base, nowMs }), request.sender);
    assert.throws(
      () => signer.verify({ ...base, nowMs: nowMs - Math.sign(skewMs) }),
      refused(/30001 ms away from this node's clock, the window is 30000 ms/),
    );
  }
});

Deno.test("RequestSigner.verify() refuses a missing or malformed header", async () => {
  const signer = await RequestSigner.create(secret);
  const headers = await signedHeaders(signer);
  const base = { path: request.path, bodyText: request.bodyText, nowMs, windowMs };
  for (const name of ["x-dyna-node", "x-dyna-time", "x-dyna-mac"]) {
    const missing = new Headers(headers);
    missing.delete(name);
    assert.throws(
      () => signer.verify({ ...base, headers: missing }),
      refused(new RegExp(`${name} is missing`)),
    );
  }
  const cases: Array<[string, string, RegExp]> = [
    ["x-dyna-time", "soon", /not a time/],
    ["x-dyna-time", "-5", /not a time/],
    ["x-dyna-mac", "not base64!", /malformed/],
    ["x-dyna-mac", "AAAA", /malformed/],
    ["x-dyna-node", "x".repeat(301), /over 300 characters/],
  ];
  for (const [name, value, pattern] of cases) {
    const bad = new Headers(headers);
    bad.set(name, value);
    assert.throws(() => signer.verify({ ...base, headers: bad }), refused(pattern));
  }
});
