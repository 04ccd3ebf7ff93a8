import { z } from "zod";
import { internalJsonDepthMax } from "./transport.ts";
import { scanJson } from "../util/json.ts";

/**
 * Every message here comes from a peer: it is checked against everything the store and the event broker
 * assert (STYLE B3: never assert on outside input), so a malformed message is a 400 and never reaches an
 * assertion. Names: as SPEC §2 allows them, valid Unicode (the store checks their byte length). Versions:
 * positive integers up to {@linkcode versionWireMax}. Stored and published JSON: {@linkcode jsonText}.
 */

/** The characters a table or key name may hold: no control character, no `/`. */
// deno-lint-ignore no-control-regex
export const namePattern = /^[^\u0000-\u001f\u007f-\u009f/]+$/;

/** Longest table or key name, in UTF-16 code units (the store checks its byte length too). */
export const nameCodeUnitsMax = 1024;

/** A table or key name as SPEC §2 allows it (checked at the HTTP edge, and again in a peer's message). */
export const name = z.string().min(1).max(nameCodeUnitsMax)
  .regex(namePattern, "not a valid name")
  .refine((text) => text.isWellFormed(), "not valid Unicode");

/** Why `text` is not one line of JSON that the store may keep and an event may carry, or undefined. */
export function jsonTextProblem(text: string): string | undefined {
  // An event's `data:` line ends at a line break (the broker asserts there is none); JSON.stringify never
  // writes one, and a raw one can only be whitespace between tokens.
  if (/[\n\r]/.test(text)) return "spans lines (holds a raw line break)";
  if (!text.isWellFormed()) return "is not valid Unicode";
  const scan = scanJson(text);
  if (scan.depth > internalJsonDepthMax) {
    return `nests ${scan.depth} levels deep, limit is ${internalJsonDepthMax}`;
  }
  if (scan.overflowNumber !== undefined) return "holds a number that overflows to infinity";
  try {
    JSON.parse(text);
  } catch {
    return "is not valid JSON";
  }
  return undefined;
}

/**
 * Text that must be one JSON document on one line (a stored value, an event's value): valid Unicode,
 * valid JSON, nested at most {@linkcode internalJsonDepthMax} deep, every number finite.
 */
const jsonText = z.string().min(1).superRefine((text, context) => {
  const problem = jsonTextProblem(text);
  if (problem !== undefined) context.addIssue({ code: "custom", message: problem });
});

/**
 * JSON a peer answers with and this node only serves (a read, a listing, a forwarded write's answer): one
 * line of valid Unicode, so it can go into an event frame.
 */
const servedJson = z.string().min(1).refine(
  (text) => !/[\n\r]/.test(text) && text.isWellFormed(),
  "must be one line of valid Unicode",
);

/**
 * Highest version a peer may send: 2^52, so that a key holding it still takes 2^52 more writes before its
 * version leaves the safe integers (which the store asserts on).
 */
export const versionWireMax = 2 ** 52;
const safeVersion = z.number().int().positive().max(versionWireMax);

/** A user name as an owner: what the store checks (non-empty, valid Unicode), bounded. */
const owner = z.string().min(1).max(4096).refine((text) => text.isWellFormed(), "not valid Unicode");

/** Longest member id (`host:port`) a ballot may name. */
export const memberIdLengthMax = 300;

/** A Paxos ballot (`util/ballot.ts`). The zero ballot names no node; every other names its proposer. */
export const BallotWire = z.object({
  counter: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER - 1),
  node: z.string().max(memberIdLengthMax).refine((text) => text.isWellFormed(), "not valid Unicode"),
}).refine((ballot) => (ballot.counter === 0) === (ballot.node === ""), "only the zero ballot names no node");
export type BallotWire = z.output<typeof BallotWire>;

/** A state's lifetime, or the one an expiry tombstone ended: ms since the epoch (DESIGN.md, "Expiry"). */
export const expiresAtWire = z.number().int().positive().max(Number.MAX_SAFE_INTEGER);

/** A key's state as shipped between replicas (the store's `ReplicaEntry`). */
export const ReplicaEntryWire = z.object({
  version: safeVersion,
  timestamp: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  owner,
  deleted: z.boolean(),
  valueJson: jsonText.optional(),
  ballot: BallotWire.optional(),
  expiresAt: expiresAtWire.optional(),
}).refine((entry) => entry.deleted === (entry.valueJson === undefined), "a value iff not deleted");
export type ReplicaEntryWire = z.output<typeof ReplicaEntryWire>;

/**
 * One item of an `apply` batch: a replica to store (a delayed accept: hints, anti-entropy, rebalancing, read
 * repair). Committed changes to publish travel in the proposer's `paxos` batches (`paxos_wire.ts`).
 */
export const ApplyItem = z.object({
  store: z.literal(true),
  table: name,
  key: name,
  /** A state and the ballot it was accepted at: the receiver applies it by the accept rule. */
  entry: ReplicaEntryWire,
});
export type ApplyItem = z.output<typeof ApplyItem>;

/** A committed change, for the receiver's own subscribers only: the event's kind, version and JSON. */
export const noticeFields = {
  table: name,
  key: name,
  kind: z.enum(["Updated", "Deleted"]),
  version: safeVersion,
  json: jsonText,
  /** Chosen by a joint round: the key's membership change is settled (DESIGN.md). */
  settled: z.boolean().optional(),
};

/** Items per `apply` request. */
export const applyItemsMax = 512;

/** `apply`: replicas and notifications from a coordinator, in its order. */
export const ApplyRequest = z.object({ items: z.array(ApplyItem).max(applyItemsMax) });

/** What applying one item did on the receiver; `newer` is its own state when it holds a winning one. */
export const ApplyResult = z.object({
  result: z.enum(["applied", "identical", "stale"]),
  newer: ReplicaEntryWire.optional(),
});
export type ApplyResult = z.output<typeof ApplyResult>;

/** The answer to `apply`: one result per item, in order. */
export const ApplyReply = z.object({ results: z.array(ApplyResult).max(applyItemsMax) });

/**
 * Longest lifetime a forwarded write may carry: the proposer checks it against its own `ttlSecsMax`, which
 * cannot be set above the default.
 */
export const ttlSecsWireMax = 10 * 365 * 24 * 60 * 60;

/** `write`: a client write forwarded to the key's coordinator, already authenticated as `owner`. */
export const WriteRequest = z.object({
  op: z.enum(["put", "patch", "delete"]),
  table: name,
  key: name,
  value: z.unknown().optional(),
  owner,
  ifVersion: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER).optional(),
  /** The lifetime the write gives the key (`ttl_secs`); absent: none. */
  ttlSecs: z.number().int().positive().max(ttlSecsWireMax).optional(),
});
export type WriteRequest = z.output<typeof WriteRequest>;

/** The answer to a forwarded write: the entry, or the error to re-raise at the caller. */
export const WriteReply = z.union([
  z.object({ json: servedJson, version: safeVersion, deleted: z.boolean() }),
  z.object({ error: z.object({ code: z.string(), message: z.string() }) }),
]);
export type WriteReplyWire = z.output<typeof WriteReply>;

/** Forwarded writes per `writes` request. */
export const writeItemsMax = 512;

/** `writes`: client writes forwarded to one coordinator together, each coordinated on its own. */
export const WritesRequest = z.object({ items: z.array(WriteRequest).max(writeItemsMax) });

/** The answer to `writes`: one `write` answer per item, in order. */
export const WritesReply = z.object({ results: z.array(WriteReply).max(writeItemsMax) });

/** Items per `restore` request. */
export const restoreItemsMax = 512;

/**
 * `restore`: key states from a backup (`dynarust import`), each stored on its replicas by the conflict rule,
 * wherever the receiver sits on the ring.
 */
export const RestoreRequest = z.object({
  items: z.array(z.object({ table: name, key: name, entry: ReplicaEntryWire })).max(restoreItemsMax),
});
export type RestoreRequest = z.output<typeof RestoreRequest>;

/** The answer to `restore`: how many states reached every replica, and how many missed one. */
export const RestoreReply = z.object({
  restored: z.number().int().nonnegative(),
  missed: z.number().int().nonnegative(),
});
export type RestoreReply = z.output<typeof RestoreReply>;

/** `read`: a key read forwarded to a replica. */
export const ReadRequest = z.object({
  table: name,
  key: name,
  /** A consistent read forwarded to the key's usual proposer, which runs it (never forwards it again). */
  consistent: z.boolean().optional(),
});
/** The answer to `read`: the entry (tombstones included) or null. */
export const ReadReply = z.object({
  entry: z.object({
    json: servedJson,
    version: safeVersion,
    deleted: z.boolean(),
    /** The state's lifetime: the reader judges it by its own clock. */
    expiresAt: expiresAtWire.optional(),
  }).nullable(),
  /** The same state in replica form, so a reader can repair a stale replica with it. */
  replica: ReplicaEntryWire.nullable().optional(),
});
export type ReadReply = z.output<typeof ReadReply>;

/** `list`: one sorted page of a table's live keys on one node. */
export const ListRequest = z.object({
  table: name,
  after: name.optional(),
  limit: z.number().int().positive().max(10_000),
});
/**
 * The answer to `list`: states with a lifetime carry it, expired ones included, so that the merging node
 * judges a key's newest state by its own clock (an older live copy elsewhere must not show through).
 */
export const ListReply = z.object({
  exists: z.boolean(),
  entries: z.array(
    z.object({ key: name, json: servedJson, version: safeVersion, expiresAt: expiresAtWire.optional() }),
  ),
});

/** Buckets of an anti-entropy digest. */
export const digestBucketCount = 256;

/** `digest`: the sender's bucket hashes over the keys both nodes replicate. */
export const DigestRequest = z.object({ buckets: z.array(z.string().max(64)).length(digestBucketCount) });
/** The buckets that differ. */
export const DigestReply = z.object({
  differing: z.array(z.number().int().min(0).max(digestBucketCount - 1)),
});

/** What anti-entropy compares of a key: enough to see that two replicas differ, not who wins. */
export const KeySummary = z.object({
  table: name,
  key: name,
  version: safeVersion,
  timestamp: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  deleted: z.boolean(),
  /** A hash of the key's bytes (value and owner), so equal versions with different content differ. */
  contentHash: z.number().int().nonnegative().max(0xffffffff),
});
export type KeySummary = z.output<typeof KeySummary>;

/** Summaries per `sync` request or reply; a larger bucket is not repaired this round (see DESIGN.md). */
export const syncSummariesMax = 20_000;

const BucketSummaries = z.object({
  bucket: z.number().int().min(0).max(digestBucketCount - 1),
  summaries: z.array(KeySummary).max(syncSummariesMax),
});

/** `sync`: the sender's key summaries of some differing buckets; the answer holds the receiver's. */
export const SyncRequest = z.object({ buckets: z.array(BucketSummaries).max(digestBucketCount) });
/** The receiver's summaries of the same buckets. */
export const SyncReply = z.object({ buckets: z.array(BucketSummaries).max(digestBucketCount) });
