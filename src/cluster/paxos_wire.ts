import { z } from "zod";
import { BallotWire, memberIdLengthMax, name, noticeFields, ReplicaEntryWire } from "./replication_wire.ts";

/**
 * The messages of per-key Paxos (see DESIGN.md, "Replication"). Like every peer message they are checked
 * here against what the acceptor and the store assert, so a malformed one is a 400, never an assertion.
 * A proposer counts only answers that parse and that answer the item they are paired with.
 */

/** Members a replica set may name: every member for users, at most `peersMax`. */
export const replicaSetMax = 1024;

/** The key's replica set in the proposer's view, in ring order: acceptors of another view refuse it. */
const ReplicaSetWire = z.array(z.string().min(1).max(memberIdLengthMax)).min(1).max(replicaSetMax);

/** Replica sets of earlier views a joint round also counts a quorum of (absent: none). */
const jointSetsMax = 8;
const JointWire = z.array(ReplicaSetWire).max(jointSetsMax).optional();

/** A proposer's ballot: never the zero ballot, which names no proposer (the acceptor asserts so). */
const ProposalBallot = BallotWire.refine((ballot) => ballot.counter >= 1, "a proposal's ballot is not zero");
const itemFields = {
  table: name,
  key: name,
  ballot: ProposalBallot,
  replicas: ReplicaSetWire,
  joint: JointWire,
};
/**
 * A proposer's item: a prepare (phase 1) or an accept (phase 2) of one key, or a peek (a consistent read's
 * first try: the acceptor's state, recording nothing); or `chosen`, a state it got chosen, for the receiver's
 * subscribers (DESIGN.md, "Events"): it rides in the same ordered batches as the next rounds' items, so a
 * busy proposer's notices cost no request of their own.
 */
export const PaxosItem = z.discriminatedUnion("op", [
  z.object({ op: z.literal("peek"), ...itemFields }),
  z.object({ op: z.literal("prepare"), ...itemFields }),
  z.object({ op: z.literal("accept"), ...itemFields, entry: ReplicaEntryWire }),
  z.object({ op: z.literal("chosen"), ...noticeFields }),
]);
export type PaxosItem = z.output<typeof PaxosItem>;

/** An item an acceptor answers by its rules (every one but a `chosen` notice). */
export type ProposalItem = Exclude<PaxosItem, { op: "chosen" }>;

/** Items per `paxos` request. */
export const paxosItemsMax = 512;

/** `paxos`: one proposer's items to one acceptor, in its order. */
export const PaxosRequest = z.object({ items: z.array(PaxosItem).min(1).max(paxosItemsMax) });

/**
 * An acceptor's answer to one item: `promised` (to a prepare: the state it accepted, and at which ballot),
 * `accepted` (to an accept), `refused` with the promise that stood in the way, or `misplaced`: the
 * acceptor's view places the key on other replicas (a failure for the proposer, not a refusal), or `joint`:
 * the acceptor's own view of the key changed recently and the round must also count a quorum of each of
 * `sets` (the proposer retries with them; DESIGN.md, "Membership changes").
 */
export const PaxosResult = z.discriminatedUnion("result", [
  z.object({ result: z.literal("promised"), accepted: BallotWire, entry: ReplicaEntryWire.nullable() }),
  z.object({ result: z.literal("accepted") }),
  z.object({ result: z.literal("refused"), promised: BallotWire }),
  z.object({ result: z.literal("misplaced") }),
  z.object({ result: z.literal("joint"), sets: z.array(ReplicaSetWire).min(1).max(jointSetsMax) }),
  z.object({ result: z.literal("noted") }),
]);
export type PaxosResult = z.output<typeof PaxosResult>;

/** The answer to `paxos`: one result per item, in order. */
export const PaxosReply = z.object({ results: z.array(PaxosResult).max(paxosItemsMax) });

/**
 * True when `result` is an answer to `item`: a promise answers a prepare or a peek, an acceptance an accept,
 * `noted` a notice and only a notice; a refusal, `misplaced` or `joint` any proposal.
 */
export function answers(item: PaxosItem, result: PaxosResult): boolean {
  if (item.op === "chosen") return result.result === "noted";
  switch (result.result) {
    case "refused":
    case "misplaced":
    case "joint":
      return true;
    case "noted":
      return false;
    case "accepted":
      return item.op === "accept";
    case "promised":
      return item.op !== "accept";
  }
}
