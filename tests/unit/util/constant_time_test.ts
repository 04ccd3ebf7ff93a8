// Goal: equalConstantTime() says whether two secrets are equal, never throws on different lengths (as
// node:crypto's timingSafeEqual alone does), and takes time set by the expected side: not shorter when the
// inputs differ at their first byte than at their last, nor when the actual side is empty.
// Method: direct calls on bytes and strings; for the timing, the median over interleaved rounds of each
// case on a 4 MiB expected value, compared as ratios (an early-exit compare is 100x off, hashing is ~1-2x).
import assert from "node:assert/strict";
import { equalConstantTime } from "../../../src/util/constant_time.ts";

Deno.test("equalConstantTime() is true for equal bytes or strings, the empty ones included", () => {
  const bytes = new Uint8Array([1, 2, 3, 4]);
  assert.equal(equalConstantTime({ expected: bytes, actual: new Uint8Array([1, 2, 3, 4]) }), true);
  assert.equal(equalConstantTime({ expected: new Uint8Array(), actual: new Uint8Array() }), true);
  assert.equal(equalConstantTime({ expected: "s3cret-tøken", actual: "s3cret-tøken" }), true);
  assert.equal(equalConstantTime({ expected: "", actual: "" }), true);
  assert.equal(
    equalConstantTime({ expected: "abc", actual: new TextEncoder().encode("abc") }),
    true,
    "a string is compared as its UTF-8 bytes",
  );
});

Deno.test("equalConstantTime() is false for unequal inputs of the same length, wherever they differ", () => {
  const bytes = new Uint8Array([1, 2, 3, 4]);
  assert.equal(equalConstantTime({ expected: bytes, actual: new Uint8Array([0, 2, 3, 4]) }), false);
  assert.equal(equalConstantTime({ expected: bytes, actual: new Uint8Array([1, 2, 3, 5]) }), false);
  assert.equal(equalConstantTime({ expected: "token-a", actual: "token-b" }), false);
  assert.equal(equalConstantTime({ expected: "é", actual: "e\u0301" }), false, "no normalization");
});

Deno.test("equalConstantTime() is false, without throwing, for inputs of different lengths", () => {
  const bytes = new Uint8Array([1, 2, 3, 4]);
  for (const actual of [new Uint8Array([1, 2, 3]), new Uint8Array([1, 2, 3, 4, 0]), new Uint8Array()]) {
    assert.equal(equalConstantTime({ expected: bytes, actual }), false, `length ${actual.length}`);
    assert.equal(equalConstantTime({ expected: actual, actual: bytes }), false, `length ${actual.length}`);
  }
  assert.equal(equalConstantTime({ expected: "secret", actual: "secret " }), false);
  assert.equal(equalConstantTime({ expected: "secret", actual: "" }), false);
});

/** The median time of each case, in ms, over `roundCount` rounds that run every case once, in turn. */
function medianMs(cases: Record<string, () => void>, roundCount: number): Record<string, number> {
  const samples = Object.fromEntries(Object.keys(cases).map((name) => [name, [] as number[]]));
  for (let round = 0; round < roundCount; round += 1) {
    for (const [name, run] of Object.entries(cases)) {
      const startMs = performance.now();
      run();
      samples[name]!.push(performance.now() - startMs);
    }
  }
  return Object.fromEntries(
    Object.entries(samples).map(([name, times]) => [name, times.sort((a, b) => a - b)[times.length >> 1]!]),
  );
}

Deno.test("equalConstantTime() takes as long when inputs differ early, late, or in length", () => {
  const big = new Uint8Array(4 << 20).map((_, index) => (index * 31) & 0xff);
  const firstDiffers = big.slice();
  firstDiffers[0]! ^= 1;
  const lastDiffers = big.slice();
  lastDiffers[big.length - 1]! ^= 1;
  const results: boolean[] = [];
  const times = medianMs({
    first: () => results.push(equalConstantTime({ expected: big, actual: firstDiffers })),
    last: () => results.push(equalConstantTime({ expected: big, actual: lastDiffers })),
    empty: () => results.push(equalConstantTime({ expected: big, actual: new Uint8Array() })),
  }, 15);
  assert.ok(results.every((result) => result === false));
  const detail = JSON.stringify(times);
  // An early-exit loop returns at the first byte in microseconds and walks 4 MiB for the last: ~1000x.
  assert.ok(times.first! >= times.last! / 3, `a difference at byte 0 returned early: ${detail}`);
  // A length check first returns at once for an empty actual; hashing still reads all 4 MiB expected.
  assert.ok(times.empty! >= times.last! / 6, `a shorter actual returned early: ${detail}`);
});
