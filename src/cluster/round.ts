import { assert } from "../util/assert.ts";
import { type Ballot, maxBallot, zeroBallot } from "../util/ballot.ts";
import type { Deadline, Deadlines } from "../util/deadlines.ts";
import type { PaxosResult } from "./paxos_wire.ts";
import type { AnswerSink } from "./pipeline.ts";

/** The key's replica set in this node's view, then those of unsettled earlier views (joint quorums). */
export type ReplicaSets = ReadonlyArray<readonly string[]>;

/** What one round gathered. */
export interface RoundOutcome {
  /** Replicas that promised (a prepare) or accepted (an accept), with their answers. */
  granted: Array<{ replica: string; result: PaxosResult }>;
  /** The highest promise a refusal reported, zero when none refused. */
  refusedBy: Ballot;
  quorum: boolean;
  /** Earlier replica sets acceptors asked this round to count too (their views changed recently). */
  needs: string[][];
  /** Members whose answer was a failure (none in time, unusable) before the round ended. */
  failed: string[];
}

/** Answers needed from a replica set of `count` members: a majority of all of them. */
export function quorumOf(count: number): number {
  assert(count >= 1);
  return Math.floor(count / 2) + 1;
}

/** A member's part in a round. */
const enum Part {
  /** Asked, no answer yet. */
  Asked,
  /** Promised or accepted: counts toward its sets' quorums. */
  Granted,
  /** Refused, failed, misplaced, or asked for joint sets: counts for nothing. */
  Other,
}

/**
 * The answers of one round (DESIGN.md, "Proposer"): each member of the sets is asked once, its answer comes
 * to {@linkcode answered} or {@linkcode failed} with its index in `members` as the tag, and the round ends
 * once every set has a quorum of grants, once one set cannot have one any more, or at its deadline. Only
 * members of a set count for it, whoever this node believes alive. Answers after the end are ignored, so the
 * outcome never changes once given, and a late answer holds nothing of the write but this object.
 *
 * One object per round receives every answer: no promise, reaction or closure per member (a write in flight
 * held ~30 promises, and copying what writes in flight hold is most of what a scavenge costs).
 */
export class Round implements AnswerSink<PaxosResult> {
  /** The members asked, each once, this node first: an answer's tag is its index here. */
  readonly members: readonly string[];
  /** Resolves with the outcome when the round ends. */
  readonly outcome: Promise<RoundOutcome>;
  readonly #sets: ReplicaSets;
  readonly #parts: Uint8Array;
  readonly #gathered: RoundOutcome = {
    granted: [],
    refusedBy: zeroBallot,
    quorum: false,
    needs: [],
    failed: [],
  };
  readonly #deadlines: Deadlines;
  readonly #deadline: Deadline;
  /** Undefined once the round ended. */
  #resolve: ((outcome: RoundOutcome) => void) | undefined;

  constructor(options: { sets: ReplicaSets; self: string; deadlines: Deadlines; delayMs: number }) {
    const { sets } = options;
    assert(sets.length >= 1 && sets.every((set) => set.length >= 1), "a round has a replica set");
    this.members = membersOf(sets, options.self);
    assert(sets.every((set) => set.every((id) => this.members.includes(id))), "every member is asked");
    this.#sets = sets;
    this.#parts = new Uint8Array(this.members.length); // every member Asked
    this.#deadlines = options.deadlines;
    let resolve!: (outcome: RoundOutcome) => void;
    this.outcome = new Promise((settle) => resolve = settle);
    this.#resolve = resolve;
    this.#deadline = options.deadlines.add(options.delayMs, () => this.#finish());
  }

  /** Whether the round ended (its outcome is given; answers are ignored). */
  get ended(): boolean {
    return this.#resolve === undefined;
  }

  answered(tag: number, result: PaxosResult): void {
    this.record(tag, result);
    this.check();
  }

  failed(tag: number, _error: unknown): void {
    this.record(tag, undefined);
    this.check();
  }

  /**
   * Takes member `tag`'s answer (undefined: a failure) without judging the round: the proposer records the
   * members that fail at once while it is still asking the others, then calls {@linkcode check}.
   */
  record(tag: number, result: PaxosResult | undefined): void {
    if (this.ended) return;
    assert(Number.isSafeInteger(tag) && tag >= 0 && tag < this.members.length, "a tag names a member");
    assert(this.#parts[tag] === Part.Asked, "each member answers a round once");
    const gathered = this.#gathered;
    const member = this.members[tag]!;
    let part = Part.Other;
    if (result === undefined) gathered.failed.push(member);
    else if (result.result === "refused") gathered.refusedBy = maxBallot(gathered.refusedBy, result.promised);
    else if (result.result === "joint") gathered.needs.push(...result.sets);
    else if (result.result !== "misplaced") {
      gathered.granted.push({ replica: member, result });
      part = Part.Granted;
    }
    this.#parts[tag] = part;
  }

  /** Ends the round when every set has a quorum of grants, or when one set can no longer have one. */
  check(): void {
    if (this.ended) return;
    assert(this.#parts.length === this.members.length, "one part per member");
    let quorum = true;
    for (const set of this.#sets) {
      let granted = 0;
      let asked = 0;
      for (const id of set) {
        const part = this.#parts[this.members.indexOf(id)];
        if (part === Part.Granted) granted += 1;
        else if (part === Part.Asked) asked += 1;
      }
      const needed = quorumOf(set.length);
      if (granted + asked < needed) return this.#finish(); // unreachable: no need to wait for the rest
      if (granted < needed) quorum = false;
    }
    assert(!quorum || this.#gathered.granted.length >= quorumOf(this.#sets[0]!.length), "a quorum of grants");
    this.#gathered.quorum = quorum;
    if (quorum) this.#finish();
  }

  #finish(): void {
    const resolve = this.#resolve;
    if (resolve === undefined) return;
    this.#resolve = undefined;
    this.#deadlines.delete(this.#deadline);
    assert(this.ended, "a round ends once");
    resolve(this.#gathered);
  }
}

/** Every member of `sets` once, `self` first, the others in the order the sets name them. */
function membersOf(sets: ReplicaSets, self: string): readonly string[] {
  const first = sets[0]!;
  if (sets.length === 1 && (first[0] === self || !first.includes(self))) return first;
  const members = [...new Set(sets.flat())];
  const selfIndex = members.indexOf(self);
  if (selfIndex > 0) {
    members.splice(selfIndex, 1);
    members.unshift(self);
  }
  assert(members.length >= first.length, "every member of the first set is asked");
  return members;
}
