// Goal: in a cluster, a user's token works on every node at once (SPEC §3: tokens of one node are valid
// on every node), even on a node the user's record has not reached yet, while a token of a user no
// node holds is refused (issue 18 item 7).
// Method: three nodes in this process; a user registered through node 0 and its token used on node 2
// at once; a user record written into node 0's store alone (as if its replication to node 2 were still
// on its way), and its token used on node 2.
import assert from "node:assert/strict";
import { SignJWT } from "jose";
import { usersTable } from "../../../src/cluster/mod.ts";
import { hashSecret } from "../../../src/auth/passwords.ts";
import { InProcessCluster } from "../../helpers/in_process_cluster.ts";
import { jwtSecret } from "../../helpers/test_cluster.ts";

async function signedToken(user: string): Promise<string> {
  const nowSecs = Math.floor(Date.now() / 1000);
  return await new SignJWT({}).setProtectedHeader({ alg: "HS256", typ: "JWT" }).setSubject(user)
    .setIssuedAt(nowSecs).setExpirationTime(nowSecs + 3600).sign(new TextEncoder().encode(jwtSecret));
}

function put(cluster: InProcessCluster, index: number, path: string, token: string): Promise<Response> {
  return cluster.fetch(index, path, {
    method: "PUT",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ value: index }),
  });
}

Deno.test(
  "cluster auth: a token is valid on every node at once, and only for a user some node holds",
  async () => {
    await using cluster = await InProcessCluster.start({ nodeCount: 3 });
    const registered = await cluster.fetch(0, "/auth/alice", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ secret: "alice-secret" }),
    });
    assert.equal(registered.status, 201);
    const { token } = await registered.json();
    const used = await put(cluster, 2, "/t/key/a", token);
    assert.equal(used.status, 201, await used.text());

    // A record only node 0 holds, as when its replication to node 2 is still on its way.
    const record = await hashSecret("bob-secret", { iterations: 1 });
    await cluster.node(0).store.put(usersTable, "bob", record, { owner: "bob", ifVersion: 0 });
    assert.equal(cluster.node(2).store.get(usersTable, "bob"), undefined, "node 2 does not hold bob yet");
    const bobOnNode2 = await put(cluster, 2, "/t/key/b", await signedToken("bob"));
    assert.equal(bobOnNode2.status, 201, await bobOnNode2.text());

    const ghost = await put(cluster, 2, "/t/key/g", await signedToken("ghost"));
    assert.equal(ghost.status, 401);
    assert.equal((await ghost.json()).code, "token_invalid");
    const planted = await cluster.fetch(1, "/t/key/g");
    assert.equal(planted.status, 404);
    await planted.body?.cancel();
  },
);
