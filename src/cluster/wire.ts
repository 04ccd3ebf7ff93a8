import { z } from "zod";
import { InvalidRequestError } from "../util/errors.ts";

/**
 * Most members one node keeps and sends in one message. Every membership message carries the sender's
 * full list, so this bounds their size (256 × ~340 bytes ≈ 87 KB) and the member table.
 */
export const peersMax = 256;
/** Longest member id (`host:port`). */
export const memberIdCharsMax = 300;
/** A member id: `host:port` or `[v6]:port`, no spaces or slashes, so it is safe inside a URL. */
export const memberIdPattern = /^(?:\[[0-9A-Za-z:.%]+\]|[^:\s\/\[\]?#@]+):[0-9]{1,5}$/;

/** Whether `id` is a well-formed member id. */
export function isMemberId(id: string): boolean {
  return id.length <= memberIdCharsMax && memberIdPattern.test(id);
}

/** A member id on the wire. */
export const MemberIdWire = z.string().max(memberIdCharsMax).regex(memberIdPattern, "must be host:port");

/** One member as gossiped: lastSeen and statusChanged times are local to each node and not sent. */
export const MemberWire = z.object({
  id: MemberIdWire,
  status: z.enum(["alive", "suspect", "dead", "left"]),
  incarnation: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
});
/** One member as gossiped (the output of {@linkcode MemberWire}). */
export type MemberWire = z.output<typeof MemberWire>;

/** A full member list, bounded by {@linkcode peersMax}. */
export const MemberListWire = z.array(MemberWire).max(peersMax);

/** `join` request: the joiner introduces itself. */
export const JoinRequestWire = z.object({ member: MemberWire });
/** `join` reply: the seed's full member list, the joiner included. */
export const JoinReplyWire = z.object({ members: MemberListWire });
/** `ping` request: the sender's full member list. */
export const PingRequestWire = z.object({ members: MemberListWire });
/** `ping` reply (the ack): the receiver's full list, after merging the sender's. */
export const PingReplyWire = z.object({ members: MemberListWire });
/** `ping-req` request: ping `target` for the sender and report whether it answered. */
export const PingReqRequestWire = z.object({ target: MemberIdWire, members: MemberListWire });
/** `ping-req` reply. */
export const PingReqReplyWire = z.object({ ok: z.boolean(), members: MemberListWire });
/** `leave` request: the leaver's own entry, status `left` at a raised incarnation. */
export const LeaveRequestWire = z.object({ member: MemberWire });
/** `leave` reply: nothing but an acknowledgement. */
export const LeaveReplyWire = z.object({});

/** Longest validation message, so a hostile message cannot make a huge error. */
const issuesCharsMax = 500;

/**
 * Validates an untrusted message with `schema`.
 *
 * @throws {InvalidRequestError} naming the first issues (paths and rules, never the values).
 */
export function parseWire<T>(schema: z.ZodType<T>, value: unknown): T {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues.slice(0, 5)
    .map((issue) => `${issue.path.join(".") || "(root)"}: ${issue.message}`)
    .join("; ");
  throw new InvalidRequestError(`Invalid cluster message: ${issues.slice(0, issuesCharsMax)}`);
}
