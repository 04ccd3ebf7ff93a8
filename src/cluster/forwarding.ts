import { type ErrorCode, KvError } from "../util/errors.ts";
import type { EntryView } from "./local_store.ts";
import type { PeerPipeline } from "./pipeline.ts";
import { WriteReply, type WriteReplyWire, type WriteRequest } from "./replication_wire.ts";
import type { Transport } from "./transport.ts";

/**
 * Forwarding (DESIGN.md, "Cost"): a client write goes to the key's first live replica, its usual proposer,
 * so one proposer writes each key and the one-round-trip path holds. Forwarding decides nothing: a
 * proposer elsewhere would be as safe, only slower (its prepare would take the key over).
 */

/** Error codes a proposer's answer may carry back to the client unchanged. */
const forwardedCodes: ReadonlySet<string> = new Set<ErrorCode>([
  "invalid_request",
  "invalid_name",
  "forbidden",
  "key_not_found",
  "version_conflict",
  "payload_too_large",
  "unavailable",
  "storage_failed",
  "storage_full",
]);

/** An error raised by the proposer of a forwarded write, re-raised here with its code. */
export class ForwardedError extends KvError {}

/**
 * Sends `body` to `proposer` in its `writes` pipeline, so forwarded writes that wait together share one
 * request; alone (as a `write`) when the pipeline is full or the proposer serves no `writes`.
 *
 * @throws ForwardedError with the proposer's code, or the transport's error when no answer came.
 */
export async function forwardWrite(options: {
  proposer: string;
  body: WriteRequest;
  pipeline: PeerPipeline<WriteRequest, WriteReplyWire>;
  transport: Transport;
  timeoutMs: number;
}): Promise<EntryView> {
  const { proposer, body, pipeline, transport, timeoutMs } = options;
  const sent = pipeline.send(body);
  let reply: WriteReplyWire | undefined;
  if (sent.accepted) {
    try {
      reply = await sent.acknowledged;
    } catch (error) {
      // Only a batch that was never taken is sent again: an unknown kind runs nothing.
      if (!isUnknownKind(error)) throw error;
    }
  }
  reply ??= WriteReply.parse(await transport.request(proposer, "write", body, { timeoutMs }));
  if ("error" in reply) {
    const code = forwardedCodes.has(reply.error.code) ? reply.error.code as ErrorCode : "unavailable";
    throw new ForwardedError(code, reply.error.message);
  }
  return { json: reply.json, version: reply.version, deleted: reply.deleted, timestamp: 0, owner: "" };
}

/** A forwarded write's outcome as the forwarder gets it: the entry, or the `KvError` to re-raise. */
export function writeReplyOf(outcome: { entry: EntryView } | { error: unknown }): WriteReplyWire {
  if ("entry" in outcome) {
    const { json, version, deleted } = outcome.entry;
    return { json, version, deleted };
  }
  if (outcome.error instanceof KvError) {
    return { error: { code: outcome.error.code, message: outcome.error.message } };
  }
  throw outcome.error;
}

/** A peer's answer that it serves no such request kind (it runs an older version): nothing ran. */
function isUnknownKind(error: unknown): boolean {
  if (typeof error !== "object" || error === null) return false;
  const { failure, status, remoteCode } = error as {
    failure?: unknown;
    status?: unknown;
    remoteCode?: unknown;
  };
  return failure === "invalid_reply" && (status === 404 || remoteCode === "not_found");
}

/** A peer's answer that the request was over its body limit (HTTP 413): it was refused unread. */
export function isTooLarge(error: unknown): boolean {
  return typeof error === "object" && error !== null && (error as { status?: unknown }).status === 413;
}

/** The request never reached the peer: nothing ran there, so another proposer may take it. */
export function isUnreachable(error: unknown): boolean {
  return typeof error === "object" && error !== null &&
    (error as { failure?: unknown }).failure === "unreachable";
}
