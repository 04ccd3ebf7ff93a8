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

/** What {@linkcode scanJsonText} finds in a JSON text without parsing it. */
export interface JsonTextScan {
  /** The deepest nesting of `[` and `{` (0 for a scalar). */
  depth: number;
  /**
   * True when a number could overflow to ±Infinity: an exponent of three or more significant digits, or
   * a run of 200 or more digits. A value needs one of these to reach 1.8e308, so false is certain and
   * true asks for {@linkcode hasNonFiniteNumber} on the parsed value.
   */
  bigNumber: boolean;
}

/** Digits in a row from which a number may overflow without an exponent of three digits (1e99 × 1e209). */
const digitRunMax = 200;

/**
 * Scans a JSON text once, skipping strings: its nesting depth and whether a number in it may overflow.
 * The text need not be valid JSON; `JSON.parse` decides that afterwards.
 */
export function scanJsonText(text: string): JsonTextScan {
  let depth = 0;
  let depthMax = 0;
  let inString = false;
  let digitRun = 0;
  let exponent: "none" | "positive" | "negative" = "none";
  let exponentDigits = 0;
  let bigNumber = false;
  for (let index = 0; index < text.length; index += 1) {
    const code = text.charCodeAt(index);
    if (inString) {
      if (code === 0x5c) index += 1; // backslash: skip the escaped character
      else if (code === 0x22) inString = false;
      continue;
    }
    if (code >= 0x30 && code <= 0x39) {
      digitRun += 1;
      if (exponent !== "none" && (exponentDigits > 0 || code !== 0x30)) exponentDigits += 1;
      if (digitRun >= digitRunMax || (exponent === "positive" && exponentDigits >= 3)) bigNumber = true;
      continue;
    }
    digitRun = 0;
    if (code === 0x65 || code === 0x45) { // e, E: an exponent follows
      exponent = "positive";
      exponentDigits = 0;
    } else if (code === 0x2d && exponent === "positive" && exponentDigits === 0) { // e-
      exponent = "negative";
    } else if (code !== 0x2b) { // anything but e+ ends the exponent
      exponent = "none";
      if (code === 0x22) inString = true;
      else if (code === 0x7b || code === 0x5b) depthMax = Math.max(depthMax, ++depth);
      else if (code === 0x7d || code === 0x5d) depth -= 1;
    }
  }
  return { depth: depthMax, bigNumber };
}

/** Whether the parsed JSON `value` holds a number that is not finite (a literal such as `1e400`). */
export function hasNonFiniteNumber(value: unknown): boolean {
  const work: unknown[] = [value];
  // Bounded by the number of values in the document; no recursion over peer data.
  while (work.length > 0) {
    const item = work.pop();
    if (typeof item === "number") {
      if (!Number.isFinite(item)) return true;
    } else if (Array.isArray(item)) {
      for (const child of item) work.push(child);
    } else if (typeof item === "object" && item !== null) {
      for (const child of Object.values(item)) work.push(child);
    }
  }
  return false;
}
