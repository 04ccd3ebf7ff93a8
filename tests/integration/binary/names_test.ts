// Goal: names that look alike are one name or refused (SPEC §8, issue 18 item 9): user, table and key
// names are compared after NFC normalization, and names with invisible (default-ignorable) or
// bidirectional control characters are refused with 400 invalid_name.
// Method: a real node; each name is sent percent-encoded in its composed (NFC) and decomposed (NFD)
// spelling, through registration, writes, reads, listings and batch reads.
import assert from "node:assert/strict";
import { NodeProcess, putValue } from "../../helpers/node_process.ts";

const composed = "caf%C3%A9"; // café, with U+00E9
const decomposed = "cafe%CC%81"; // cafe + U+0301 COMBINING ACUTE ACCENT

function register(node: NodeProcess, user: string, secret: string): Promise<Response> {
  return node.fetch(`/auth/${user}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ secret }),
  });
}

Deno.test("POST /auth/{user}: the NFD spelling of a registered NFC name logs in as that user", async () => {
  await using node = await NodeProcess.start();
  const first = await register(node, "jos%C3%A9", "pw");
  assert.equal(first.status, 201);
  const { token } = await first.json();
  const again = await register(node, "jose%CC%81", "pw");
  assert.equal(again.status, 200, "a login of the same user, not a second account");
  await again.body?.cancel();
  const other = await register(node, "jose%CC%81", "not-the-secret");
  assert.equal(other.status, 401);
  await other.body?.cancel();
  const written = await putValue(node, "/t/key/k", 1, { token });
  assert.equal((await written.json()).owner, "jos\u00e9");
});

Deno.test("PUT/GET: table and key names in NFD and NFC reach the same record", async () => {
  await using node = await NodeProcess.start();
  const token = (await (await register(node, "alice", "pw")).json()).token;
  const written = await putValue(node, `/${decomposed}/key/${decomposed}`, "v1", { token });
  assert.equal(written.status, 201);
  await written.body?.cancel();
  const read = await node.fetch(`/${composed}/key/${composed}`);
  assert.equal(read.status, 200);
  assert.equal((await read.json()).value, "v1");
  const updated = await putValue(node, `/${composed}/key/${composed}`, "v2", { token });
  assert.equal((await updated.json()).version, 2, "the NFC spelling updates the record the NFD one made");
  const keys = await node.fetch(`/${decomposed}/keys`);
  assert.deepEqual(await keys.json(), ["caf\u00e9"]);
  const batch = await node.fetch(`/${composed}/keys`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(["cafe\u0301"]),
  });
  assert.deepEqual(Object.keys(await batch.json()), ["caf\u00e9"]);
  const page = await node.fetch(`/${composed}/keys?after=${decomposed}`);
  assert.deepEqual(await page.json(), [], "after= is normalized too");
});

Deno.test("names with invisible or bidirectional control characters are 400 invalid_name", async () => {
  await using node = await NodeProcess.start();
  const token = (await (await register(node, "alice", "pw")).json()).token;
  const cases: Array<[string, () => Promise<Response>, string]> = [
    ["user with a zero width joiner", () => register(node, "ali%E2%80%8Dce", "pw"), "U+200D"],
    ["user with a soft hyphen", () => register(node, "ali%C2%ADce", "pw"), "U+00AD"],
    ["user with a variation selector", () => register(node, "alice%EF%B8%8F", "pw"), "U+FE0F"],
    ["key with a zero width non-joiner", () => putValue(node, "/t/key/a%E2%80%8Cb", 1, { token }), "U+200C"],
    [
      "table with a right-to-left override",
      () => putValue(node, "/%E2%80%AEt/key/k", 1, { token }),
      "U+202E",
    ],
    ["key read with a left-to-right mark", () => node.fetch("/t/key/k%E2%80%8E"), "U+200E"],
  ];
  for (const [what, send, codePoint] of cases) {
    const response = await send();
    const problem = await response.json();
    assert.equal(response.status, 400, `${what}: ${JSON.stringify(problem)}`);
    assert.equal(problem.code, "invalid_name", what);
    assert.ok(problem.detail.includes(codePoint), `${what}: ${problem.detail}`);
  }
});
