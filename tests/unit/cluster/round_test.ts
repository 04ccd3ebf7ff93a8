// Goal: a Round ends exactly when the proposer's rule says (every set has a quorum of grants, or one set
// can no longer have one, or the deadline passed), counts only members of a set for it, never changes its
// outcome after the end, and refuses a member answering twice.
// Method: rounds over named members with answers given by hand; real Deadlines for the deadline case.
import assert from "node:assert/strict";
import { Round, type RoundOutcome } from "../../../src/cluster/round.ts";
import type { PaxosResult } from "../../../src/cluster/paxos_wire.ts";
import { AssertionError } from "../../../src/util/assert.ts";
import { Deadlines } from "../../../src/util/deadlines.ts";

const accepted: PaxosResult = { result: "accepted" };

/** A round over `sets` asked by "a", with a deadline far away unless given. */
function roundOf(sets: string[][], delayMs = 60_000): { round: Round; deadlines: Deadlines } {
  const deadlines = new Deadlines();
  return { round: new Round({ sets, self: "a", deadlines, delayMs }), deadlines };
}

/** The outcome when the round ended, or "open" when it has not. */
async function outcomeOf(round: Round): Promise<RoundOutcome | "open"> {
  return await Promise.race([
    round.outcome,
    new Promise<"open">((resolve) => setTimeout(resolve, 0, "open")),
  ]);
}

Deno.test("Round asks this node first, then the sets' other members once each, in their order", () => {
  const cases: Array<[string[][], string[]]> = [
    [[["a", "b", "c"]], ["a", "b", "c"]],
    [[["b", "a", "c"]], ["a", "b", "c"]],
    [[["b", "c", "d"]], ["b", "c", "d"]],
    [[["b", "a", "c"], ["c", "d", "a"]], ["a", "b", "c", "d"]],
  ];
  for (const [sets, members] of cases) {
    const { round, deadlines } = roundOf(sets);
    assert.deepEqual(round.members, members, JSON.stringify(sets));
    round.record(0, undefined);
    round.record(1, undefined);
    round.check(); // two of three failed: the round ends and its deadline goes
    assert.ok(round.ended);
    assert.equal(deadlines.size, 0);
  }
});

Deno.test("Round ends with a quorum at two grants of three, and a late answer changes nothing", async () => {
  const { round, deadlines } = roundOf([["a", "b", "c"]]);
  round.answered(0, accepted);
  assert.equal(await outcomeOf(round), "open", "one grant of three is no quorum");
  round.answered(2, accepted);
  const outcome = await outcomeOf(round);
  assert.notEqual(outcome, "open");
  const ended = outcome as RoundOutcome;
  assert.equal(ended.quorum, true);
  assert.deepEqual(ended.granted.map(({ replica }) => replica), ["a", "c"]);
  assert.equal(deadlines.size, 0, "the deadline is forgotten at the end");
  round.answered(1, { result: "refused", promised: { counter: 9, node: "b" } });
  round.failed(1, new Error("late"));
  assert.deepEqual(ended.granted.map(({ replica }) => replica), ["a", "c"]);
  assert.deepEqual(ended.refusedBy, { counter: 0, node: "" }, "an answer after the end is ignored");
  assert.deepEqual(ended.failed, []);
});

Deno.test(
  "Round ends without a quorum as soon as a set cannot have one, with the refusals and failures so " +
    "far",
  async () => {
    const { round } = roundOf([["a", "b", "c"]]);
    round.answered(1, { result: "refused", promised: { counter: 4, node: "b" } });
    assert.equal(await outcomeOf(round), "open");
    round.failed(2, new Error("down"));
    const outcome = await outcomeOf(round) as RoundOutcome;
    assert.equal(outcome.quorum, false);
    assert.deepEqual(outcome.refusedBy, { counter: 4, node: "b" });
    assert.deepEqual(outcome.failed, ["c"]);
    assert.deepEqual(outcome.granted, []);
  },
);

Deno.test(
  "Round with joint sets needs a quorum of each: grants of one set count only for the sets naming " +
    "them",
  async () => {
    // {a, b, c} and {c, d, e}: a, b reach the first set's quorum; the second needs two of c, d, e.
    const { round } = roundOf([["a", "b", "c"], ["c", "d", "e"]]);
    assert.deepEqual(round.members, ["a", "b", "c", "d", "e"]);
    round.answered(0, accepted);
    round.answered(1, accepted);
    assert.equal(await outcomeOf(round), "open", "the second set has no grant yet");
    round.answered(3, accepted);
    assert.equal(await outcomeOf(round), "open", "one grant of the second set");
    round.answered(2, accepted);
    const outcome = await outcomeOf(round) as RoundOutcome;
    assert.equal(outcome.quorum, true);
    assert.deepEqual(outcome.granted.map(({ replica }) => replica), ["a", "b", "d", "c"]);
  },
);

Deno.test(
  "Round passes on the sets an acceptor asks for, and counts misplaced and joint answers as no grant",
  async () => {
    const { round } = roundOf([["a", "b", "c"]]);
    round.answered(1, { result: "joint", sets: [["b", "c", "d"]] });
    round.answered(2, { result: "misplaced" });
    const outcome = await outcomeOf(round) as RoundOutcome;
    assert.equal(outcome.quorum, false);
    assert.deepEqual(outcome.needs, [["b", "c", "d"]]);
    assert.deepEqual(outcome.failed, []);
  },
);

Deno.test("Round ends at its deadline with what it has, without a quorum", async () => {
  const { round, deadlines } = roundOf([["a", "b", "c"]], 5);
  round.answered(0, accepted);
  const outcome = await round.outcome;
  assert.equal(outcome.quorum, false);
  assert.deepEqual(outcome.granted.map(({ replica }) => replica), ["a"]);
  assert.equal(deadlines.size, 0);
  assert.equal(deadlines.timerPending, false);
});

Deno.test("Round refuses a member answering twice, and a tag that names no member", () => {
  const { round } = roundOf([["a", "b", "c", "d", "e"]]);
  round.answered(1, accepted);
  assert.throws(() => round.answered(1, accepted), AssertionError);
  assert.throws(() => round.record(5, undefined), AssertionError);
  assert.throws(() => round.record(-1, undefined), AssertionError);
  round.record(0, undefined);
  round.record(2, undefined);
  round.record(3, undefined);
  round.check();
  assert.ok(round.ended, "three grants of five can no longer come after three failures");
});
