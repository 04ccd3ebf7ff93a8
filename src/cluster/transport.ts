import { assert } from "../util/assert.ts";
import { decodeUtf8Strict } from "../util/bytes.ts";
import type { Clock } from "../util/clock.ts";
import { equalConstantTime } from "../util/constant_time.ts";
import { InvalidRequestError, PayloadTooLargeError } from "../util/errors.ts";
import { scanJson } from "../util/json.ts";
import { ClusterAuthError, UnknownKindError } from "./errors.ts";
import { bodyDigest, type RequestSigner, type VerifiedHeaders } from "./mac.ts";
import { ReplayGuard } from "./replay.ts";

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

/** Request bodies whose JSON text their sender built already (see {@linkcode withJsonText}). */
const bodyTexts = new WeakMap<object, string>();

/**
 * Registers `text` as the JSON of `body`, so that transports send it as it is instead of serializing `body`
 * again: a batch built from items serialized once for every peer. `text` must be what `JSON.stringify(body)`
 * gives (the pipeline's test checks it), and `body` must not change afterwards.
 */
export function withJsonText<Body extends object>(body: Body, text: string): Body {
  assert(text.length >= 2, "a body's JSON text is an object or an array");
  assert(text.startsWith("{") || text.startsWith("["), "a body's JSON text is an object or an array");
  bodyTexts.set(body, text);
  return body;
}

/** The JSON text of a request body: the one registered by {@linkcode withJsonText}, or `JSON.stringify`'s. */
export function jsonTextOf(body: unknown): string | undefined {
  const registered = typeof body === "object" && body !== null ? bodyTexts.get(body) : undefined;
  return registered ?? JSON.stringify(body);
}

/** The seam between the cluster and the network; tests replace it with an in-memory fake. */
export interface Transport {
  /**
   * Sends one signed `POST /_internal/<kind>` to `target` (`host:port`) and returns the parsed JSON reply.
   *
   * @throws {PeerRequestError} with `failure` "unreachable" (no connection: nothing was sent),
   * "interrupted" (the connection failed after sending: the peer may have run it), "timeout", "refused"
   * (HTTP 401/403) or
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
  /** This node's id: a request must be addressed to it (`x-dyna-target`). */
  self: string;
  /** Largest difference accepted between the sender's and this node's clock; replays are kept as long. */
  windowMs: number;
  /** Largest request body served. @default internalMessageBytesMax */
  messageBytesMax?: number;
  /**
   * Time a body may take to arrive once its headers were authenticated, plus {@linkcode bodyMsPerMiB} for
   * each MiB declared (or allowed, without a Content-Length). @default 4000
   */
  bodyTimeoutMs?: number;
}

/** The body-time allowance per MiB: a body must arrive at 0.5 MiB/s at least. */
export const bodyMsPerMiB = 2_000;

/**
 * A request whose headers were authenticated ({@linkcode InternalHandler.admit}): the HTTP layer reads its
 * body, at most `bodyBytesMax` bytes within `bodyDeadlineMs`, and hands it to
 * {@linkcode InternalHandler.serve}.
 */
export interface InternalAdmission {
  readonly kind: string;
  readonly path: string;
  readonly verified: VerifiedHeaders;
  /** Largest body served: over it, refuse as soon as it is seen. */
  readonly bodyBytesMax: number;
  /** Time allowed to receive the whole body, from now. */
  readonly bodyDeadlineMs: number;
}

/** The two steps of serving a node-to-node request, as the HTTP layer calls them. */
export interface InternalDoor {
  /** See {@linkcode InternalHandler.admit}. */
  admit(kind: string, headers: Headers): InternalAdmission;
  /** See {@linkcode InternalHandler.serve}. */
  serve(admission: InternalAdmission, body: Uint8Array): Promise<unknown>;
}

const encoder = new TextEncoder();

/**
 * The server side of the transport: the HTTP layer hands it every `POST /_internal/<kind>` in two steps,
 * `admit` (headers only, before any byte of the body is read) and `serve` (the body), and renders the
 * returned value as JSON (or the thrown `KvError` as problem+json).
 */
export class InternalHandler implements InternalDoor {
  readonly #signer: RequestSigner;
  readonly #clock: Clock;
  readonly #self: string;
  readonly #windowMs: number;
  readonly #messageBytesMax: number;
  readonly #bodyTimeoutMs: number;
  readonly #replays: ReplayGuard;
  /** Requests signed before this node started are refused: its memory of sequences starts here. */
  readonly #startedMs: number;
  readonly #handlers = new Map<string, InternalRequestHandler>();

  constructor(options: InternalHandlerOptions) {
    assert(Number.isSafeInteger(options.windowMs));
    assert(options.windowMs > 0);
    this.#signer = options.signer;
    this.#clock = options.clock;
    this.#self = options.self;
    this.#windowMs = options.windowMs;
    this.#messageBytesMax = options.messageBytesMax ?? internalMessageBytesMax;
    this.#bodyTimeoutMs = options.bodyTimeoutMs ?? 4_000;
    this.#replays = new ReplayGuard({ windowMs: options.windowMs });
    this.#startedMs = options.clock.nowMs();
    assert(this.#bodyTimeoutMs > 0);
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
   * Checks a request from its headers alone, before its body is read: the declared size, then
   * authentication (MAC, time, target, replay).
   *
   * @throws {PayloadTooLargeError} when `Content-Length` is over `messageBytesMax`.
   * @throws {ClusterAuthError} when authentication fails, the request was signed before this node
   * started, or it is a replay.
   * @throws {UnavailableError} when the replay memory has no room for a new sender.
   */
  admit(kind: string, headers: Headers): InternalAdmission {
    const declaredText = headers.get("content-length");
    const declaredBytes = declaredText === null ? undefined : Number(declaredText);
    if (declaredBytes !== undefined && !(declaredBytes <= this.#messageBytesMax)) {
      throw new PayloadTooLargeError(
        `Cluster request body is ${declaredText} bytes, limit is ${this.#messageBytesMax} bytes`,
      );
    }
    const path = `/_internal/${kind}`;
    const nowMs = this.#clock.nowMs();
    const verified = this.#signer.verify({
      path,
      self: this.#self,
      headers,
      nowMs,
      windowMs: this.#windowMs,
    });
    if (verified.timeMs < this.#startedMs) {
      const reason = `it was signed before this node started (${this.#startedMs - verified.timeMs} ms)`;
      throw new ClusterAuthError({ path: path.slice(0, 100), reason });
    }
    this.#replays.check({ path, sender: verified.sender, sequence: verified.sequence, nowMs });
    const allowanceMiB = Math.ceil((declaredBytes ?? this.#messageBytesMax) / (1 << 20));
    return {
      kind,
      path,
      verified,
      bodyBytesMax: this.#messageBytesMax,
      bodyDeadlineMs: this.#bodyTimeoutMs + allowanceMiB * bodyMsPerMiB,
    };
  }

  /**
   * Checks the body of an admitted request against its declared digest, records its sequence (a replay
   * from now on), parses it and runs the handler of its kind.
   *
   * @throws {PayloadTooLargeError} when the body is over the limit.
   * @throws {ClusterAuthError} when the body does not match `x-dyna-digest`, or a copy was served meanwhile.
   * @throws {UnknownKindError} (code `not_found`) when no handler serves the kind.
   * @throws {InvalidRequestError} when the body is not UTF-8 JSON, too deeply nested or holds a number
   * that overflows.
   */
  async serve(admission: InternalAdmission, body: Uint8Array): Promise<unknown> {
    const { path, verified } = admission;
    if (body.length > admission.bodyBytesMax) {
      throw new PayloadTooLargeError(
        `Cluster request body is ${body.length} bytes, limit is ${admission.bodyBytesMax} bytes`,
      );
    }
    if (!equalConstantTime({ expected: verified.digest, actual: bodyDigest(body) })) {
      throw new ClusterAuthError({ path: path.slice(0, 100), reason: "its body does not match its digest" });
    }
    const nowMs = this.#clock.nowMs();
    this.#replays.record({
      path,
      sender: verified.sender,
      sequence: verified.sequence,
      timeMs: verified.timeMs,
      nowMs,
    });
    // The kind is looked at only once the whole request, body included, is authenticated.
    const handler = this.#handlers.get(admission.kind);
    if (handler === undefined) throw new UnknownKindError(admission.kind);
    let text: string;
    try {
      text = decodeUtf8Strict(body);
    } catch (error) {
      throw new InvalidRequestError("Cluster message is not valid UTF-8", { cause: error });
    }
    return await handler(parseInternalJson(text), verified.sender);
  }

  /**
   * `admit` and `serve` in one step, for a body already in memory (in-memory transports and tests).
   *
   * @throws the errors of {@linkcode InternalHandler.admit} and {@linkcode InternalHandler.serve}.
   */
  async handle(kind: string, headers: Headers, bodyText: string): Promise<unknown> {
    const admission = this.admit(kind, headers);
    return await this.serve(admission, encoder.encode(bodyText));
  }
}

/**
 * Parses an internal message, checking its depth first so a hostile text is rejected before it is built,
 * and refusing a number that JSON.parse would turn into Infinity (nothing is ever silently changed).
 *
 * @throws {InvalidRequestError} when it is not JSON, nested deeper than {@linkcode internalJsonDepthMax}
 * or holds a number that overflows.
 */
export function parseInternalJson(text: string): unknown {
  const scan = scanJson(text);
  if (scan.depth > internalJsonDepthMax) {
    throw new InvalidRequestError(
      `Cluster message nests ${scan.depth} levels deep, limit is ${internalJsonDepthMax}`,
    );
  }
  if (scan.overflowNumber !== undefined) {
    throw new InvalidRequestError(
      `Cluster message holds a number that overflows to infinity (character ${scan.overflowNumber.index})`,
    );
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new InvalidRequestError("Cluster message is not valid JSON", { cause: error });
  }
}
