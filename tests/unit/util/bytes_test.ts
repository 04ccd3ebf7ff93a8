// Goal: utf8Length counts the bytes TextEncoder writes, without encoding; decodeUtf8Strict decodes as a
// fatal TextDecoder does, on both sides of its ASCII shortcut and of its length bound.
// Method: compare with TextEncoder / TextDecoder on ASCII, 2-, 3- and 4-byte characters, lone surrogates,
// and invalid sequences.
import assert from "node:assert/strict";
import { decodeUtf8Strict, utf8Length } from "../../../src/util/bytes.ts";

Deno.test("utf8Length() counts what TextEncoder writes, lone surrogates included", () => {
  const encoder = new TextEncoder();
  const texts = [
    "",
    "ascii",
    "é",
    "€uro",
    "😀",
    "a😀b",
    "\ud800",
    "\udc00x",
    "x\ud800",
    "\ud800\ud800\udc00",
  ];
  for (const text of texts) {
    assert.equal(utf8Length(text), encoder.encode(text).length, JSON.stringify(text));
  }
});

Deno.test("decodeUtf8Strict() decodes what a fatal TextDecoder decodes and refuses what it refuses", () => {
  const fatal = new TextDecoder("utf-8", { fatal: true });
  const long = "x".repeat(5000);
  const valid = ["", '{"value":1}', "é€😀", `${long}é`, long, "\u007f"].map((text) =>
    new TextEncoder().encode(text)
  );
  for (const bytes of valid) assert.equal(decodeUtf8Strict(bytes), fatal.decode(bytes));
  const invalid = [[0x80], [0x61, 0xc3], [0xed, 0xa0, 0x80], [0xff, 0x61], [
    ...new TextEncoder().encode(long),
    0xc3,
  ]];
  for (const bytes of invalid) {
    assert.throws(
      () => decodeUtf8Strict(new Uint8Array(bytes)),
      TypeError,
      JSON.stringify(bytes.slice(0, 4)),
    );
  }
});
