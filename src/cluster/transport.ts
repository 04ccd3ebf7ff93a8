import { assert } from "../util/assert.ts";
import type { Clock } from "../util/clock.ts";
import { InvalidRequestError, PayloadTooLargeError } from "../util/errors.ts";
import { UnknownKindError } from "./errors.ts";
import type { RequestSigner } from "./mac.ts";
import { hasNonFiniteNumber, scanJsonText } from "./wire.ts";

/**
 * Largest node-to-node request or reply body by default. Membership messages are far smaller (see
 * `peersMax`); replication batches stay under it, and a larger single value goes alone, under the limit
 * {@linkcode messageBytesMaxFor} gives for the configured request size.
 */
export const internalMessageBytesMax = 4 << 20;
/** The ceiling of {@linkcode messageBytesMaxFor}: the HTTP layer reads no larger node-to-node body. */
export const internalMessageBytesCeiling = 64 << 20;
/** Room in a message for what travels around its values: names, owners, versions, the JSON of the batch. */
const messageRoomBytes = 64 << 10;

/**
 * The node-to-node message limit that carries any value a client may write: a value travels as a JSON
 * string inside the message, where escaping may double it, with room for names and the message around it.
 */
export function messageBytesMaxFor(requestBytesMax: number): number {
  return Math.min(
    internalMessageBytesCeiling,
    Math.max(internalMessageBytesMax, 2 * requestBytesMax + messageRoomBytes),
  );
}

/** The largest `requestBytesMax` a cluster replicates: its messages fit the ceiling. */
export const clusterRequestBytesMax = (internalMessageBytesCeiling - messageRoomBytes) / 2;
/** Deepest JSON nesting of an internal message: a value's 64 levels plus the message's own wrapping. */
export const internalJsonDepthMax = 128;
/** Most kinds one handler serves. */
const kindsMax = 64;
/** A request kind: lower-case words joined by `-`, so it is safe as a path segment. */
const kindPattern = /^[a-z][a-z0-9-]{0,62}$/;

/** The path of a node-to-node request of `kind`: `/_internal/<kind>`. */
export function internalPath(kind: string): string {
  assert(kindPattern.test(kind), "invalid internal request kind");
  return `/_internal/${kind}`;
}

/** The seam between the cluster and the network; tests replace it with an in-memory fake. */
export interface Transport {
  /**
   * Sends one signed `POST /_internal/<kind>` to `target` (`host:port`) and returns the parsed JSON reply.
   *
   * @throws {PeerRequestError} with `failure` "unreachable", "timeout", "refused" (HTTP 401/403) or
   * "invalid_reply" (another non-2xx, bad JSON or a reply over {@linkcode internalMessageBytesMax}), and
   * `status` when there was a reply.
   */
  request(target: string, kind: string, body: unknown, options: { timeoutMs: number }): Promise<unknown>;
}

/** Handles the body of one authenticated internal request; `sender` is the verified sender id. */
export type InternalRequestHandler = (body: unknown, sender: string) => Promise<unknown>;

/** Options of {@linkcode InternalHandler}. */
export interface InternalHandlerOptions {
  signer: RequestSigner;
  clock: Clock;
  /** Largest accepted difference between the sender's and this node's clock. */
  windowMs: number;
  /** Largest request body served. @default internalMessageBytesMax */
  messageBytesMax?: number;
}

/**
 * The server side of the transport: the HTTP layer hands it every `POST /_internal/<kind>` and renders
 * the returned value as JSON (or the thrown `KvError` as problem+json).
 */
export class InternalHandler {
  readonly #signer: RequestSigner;
  readonly #clock: Clock;
  readonly #windowMs: number;
  readonly #messageBytesMax: number;
  readonly #handlers = new Map<string, InternalRequestHandler>();

  constructor(options: InternalHandlerOptions) {
    assert(Number.isSafeInteger(options.windowMs));
    assert(options.windowMs > 0);
    this.#signer = options.signer;
    this.#clock = options.clock;
    this.#windowMs = options.windowMs;
    this.#messageBytesMax = options.messageBytesMax ?? internalMessageBytesMax;
  }

  /** Serves `kind` with `handler`; each kind is registered once. */
  register(kind: string, handler: InternalRequestHandler): void {
    assert(kindPattern.test(kind), `invalid internal request kind "${kind}"`);
    assert(!this.#handlers.has(kind), `internal request kind "${kind}" is registered twice`);
    assert(this.#handlers.size < kindsMax);
    this.#handlers.set(kind, handler);
  }

  /** The kinds registered so far, sorted. */
  kinds(): string[] {
    return [...this.#handlers.keys()].sort();
  }

  /**
   * Authenticates one request, parses its JSON body and runs the handler of `kind`.
   *
   * @throws {PayloadTooLargeError} when the body is over the handler's `messageBytesMax`.
   * @throws {ClusterAuthError} when authentication fails; checked before anything else about the request.
   * @throws {UnknownKindError} (code `not_found`) when no handler serves `kind`.
   * @throws {InvalidRequestError} when the body is not JSON or too deeply nested.
   */
  async handle(kind: string, headers: Headers, bodyText: string): Promise<unknown> {
    const bodyBytes = utf8BytesAtLeast(bodyText, this.#messageBytesMax);
    if (bodyBytes > this.#messageBytesMax) {
      throw new PayloadTooLargeError(
        `Cluster request body is ${bodyBytes} bytes or more, limit is ${this.#messageBytesMax} bytes`,
      );
    }
    const path = `/_internal/${kind}`;
    const nowMs = this.#clock.nowMs();
    const sender = this.#signer.verify({ path, headers, bodyText, nowMs, windowMs: this.#windowMs });
    const handler = this.#handlers.get(kind);
    if (handler === undefined) throw new UnknownKindError(kind);
    return await handler(parseInternalJson(bodyText), sender);
  }
}

/**
 * The UTF-8 size of `text`, exact when it may be within `limit`; a text of more code units than that is
 * only counted by code units (a lower bound), to skip encoding it.
 */
function utf8BytesAtLeast(text: string, limit: number): number {
  if (text.length > limit || text.length * 3 <= limit) {
    return text.length;
  }
  return new TextEncoder().encode(text).length;
}

/**
 * Parses an internal message, checking its depth first so a hostile text is rejected before it is built,
 * and refusing a number that JSON.parse would turn into Infinity (nothing is ever silently changed).
 *
 * @throws {InvalidRequestError} when it is not JSON, nested deeper than {@linkcode internalJsonDepthMax}
 * or holds a number that overflows.
 */
export function parseInternalJson(text: string): unknown {
  const scan = scanJsonText(text);
  if (scan.depth > internalJsonDepthMax) {
    throw new InvalidRequestError(
      `Cluster message nests ${scan.depth} levels deep, limit is ${internalJsonDepthMax}`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new InvalidRequestError("Cluster message is not valid JSON", { cause: error });
  }
  if (scan.bigNumber && hasNonFiniteNumber(parsed)) {
    throw new InvalidRequestError("Cluster message holds a number that overflows to infinity");
  }
  return parsed;
}
