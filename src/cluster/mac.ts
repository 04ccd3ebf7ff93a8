import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { assert } from "../util/assert.ts";
import { ClusterAuthError } from "./errors.ts";
import { parseSequence, type Sequence, SequenceSource } from "./replay.ts";

/** Header naming the sending node (`host:port`). */
export const nodeHeader = "x-dyna-node";
/** Header naming the receiving node as the sender addresses it (its member id). */
export const targetHeader = "x-dyna-target";
/** Header with the sender's wall-clock time in ms since the epoch, as decimal digits. */
export const timeHeader = "x-dyna-time";
/** Header with the request's `<epoch>-<counter>`, which the receiver accepts once (see `replay.ts`). */
export const sequenceHeader = "x-dyna-seq";
/** Header with the base64url (unpadded) SHA-256 of the body's bytes, as the sender declares it. */
export const digestHeader = "x-dyna-digest";
/** Header with the base64url (unpadded) HMAC-SHA-256 over the request; see {@linkcode RequestSigner}. */
export const macHeader = "x-dyna-mac";

/** Domain-separation label: the MAC key is HMAC-SHA-256(CLUSTER_SECRET, this label). */
const macKeyLabel = "dynarust cluster mac v2";
/** Bytes of an HMAC-SHA-256 tag and of a SHA-256 digest. */
const macBytes = 32;
/** Longest sender or target id accepted in a header, as in `wire.ts`. */
const idCharsMax = 300;
/** A base64url SHA-256: 43 characters, no padding. */
const digestPattern = /^[A-Za-z0-9_-]{43}$/;

const encoder = new TextEncoder();

/** The SHA-256 of a body, base64url without padding: the value of `x-dyna-digest`. */
export function bodyDigest(body: Uint8Array | string): string {
  const hash = createHash("sha256");
  if (typeof body === "string") hash.update(body, "utf8");
  else hash.update(body);
  return hash.digest("base64url");
}

/**
 * The body a request carries, as sent: its text, or its bytes when the caller encoded it to send it (hashed
 * as they are, so the body is encoded once).
 */
export type SignedBody = { bodyText: string; bodyBytes?: never } | {
  bodyBytes: Uint8Array;
  bodyText?: never;
};

/** What the headers of an authenticated request say; the body is checked against `digest` once read. */
export interface VerifiedHeaders {
  sender: string;
  timeMs: number;
  sequence: Sequence;
  digest: string;
}

/**
 * Signs and verifies node-to-node requests with a key derived from `CLUSTER_SECRET`.
 *
 * MAC input: `POST\n<path>\n<time>\n<sender>\n<target>\n<seq>\n<digest>`, the digest being the SHA-256
 * of the body. The headers authenticate the request before its body is read; the body is then held to
 * the digest. No field can hold a newline (header values and our own paths), so none can be shifted
 * into another.
 */
export class RequestSigner {
  readonly #key: HmacKey;
  readonly #sequences = new SequenceSource();

  private constructor(key: Uint8Array) {
    this.#key = new HmacKey(key);
  }

  /** Derives the MAC key from `secret` once. */
  // deno-lint-ignore require-await
  static async create(secret: string): Promise<RequestSigner> {
    assert(secret.length > 0, "CLUSTER_SECRET must not be empty");
    const key = createHmac("sha256", encoder.encode(secret)).update(macKeyLabel).digest();
    assert(key.byteLength === macBytes);
    return new RequestSigner(new Uint8Array(key));
  }

  /**
   * The authentication headers of one request to `target`, with the next sequence number for it.
   * Computed synchronously with `node:crypto`: WebCrypto's `sign` answers through the event loop, and on a
   * busy node that wait cost milliseconds per request (measured: 2.6 ms on average under cluster load).
   */
  sign(
    options: { path: string; sender: string; target: string; nowMs: number } & SignedBody,
  ): Record<string, string> {
    assert(Number.isSafeInteger(options.nowMs));
    assert(options.nowMs >= 0);
    assert(options.path.startsWith("/"));
    assert(!options.sender.includes("\n") && !options.target.includes("\n"));
    const fields = {
      path: options.path,
      time: String(options.nowMs),
      sender: options.sender,
      target: options.target,
      sequence: this.#sequences.next(options.target),
      digest: bodyDigest(options.bodyBytes === undefined ? options.bodyText : options.bodyBytes),
    };
    return {
      [nodeHeader]: fields.sender,
      [targetHeader]: fields.target,
      [timeHeader]: fields.time,
      [sequenceHeader]: fields.sequence,
      [digestHeader]: fields.digest,
      [macHeader]: this.#mac(fields).toString("base64url"),
    };
  }

  /** HMAC-SHA-256 over `POST\n<path>\n<time>\n<sender>\n<target>\n<seq>\n<digest>`. */
  #mac(
    fields: { path: string; time: string; sender: string; target: string; sequence: string; digest: string },
  ): Buffer {
    const mac = this.#key.mac(
      `POST\n${fields.path}\n${fields.time}\n${fields.sender}\n${fields.target}\n${fields.sequence}\n` +
        fields.digest,
    );
    assert(mac.byteLength === macBytes);
    return mac;
  }

  /**
   * Authenticates the headers of one request addressed to `self`, before its body is read.
   *
   * @throws {ClusterAuthError} when a header is missing or malformed, the time is more than `windowMs`
   * away from `nowMs`, the MAC does not match (compared in constant time), or the request is addressed to
   * another node (then with header `x-dyna-node: <self>`, so a sender that dialed an alias can re-address).
   */
  verify(
    options: { path: string; self: string; headers: Headers; nowMs: number; windowMs: number },
  ): VerifiedHeaders {
    assert(options.windowMs >= 0);
    const fail = (reason: string) => new ClusterAuthError({ path: options.path.slice(0, 100), reason });
    const fields = headerFields(options.headers, fail);
    const timeMs = Number(fields.time);
    const skewMs = Math.abs(options.nowMs - timeMs);
    if (skewMs > options.windowMs) {
      throw fail(
        `its time is ${skewMs} ms away from this node's clock, the window is ${options.windowMs} ms`,
      );
    }
    const mac = decodeBase64Url(fields.macText);
    if (mac === undefined || mac.length !== macBytes) throw fail(`header ${macHeader} is malformed`);
    const expected = this.#mac({ ...fields, path: options.path });
    if (!timingSafeEqual(expected, mac)) throw fail("its MAC does not match this node's CLUSTER_SECRET");
    if (fields.target !== options.self) {
      throw new ClusterAuthError({
        path: options.path.slice(0, 100),
        reason: `it is addressed to ${fields.target.slice(0, 100)}, this node is ${options.self}`,
        headers: { [nodeHeader]: options.self },
      });
    }
    return { sender: fields.sender, timeMs, sequence: fields.parsedSequence, digest: fields.digest };
  }
}

/** SHA-256's block: HMAC pads its key to it. */
const blockBytes = 64;

/**
 * HMAC-SHA-256 (RFC 2104) with its key's two padded blocks made once: `node:crypto`'s `createHmac` builds a
 * key object on every call, which cost 14-20 µs a MAC here against ~10 µs for two `createHash` calls.
 */
export class HmacKey {
  readonly #inner: Uint8Array;
  readonly #outer: Uint8Array;

  /** `key` of at most one block (the cluster's MAC key is 32 bytes). */
  constructor(key: Uint8Array) {
    assert(key.byteLength >= 1 && key.byteLength <= blockBytes, "an HMAC key of one block at most");
    this.#inner = new Uint8Array(blockBytes).fill(0x36);
    this.#outer = new Uint8Array(blockBytes).fill(0x5c);
    for (let index = 0; index < key.byteLength; index += 1) {
      this.#inner[index] = 0x36 ^ key[index]!;
      this.#outer[index] = 0x5c ^ key[index]!;
    }
  }

  /** The tag of `message` (its UTF-8). */
  mac(message: string): Buffer {
    const inner = createHash("sha256").update(this.#inner).update(message, "utf8").digest();
    const tag = createHash("sha256").update(this.#outer).update(inner).digest();
    assert(inner.byteLength === macBytes && tag.byteLength === macBytes);
    return tag;
  }
}

/** The signed headers of a request, present and well-formed. @throws {ClusterAuthError} via `fail` */
function headerFields(headers: Headers, fail: (reason: string) => ClusterAuthError) {
  const read = (name: string): string => {
    const value = headers.get(name);
    if (value === null || value === "") throw fail(`header ${name} is missing`);
    return value;
  };
  const sender = read(nodeHeader);
  const target = read(targetHeader);
  const time = read(timeHeader);
  const sequence = read(sequenceHeader);
  const digest = read(digestHeader);
  const macText = read(macHeader);
  for (const [name, value] of [[nodeHeader, sender], [targetHeader, target]] as const) {
    if (value.length > idCharsMax) throw fail(`header ${name} is over ${idCharsMax} characters`);
  }
  if (!/^[0-9]{1,16}$/.test(time)) throw fail(`header ${timeHeader} is not a time in ms since the epoch`);
  const parsedSequence = parseSequence(sequence);
  if (parsedSequence === undefined) throw fail(`header ${sequenceHeader} is not <epoch>-<counter>`);
  if (!digestPattern.test(digest)) throw fail(`header ${digestHeader} is not a base64url SHA-256`);
  return { sender, target, time, sequence, parsedSequence, digest, macText };
}

/** Bytes of a base64url text (padding optional), or undefined when it is not base64url. */
function decodeBase64Url(text: string): Uint8Array<ArrayBuffer> | undefined {
  if (text.length > 128 || !/^[A-Za-z0-9_-]*={0,2}$/.test(text)) return undefined;
  try {
    const binary = atob(text.replaceAll("-", "+").replaceAll("_", "/"));
    return Uint8Array.from(binary, (char) => char.charCodeAt(0));
  } catch {
    return undefined;
  }
}
