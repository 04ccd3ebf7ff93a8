// Goal: RequestSigner authenticates node-to-node requests from their headers: a round trip verifies, and a
// wrong secret, a tampered path, sender, target, time, sequence or digest, a missing or malformed header,
// a time outside the validity window or a request addressed to another node is refused; the body is bound
// through its declared digest.
// Method: sign with one signer and verify with another built from the same or another secret.
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { bodyDigest, ClusterAuthError, RequestSigner } from "../../../src/cluster/mod.ts";
import { HmacKey } from "../../../src/cluster/mac.ts";
import { AssertionError } from "../../../src/util/assert.ts";
import { Random } from "../../helpers/seed.ts";

const secret = "mac-test-secret-0123456789abcdef0123";
const nowMs = 1_700_000_000_000;
const windowMs = 30_000;
const self = "127.0.0.1:7000";
const request = {
  path: "/_internal/ping",
  sender: "127.0.0.1:7001",
  target: self,
  bodyText: '{"members":[]}',
  nowMs,
};

async function signedHeaders(
  signer: RequestSigner,
  overrides: Partial<typeof request> = {},
): Promise<Headers> {
  return new Headers(await signer.sign({ ...request, ...overrides }));
}

/** Asserts a ClusterAuthError whose message matches `pattern` and leaks neither secret nor MAC. */
function refused(pattern: RegExp, mac?: string): (error: unknown) => boolean {
  return (error: unknown) => {
    assert.ok(error instanceof ClusterAuthError, String(error));
    assert.equal(error.code, "cluster_unauthorized");
    assert.match(error.message, pattern);
    assert.ok(!error.message.includes(secret));
    if (mac !== undefined) assert.ok(!error.message.includes(mac));
    return true;
  };
}

const verifyBase = { path: request.path, self, nowMs, windowMs };

Deno.test(
  "RequestSigner.sign() then verify() returns the sender, time, sequence and body digest",
  async () => {
    const signer = await RequestSigner.create(secret);
    const headers = await signedHeaders(signer);
    assert.equal(headers.get("x-dyna-node"), request.sender);
    assert.equal(headers.get("x-dyna-target"), self);
    assert.equal(headers.get("x-dyna-time"), String(nowMs));
    assert.match(headers.get("x-dyna-seq")!, /^[0-9a-f]{16}-1$/);
    assert.equal(headers.get("x-dyna-digest"), bodyDigest(new TextEncoder().encode(request.bodyText)));
    assert.match(headers.get("x-dyna-mac")!, /^[A-Za-z0-9_-]{43}$/);
    const verifier = await RequestSigner.create(secret);
    const verified = verifier.verify({ ...verifyBase, headers });
    assert.equal(verified.sender, request.sender);
    assert.equal(verified.timeMs, nowMs);
    assert.equal(verified.sequence.counter, 1);
    assert.equal(verified.digest, bodyDigest(request.bodyText));
  },
);

Deno.test("RequestSigner.sign() counts per target from 1 within one epoch", async () => {
  const signer = await RequestSigner.create(secret);
  const sequences = [self, self, "127.0.0.1:7002", self].map((target) =>
    signer.sign({ ...request, target })["x-dyna-seq"]!
  );
  const epochs = new Set(sequences.map((sequence) => sequence.split("-")[0]));
  assert.equal(epochs.size, 1);
  assert.deepEqual(sequences.map((sequence) => sequence.split("-")[1]), ["1", "2", "1", "3"]);
  const other = await RequestSigner.create(secret);
  assert.notEqual(other.sign(request)["x-dyna-seq"]!.split("-")[0], [...epochs][0], "a new epoch per signer");
});

Deno.test("RequestSigner.verify() refuses a MAC made with another secret", async () => {
  const other = await RequestSigner.create("another-secret-0123456789abcdef01234");
  const headers = await signedHeaders(other);
  const verifier = await RequestSigner.create(secret);
  assert.throws(
    () => verifier.verify({ ...verifyBase, headers }),
    refused(/MAC does not match/, headers.get("x-dyna-mac")!),
  );
});

Deno.test(
  "RequestSigner.verify() refuses a tampered path, sender, target, time, sequence or digest",
  async () => {
    const signer = await RequestSigner.create(secret);
    const headers = await signedHeaders(signer);
    assert.throws(
      () => signer.verify({ ...verifyBase, path: "/_internal/join", headers }),
      refused(/MAC does not match/),
    );
    const tampered: Array<[string, string]> = [
      ["x-dyna-node", "127.0.0.1:7002"],
      ["x-dyna-target", "127.0.0.1:7003"],
      ["x-dyna-time", String(nowMs + 1)],
      ["x-dyna-seq", headers.get("x-dyna-seq")!.replace(/-1$/, "-2")],
      ["x-dyna-digest", bodyDigest('{"members":[1]}')],
    ];
    for (const [name, value] of tampered) {
      const forged = new Headers(headers);
      forged.set(name, value);
      assert.throws(
        () => signer.verify({ ...verifyBase, headers: forged }),
        refused(/MAC does not match/),
        name,
      );
    }
  },
);

Deno.test(
  "RequestSigner.verify() refuses a request addressed to another node, naming this node's id",
  async () => {
    const signer = await RequestSigner.create(secret);
    const headers = await signedHeaders(signer, { target: "localhost:7000" });
    assert.throws(() => signer.verify({ ...verifyBase, headers }), (error: unknown) => {
      assert.ok(refused(/addressed to localhost:7000, this node is 127\.0\.0\.1:7000/)(error));
      assert.deepEqual((error as ClusterAuthError).headers, { "x-dyna-node": self });
      return true;
    });
    const unauthenticated = new Headers(headers);
    unauthenticated.set("x-dyna-mac", "A".repeat(43));
    assert.throws(
      () => signer.verify({ ...verifyBase, headers: unauthenticated }),
      (error: unknown) =>
        refused(/MAC does not match/)(error) && Object.keys((error as ClusterAuthError).headers).length === 0,
      "only an authenticated sender learns the id",
    );
  },
);

Deno.test(
  "RequestSigner.verify() accepts a time at the window's edge and refuses one 1 ms beyond",
  async () => {
    const signer = await RequestSigner.create(secret);
    for (const skewMs of [windowMs, -windowMs]) {
      const headers = await signedHeaders(signer, { nowMs: nowMs + skewMs });
      assert.equal(signer.verify({ ...verifyBase, headers }).sender, request.sender);
      assert.throws(
        () => signer.verify({ ...verifyBase, headers, nowMs: nowMs - Math.sign(skewMs) }),
        refused(/30001 ms away from this node's clock, the window is 30000 ms/),
      );
    }
  },
);

Deno.test("RequestSigner.verify() refuses a missing or malformed header", async () => {
  const signer = await RequestSigner.create(secret);
  const headers = await signedHeaders(signer);
  for (
    const name of ["x-dyna-node", "x-dyna-target", "x-dyna-time", "x-dyna-seq", "x-dyna-digest", "x-dyna-mac"]
  ) {
    const missing = new Headers(headers);
    missing.delete(name);
    assert.throws(
      () => signer.verify({ ...verifyBase, headers: missing }),
      refused(new RegExp(`${name} is missing`)),
    );
  }
  const cases: Array<[string, string, RegExp]> = [
    ["x-dyna-time", "soon", /not a time/],
    ["x-dyna-time", "-5", /not a time/],
    ["x-dyna-mac", "not base64!", /malformed/],
    ["x-dyna-mac", "AAAA", /malformed/],
    ["x-dyna-node", "x".repeat(301), /over 300 characters/],
    ["x-dyna-target", "x".repeat(301), /over 300 characters/],
    ["x-dyna-seq", "1", /not <epoch>-<counter>/],
    ["x-dyna-seq", "00000000000000zz-1", /not <epoch>-<counter>/],
    ["x-dyna-seq", "0000000000000000-0", /not <epoch>-<counter>/],
    ["x-dyna-seq", "0000000000000000-99999999999999999", /not <epoch>-<counter>/],
    ["x-dyna-digest", "abc", /not a base64url SHA-256/],
  ];
  for (const [name, value, pattern] of cases) {
    const bad = new Headers(headers);
    bad.set(name, value);
    assert.throws(
      () => signer.verify({ ...verifyBase, headers: bad }),
      refused(pattern),
      `${name}: ${value}`,
    );
  }
});

Deno.test("HmacKey gives createHmac's HMAC-SHA-256: RFC 4231 case 2 and seeded keys and messages", () => {
  const encoder = new TextEncoder();
  const hex = (bytes: Uint8Array) => Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
  // RFC 4231, test case 2: key "Jefe".
  assert.equal(
    hex(new HmacKey(encoder.encode("Jefe")).mac("what do ya want for nothing?")),
    "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
  );
  const random = Random.fromEnv("hmac key");
  for (let round = 0; round < 200; round += 1) {
    const key = new Uint8Array(1 + random.int(64)).map(() => random.int(256));
    const message = Array.from({ length: random.int(300) }, () => String.fromCodePoint(random.int(0x2fff)))
      .join("");
    const expected = createHmac("sha256", key).update(message, "utf8").digest();
    assert.equal(hex(new HmacKey(key).mac(message)), hex(expected), `key ${hex(key)}`);
  }
  assert.throws(() => new HmacKey(new Uint8Array(65)), AssertionError, "a key over one block is refused");
});

Deno.test("RequestSigner.sign() hashes the body's bytes when given them, as the receiver does", async () => {
  const signer = await RequestSigner.create(secret);
  const bytes = new TextEncoder().encode(request.bodyText);
  const fromText = new Headers(signer.sign(request));
  const { bodyText: _text, ...withoutText } = request;
  const fromBytes = new Headers(signer.sign({ ...withoutText, bodyBytes: bytes }));
  assert.equal(fromBytes.get("x-dyna-digest"), fromText.get("x-dyna-digest"));
  assert.equal(fromBytes.get("x-dyna-digest"), bodyDigest(bytes));
});
