// Goal: the merge rule of member lists: a higher incarnation wins; at equal incarnation
// left > dead > suspect > alive; only a member raises its own incarnation (refutation); direct contact
// never flips a dead member; the member table stays within peersMax.
// Method: hand-made ping messages, signed like a peer's, delivered to one Membership of a FakeNetwork.
import assert from "node:assert/strict";
import { type Member, type MemberStatus, PeerRequestError, peersMax } from "../../../src/cluster/mod.ts";
import { FakeNetwork } from "./fake_network.ts";

const injector = "10.9.9.9:9999";
const peer = "10.0.0.2:6660";

async function setup() {
  const network = new FakeNetwork();
  const node = await network.addNode(7001);
  await network.addSender(injector);
  const send = (
    members: Array<{ id: string; status: MemberStatus; incarnation: number }>,
    sender = injector,
  ) => network.deliver({ source: sender, target: node.id, kind: "ping", body: { members }, timeoutMs: 100 });
  const statusOfPeer = () => node.membership.member(peer)?.status;
  return { network, node, send, statusOfPeer };
}

Deno.test("Membership merge: a higher incarnation wins whatever the status", async () => {
  const { send, statusOfPeer, node } = await setup();
  await send([{ id: peer, status: "dead", incarnation: 5 }]);
  assert.equal(statusOfPeer(), "dead");
  await send([{ id: peer, status: "alive", incarnation: 6 }]);
  assert.equal(statusOfPeer(), "alive");
  await send([{ id: peer, status: "left", incarnation: 5 }]);
  assert.equal(statusOfPeer(), "alive", "a lower incarnation is ignored");
  assert.equal(node.membership.member(peer)!.incarnation, 6);
});

Deno.test("Membership merge: at equal incarnation left > dead > suspect > alive", async () => {
  const { send, statusOfPeer } = await setup();
  const order: MemberStatus[] = ["alive", "suspect", "dead", "left"];
  await send([{ id: peer, status: "alive", incarnation: 5 }]);
  for (const [index, status] of order.entries()) {
    await send([{ id: peer, status, incarnation: 5 }]);
    assert.equal(statusOfPeer(), status);
    for (const weaker of order.slice(0, index)) {
      await send([{ id: peer, status: weaker, incarnation: 5 }]);
      assert.equal(statusOfPeer(), status, `${weaker} does not override ${status}`);
    }
  }
});

Deno.test(
  "Membership merge: a peer saying it is alive at the incarnation it is dead at stays dead",
  async () => {
    const { network, send, statusOfPeer, node } = await setup();
    await network.addSender(peer);
    await send([{ id: peer, status: "dead", incarnation: 5 }]);
    await send([{ id: peer, status: "alive", incarnation: 5 }], peer);
    assert.equal(statusOfPeer(), "dead", "direct contact does not flip it");
    assert.equal(node.membership.member(peer)!.lastSeenMs, network.clock.nowMs(), "but it was seen");
    await send([{ id: peer, status: "alive", incarnation: 6 }], peer);
    assert.equal(statusOfPeer(), "alive", "its refutation does");
  },
);

Deno.test(
  "Membership merge: a node reported suspect, dead or left refutes with incarnation + 1",
  async () => {
    const { send, node } = await setup();
    const own = () => node.membership.member(node.id)!;
    const start = own().incarnation;
    assert.equal(start, new FakeNetwork().clock.nowMs(), "incarnation starts at the clock");
    for (const [step, status] of (["suspect", "dead", "left"] as const).entries()) {
      const reply = await send([{ id: node.id, status, incarnation: start + step }]) as { members: Member[] };
      assert.equal(own().status, "alive");
      assert.equal(own().incarnation, start + step + 1);
      assert.deepEqual(reply.members.find((member) => member.id === node.id), {
        id: node.id,
        status: "alive",
        incarnation: start + step + 1,
      });
    }
    await send([{ id: node.id, status: "dead", incarnation: start }]);
    assert.equal(own().incarnation, start + 3, "an old report changes nothing");
  },
);

Deno.test("Membership.onChange() fires on status and incarnation changes only", async () => {
  const { send, node } = await setup();
  const calls: Array<readonly Member[]> = [];
  const unsubscribe = node.membership.onChange((members) => calls.push(members));
  await send([{ id: peer, status: "alive", incarnation: 1 }]);
  assert.equal(calls.length, 1);
  await send([{ id: peer, status: "alive", incarnation: 1 }]);
  assert.equal(calls.length, 1, "nothing changed");
  await send([{ id: peer, status: "suspect", incarnation: 1 }, {
    id: "10.0.0.3:6660",
    status: "alive",
    incarnation: 1,
  }]);
  assert.equal(calls.length, 2, "one call per merged message");
  assert.deepEqual(calls[1]!.map((member) => member.id), ["10.0.0.2:6660", "10.0.0.3:6660", node.id]);
  unsubscribe();
  await send([{ id: peer, status: "dead", incarnation: 1 }]);
  assert.equal(calls.length, 2);
});

Deno.test("Membership: members(), liveIds() and ringIds() are sorted and include this node", async () => {
  const { send, node } = await setup();
  await send([
    { id: "10.0.0.9:1", status: "alive", incarnation: 1 },
    { id: "10.0.0.1:1", status: "suspect", incarnation: 1 },
    { id: "10.0.0.5:1", status: "dead", incarnation: 1 },
    { id: "10.0.0.7:1", status: "left", incarnation: 1 },
  ]);
  assert.deepEqual(node.membership.members().map((member) => member.id), [
    "10.0.0.1:1",
    "10.0.0.5:1",
    "10.0.0.7:1",
    "10.0.0.9:1",
    node.id,
  ]);
  assert.deepEqual(node.membership.liveIds(), ["10.0.0.1:1", "10.0.0.9:1", node.id]);
  assert.deepEqual(
    node.membership.ringIds(),
    ["10.0.0.1:1", "10.0.0.5:1", "10.0.0.9:1", node.id],
    "every member not left, the dead one included: belief in who is alive never moves a key",
  );
  assert.equal(node.membership.member("10.0.0.9:1")!.lastSeenMs, 0, "never heard from directly");
});

Deno.test("Membership keeps at most peersMax members, forgetting the longest-gone first", async () => {
  const { send, node, network } = await setup();
  const ids = (prefix: string, count: number) =>
    Array.from({ length: count }, (_, index) => `${prefix}.${index}:1`);
  for (const id of ids("10.1.0", 10)) {
    await send([{ id, status: "dead", incarnation: 1 }]);
    network.clock.advance(1);
  }
  await send(ids("10.2.0", peersMax - 1).map((id) => ({ id, status: "alive", incarnation: 1 })));
  const members = node.membership.members();
  assert.equal(members.length, peersMax);
  assert.ok(members.every((member) => member.status === "alive"), "every dead member was forgotten");
  await send([{ id: "10.3.0.1:1", status: "alive", incarnation: 1 }]);
  assert.equal(node.membership.members().length, peersMax, "a full table of live members takes no more");
  assert.equal(node.membership.member("10.3.0.1:1"), undefined);
});

Deno.test("Membership handlers refuse a join or leave sent on behalf of another node", async () => {
  const { network, node } = await setup();
  const member = { id: peer, status: "alive", incarnation: 1 };
  const deliver = (kind: string, body: unknown) =>
    network.deliver({ source: injector, target: node.id, kind, body, timeoutMs: 100 });
  const invalid = (error: unknown) => {
    assert.ok(error instanceof PeerRequestError);
    assert.equal(error.remoteCode, "invalid_request");
    return true;
  };
  await assert.rejects(deliver("join", { member }), invalid);
  await assert.rejects(deliver("leave", { member: { ...member, status: "left" } }), invalid);
  await assert.rejects(deliver("ping", { members: "nope" }), invalid);
  assert.equal(node.membership.member(peer), undefined);
});
