// Goal: SWIM membership spreads joins, detects failures within the computed timeouts, lets suspects
// refute, survives a cut direct link through indirect probes, heals partitions and shows leaves.
// Method: several Membership instances on a FakeNetwork (real MACs, in-memory delivery, cuttable links)
// driven round by round with a ManualClock, whose timers also run start()'s rounds; deterministic seeds;
// no sockets, no sleeps.
import assert from "node:assert/strict";
import {
  JoinRefusedError,
  type Member,
  type MemberStatus,
  PeerRequestError,
  suspicionTimeoutMs,
} from "../../../src/cluster/mod.ts";
import { waitFor } from "../../helpers/wait_for.ts";
import { FakeNetwork, type FakeNode } from "./fake_network.ts";

/** Records every status each node ever gave `subject`. */
function recordStatuses(nodes: readonly FakeNode[], subject: string): Map<string, Set<MemberStatus>> {
  const seen = new Map<string, Set<MemberStatus>>();
  for (const node of nodes) {
    const statuses = new Set<MemberStatus>();
    seen.set(node.id, statuses);
    node.membership.onChange((members: readonly Member[]) => {
      const member = members.find((candidate) => candidate.id === subject);
      if (member !== undefined) statuses.add(member.status);
    });
  }
  return seen;
}

Deno.test("Membership.join() spreads a 5-node cluster to every member within 2 rounds", async () => {
  const network = new FakeNetwork();
  const nodes = await network.startCluster(5);
  assert.equal(nodes[0]!.membership.liveIds().length, 5);
  const rounds = await network.roundsUntil(() => network.converged(), 2);
  assert.ok(rounds <= 2);
  const ids = nodes.map((node) => node.id).sort();
  for (const node of nodes) {
    assert.deepEqual(node.membership.members().map((member) => member.id), ids);
    assert.deepEqual(node.membership.ringIds(), ids);
  }
});

Deno.test(
  "Membership: a stopped member is suspected, then declared dead within the computed timeout",
  async () => {
    const network = new FakeNetwork();
    const nodes = await network.startCluster(5);
    await network.roundsUntil(() => network.converged(), 2);
    const victim = nodes[4]!;
    const others = nodes.slice(0, 4);
    const statuses = recordStatuses(others, victim.id);
    victim.down = true;
    const stoppedMs = network.clock.nowMs();
    // Each prober reaches the victim within 4 rounds (its probe order cycles over the 4 others).
    await network.roundsUntil(
      () => others.some((node) => network.statusOf(node.id, victim.id) !== "alive"),
      4,
    );
    const suspectedMs = network.clock.nowMs();
    const timeoutMs = suspicionTimeoutMs(network.config, 5);
    assert.equal(timeoutMs, 2 * network.config.probeIntervalMs, "the floor of the formula: two intervals");
    const timeoutRounds = timeoutMs / network.config.probeIntervalMs;
    await network.roundsUntil(
      () => others.every((node) => network.statusOf(node.id, victim.id) === "dead"),
      timeoutRounds + 2,
    );
    assert.ok(network.clock.nowMs() - suspectedMs >= timeoutMs, "dead only after the suspicion timeout");
    assert.ok(network.clock.nowMs() - stoppedMs <= (4 + timeoutRounds + 2) * network.config.probeIntervalMs);
    for (const node of others) {
      assert.ok(statuses.get(node.id)!.has("dead"));
      assert.deepEqual(node.membership.liveIds(), others.map((other) => other.id).sort());
    }
    assert.ok([...statuses.values()].some((seen) => seen.has("suspect")), "someone suspected it first");
  },
);

Deno.test("Membership: a suspected member that is alive refutes with a higher incarnation", async () => {
  // A long suspicion timeout, so the refutation surely arrives before anyone declares it dead.
  const network = new FakeNetwork({ suspicionMult: 8 });
  const nodes = await network.startCluster(5);
  await network.roundsUntil(() => network.converged(), 2);
  const subject = nodes[2]!;
  const incarnationBefore = subject.membership.member(subject.id)!.incarnation;
  const others = nodes.filter((node) => node !== subject);
  const statuses = recordStatuses(others, subject.id);
  network.partition([subject.id], others.map((node) => node.id));
  await network.roundsUntil(
    () => others.some((node) => network.statusOf(node.id, subject.id) === "suspect"),
    4,
  );
  network.heal();
  await network.roundsUntil(() => network.converged(), 6);
  const incarnationAfter = subject.membership.member(subject.id)!.incarnation;
  assert.ok(incarnationAfter > incarnationBefore, "the subject raised its own incarnation");
  for (const node of others) {
    assert.equal(node.membership.member(subject.id)!.incarnation, incarnationAfter);
    assert.ok(!statuses.get(node.id)!.has("dead"), `${node.id} never declared it dead`);
  }
});

Deno.test("Membership: an indirect probe saves a member whose direct link is cut", async () => {
  const network = new FakeNetwork();
  const [first, second, third] = await network.startCluster(3);
  await network.roundsUntil(() => network.converged(), 2);
  network.cut(first!.id, second!.id);
  const statuses = recordStatuses([first!, second!, third!], second!.id);
  for (let round = 0; round < 20; round += 1) await network.round();
  assert.ok(network.converged(), "nobody is suspect after 20 rounds");
  assert.ok((network.sentCounts.get("ping-req") ?? 0) > 0, "ping-req was used");
  for (const seen of statuses.values()) assert.equal(seen.size, 0, "no status change at all");
});

Deno.test("Membership: a partition heals and both sides see each other alive again", async () => {
  const network = new FakeNetwork();
  const nodes = await network.startCluster(4);
  await network.roundsUntil(() => network.converged(), 2);
  const sideA = [nodes[0]!.id, nodes[1]!.id];
  const sideB = [nodes[2]!.id, nodes[3]!.id];
  network.partition(sideA, sideB);
  const splitSeen = () =>
    sideA.every((a) =>
      sideB.every((b) => network.statusOf(a, b) === "dead" && network.statusOf(b, a) === "dead")
    );
  await network.roundsUntil(splitSeen, 30);
  for (const id of sideA) assert.deepEqual(network.node(id).membership.liveIds(), sideA);
  network.heal();
  const rounds = await network.roundsUntil(() => network.converged(), 60);
  assert.ok(rounds > 0);
});

Deno.test("Membership.leave() shows the member as left everywhere and takes it out of the ring", async () => {
  const network = new FakeNetwork();
  const nodes = await network.startCluster(3);
  await network.roundsUntil(() => network.converged(), 2);
  const leaver = nodes[2]!;
  const incarnationBefore = leaver.membership.member(leaver.id)!.incarnation;
  await leaver.membership.leave();
  assert.equal(leaver.membership.member(leaver.id)!.status, "left");
  assert.equal(leaver.membership.member(leaver.id)!.incarnation, incarnationBefore + 1);
  const remaining = [nodes[0]!.id, nodes[1]!.id];
  for (const id of remaining) {
    assert.equal(network.statusOf(id, leaver.id), "left");
    assert.deepEqual(network.node(id).membership.ringIds(), remaining);
    assert.deepEqual(network.node(id).membership.liveIds(), remaining);
  }
  for (let round = 0; round < 10; round += 1) await network.round();
  for (const id of remaining) assert.equal(network.statusOf(id, leaver.id), "left");
  assert.equal(leaver.membership.member(leaver.id)!.status, "left", "a left node never refutes");
});

Deno.test("Membership.ringIds() keeps a dead member for good and drops a member that left", async () => {
  const network = new FakeNetwork();
  const nodes = await network.startCluster(4);
  await network.roundsUntil(() => network.converged(), 2);
  const [viewer, , victim, leaver] = nodes;
  victim!.down = true;
  await network.roundsUntil(() => network.statusOf(viewer!.id, victim!.id) === "dead", 10);
  network.clock.advance(600_000); // ten minutes dead
  assert.ok(viewer!.membership.ringIds().includes(victim!.id), "a dead member keeps its keys");
  await leaver!.membership.leave();
  await network.roundsUntil(() => network.statusOf(viewer!.id, leaver!.id) === "left", 10);
  assert.ok(!viewer!.membership.ringIds().includes(leaver!.id), "a member that left hands its keys off");
});

Deno.test("Membership starts with the members it knew, dead at incarnation 0, in the ring", async () => {
  const network = new FakeNetwork();
  const [seed] = await network.startCluster(1);
  const known = ["10.0.0.3:1", "10.0.0.4:1"];
  const node = await network.addNode(7998, { known });
  assert.deepEqual(node.membership.ringIds(), [...known, node.id].sort(), "never alone after a restart");
  assert.deepEqual(node.membership.liveIds(), [node.id]);
  assert.equal(node.membership.member("10.0.0.3:1")!.incarnation, 0, "any news of it wins");
  await node.membership.join(seed!.id);
  assert.equal(node.membership.member(seed!.id)!.status, "alive");
});

Deno.test("Membership.join() throws JoinRefusedError when the seed refuses the secret", async () => {
  const network = new FakeNetwork();
  const [seed] = await network.startCluster(1);
  const wrongSecret = "another-cluster-secret-0123456789abcd";
  const stranger = await network.addNode(7999, { secret: wrongSecret });
  await assert.rejects(stranger.membership.join(seed!.id), (error: unknown) => {
    assert.ok(error instanceof JoinRefusedError);
    assert.equal(error.code, "cluster_join_refused");
    assert.match(error.message, /CLUSTER_SECRET/);
    assert.ok(!error.message.includes(wrongSecret));
    return true;
  });
  assert.deepEqual(seed!.membership.liveIds(), [seed!.id], "the seed did not admit it");
});

Deno.test("Membership.join() throws PeerRequestError when the seed is unreachable", async () => {
  const network = new FakeNetwork();
  const [seed, joiner] = [await network.addNode(7001), await network.addNode(7002)];
  seed.down = true;
  await assert.rejects(joiner.membership.join(seed.id), (error: unknown) => {
    assert.ok(error instanceof PeerRequestError);
    assert.equal(error.failure, "unreachable");
    return true;
  });
  await assert.rejects(joiner.membership.join(joiner.id), /itself/);
});

Deno.test("Membership: a restarted node outranks the dead entry of its previous life", async () => {
  const network = new FakeNetwork();
  const nodes = await network.startCluster(3);
  await network.roundsUntil(() => network.converged(), 2);
  const old = nodes[2]!;
  old.down = true;
  await network.roundsUntil(() => network.statusOf(nodes[0]!.id, old.id) === "dead", 10);
  const oldIncarnation = nodes[0]!.membership.member(old.id)!.incarnation;
  network.nodes.delete(old.id);
  network.clock.advance(1_000);
  const restarted = await network.addNode(7003);
  assert.ok(restarted.membership.member(restarted.id)!.incarnation > oldIncarnation);
  await restarted.membership.join(nodes[0]!.id);
  await network.roundsUntil(() => network.converged(), 3);
});

Deno.test(
  "Membership.start() runs a probe round every probeIntervalMs of its clock until stop()",
  async () => {
    const network = new FakeNetwork();
    const { clock } = network;
    const intervalMs = network.config.probeIntervalMs;
    const [first, second] = await network.startCluster(2);
    const pings = () => network.sentCounts.get("ping") ?? 0;
    const pingsBefore = pings();
    first!.membership.start();
    second!.membership.start();
    first!.membership.start();
    assert.equal(clock.timerCount, 2, "one timer chain per member");
    clock.advance(intervalMs - 1);
    assert.equal(pings(), pingsBefore, "no round before probeIntervalMs");
    clock.advance(1);
    // Each round pings the other member once; the next round's timer is set when a round ends.
    await waitFor(() => pings() === pingsBefore + 2 && clock.timerCount === 2, { timeoutMs: 5_000 });
    clock.advance(intervalMs);
    await waitFor(() => pings() === pingsBefore + 4 && clock.timerCount === 2, { timeoutMs: 5_000 });
    first!.membership.stop();
    second!.membership.stop();
    assert.equal(clock.timerCount, 0, "stop() leaves no timer armed");
    clock.advance(10 * intervalMs);
    assert.equal(pings(), pingsBefore + 4);
    first!.membership.start();
    first!.membership.stop();
    assert.equal(clock.timerCount, 0);
  },
);
