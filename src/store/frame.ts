import { deflateRawSync, inflateRawSync } from "node:zlib";
import { assert } from "../util/assert.ts";
import { crc32 } from "../util/crc32.ts";
import { decrypt, encrypt, type Encryption, ivBytes, keyIdLength, tagBytes } from "./crypto.ts";
import { WalCorruptError, WrongKeyError } from "./errors.ts";
import type { FsFile } from "./fs.ts";
import { RecordDecodeError } from "./wal_record.ts";

/** The kinds of data file, each with its magic (see `mod.ts`). */
export const fileMagics = { wal: "DYNW", state: "DYNS", secret: "DYNK" } as const;
export type FileKind = keyof typeof fileMagics;

/** Version of the format of every file; bumped on any incompatible change. */
export const formatVersion = 1;
/** Magic (4) + format version (1) + key id (16 ASCII hex). */
export const fileHeaderBytes = 4 + 1 + keyIdLength;
/** Ciphertext length (u32) + CRC-32 of the ciphertext (u32) + IV (12). */
export const frameHeaderBytes = 4 + 4 + ivBytes;
/** Plaintext of at least this size is deflated (when that makes it smaller). */
export const compressPlaintextBytesMin = 1024;
/** Largest plaintext of one frame; bounds memory when reading and inflating. */
export const framePlaintextBytesMax = 256 * 1024 * 1024;
/** Largest ciphertext of one frame. */
export const frameCiphertextBytesMax = framePlaintextBytesMax + tagBytes;
/** Output chunk of inflate: one state frame's plaintext at once. */
const inflateChunkBytes = 256 * 1024;
/** Bit 0 of a frame's flag byte: the records are deflate-raw compressed. */
const flagDeflated = 0b1;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The header that starts a file of `kind`; it is also the additional authenticated data of its frames. */
export function encodeFileHeader(kind: FileKind, keyId: string): Uint8Array {
  assert(keyId.length === keyIdLength);
  const bytes = new Uint8Array(fileHeaderBytes);
  bytes.set(encoder.encode(fileMagics[kind]), 0);
  bytes[4] = formatVersion;
  bytes.set(encoder.encode(keyId), 5);
  return bytes;
}

/**
 * Checks a file header read from disk.
 *
 * @throws {WalCorruptError} when the magic or format version is not ours.
 * @throws {WrongKeyError} when the file was written under another key.
 */
export function checkFileHeader(
  options: { path: string; bytes: Uint8Array; kind: FileKind; keyId: string },
): void {
  const { path, bytes } = options;
  assert(bytes.length === fileHeaderBytes);
  const magic = decoder.decode(bytes.subarray(0, 4));
  if (magic !== fileMagics[options.kind]) {
    throw new WalCorruptError({ path, offset: 0, reason: `magic is not "${fileMagics[options.kind]}"` });
  }
  if (bytes[4] !== formatVersion) {
    throw new WalCorruptError({
      path,
      offset: 4,
      reason: `format version ${bytes[4]} is not ${formatVersion}`,
    });
  }
  const fileKeyId = decoder.decode(bytes.subarray(5));
  if (fileKeyId !== options.keyId) throw new WrongKeyError({ path, fileKeyId, buildKeyId: options.keyId });
}

/** Bytes `records` take inside a frame, each with its u32 length prefix. */
export function framedRecordsBytes(records: readonly Uint8Array[]): number {
  let total = 0;
  for (const record of records) total += 4 + record.length;
  return total;
}

function packRecords(records: readonly Uint8Array[]): Uint8Array {
  const packed = new Uint8Array(framedRecordsBytes(records));
  const view = new DataView(packed.buffer);
  let offset = 0;
  for (const record of records) {
    view.setUint32(offset, record.length);
    packed.set(record, offset + 4);
    offset += 4 + record.length;
  }
  assert(offset === packed.length);
  return packed;
}

/**
 * Encrypts `records` (already encoded) into one frame: one compression, one encryption, one CRC.
 * Synchronous, so a WAL batch goes from records to bytes on disk without waiting for the event loop.
 */
export function encodeFrame(
  options: { encryption: Encryption; header: Uint8Array; records: readonly Uint8Array[] },
): Uint8Array {
  assert(options.records.length > 0);
  const packed = packRecords(options.records);
  assert(packed.length < framePlaintextBytesMax, "frame plaintext over framePlaintextBytesMax");
  const deflated = packed.length >= compressPlaintextBytesMin ? deflateRawSync(packed) : undefined;
  const useDeflated = deflated !== undefined && deflated.length < packed.length;
  const body = useDeflated ? deflated : packed;
  const plaintext = new Uint8Array(1 + body.length);
  plaintext[0] = useDeflated ? flagDeflated : 0;
  plaintext.set(body, 1);
  const { iv, ciphertext } = encrypt(options.encryption.cipherKey, {
    plaintext,
    additionalData: options.header,
  });
  const frame = new Uint8Array(frameHeaderBytes + ciphertext.length);
  const view = new DataView(frame.buffer);
  view.setUint32(0, ciphertext.length);
  view.setUint32(4, crc32(ciphertext));
  frame.set(iv, 8);
  frame.set(ciphertext, frameHeaderBytes);
  return frame;
}

/**
 * Splits a decrypted frame plaintext into its records.
 *
 * @throws {RecordDecodeError} when the flag or the length prefixes are not valid.
 */
export function decodeFramePlaintext(plaintext: Uint8Array): Uint8Array[] {
  if (plaintext.length < 1) throw new RecordDecodeError("frame has no flag byte");
  const flag = plaintext[0]!;
  if ((flag & ~flagDeflated) !== 0) throw new RecordDecodeError(`unknown frame flags ${flag}`);
  let packed = plaintext.subarray(1);
  if (flag & flagDeflated) {
    try {
      // Large output chunks: the default 16 KiB ones made inflating a 256 KiB state frame ~4x slower.
      packed = new Uint8Array(
        inflateRawSync(packed, { maxOutputLength: framePlaintextBytesMax, chunkSize: inflateChunkBytes }),
      );
    } catch (error) {
      throw new RecordDecodeError("frame does not inflate", { cause: error });
    }
  }
  const view = new DataView(packed.buffer, packed.byteOffset, packed.byteLength);
  const records: Uint8Array[] = [];
  let offset = 0;
  while (offset < packed.length) {
    if (offset + 4 > packed.length) throw new RecordDecodeError("frame ends inside a record length");
    const end = offset + 4 + view.getUint32(offset);
    if (end > packed.length) throw new RecordDecodeError("frame ends inside a record");
    records.push(packed.subarray(offset + 4, end));
    offset = end;
  }
  if (records.length === 0) throw new RecordDecodeError("frame holds no record");
  return records;
}

/** Reads until `buffer` is full or the file ends; returns the bytes read. */
export async function readFully(file: FsFile, buffer: Uint8Array): Promise<number> {
  let filled = 0;
  // Bounded: every iteration reads at least one byte or stops.
  while (filled < buffer.length) {
    const count = await file.read(buffer.subarray(filled));
    if (count === null || count === 0) break;
    filled += count;
  }
  return filled;
}

/** Where a scan stopped. `torn` is set when the last frame was incomplete or damaged (a torn tail). */
export interface ScanResult {
  /** Offset just after the last good frame. */
  endOffset: number;
  /** Frames read. */
  frameCount: number;
  torn?: { offset: number; reason: string };
}

/** The outcome of reading one frame at `offset`. */
type FrameRead =
  | { kind: "good"; plaintext: Uint8Array; end: number }
  | { kind: "bad"; end: number; reason: string };

async function readFrame(
  options: ScanOptions & { offset: number },
): Promise<FrameRead> {
  const { file, offset, sizeBytes } = options;
  if (sizeBytes - offset < frameHeaderBytes) {
    return { kind: "bad", end: sizeBytes + 1, reason: "partial frame header" };
  }
  const header = new Uint8Array(frameHeaderBytes);
  assert(await readFully(file, header) === frameHeaderBytes);
  const view = new DataView(header.buffer);
  const length = view.getUint32(0);
  const end = offset + frameHeaderBytes + length;
  if (end > sizeBytes) {
    return { kind: "bad", end, reason: `frame of ${length} bytes runs past the end of the file` };
  }
  if (length < tagBytes + 1 || length > frameCiphertextBytesMax) {
    return { kind: "bad", end, reason: `frame length ${length} is out of range` };
  }
  const ciphertext = new Uint8Array(length);
  assert(await readFully(file, ciphertext) === length);
  if (crc32(ciphertext) !== view.getUint32(4)) return { kind: "bad", end, reason: "CRC-32 mismatch" };
  const plaintext = await decrypt(options.encryption.key, {
    iv: header.subarray(8),
    ciphertext,
    additionalData: options.header,
  });
  if (plaintext === undefined) return { kind: "bad", end, reason: "AES-GCM authentication failed" };
  return { kind: "good", plaintext, end };
}

/** True when every byte from the file position to its end is zero (a zero-filled torn tail). */
async function restIsZero(file: FsFile): Promise<boolean> {
  const chunk = new Uint8Array(64 * 1024);
  // Bounded by the file size.
  while (true) {
    const count = await readFully(file, chunk);
    for (let index = 0; index < count; index += 1) if (chunk[index] !== 0) return false;
    if (count < chunk.length) return true;
  }
}

/** Options of {@linkcode scanFrames}. */
export interface ScanOptions {
  file: FsFile;
  path: string;
  /** The file's size when the scan starts. */
  sizeBytes: number;
  encryption: Encryption;
  /** The file header: the frames' additional authenticated data. */
  header: Uint8Array;
}

/**
 * Reads every frame after the file header (the file position must be just after it) and passes the
 * records of each to `onFrame`, in order. A damaged frame that is the last thing in the file (it runs
 * past the end, ends exactly at the end, or only zero bytes follow it) is reported as `torn`; a damaged
 * frame followed by other bytes throws.
 *
 * @throws {WalCorruptError} naming the file and the offset of the damaged frame.
 */
export async function scanFrames(
  options: ScanOptions,
  onFrame: (records: Uint8Array[], offset: number) => void,
): Promise<ScanResult> {
  let offset = fileHeaderBytes;
  let frameCount = 0;
  while (offset < options.sizeBytes) {
    const frame = await readFrame({ ...options, offset });
    if (frame.kind === "bad") {
      const isTail = frame.end >= options.sizeBytes || await restIsZero(options.file);
      if (!isTail) throw new WalCorruptError({ path: options.path, offset, reason: frame.reason });
      return { endOffset: offset, frameCount, torn: { offset, reason: frame.reason } };
    }
    let records: Uint8Array[];
    try {
      records = decodeFramePlaintext(frame.plaintext);
    } catch (error) {
      if (!(error instanceof RecordDecodeError)) throw error;
      throw new WalCorruptError({ path: options.path, offset, reason: error.message });
    }
    onFrame(records, offset);
    frameCount += 1;
    offset = frame.end;
  }
  assert(offset === options.sizeBytes);
  return { endOffset: offset, frameCount };
}
