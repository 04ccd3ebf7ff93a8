import { createCipheriv, createSecretKey, type KeyObject } from "node:crypto";
import { assert } from "../util/assert.ts";

/** Bytes of an AES-256 key. */
export const keyBytes = 32;
/** Bytes of an AES-GCM IV (the 96-bit size GCM is designed for). */
export const ivBytes = 12;
/** Bytes of the AES-GCM authentication tag appended to every ciphertext. */
export const tagBytes = 16;
/** Characters of a key id. */
export const keyIdLength = 16;

/** A build's encryption key and the id that names it in file headers. */
export interface Encryption {
  key: CryptoKey;
  /** The same key for `node:crypto`, which encrypts without waiting for the event loop. */
  cipherKey: KeyObject;
  /** 16 lowercase hex characters; see {@linkcode importEncryptionKey}. */
  keyId: string;
}

/** WebCrypto's typings want bytes over a plain ArrayBuffer; ours always are. */
function source(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  assert(!(bytes.buffer instanceof SharedArrayBuffer));
  return bytes as Uint8Array<ArrayBuffer>;
}

function decodeBase64(text: string): Uint8Array {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let index = 0; index < binary.length; index += 1) bytes[index] = binary.charCodeAt(index);
  return bytes;
}

/**
 * Imports the build key (base64 of 32 random bytes) as a non-extractable AES-256-GCM key.
 *
 * The key id is the first 16 hex characters of SHA-256("dynarust-key-id\0" + raw key bytes): it names the
 * key in file headers so a data dir written under another key is refused, and it reveals nothing of the key.
 */
export async function importEncryptionKey(keyBase64: string): Promise<Encryption> {
  const raw = decodeBase64(keyBase64);
  assert(raw.length === keyBytes, `the encryption key must be ${keyBytes} bytes, got ${raw.length}`);
  const label = new TextEncoder().encode("dynarust-key-id\0");
  const labelled = new Uint8Array(label.length + raw.length);
  labelled.set(label);
  labelled.set(raw, label.length);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", source(labelled)));
  const keyId = Array.from(digest.subarray(0, keyIdLength / 2), (byte) => byte.toString(16).padStart(2, "0"))
    .join("");
  const key = await crypto.subtle.importKey("raw", source(raw), { name: "AES-GCM" }, false, [
    "encrypt",
    "decrypt",
  ]);
  const cipherKey = createSecretKey(raw);
  raw.fill(0);
  labelled.fill(0);
  assert(keyId.length === keyIdLength);
  return { key, cipherKey, keyId };
}

/**
 * Encrypts `plaintext` under a fresh random IV; `additionalData` is authenticated, not encrypted. The
 * ciphertext ends with the 16-byte tag, as WebCrypto's does. Synchronous: a WAL batch is encrypted
 * without handing the event loop a turn to wait on.
 */
export function encrypt(
  key: KeyObject,
  input: { plaintext: Uint8Array; additionalData: Uint8Array },
): { iv: Uint8Array; ciphertext: Uint8Array } {
  const iv = crypto.getRandomValues(new Uint8Array(ivBytes));
  const cipher = createCipheriv("aes-256-gcm", key, iv, { authTagLength: tagBytes });
  cipher.setAAD(input.additionalData);
  const ciphertext = new Uint8Array(input.plaintext.length + tagBytes);
  const head = cipher.update(input.plaintext);
  const tail = cipher.final();
  ciphertext.set(head, 0);
  ciphertext.set(tail, head.length);
  assert(head.length + tail.length === input.plaintext.length);
  ciphertext.set(cipher.getAuthTag(), input.plaintext.length);
  return { iv, ciphertext };
}

/** Decrypts and authenticates; undefined when the tag does not match (wrong key or damaged bytes). */
export async function decrypt(
  key: CryptoKey,
  input: { iv: Uint8Array; ciphertext: Uint8Array; additionalData: Uint8Array },
): Promise<Uint8Array | undefined> {
  assert(input.iv.length === ivBytes);
  if (input.ciphertext.length < tagBytes) return undefined;
  try {
    const plaintext = await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: source(input.iv), additionalData: source(input.additionalData) },
      key,
      source(input.ciphertext),
    );
    return new Uint8Array(plaintext);
  } catch (error) {
    if (error instanceof DOMException && error.name === "OperationError") return undefined;
    throw error;
  }
}
