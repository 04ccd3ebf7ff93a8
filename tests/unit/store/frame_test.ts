// Goal: the frame codec shared by every file encodes, compresses, authenticates and scans as specified.
// Method: build files of frames in MemoryFs, then cut and damage them and scan them back.
import assert from "node:assert/strict";
import { crc32 } from "../../../src/util/crc32.ts";
import { decrypt } from "../../../src/store/crypto.ts";
import { WalCorruptError, WrongKeyError } from "../../../src/store/errors.ts";
import {
  checkFileHeader,
  compressPlaintextBytesMin,
  decodeFramePlaintext,
  encodeFileHeader,
  encodeFrame,
  fileHeaderBytes,
  frameHeaderBytes,
  inflateRecords,
  readFully,
  recordsOf,
  scanFrames,
} from "../../../src/store/frame.ts";
import { MemoryFs } from "../../../src/store/fs.ts";
import { RecordDecodeError } from "../../../src/store/errors.ts";
import { AssertionError } from "../../../src/util/assert.ts";
import { otherEncryption, testEncryption } from "./test_store.ts";

const header = encodeFileHeader("wal", testEncryption.keyId);
const encoder = new TextEncoder();

function frameOf(records: string[]): Uint8Array {
  return encodeFrame({
    encryption: testEncryption,
    header,
    records: records.map((text) => encoder.encode(text)),
  });
}

async function plaintextOf(frame: Uint8Array): Promise<Uint8Array> {
  const plaintext = await decrypt(testEncryption.key, {
    iv: frame.subarray(8, frameHeaderBytes),
    ciphertext: frame.subarray(frameHeaderBytes),
    additionalData: header,
  });
  assert(plaintext !== undefined);
  return plaintext;
}

Deno.test("encodeFileHeader() writes magic, format version and key id; checkFileHeader() checks them", () => {
  assert.equal(header.length, fileHeaderBytes);
  assert.equal(new TextDecoder().decode(header), `DYNW\u0001${testEncryption.keyId}`);
  const path = "/d/wal.log";
  checkFileHeader({ path, bytes: header, kind: "wal", keyId: testEncryption.keyId });
  assert.throws(
    () => checkFileHeader({ path, bytes: header, kind: "state", keyId: testEncryption.keyId }),
    WalCorruptError,
  );
  const future = header.slice();
  future[4] = 2;
  assert.throws(
    () => checkFileHeader({ path, bytes: future, kind: "wal", keyId: testEncryption.keyId }),
    /format version 2/,
  );
  assert.throws(
    () => checkFileHeader({ path, bytes: header, kind: "wal", keyId: otherEncryption.keyId }),
    (error: unknown) =>
      error instanceof WrongKeyError && error.message.includes(testEncryption.keyId) &&
      error.message.includes(otherEncryption.keyId),
  );
});

Deno.test(
  "encodeFrame() lays out length, CRC-32, IV and ciphertext; small plaintext is not compressed",
  async () => {
    const frame = frameOf(["one", "two"]);
    const view = new DataView(frame.buffer);
    const ciphertext = frame.subarray(frameHeaderBytes);
    assert.equal(view.getUint32(0), ciphertext.length);
    assert.equal(view.getUint32(4), crc32(ciphertext));
    const plaintext = await plaintextOf(frame);
    assert.equal(plaintext[0], 0);
    assert.deepEqual(
      recordsOf(decodeFramePlaintext(plaintext)).map((bytes) => new TextDecoder().decode(bytes)),
      [
        "one",
        "two",
      ],
    );
  },
);

Deno.test("encodeFrame() deflates a plaintext of at least 1 KiB", async () => {
  const big = "x".repeat(compressPlaintextBytesMin);
  const frame = frameOf([big, "tail"]);
  assert(frame.length < compressPlaintextBytesMin);
  const plaintext = await plaintextOf(frame);
  assert.equal(plaintext[0], 1);
  assert.deepEqual(
    recordsOf(decodeFramePlaintext(plaintext)).map((bytes) => new TextDecoder().decode(bytes)),
    [
      big,
      "tail",
    ],
  );
});

Deno.test("encodeFrame() keeps an incompressible plaintext uncompressed", async () => {
  const noise = crypto.getRandomValues(new Uint8Array(4096));
  const frame = encodeFrame({ encryption: testEncryption, header, records: [noise] });
  const plaintext = await plaintextOf(frame);
  assert.equal(plaintext[0], 0);
  assert.deepEqual(recordsOf(decodeFramePlaintext(plaintext)), [noise]);
});

Deno.test("decodeFramePlaintext() rejects unknown flags, bad lengths, bad deflate and empty frames", () => {
  for (
    const bad of [
      Uint8Array.of(),
      Uint8Array.of(2, 0, 0, 0, 0),
      Uint8Array.of(0, 0, 0, 0, 9, 1),
      Uint8Array.of(0, 0, 0),
      Uint8Array.of(1, 0xff, 0xff),
      Uint8Array.of(0),
    ]
  ) {
    assert.throws(() => decodeFramePlaintext(bad), RecordDecodeError);
  }
});

/** Writes header + frames into a MemoryFs file and returns it with the frames' offsets. */
async function fileOfFrames(count: number): Promise<{ fs: MemoryFs; bytes: Uint8Array; offsets: number[] }> {
  const parts = [header];
  const offsets: number[] = [];
  let offset = fileHeaderBytes;
  for (let index = 0; index < count; index += 1) {
    const frame = frameOf([`record ${index}`]);
    offsets.push(offset);
    offset += frame.length;
    parts.push(frame);
  }
  const bytes = new Uint8Array(offset);
  let at = 0;
  for (const part of parts) {
    bytes.set(part, at);
    at += part.length;
  }
  const fs = new MemoryFs();
  await fs.mkdir("/d", { permissions: 0o700 });
  return { fs, bytes, offsets };
}

async function scan(fs: MemoryFs, bytes: Uint8Array) {
  await fs.writeFileDurably("/d/f", bytes);
  const file = await fs.openRead("/d/f");
  assert(file !== undefined);
  try {
    await readFully(file, new Uint8Array(fileHeaderBytes));
    const seen: string[] = [];
    const result = await scanFrames(
      { file, path: "/d/f", sizeBytes: bytes.length, encryption: testEncryption, header },
      (frame) => seen.push(...recordsOf(frame).map((record) => new TextDecoder().decode(record))),
    );
    return { result, seen };
  } finally {
    file.close();
  }
}

Deno.test("scanFrames() reads every frame of an intact file", async () => {
  const { fs, bytes } = await fileOfFrames(3);
  const { result, seen } = await scan(fs, bytes);
  assert.deepEqual(seen, ["record 0", "record 1", "record 2"]);
  assert.deepEqual(result, { endOffset: bytes.length, frameCount: 3 });
});

Deno.test(
  "scanFrames() reports a torn last frame at every kind of cut and keeps the frames before it",
  async () => {
    const { fs, bytes, offsets } = await fileOfFrames(3);
    const last = offsets[2]!;
    for (
      const cut of [
        last + 1,
        last + 7,
        last + frameHeaderBytes,
        last + frameHeaderBytes + 5,
        bytes.length - 1,
      ]
    ) {
      const { result, seen } = await scan(fs, bytes.subarray(0, cut));
      assert.deepEqual(seen, ["record 0", "record 1"], `cut at ${cut}`);
      assert.equal(result.endOffset, last);
      assert.equal(result.torn?.offset, last);
    }
  },
);

Deno.test("scanFrames() treats a damaged last frame and a zero-filled tail as torn", async () => {
  const { fs, bytes, offsets } = await fileOfFrames(3);
  const flipped = bytes.slice();
  flipped[bytes.length - 3]! ^= 0x10;
  const damaged = await scan(fs, flipped);
  assert.equal(damaged.result.torn?.offset, offsets[2]);
  assert.match(damaged.result.torn?.reason ?? "", /CRC/);
  const padded = new Uint8Array(bytes.length + 4096);
  padded.set(bytes);
  const zeros = await scan(fs, padded);
  assert.deepEqual(zeros.seen, ["record 0", "record 1", "record 2"]);
  assert.equal(zeros.result.torn?.offset, bytes.length);
});

Deno.test(
  "scanFrames() throws WalCorruptError naming file and offset for a damaged frame in the middle",
  async () => {
    const { fs, bytes, offsets } = await fileOfFrames(3);
    for (const position of [offsets[1]! + 5, offsets[1]! + frameHeaderBytes + 3]) {
      const damaged = bytes.slice();
      damaged[position]! ^= 0x01;
      await assert.rejects(
        () => scan(fs, damaged),
        (error: unknown) =>
          error instanceof WalCorruptError && error.offset === offsets[1] && error.path === "/d/f" &&
          error.message.includes(`/d/f is corrupt at byte offset ${offsets[1]}`),
      );
    }
  },
);

Deno.test("scanFrames() rejects frames encrypted under another key or for another file kind", async () => {
  const { fs, bytes } = await fileOfFrames(2);
  const foreign = encodeFrame({
    encryption: testEncryption,
    header: encodeFileHeader("state", testEncryption.keyId),
    records: [encoder.encode("moved")],
  });
  const spliced = new Uint8Array(bytes.length + foreign.length + 8);
  spliced.set(bytes);
  spliced.set(foreign, bytes.length);
  spliced.fill(7, bytes.length + foreign.length);
  await assert.rejects(() => scan(fs, spliced), /AES-GCM authentication failed/);
});

/** A file of the header then `frames`, and the offset of each frame. */
function fileOf(frames: Uint8Array[]): { bytes: Uint8Array; offsets: number[] } {
  const offsets: number[] = [];
  let size = fileHeaderBytes;
  for (const frame of frames) {
    offsets.push(size);
    size += frame.length;
  }
  const bytes = new Uint8Array(size);
  bytes.set(header);
  frames.forEach((frame, index) => bytes.set(frame, offsets[index]!));
  return { bytes, offsets };
}

Deno.test("scanFrames() reads frames across its read buffer, one larger than it included", async () => {
  const noise = (length: number) => {
    const bytes = new Uint8Array(length);
    for (let at = 0; at < length; at += 65_536) crypto.getRandomValues(bytes.subarray(at, at + 65_536));
    return bytes;
  };
  const frames: Uint8Array[] = [];
  const expected: string[] = [];
  for (let index = 0; index < 40; index += 1) {
    const record = index === 20 ? noise(1_500_000) : noise(40_000 + index);
    frames.push(
      encodeFrame({ encryption: testEncryption, header, records: [record, encoder.encode(`#${index}`)] }),
    );
    expected.push(`${record.length}`, `#${index}`);
  }
  const { bytes } = fileOf(frames);
  assert(bytes.length > 2 * 1024 * 1024, "several refills of the 1 MiB read buffer");
  const fs = new MemoryFs();
  await fs.mkdir("/d", { permissions: 0o700 });
  await fs.writeFileDurably("/d/f", bytes);
  const file = await fs.openRead("/d/f");
  assert(file !== undefined);
  const seen: string[] = [];
  try {
    await readFully(file, new Uint8Array(fileHeaderBytes));
    const result = await scanFrames(
      { file, path: "/d/f", sizeBytes: bytes.length, encryption: testEncryption, header },
      (frame) => {
        const [record, name] = recordsOf(frame);
        seen.push(`${record!.length}`, new TextDecoder().decode(name));
      },
    );
    assert.deepEqual(result, { endOffset: bytes.length, frameCount: 40 });
  } finally {
    file.close();
  }
  assert.deepEqual(seen, expected);
});

Deno.test("scanFrames() tells a long zero-filled tail from zeros followed by data", async () => {
  const { bytes } = fileOf([frameOf(["a"]), frameOf(["b"])]);
  const padded = new Uint8Array(bytes.length + 2_500_000);
  padded.set(bytes);
  const fs = new MemoryFs();
  await fs.mkdir("/d", { permissions: 0o700 });
  const tail = await scan(fs, padded);
  assert.deepEqual(tail.seen, ["a", "b"]);
  assert.equal(tail.result.torn?.offset, bytes.length);
  padded[padded.length - 1] = 1;
  await assert.rejects(() => scan(fs, padded), WalCorruptError);
});

Deno.test(
  "decodeFramePlaintext() inflates any size exactly; inflateRecords() inflates the same bytes again",
  async () => {
    for (const size of [2_000, 300_000, 330_000, 2_000_000]) {
      const text = Array.from({ length: size / 10 }, (_, index) => `${index % 997}`.padStart(10, "-")).join(
        "",
      );
      const frame = frameOf([text, "end"]);
      const records = decodeFramePlaintext(await plaintextOf(frame));
      assert.deepEqual(recordsOf(records).map((bytes) => new TextDecoder().decode(bytes)), [text, "end"]);
      assert.equal(records.bytes.length, 4 + text.length + 4 + 3, "the records and nothing more");
      assert(records.deflated !== undefined);
      // Below 4 KiB a frame is deflated for speed (level 1, 4 KiB window), which keeps less of it.
      assert(records.deflated.length < records.bytes.length / (size < 4_096 ? 2 : 4));
      assert.deepEqual(inflateRecords(records.deflated, records.bytes.length), records.bytes);
      assert.throws(() => inflateRecords(records.deflated!, records.bytes.length + 1), AssertionError);
    }
    const small = decodeFramePlaintext(await plaintextOf(frameOf(["tiny"])));
    assert.equal(small.deflated, undefined, "an uncompressed frame has nothing to inflate");
  },
);
