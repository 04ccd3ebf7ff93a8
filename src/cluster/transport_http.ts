import { readBounded } from "../util/bytes.ts";
import { assert } from "../util/assert.ts";
import type { Clock } from "../util/clock.ts";
import { isJsonObject } from "../util/json.ts";
import { PeerRequestError } from "./errors.ts";
import { nodeHeader, type RequestSigner } from "./mac.ts";
import { internalMessageBytesMax, internalPath, parseInternalJson, type Transport } from "./transport.ts";
import { isMemberId } from "./wire.ts";
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
 * The real transport: one `fetch` per request, signed with the cluster key, bounded in time by
 * a timeout that also covers reading the reply, and in size by `replyBytesMax`.
 */
export class HttpTransport implements Transport {
  readonly #self: string;
  readonly #signer: RequestSigner;
  readonly #clock: Clock;
  readonly #scheme: "http" | "https";
  readonly #client: Deno.HttpClient | undefined;
  readonly #replyBytesMax: number;
  /** Name dialed → the member id its node answers to, learned from a refusal (see `request`). */
  readonly #memberIds = new Map<string, string>();

  constructor(options: HttpTransportOptions) {
    assert(isMemberId(options.self), "self must be host:port");
    this.#self = options.self;
    this.#signer = options.signer;
    this.#clock = options.clock;
    this.#scheme = options.scheme ?? "http";
    this.#replyBytesMax = options.replyBytesMax ?? internalMessageBytesMax;
    const useCaCerts = options.caCerts !== undefined && options.caCerts.length > 0;
    this.#client = useCaCerts ? Deno.createHttpClient({ caCerts: options.caCerts! }) : undefined;
  }

  /** Releases the https client, if one was made. */
  close(): void {
    this.#client?.close();
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
    const bodyText = JSON.stringify(body);
    assert(bodyText !== undefined, "an internal request body must be JSON");
    const send = (targetId: string) =>
      this.#send({ address: target, targetId, kind, bodyText, timeoutMs: options.timeoutMs });
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

  /** One signed request to `address`, addressed to `targetId`; throws what fetch or `readReply` threw. */
  async #send(
    request: { address: string; targetId: string; kind: string; bodyText: string; timeoutMs: number },
  ): Promise<unknown> {
    const path = internalPath(request.kind);
    const headers = this.#signer.sign({
      path,
      sender: this.#self,
      target: request.targetId,
      bodyText: request.bodyText,
      nowMs: this.#clock.nowMs(),
    });
    // A timer cleared as soon as the request ends, not `AbortSignal.timeout`: that one keeps the signal,
    // and through its listeners the request's state, alive until the deadline passes, so every request
    // outlived two young-generation collections and was garbage for the old one (a full collection every
    // second on a coordinator under sequential writes, `--trace-gc`).
    // A large body (a value of many MiB) takes longer to send, check and store: 250 ms more per MiB.
    const timeoutMs = request.timeoutMs + Math.floor(request.bodyText.length / (1 << 20)) * 250;
    const controller = new AbortController();
    const timer = setTimeout(
      () => controller.abort(new DOMException("the request timed out", "TimeoutError")),
      timeoutMs,
    );
    try {
      const init: RequestInit & { client?: Deno.HttpClient } = {
        method: "POST",
        headers: { ...headers, "content-type": "application/json" },
        body: request.bodyText,
        signal: controller.signal,
        redirect: "manual",
      };
      if (this.#client !== undefined) init.client = this.#client;
      const response = await fetch(`${this.#scheme}://${request.address}${path}`, init);
      return await readReply(response, this.#replyBytesMax);
    } finally {
      clearTimeout(timer);
    }
  }
}

const utf8 = new TextDecoder();

/** The parsed body of a 2xx reply. @throws {ReplyError} for any other reply. */
async function readReply(response: Response, bytesMax: number): Promise<unknown> {
  const text = utf8.decode(await readReplyBytes(response, bytesMax));
  const status = response.status;
  if (status < 200 || status > 299) {
    const remoteCode = remoteCodeOf(text);
    const detail = `HTTP ${status}${remoteCode === undefined ? "" : `, code ${remoteCode}`}`;
    const failure = status === 401 || status === 403 ? "refused" : "invalid_reply";
    const targetId = status === 403 ? response.headers.get(nodeHeader) ?? undefined : undefined;
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

/** The reply's bytes, refusing one over `bytesMax` as soon as it is seen. */
async function readReplyBytes(response: Response, bytesMax: number): Promise<Uint8Array> {
  const declaredText = response.headers.get("content-length");
  const declared = Number(declaredText ?? "0");
  if (declared > bytesMax) {
    await response.body?.cancel();
    const detail = `the reply is ${declared} bytes, limit is ${bytesMax}`;
    throw new ReplyError({ failure: "invalid_reply", detail, status: response.status });
  }
  // HTTP/1.1 framing holds a reply with a Content-Length to exactly that many bytes, so reading it whole is
  // bounded. Read whole, it skips the ReadableStream and its reader: a round trip's client CPU went from
  // ~1.5x a bare `fetch` to ~1.1-1.3x (sequential internal reads against a node on one core).
  if (declaredText !== null) return await response.bytes();
  if (response.body === null) return new Uint8Array(0);
  const read = await readBounded(response.body, bytesMax);
  if (read.over) {
    const detail = `the reply is over ${bytesMax} bytes`;
    throw new ReplyError({ failure: "invalid_reply", detail, status: response.status });
  }
  return read.bytes;
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
  if (error instanceof DOMException && error.name === "TimeoutError") {
    return new PeerRequestError({
      target,
      kind,
      failure: "timeout",
      detail: `${options.timeoutMs} ms`,
      cause: error,
    });
  }
  // Only a failure to connect proves the peer never saw the request; a connection that broke after the
  // request went out (a reset, a proxy closing it, a peer killed mid-request) leaves it unknown.
  const failure = connectFailed(error) ? "unreachable" : "interrupted";
  return new PeerRequestError({ target, kind, failure, cause: error });
}

/** Whether `error` (from `fetch`) says no connection was made: refused, no route, no such name. */
function connectFailed(error: unknown): boolean {
  const text = `${String(error)} ${String((error as { cause?: unknown } | undefined)?.cause)}`;
  return /client error \(Connect\)|dns error|are blocked|Connection refused/i.test(text);
}
