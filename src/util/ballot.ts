/**
 * Paxos ballots (see `src/cluster/DESIGN.md`, "Replication"): the store keeps them durably, the cluster
 * runs the protocol with them. Both import them from here, so there is one order.
 */
import { assert } from "./assert.ts";

/** A ballot: ordered by counter, then by node id (plain string order). Only `node` proposes with it. */
export interface Ballot {
  readonly counter: number;
  readonly node: string;
}

/** Below every ballot a proposer uses: the ballot of states written before ballots existed. */
export const zeroBallot: Ballot = Object.freeze({ counter: 0, node: "" });

/** Negative, zero or positive as `a` is below, equal to or above `b`. */
export function compareBallots(a: Ballot, b: Ballot): number {
  if (a.counter !== b.counter) return a.counter < b.counter ? -1 : 1;
  if (a.node === b.node) return 0;
  return a.node < b.node ? -1 : 1;
}

/** The larger of two ballots. */
export function maxBallot(a: Ballot, b: Ballot): Ballot {
  return compareBallots(a, b) >= 0 ? a : b;
}

/** The next ballot of the same proposer: accepting `b` promises it (the one-round-trip path). */
export function successorOf(ballot: Ballot): Ballot {
  assert(Number.isSafeInteger(ballot.counter + 1), "a ballot counter stays a safe integer");
  return { counter: ballot.counter + 1, node: ballot.node };
}

/**
 * The promise an acceptor holds: its explicit promise, or the successor of the ballot it accepted at,
 * whichever is higher.
 */
export function effectivePromise(state: { promised: Ballot; accepted: Ballot }): Ballot {
  return maxBallot(state.promised, successorOf(state.accepted));
}

/** Two ballots are the same ballot. */
export function sameBallot(a: Ballot, b: Ballot): boolean {
  return a.counter === b.counter && a.node === b.node;
}
