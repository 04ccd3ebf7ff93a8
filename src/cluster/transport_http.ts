import { assert } from "../util/assert.ts";
import type { Clock } from "../util/clock.ts";
import { isJsonObject } from "../util/json.ts";
import { PeerRequestError } from "./errors.ts";
import { nodeHeader, type RequestSigner } from "./mac.ts";
import {
  internalMessageBytesMax,
  internalPath,
  jsonTextOf,
  parseInternalJson,
  type Transport,
} from "./transport.ts";
import { isMemberId } from "./wire.ts";
import { Http1Client, Http1Error, type Http1Reply } from "./http1_client.ts";
import type { PeerFailure } from "./types.ts";

/** Options of {@linkcode HttpTransport}. */
export interface HttpTransportOptions {
  /** This node's id (`host:port`), sent as the sender of every request. */
  self: string;
  signer: RequestSigner;
  clock: Clock;
  /** @default "http" */
  scheme?: "http" | "https";
  /** PEM certificates to trust for https peers (a private CA or self-signed certificates). */
  caCerts?: string[];
  /** Largest reply read. @default internalMessageBytesMax */
  replyBytesMax?: number;
}

/** A failed request before its classification into a {@linkcode PeerRequestError}. */
class ReplyError extends Error {
  readonly failure: PeerFailure;
  readonly status: number;
  readonly remoteCode: string | undefined;
  /** The member id a peer refusing a request addressed to another name gave (`x-dyna-node`). */
  readonly targetId: string | undefined;

  constructor(
    options: { failure: PeerFailure; detail: string; status: number; remoteCode?: string; targetId?: string },
  ) {
    super(options.detail);
    this.failure = options.failure;
    this.status = options.status;
    this.remoteCode = options.remoteCode;
    this.targetId = options.targetId;
  }
}

/** Names remembered as another member id; past it they are forgotten (and learned again if need be). */
const memberIdsMax = 256;

/**
 * The real transport: one `POST` per request over kept-alive HTTP/1.1 connections ({@linkcode Http1Client}),
 * signed with the cluster key, bounded in time by a timeout that also covers reading the reply, and in size
 * by `replyBytesMax`.
 */
export class HttpTransport implements Transport {
  readonly #self: string;
  readonly #signer: RequestSigner;
  readonly #clock: Clock;
  readonly #http1: Http1Client;
  readonly #replyBytesMax: number;
  /** Name dialed → the member id its node answers to, learned from a refusal (see `request`). */
  readonly #memberIds = new Map<string, string>();

  constructor(options: HttpTransportOptions) {
    assert(isMemberId(options.self), "self must be host:port");
    this.#self = options.self;
    this.#signer = options.signer;
    this.#clock = options.clock;
    this.#replyBytesMax = options.replyBytesMax ?? internalMessageBytesMax;
    const useCaCerts = options.caCerts !== undefined && options.caCerts.length > 0;
    this.#http1 = new Http1Client({
      tls: (options.scheme ?? "http") === "https",
      clock: this.#clock,
      ...(useCaCerts ? { caCerts: options.caCerts! } : {}),
    });
  }

  /** Closes the idle connections. */
  close(): void {
    this.#http1.close();
  }

  /**
   * Sends one signed request; see {@linkcode Transport.request}. A peer reached through another name
   * than its member id (a seed or a backup target given by the operator) refuses the request with its id;
   * the request is then signed again for that id, once, and the name is remembered.
   *
   * @throws {PeerRequestError}
   */
  async request(
    target: string,
    kind: string,
    body: unknown,
    options: { timeoutMs: number },
  ): Promise<unknown> {
    assert(isMemberId(target), "target must be host:port");
    assert(Number.isSafeInteger(options.timeoutMs));
    assert(options.timeoutMs > 0);
    const bodyText = jsonTextOf(body);
    assert(bodyText !== undefined, "an internal request body must be JSON");
    // Encoded once: hashed for the MAC and sent as these bytes, by every attempt.
    const bodyBytes = encoder.encode(bodyText);
    assert(bodyBytes.byteLength >= bodyText.length, "UTF-8 takes a byte per code unit at least");
    const send = (targetId: string) =>
      this.#send({ address: target, targetId, kind, bodyBytes, timeoutMs: options.timeoutMs });
    const targetId = this.#memberIds.get(target) ?? target;
    let retry = false;
    try {
      return await send(targetId);
    } catch (error) {
      // Refused from its headers, before anything ran: safe to send again, signed for the id it gave.
      const renamed = error instanceof ReplyError ? error.targetId : undefined;
      retry = renamed !== undefined && renamed !== targetId && isMemberId(renamed);
      if (!retry) throw classifyFailure({ target, kind, timeoutMs: options.timeoutMs, error });
      if (this.#memberIds.size >= memberIdsMax) this.#memberIds.clear();
      this.#memberIds.set(target, renamed!);
    }
    assert(retry);
    try {
      return await send(this.#memberIds.get(target)!);
    } catch (error) {
      throw classifyFailure({ target, kind, timeoutMs: options.timeoutMs, error });
    }
  }

  /** One signed request to `address`, for `targetId`; throws what the client or `readReply` threw. */
  async #send(
    request: {
      address: string;
      targetId: string;
      kind: string;
      bodyBytes: Uint8Array;
      timeoutMs: number;
    },
  ): Promise<unknown> {
    const path = internalPath(request.kind);
    const headers = this.#signer.sign({
      path,
      sender: this.#self,
      target: request.targetId,
      bodyBytes: request.bodyBytes,
      nowMs: this.#clock.nowMs(),
    });
    // A large body (a value of many MiB) takes longer to send, check and store: 250 ms more per MiB.
    const timeoutMs = request.timeoutMs + Math.floor(request.bodyBytes.byteLength / (1 << 20)) * 250;
    const reply = await this.#http1.post({
      address: request.address,
      path,
      headers: { ...headers, "content-type": "application/json" },
      body: request.bodyBytes,
      timeoutMs,
      bytesMax: this.#replyBytesMax,
    });
    return readReply(reply);
  }
}

const encoder = new TextEncoder();
const utf8 = new TextDecoder();

/** The parsed body of a 2xx reply. @throws {ReplyError} for any other reply. */
function readReply(reply: Http1Reply): unknown {
  const text = utf8.decode(reply.body);
  const status = reply.status;
  if (status < 200 || status > 299) {
    const remoteCode = remoteCodeOf(text);
    const detail = `HTTP ${status}${remoteCode === undefined ? "" : `, code ${remoteCode}`}`;
    const failure = status === 401 || status === 403 ? "refused" : "invalid_reply";
    const targetId = status === 403 ? reply.headers.get(nodeHeader) ?? undefined : undefined;
    throw new ReplyError({
      failure,
      detail,
      status,
      ...(remoteCode === undefined ? {} : { remoteCode }),
      ...(targetId === undefined ? {} : { targetId }),
    });
  }
  try {
    return parseInternalJson(text);
  } catch {
    throw new ReplyError({ failure: "invalid_reply", detail: "the reply is not JSON", status });
  }
}

/** The `code` of a problem+json body, when it has a well-formed one. */
function remoteCodeOf(text: string): string | undefined {
  try {
    const parsed = parseInternalJson(text);
    if (!isJsonObject(parsed) || typeof parsed.code !== "string") return undefined;
    return /^[a-z_]{1,64}$/.test(parsed.code) ? parsed.code : undefined;
  } catch {
    return undefined;
  }
}

/** Turns whatever a request threw into a {@linkcode PeerRequestError}. */
function classifyFailure(
  options: { target: string; kind: string; timeoutMs: number; error: unknown },
): PeerRequestError {
  const { target, kind, error } = options;
  if (error instanceof ReplyError) {
    return new PeerRequestError({
      target,
      kind,
      failure: error.failure,
      detail: error.message,
      status: error.status,
      ...(error.remoteCode === undefined ? {} : { remoteCode: error.remoteCode }),
    });
  }
  if (error instanceof Http1Error) {
    const failure = error.failure === "malformed" || error.failure === "too_large"
      ? "invalid_reply"
      : error.failure;
    const detail = error.failure === "timeout" ? `${options.timeoutMs} ms` : error.message;
    const status = error.status === undefined ? {} : { status: error.status };
    return new PeerRequestError({ target, kind, failure, detail, cause: error, ...status });
  }
  // Anything else broke while the request was under way: whether the peer ran it is unknown.
  return new PeerRequestError({ target, kind, failure: "interrupted", cause: error });
}
