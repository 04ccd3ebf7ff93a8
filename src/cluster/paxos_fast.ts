import { assert } from "../util/assert.ts";
import { type PaxosItem, paxosItemsMax, PaxosReply, PaxosRequest, type PaxosResult } from "./paxos_wire.ts";
import {
  jsonTextProblem,
  memberIdLengthMax,
  nameCodeUnitsMax,
  namePattern,
  versionWireMax,
} from "./replication_wire.ts";

/**
 * The `paxos` messages of the usual write, checked without zod: an acceptor reads two items per write of
 * every key it replicates (the accept and the previous write's `chosen` notice), and zod's parse of them
 * was ~10-15 µs a write on each follower (a microbenchmark of a 52-item batch: 267-395 µs zod, 45-64 µs
 * `JSON.parse`). Each check here is the schema's own rule for the fields of an `accept`, a `chosen` notice
 * and a `prepare` with no joint sets; anything else (a peek, joint sets, a field the schema does not know,
 * a value the rules refuse) goes to the schema, which gives the same result or the same refusal. The fast
 * path never accepts what the schema refuses, and yields the schema's output exactly (a seeded test checks
 * both against the schema over mutated messages).
 */

/** Answers `safeParse` like {@linkcode PaxosRequest}. */
export const PaxosRequestChecked = {
  safeParse(body: unknown): ReturnType<typeof PaxosRequest.safeParse> {
    const items = usualPaxosItems(body);
    return items === undefined ? PaxosRequest.safeParse(body) : { success: true, data: { items } };
  },
};

/** Answers `safeParse` like {@linkcode PaxosReply}. */
export const PaxosReplyChecked = {
  safeParse(reply: unknown): ReturnType<typeof PaxosReply.safeParse> {
    const results = usualPaxosResults(reply);
    return results === undefined ? PaxosReply.safeParse(reply) : { success: true, data: { results } };
  },
};

type Item = PaxosItem;
type Fields = Record<string, unknown>;

/** The items of a usual `paxos` request, checked without the schema; undefined: ask the schema. */
export function usualPaxosItems(body: unknown): Item[] | undefined {
  if (!isRecord(body) || !onlyKeys(body, 1) || !Array.isArray(body.items)) return undefined;
  const raw: unknown[] = body.items;
  if (raw.length < 1 || raw.length > paxosItemsMax) return undefined;
  const items: Item[] = [];
  for (const entry of raw) {
    const item = usualItem(entry);
    if (item === undefined) return undefined;
    items.push(item);
  }
  assert(items.length === raw.length, "one checked item per item");
  return items;
}

/** The results of a reply made only of `accepted` and `noted` (the usual answers to accepts and notices). */
export function usualPaxosResults(reply: unknown): PaxosResult[] | undefined {
  if (!isRecord(reply) || !onlyKeys(reply, 1) || !Array.isArray(reply.results)) return undefined;
  const raw: unknown[] = reply.results;
  if (raw.length > paxosItemsMax) return undefined;
  const results: PaxosResult[] = [];
  for (const result of raw) {
    if (!isRecord(result) || !onlyKeys(result, 1)) return undefined;
    if (result.result === "accepted") results.push({ result: "accepted" });
    else if (result.result === "noted") results.push({ result: "noted" });
    else return undefined;
  }
  return results;
}

function usualItem(raw: unknown): Item | undefined {
  if (!isRecord(raw)) return undefined;
  switch (raw.op) {
    case "chosen":
      return usualNotice(raw);
    case "accept":
    case "prepare":
      return usualProposal(raw);
    default:
      return undefined;
  }
}

function usualNotice(raw: Fields): Item | undefined {
  const { table, key, kind, version, json, settled } = raw;
  if (!onlyKeys(raw, settled === undefined ? 6 : 7)) return undefined;
  if (!isName(table) || !isName(key) || (kind !== "Updated" && kind !== "Deleted")) return undefined;
  if (!isVersion(version) || !isJsonText(json)) return undefined;
  if (settled !== undefined && typeof settled !== "boolean") return undefined;
  const notice: Item = { op: "chosen", table, key, kind, version, json };
  if (settled !== undefined) notice.settled = settled;
  return notice;
}

/** An accept or a prepare without joint sets (or with an empty list of them). */
function usualProposal(raw: Fields): Item | undefined {
  const { op, table, key, ballot, replicas, joint, entry } = raw;
  const keyCount = (joint === undefined ? 5 : 6) + (op === "accept" ? 1 : 0);
  if (!onlyKeys(raw, keyCount) || !isName(table) || !isName(key)) return undefined;
  if (joint !== undefined && (!Array.isArray(joint) || joint.length !== 0)) return undefined;
  const checkedBallot = ballotOf(ballot);
  if (checkedBallot === undefined || checkedBallot.counter < 1 || !isReplicaSet(replicas)) return undefined;
  const common = { table, key, ballot: checkedBallot, replicas: [...replicas] };
  const fields = joint === undefined ? common : { ...common, joint: [] };
  if (op === "prepare") return { op, ...fields };
  const checkedEntry = entryOf(entry);
  return checkedEntry === undefined ? undefined : { op: "accept", ...fields, entry: checkedEntry };
}

/** A `ReplicaEntry` as an accept item carries it on the wire. */
type WireReplicaEntry = Extract<Item, { op: "accept" }>["entry"];

function entryOf(raw: unknown): WireReplicaEntry | undefined {
  if (!isRecord(raw)) return undefined;
  const { version, timestamp, owner, deleted, valueJson, ballot, expiresAt } = raw;
  const optionalCount = (valueJson === undefined ? 0 : 1) + (ballot === undefined ? 0 : 1) +
    (expiresAt === undefined ? 0 : 1);
  if (!onlyKeys(raw, 4 + optionalCount)) return undefined;
  if (!isVersion(version) || !isTimestamp(timestamp) || !isOwner(owner)) return undefined;
  if (typeof deleted !== "boolean" || deleted !== (valueJson === undefined)) return undefined;
  if (valueJson !== undefined && !isJsonText(valueJson)) return undefined;
  if (expiresAt !== undefined && !isExpiry(expiresAt)) return undefined;
  const entry: WireReplicaEntry = { version, timestamp, owner, deleted };
  if (valueJson !== undefined) entry.valueJson = valueJson;
  if (expiresAt !== undefined) entry.expiresAt = expiresAt;
  if (ballot === undefined) return entry;
  const checkedBallot = ballotOf(ballot);
  if (checkedBallot === undefined) return undefined;
  entry.ballot = checkedBallot;
  return entry;
}

function ballotOf(raw: unknown): { counter: number; node: string } | undefined {
  if (!isRecord(raw) || !onlyKeys(raw, 2)) return undefined;
  const { counter, node } = raw;
  if (!Number.isSafeInteger(counter) || (counter as number) < 0) return undefined;
  if ((counter as number) > Number.MAX_SAFE_INTEGER - 1) return undefined;
  if (typeof node !== "string" || node.length > memberIdLengthMax || !node.isWellFormed()) return undefined;
  if ((counter === 0) !== (node === "")) return undefined;
  return { counter: counter as number, node };
}

function isRecord(value: unknown): value is Fields {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Whether `value` has exactly `count` own keys, all named (checked by the caller's fields): an unknown key
 * goes to the schema, which drops it.
 */
function onlyKeys(value: Fields, count: number): boolean {
  let keys = 0;
  for (const name in value) {
    if (!Object.hasOwn(value, name) || value[name] === undefined) return false;
    keys += 1;
  }
  return keys === count;
}

function isName(value: unknown): value is string {
  return typeof value === "string" && value.length >= 1 && value.length <= nameCodeUnitsMax &&
    namePattern.test(value) &&
    value.isWellFormed();
}

function isReplicaSet(value: unknown): value is string[] {
  if (!Array.isArray(value) || value.length < 1 || value.length > 1024) return false;
  return value.every((id) => typeof id === "string" && id.length >= 1 && id.length <= memberIdLengthMax);
}

function isVersion(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 1 && (value as number) <= versionWireMax;
}

function isTimestamp(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

function isExpiry(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 1;
}

function isOwner(value: unknown): value is string {
  return typeof value === "string" && value.length >= 1 && value.length <= 4096 && value.isWellFormed();
}

function isJsonText(value: unknown): value is string {
  return typeof value === "string" && value.length >= 1 && jsonTextProblem(value) === undefined;
}
