import { deflateRawSync, inflateRawSync } from "node:zlib";
import { assert } from "../util/assert.ts";
import { crc32 } from "../util/crc32.ts";
import {
  decrypt,
  encrypt,
  type Encryption,
  type FrameCipher,
  ivBytes,
  keyIdLength,
  tagBytes,
} from "./crypto.ts";
import { RecordDecodeError, WalCorruptError, WrongKeyError } from "./errors.ts";
import type { FsFile } from "./fs.ts";

/** The kinds of data file, each with its magic (see `mod.ts`). */
export const fileMagics = { wal: "DYNW", state: "DYNS", secret: "DYNK", changes: "DYNC" } as const;
export type FileKind = keyof typeof fileMagics;

/** Version of the format of every file; bumped on any incompatible change. */
export const formatVersion = 1;
/** Magic (4) + format version (1) + key id (16 ASCII hex). */
export const fileHeaderBytes = 4 + 1 + keyIdLength;
/** Ciphertext length (u32) + CRC-32 of the ciphertext (u32) + IV (12). */
export const frameHeaderBytes = 4 + 4 + ivBytes;
/** Plaintext of at least this size is deflated (when that makes it smaller). */
export const compressPlaintextBytesMin = 1024;
/**
 * Plaintext below this size is deflated for speed rather than size. These are the small WAL batches of
 * single writes: zlib's default state is about 256 KiB to allocate and clear per call, and that, not
 * the compression, was most of a small batch's cost (about 7% of a durable PUT's CPU). Larger frames (bulk
 * loads, checkpoints), which make most of the bytes on disk, keep the default level.
 */
const fastCompressBytesMax = 4 * 1024;
/** A 4 KiB window and small hash table: about a tenth of the default state; ~30% larger output. */
const fastDeflate = { level: 1, memLevel: 4, windowBits: 12 };
/** Largest plaintext of one frame; bounds memory when reading and inflating. */
export const framePlaintextBytesMax = 256 * 1024 * 1024;
/** Largest ciphertext of one frame. */
export const frameCiphertextBytesMax = framePlaintextBytesMax + tagBytes;
/**
 * Output buffer of inflate: a state frame's plaintext (256 KiB and the record that crosses it) at once.
 * The default 16 KiB chunks made inflating a state frame ~4x slower. Only the pages written are resident.
 */
const inflateChunkBytes = 320 * 1024;
/** Bytes read from a file at once while scanning its frames. */
const scanReadBytes = 1024 * 1024;
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
  options: {
    encryption: Encryption;
    header: Uint8Array;
    records: readonly Uint8Array[];
  },
): Uint8Array {
  assert(options.records.length > 0);
  const packed = packRecords(options.records);
  assert(packed.length < framePlaintextBytesMax, "frame plaintext over framePlaintextBytesMax");
  const deflated = packed.length < compressPlaintextBytesMin
    ? undefined
    : deflateRawSync(packed, packed.length < fastCompressBytesMax ? fastDeflate : undefined);
  const useDeflated = deflated !== undefined && deflated.length < packed.length;
  const body = useDeflated ? deflated : packed;
  const plaintext = new Uint8Array(1 + body.length);
  plaintext[0] = useDeflated ? flagDeflated : 0;
  plaintext.set(body, 1);
  return frameOf(encrypt(options.encryption.cipherKey, { plaintext, additionalData: options.header }));
}

/** A frame of a sealed plaintext: length, CRC-32 of the ciphertext, IV, ciphertext. */
function frameOf(sealed: { iv: Uint8Array; ciphertext: Uint8Array }): Uint8Array {
  const { iv, ciphertext } = sealed;
  assert(iv.length === ivBytes && ciphertext.length > tagBytes, "a sealed frame has its IV and tag");
  const frame = new Uint8Array(frameHeaderBytes + ciphertext.length);
  const view = new DataView(frame.buffer);
  view.setUint32(0, ciphertext.length);
  view.setUint32(4, crc32(ciphertext));
  frame.set(iv, 8);
  frame.set(ciphertext, frameHeaderBytes);
  return frame;
}

/**
 * Encrypts a frame's whole plaintext as laid out by the caller: the flag byte (`0`: not deflated) and the
 * records, each after its u32 length. For writers that lay records out in place (the change log's batch
 * buffer), without the copy `encodeFrame` makes.
 */
export function encodePlaintextFrame(
  options: { cipher: FrameCipher; header: Uint8Array; plaintext: Uint8Array },
): Uint8Array {
  const { plaintext } = options;
  assert(plaintext.length >= 1 && (plaintext[0]! & ~flagDeflated) === 0, "a plaintext starts with its flags");
  assert(plaintext.length < framePlaintextBytesMax + 1, "frame plaintext over framePlaintextBytesMax");
  return frameOf(options.cipher.seal({ plaintext, additionalData: options.header }));
}

/**
 * The records of one frame, as its plaintext holds them: in `bytes`, each after its u32 length, back to
 * back from the first byte to the last. Their lengths were checked to fit; their content was not.
 */
export interface FrameRecords {
  readonly bytes: Uint8Array;
  /** Records in `bytes` (at least one). */
  readonly count: number;
  /**
   * The deflated body `bytes` was inflated from, when the frame was compressed: about 5x smaller, a
   * page may hold it instead and inflate it again ({@linkcode inflateRecords}) when a record is read.
   * Then `bytes` is the only view of its buffer, which a page adopting it frees (`RecordPages.adopt`).
   */
  readonly deflated?: Uint8Array;
}

/** Where the record whose u32 length prefix starts at `offset` of a frame's records ends. */
export function recordEndAt(bytes: Uint8Array, offset: number): number {
  return offset + 4 + (((bytes[offset]! << 24) | (bytes[offset + 1]! << 16) | (bytes[offset + 2]! << 8) |
    bytes[offset + 3]!) >>> 0);
}

/** Each record of `frame` as a view of its bytes, in order; for callers that need an array of few. */
export function recordsOf(frame: FrameRecords): Uint8Array[] {
  const records: Uint8Array[] = [];
  // Bounded: each step moves past one record, whose end decodeFramePlaintext checked.
  for (let offset = 0; offset < frame.bytes.length;) {
    const end = recordEndAt(frame.bytes, offset);
    records.push(frame.bytes.subarray(offset + 4, end));
    offset = end;
  }
  assert(records.length === frame.count);
  return records;
}

/**
 * Inflates a frame's body. The output goes to one buffer of `inflateChunkBytes` (beyond what a state
 * frame holds), which is kept as it is when at least half full: copying it, or zlib joining chunks,
 * would write every byte of a restart's state a second time into fresh memory, which costs more than
 * the inflating.
 */
function inflateBody(deflated: Uint8Array, chunkBytes: number): Uint8Array {
  let inflated: Uint8Array;
  try {
    inflated = inflateRawSync(deflated, { maxOutputLength: framePlaintextBytesMax, chunkSize: chunkBytes });
  } catch (error) {
    throw new RecordDecodeError("frame does not inflate", { cause: error });
  }
  // Either way the result is the only view of its buffer (zlib's chunk, or an exactly sized copy of
  // output that fills less than half of it, or shares Buffer's pool).
  return ownedBytes(inflated);
}

/**
 * zlib's output as the only view of a buffer about its size: as is when it fills at least half of its
 * buffer, else an exactly sized copy, so a larger chunk (or Buffer's shared pool) is let go of.
 */
function ownedBytes(output: Uint8Array): Uint8Array {
  if (output.length * 2 < output.buffer.byteLength) return new Uint8Array(output);
  return new Uint8Array(output.buffer, output.byteOffset, output.length);
}

/** Deflates records held in memory; {@linkcode inflateRecords} gives them back. */
export function deflateRecords(records: Uint8Array): Uint8Array {
  return ownedBytes(deflateRawSync(records));
}

/**
 * Inflates again the `deflated` body of a frame read before (see {@linkcode FrameRecords}), whose
 * records take `lengthBytes`, into a buffer of about that size.
 */
export function inflateRecords(deflated: Uint8Array, lengthBytes: number): Uint8Array {
  // zlib's chunks are at least 64 bytes; one byte more than the output ends it within the first chunk.
  const records = inflateBody(deflated, Math.max(64, lengthBytes + 1));
  assert(records.length === lengthBytes, "a frame read before inflates as it did");
  return records;
}

/**
 * Splits a decrypted frame plaintext into its records, checking that their lengths fit.
 *
 * @throws {RecordDecodeError} when the flag or the length prefixes are not valid.
 */
export function decodeFramePlaintext(plaintext: Uint8Array): FrameRecords {
  if (plaintext.length < 1) throw new RecordDecodeError("frame has no flag byte");
  const flag = plaintext[0]!;
  if ((flag & ~flagDeflated) !== 0) throw new RecordDecodeError(`unknown frame flags ${flag}`);
  const body = plaintext.subarray(1);
  const deflated = (flag & flagDeflated) !== 0;
  const bytes = deflated ? inflateBody(body, inflateChunkBytes) : body;
  let count = 0;
  let offset = 0;
  // Bounded: each step moves past at least the 4 bytes of a length.
  while (offset < bytes.length) {
    if (offset + 4 > bytes.length) throw new RecordDecodeError("frame ends inside a record length");
    const end = recordEndAt(bytes, offset);
    if (end > bytes.length) throw new RecordDecodeError("frame ends inside a record");
    count += 1;
    offset = end;
  }
  if (count === 0) throw new RecordDecodeError("frame holds no record");
  return deflated ? { bytes, count, deflated: body } : { bytes, count };
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

/**
 * Reads a file front to back through one buffer, refilled about 1 MiB at a time, so that scanning a
 * file of many frames issues few reads and does not allocate each frame's ciphertext anew.
 */
class ScanReader {
  readonly #file: FsFile;
  #buffer: Uint8Array;
  #start = 0;
  #end = 0;

  constructor(file: FsFile, sizeBytes: number) {
    this.#file = file;
    this.#buffer = new Uint8Array(Math.max(frameHeaderBytes, Math.min(scanReadBytes, sizeBytes)));
  }

  /** The next `count` bytes, fewer at the end of the file; a view valid until the next call. */
  async take(count: number): Promise<Uint8Array> {
    if (this.#end - this.#start < count) await this.#fill(count);
    const taken = Math.min(count, this.#end - this.#start);
    const bytes = this.#buffer.subarray(this.#start, this.#start + taken);
    this.#start += taken;
    return bytes;
  }

  async #fill(count: number): Promise<void> {
    const kept = this.#end - this.#start;
    if (count > this.#buffer.length) {
      const larger = new Uint8Array(count); // a frame larger than the buffer
      larger.set(this.#buffer.subarray(this.#start, this.#end));
      this.#buffer = larger;
    } else {
      this.#buffer.copyWithin(0, this.#start, this.#end);
    }
    this.#start = 0;
    this.#end = kept;
    // Bounded: every read adds at least one byte or stops at the end of the file.
    while (this.#end < count) {
      const read = await this.#file.read(this.#buffer.subarray(this.#end));
      if (read === null || read === 0) break;
      this.#end += read;
    }
    assert(this.#end <= this.#buffer.length);
  }
}

async function readFrame(
  options: ScanOptions & { reader: ScanReader; offset: number },
): Promise<FrameRead> {
  const { reader, offset, sizeBytes } = options;
  if (sizeBytes - offset < frameHeaderBytes) {
    return { kind: "bad", end: sizeBytes + 1, reason: "partial frame header" };
  }
  const header = await reader.take(frameHeaderBytes);
  assert(header.length === frameHeaderBytes);
  const view = new DataView(header.buffer, header.byteOffset, frameHeaderBytes);
  const length = view.getUint32(0);
  const crc = view.getUint32(4);
  const iv = header.slice(8); // the next take may move the buffer's bytes
  const end = offset + frameHeaderBytes + length;
  if (end > sizeBytes) {
    return { kind: "bad", end, reason: `frame of ${length} bytes runs past the end of the file` };
  }
  if (length < tagBytes + 1 || length > frameCiphertextBytesMax) {
    return { kind: "bad", end, reason: `frame length ${length} is out of range` };
  }
  const ciphertext = await reader.take(length);
  assert(ciphertext.length === length);
  if (crc32(ciphertext) !== crc) return { kind: "bad", end, reason: "CRC-32 mismatch" };
  const { cipher } = options;
  const sealed = { iv, ciphertext, additionalData: options.header };
  const plaintext = cipher === undefined
    ? await decrypt(options.encryption.key, sealed)
    : cipher.open(sealed);
  if (plaintext === undefined) {
    return { kind: "bad", end, reason: `${cipher?.name ?? "AES-GCM"} authentication failed` };
  }
  return { kind: "good", plaintext, end };
}

/** True when every byte from the reader's position to the end of the file is zero (a zero-filled tail). */
async function restIsZero(reader: ScanReader): Promise<boolean> {
  const chunkBytes = 64 * 1024;
  // Bounded by the file size.
  while (true) {
    const chunk = await reader.take(chunkBytes);
    for (let index = 0; index < chunk.length; index += 1) if (chunk[index] !== 0) return false;
    if (chunk.length < chunkBytes) return true;
  }
}

/** Options of {@linkcode scanFrames}. */
export interface ScanOptions {
  file: FsFile;
  path: string;
  /** The file's size when the scan starts. */
  sizeBytes: number;
  encryption: Encryption;
  /** The frames' cipher when it is not the build key's AES-GCM (the change log's). */
  cipher?: FrameCipher;
  /** The file header: the frames' additional authenticated data. */
  header: Uint8Array;
}

/**
 * Reads every frame after the file header (the file position must be just after it) and passes the
 * records of each to `onFrame`, in order; they stay valid after the call (a page may adopt them). A
 * damaged frame that is the last thing in the file (it runs past the end, ends exactly at the end, or
 * only zero bytes follow it) is reported as `torn`; a damaged frame followed by other bytes throws.
 *
 * @throws {WalCorruptError} naming the file and the offset of the damaged frame.
 */
export async function scanFrames(
  options: ScanOptions,
  onFrame: (records: FrameRecords, offset: number) => void,
): Promise<ScanResult> {
  let offset = fileHeaderBytes;
  let frameCount = 0;
  const reader = new ScanReader(options.file, options.sizeBytes - offset);
  while (offset < options.sizeBytes) {
    const frame = await readFrame({ ...options, reader, offset });
    if (frame.kind === "bad") {
      const isTail = frame.end >= options.sizeBytes || await restIsZero(reader);
      if (!isTail) throw new WalCorruptError({ path: options.path, offset, reason: frame.reason });
      return { endOffset: offset, frameCount, torn: { offset, reason: frame.reason } };
    }
    let records: FrameRecords;
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
