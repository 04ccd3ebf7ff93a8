// Goal: a token is valid only for a user that exists (SPEC §8, issue 18 item 7). A token with a good
// signature for a name nobody registered writes nothing, and whoever registers that name later owns
// nothing the token tried to write.
// Method: a real node whose JWT_SECRET the test knows, so it can sign tokens as an attacker holding the
// key would; every write route is tried with such a token, then the name is registered and read back.
import assert from "node:assert/strict";
import { SignJWT } from "jose";
import { NodeProcess, putValue, tokenFor } from "../../helpers/node_process.ts";
import { jwtSecret } from "../../helpers/test_cluster.ts";

/** An HS256 token for `user` signed with the node's JWT_SECRET, valid for an hour. */
async function signedToken(user: string): Promise<string> {
  const nowSecs = Math.floor(Date.now() / 1000);
  return await new SignJWT({}).setProtectedHeader({ alg: "HS256", typ: "JWT" }).setSubject(user)
    .setIssuedAt(nowSecs).setExpirationTime(nowSecs + 3600).sign(new TextEncoder().encode(jwtSecret));
}

Deno.test(
  "PUT/PATCH/DELETE with a well-signed token of a never-registered user are 401 and write nothing",
  async () => {
    await using node = await NodeProcess.start({ env: { JWT_SECRET: jwtSecret } });
    const owner = await tokenFor(node, "owner");
    const existing = await putValue(node, "/t/key/existing", { n: 1 }, { token: owner });
    assert.equal(existing.status, 201);
    await existing.body?.cancel();
    const forged = await signedToken("ghost");
    const attempts: Array<[string, string]> = [
      ["PUT", "/t/key/planted"],
      ["PATCH", "/t/key/existing"],
      ["DELETE", "/t/key/existing"],
    ];
    for (const [method, path] of attempts) {
      const response = await node.fetch(path, {
        method,
        headers: { authorization: `Bearer ${forged}`, "content-type": "application/json" },
        body: method === "DELETE" ? null : JSON.stringify({ value: { planted: true } }),
      });
      const problem = await response.json();
      assert.equal(response.status, 401, `${method} ${path}: ${JSON.stringify(problem)}`);
      assert.equal(problem.code, "token_invalid");
      assert.match(problem.detail, /user \(sub\) does not exist/);
    }
    // The name registered afterwards owns nothing the token tried to write.
    const ghost = await tokenFor(node, "ghost", "ghost-secret");
    const planted = await node.fetch("/t/key/planted");
    assert.equal(planted.status, 404, "the forged PUT wrote nothing");
    await planted.body?.cancel();
    const fresh = await putValue(node, "/t/key/planted", "mine", { token: ghost });
    assert.equal(fresh.status, 201);
    assert.equal((await fresh.json()).version, 1);
    const read = await node.fetch("/t/key/existing");
    assert.deepEqual((await read.json()).value, { n: 1 }, "the forged PATCH and DELETE changed nothing");
  },
);
