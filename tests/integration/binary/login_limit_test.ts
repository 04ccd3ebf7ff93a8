// Goal: wrong secrets throttle the guesser, not the owner (SPEC §8, issue 18 item 8): failures count per
// user and address together, with a higher ceiling per address across users; a correct secret from an
// address that has not failed is never refused.
// Method: a real node on 127.0.0.1; the test connects from several loopback source addresses
// (127.0.0.2 the attacker, 127.0.0.3 the owner at home), so the node sees distinct clients. The ceiling
// per address is lowered to 15 to keep the test short.
import assert from "node:assert/strict";
import { requestFrom } from "../../helpers/http_from.ts";
import { NodeProcess, tokenFor } from "../../helpers/node_process.ts";

Deno.test(
  "POST /auth/{user}: an attacker's failures lock out the attacker, not the owner nor its neighbours",
  async () => {
    await using node = await NodeProcess.start({ env: { DYNA_LOGIN_ADDRESS_FAILURES_MAX: "15" } });
    await tokenFor(node, "alice", "alice-secret");
    await tokenFor(node, "bob", "bob-secret");
    await tokenFor(node, "carol", "carol-secret");
    const login = (from: string, user: string, secret: string) =>
      requestFrom(from, {
        baseUrl: node.baseUrl,
        method: "POST",
        path: `/auth/${user}`,
        body: JSON.stringify({ secret }),
      });
    const attacker = "127.0.0.2";
    for (let index = 0; index < 10; index += 1) {
      assert.equal((await login(attacker, "alice", `guess-${index}`)).status, 401);
    }
    const locked = await login(attacker, "alice", "alice-secret");
    assert.equal(locked.status, 429, locked.body);
    assert.equal(JSON.parse(locked.body).code, "rate_limited");
    assert.ok(
      Number(locked.headers.get("retry-after")) >= 1,
      `Retry-After ${locked.headers.get("retry-after")}`,
    );
    const home = await login("127.0.0.3", "alice", "alice-secret");
    assert.equal(home.status, 200, `the owner from another address gets in at once: ${home.body}`);

    // Bob shares the attacker's address (one NAT): he still logs in, and may fail a few times himself.
    assert.equal((await login(attacker, "bob", "bob-secret")).status, 200);
    for (let index = 0; index < 4; index += 1) {
      assert.equal((await login(attacker, "bob", "typo")).status, 401);
    }
    assert.equal(
      (await login(attacker, "bob", "bob-secret")).status,
      200,
      "the address has 14 of 15 failures",
    );
    assert.equal((await login(attacker, "carol", "typo")).status, 401, "the address's 15th failure");
    for (const user of ["bob", "carol", "newcomer"]) {
      const refused = await login(attacker, user, `${user}-secret`);
      assert.equal(refused.status, 429, `over the ceiling the address is refused for ${user}`);
      assert.match(JSON.parse(refused.body).detail, /across users: the limit is 15/);
    }
    assert.equal((await login("127.0.0.4", "carol", "carol-secret")).status, 200);
  },
);
