// Goal: utf8Length counts the bytes TextEncoder writes, without encoding.
// Method: compare with TextEncoder on ASCII, 2-, 3- and 4-byte characters and lone surrogates.
import assert from "node:assert/strict";
import { utf8Length } from "../../../src/util/bytes.ts";

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
