import { assert } from "../util/assert.ts";
import { ClusterAuthError } from "./errors.ts";

/** Header naming the sending node (`host:port`). */
export const nodeHeader = "x-dyna-node";
/** Header with the sender's wall-clock time in ms since the epoch, as decimal digits. */
export const timeHeader = "x-dyna-time";
/** Header with the base64url (unpadded) HMAC-SHA-256 over the request; see {@linkcode RequestSigner}. */
export const macHeader = "x-dyna-mac";

/** Domain-separation label: the MAC key is HMAC-SHA-256(CLUSTER_SECRET, this label). */
const macKeyLabel = "dynarust cluster mac v1";
/** Bytes of an HMAC-SHA-256 tag. */
const macBytes = 32;
/** Longest sender id accepted in a header, as in `wire.ts`. */
const senderCharsMax = 300;

const encoder = new TextEncoder();

/**
 * Signs and verifies node-to-node requests with a key derived from `CLUSTER_SECRET`.
 *
 * MAC input: `POST\n<path>\n<time>\n<sender>\n<body text>`. The path, sender and time cannot hold a
 * newline (they are header values and our own paths), so the fields cannot be shifted into each other.
 */
export class RequestSigner {
  readonly #key: CryptoKey;

  private constructor(key: CryptoKey) {
    this.#key = key;
  }

  /** Derives the MAC key from `secret` once and imports it as a non-extractable CryptoKey. */
  static async create(secret: string): Promise<RequestSigner> {
    assert(secret.length > 0, "CLUSTER_SECRET must not be empty");
    const secretKey = await crypto.subtle.importKey(
      "raw",
      encoder.encode(secret),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign"],
    );
    const derived = await crypto.subtle.sign("HMAC", secretKey, encoder.encode(macKeyLabel));
    assert(derived.byteLength === macBytes);
    const key = await crypto.subtle.importKey(
      "raw",
      derived,
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign", "verify"],
    );
    return new RequestSigner(key);
  }

  /** The three authentication headers (`x-dyna-node`, `x-dyna-time`, `x-dyna-mac`) of one request. */
  async sign(
    options: { path: string; sender: string; bodyText: string; nowMs: number },
  ): Promise<Record<string, string>> {
    assert(Number.isSafeInteger(options.nowMs));
    assert(options.nowMs >= 0);
    assert(options.path.startsWith("/"));
    assert(!options.sender.includes("\n"));
    const time = String(options.nowMs);
    const input = macInput({ path: options.path, time, sender: options.sender, bodyText: options.bodyText });
    const mac = new Uint8Array(await crypto.subtle.sign("HMAC", this.#key, input));
    assert(mac.length === macBytes);
    return { [nodeHeader]: options.sender, [timeHeader]: time, [macHeader]: encodeBase64Url(mac) };
  }

  /**
   * Checks the headers of one request and returns the sender's id.
   *
   * @throws {ClusterAuthError} when a header is missing or malformed, the time is more than `windowMs`
   * away from `nowMs`, or the MAC does not match (compared in constant time by `crypto.subtle.verify`).
   */
  async verify(
    options: { path: string; headers: Headers; bodyText: string; nowMs: number; windowMs: number },
  ): Promise<string> {
    assert(options.windowMs >= 0);
    const fail = (reason: string) => new ClusterAuthError({ path: options.path.slice(0, 100), reason });
    const sender = options.headers.get(nodeHeader);
    const time = options.headers.get(timeHeader);
    const macText = options.headers.get(macHeader);
    for (const [name, value] of [[nodeHeader, sender], [timeHeader, time], [macHeader, macText]]) {
      if (value === null || value === "") throw fail(`header ${name} is missing`);
    }
    if (sender!.length > senderCharsMax) {
      throw fail(`header ${nodeHeader} is over ${senderCharsMax} characters`);
    }
    if (!/^[0-9]{1,16}$/.test(time!)) throw fail(`header ${timeHeader} is not a time in ms since the epoch`);
    const skewMs = Math.abs(options.nowMs - Number(time));
    if (skewMs > options.windowMs) {
      throw fail(
        `its time is ${skewMs} ms away from this node's clock, the window is ${options.windowMs} ms`,
      );
    }
    const mac = decodeBase64Url(macText!);
    if (mac === undefined || mac.length !== macBytes) throw fail(`header ${macHeader} is malformed`);
    const input = macInput({ path: options.path, time: time!, sender: sender!, bodyText: options.bodyText });
    const matches = await crypto.subtle.verify("HMAC", this.#key, mac, input);
    if (!matches) throw fail("its MAC does not match this node's CLUSTER_SECRET");
    return sender!;
  }
}

/** The bytes a MAC covers. */
function macInput(
  fields: { path: string; time: string; sender: string; bodyText: string },
): Uint8Array<ArrayBuffer> {
  return encoder.encode(`POST\n${fields.path}\n${fields.time}\n${fields.sender}\n${fields.bodyText}`);
}

/** Base64url without padding (RFC 4648 §5). */
function encodeBase64Url(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
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
