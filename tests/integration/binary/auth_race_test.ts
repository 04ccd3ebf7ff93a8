// Goal: concurrent registrations and logins of one new user name never stop a node (issue 18 item 1):
// every mix ends with exactly one 201, the others 200 (the winner's secret) or 401 (another secret),
// and the node still answers /health. The same over a 3-node cluster, with the requests spread over
// the nodes, so losers meet the winner's write while it is pending on another node.
// Method: real node processes on 127.0.0.1:0; 50 concurrent POST /auth/{name} per name, two secrets
// interleaved; the failed-login limits are raised so only the race decides the outcome.
import assert from "node:assert/strict";
import { NodeProcess } from "../../helpers/node_process.ts";
import { TestCluster } from "../../helpers/test_cluster.ts";

/** Limits high enough that 50 concurrent attempts from one address are never refused as a brute force. */
const raceEnv = { DYNA_LOGIN_FAILURES_MAX: "100000", DYNA_LOGIN_ADDRESS_FAILURES_MAX: "100000" };

const requestCount = 50;

interface Outcome {
  status: number;
  secret: string;
  body: { token?: unknown; code?: unknown };
}

/** Sends `requestCount` concurrent registrations of `user`, the i-th to `nodes[i % nodes.length]`. */
async function race(nodes: readonly NodeProcess[], user: string): Promise<Outcome[]> {
  return await Promise.all(Array.from({ length: requestCount }, async (_, index) => {
    const secret = index % 3 === 1 ? "secret-other" : "secret-main";
    const response = await nodes[index % nodes.length]!.fetch(`/auth/${user}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ secret }),
    });
    return { status: response.status, secret, body: await response.json() };
  }));
}

/** Exactly one 201; every other answer is 200 with the winner's secret and 401 with the other one. */
function assertOneWinner(outcomes: readonly Outcome[], user: string): void {
  const statuses = outcomes.map((outcome) => outcome.status);
  const winners = outcomes.filter((outcome) => outcome.status === 201);
  assert.equal(winners.length, 1, `${user}: one registration wins, statuses ${statuses}`);
  const winnerSecret = winners[0]!.secret;
  for (const outcome of outcomes) {
    if (outcome.status === 201) continue;
    const expected = outcome.secret === winnerSecret ? 200 : 401;
    assert.equal(outcome.status, expected, `${user}: ${JSON.stringify(outcome.body)}; statuses ${statuses}`);
    if (expected === 200) assert.equal(typeof outcome.body.token, "string");
    if (expected === 401) assert.equal(outcome.body.code, "wrong_secret");
  }
}

async function assertServing(node: NodeProcess): Promise<void> {
  const health = await node.fetch("/health");
  assert.equal(health.status, 200, "the node is still up");
  await health.body?.cancel();
}

Deno.test(
  "POST /auth/{user}: 50 concurrent registrations of one new name give one 201 and a live node",
  async () => {
    await using node = await NodeProcess.start({ env: raceEnv });
    for (const user of ["u1", "jos%C3%A9"]) {
      assertOneWinner(await race([node], user), user);
      await assertServing(node);
    }
  },
);

Deno.test(
  "POST /auth/{user}: concurrent registrations spread over a 3-node cluster give one 201",
  async () => {
    // The LAN timing preset: 150 hashes on a shared machine stall nodes for longer than the local-test
    // preset's 150 ms probe timeout, and a member wrongly declared dead moves the users' coordinator.
    await using cluster = await TestCluster.start({
      nodeCount: 3,
      env: { ...raceEnv, DYNA_CLUSTER_PRESET: "lan" },
    });
    const nodes = [cluster.node(0), cluster.node(1), cluster.node(2)];
    for (const user of ["c1", "c2"]) {
      assertOneWinner(await race(nodes, user), user);
      for (const node of nodes) await assertServing(node);
    }
  },
);
