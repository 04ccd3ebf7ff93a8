import assert from "node:assert/strict";
import {
  checkName,
  decodeName,
  decodeTable,
  ListQuery,
  MergePatchBody,
  parseIfMatch,
  parseLastEventId,
  parseWith,
  ttlSecsOfBody,
  ValueBody,
  valueOfBody,
} from "../../../src/http/schemas.ts";
import { readBodyText, readJsonBody } from "../../../src/http/body.ts";
import { rawSegments } from "../../../src/http/request.ts";
import { KvError } from "../../../src/util/errors.ts";
import { defaultLimits } from "../../../src/config/limits.ts";

function codeOf(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    assert.ok(error instanceof KvError, String(error));
    return error.code;
  }
  return "none";
}

async function asyncCodeOf(run: () => Promise<unknown>): Promise<string> {
  try {
    await run();
  } catch (error) {
    assert.ok(error instanceof KvError, String(error));
    return error.code;
  }
  return "none";
}

Deno.test("decodeName() accepts 1..nameBytesMax UTF-8 bytes and refuses / and control characters", () => {
  const options = { what: "key" as const, bytesMax: 256 };
  assert.equal(decodeName("caf%C3%A9", options), "café");
  assert.equal(decodeName("a".repeat(256), options), "a".repeat(256));
  assert.equal(codeOf(() => decodeName("a".repeat(257), options)), "invalid_name");
  assert.equal(
    decodeName("%C3%A9".repeat(128), options),
    "é".repeat(128),
    "256 bytes of two-byte characters",
  );
  assert.equal(codeOf(() => decodeName(`${"%C3%A9".repeat(128)}a`, options)), "invalid_name");
  assert.equal(codeOf(() => decodeName("", options)), "invalid_name");
  assert.equal(codeOf(() => decodeName("a%2Fb", options)), "invalid_name");
  assert.equal(codeOf(() => decodeName("a%0Ab", options)), "invalid_name");
  assert.equal(codeOf(() => decodeName("a%7F", options)), "invalid_name");
  assert.equal(codeOf(() => decodeName("%E0%A4%A", options)), "invalid_name");
  assert.equal(codeOf(() => checkName("\ud800", options)), "invalid_name");
});

Deno.test("decodeName() normalizes to NFC, so composed and decomposed spellings are one name", () => {
  const options = { what: "user" as const, bytesMax: 256 };
  const composed = decodeName("jos%C3%A9", options);
  assert.equal(composed, "jos\u00e9");
  assert.equal(decodeName("jose%CC%81", options), composed, "e + U+0301 COMBINING ACUTE ACCENT");
  assert.equal(checkName("jose\u0301", options), composed);
  assert.equal(decodeName("%E1%84%92%E1%85%A1%E1%86%AB", options), "\ud55c", "Hangul jamo compose");
  assert.equal(decodeName("%CC%81", options), "\u0301", "a lone combining mark is a name of its own");
  assert.equal(decodeName("a%CC%81b", options), "\u00e1b");
  assert.equal(decodeName("Zo%C3%AB%20%F0%9F%98%80", options), "Zo\u00eb \u{1f600}");
});

Deno.test(
  "decodeName() refuses invisible and bidirectional control characters, naming the code point",
  () => {
    const options = { what: "user" as const, bytesMax: 256 };
    const refused: Array<[string, string, RegExp]> = [
      ["zero width joiner", "a%E2%80%8Db", /U\+200D, an invisible \(default-ignorable\) character/],
      ["zero width non-joiner", "a%E2%80%8Cb", /U\+200C, an invisible/],
      ["zero width space", "%E2%80%8Bab", /U\+200B, an invisible/],
      ["soft hyphen", "jo%C2%ADse", /U\+00AD, an invisible/],
      ["variation selector 16", "a%EF%B8%8F", /U\+FE0F, an invisible/],
      ["variation selector 17", "a%F3%A0%84%80", /U\+E0100, an invisible/],
      ["byte order mark", "%EF%BB%BFa", /U\+FEFF, an invisible/],
      ["combining grapheme joiner", "a%CD%8Fb", /U\+034F, an invisible/],
      ["Hangul filler", "%E3%85%A4", /U\+3164, an invisible/],
      ["arabic letter mark", "a%D8%9Cb", /U\+061C, a bidirectional control character/],
      ["left-to-right mark", "a%E2%80%8E", /U\+200E, a bidirectional control/],
      ["right-to-left mark", "a%E2%80%8F", /U\+200F, a bidirectional control/],
      ["right-to-left override", "%E2%80%AEgnp.exe", /U\+202E, a bidirectional control/],
      ["left-to-right embedding", "%E2%80%AAa", /U\+202A, a bidirectional control/],
      ["first strong isolate", "a%E2%81%A8", /U\+2068, a bidirectional control/],
      ["pop directional isolate", "a%E2%81%A9", /U\+2069, a bidirectional control/],
    ];
    for (const [what, raw, message] of refused) {
      assert.throws(() => decodeName(raw, options), (error: unknown) => {
        assert.ok(error instanceof KvError, what);
        assert.equal(error.code, "invalid_name", what);
        assert.match(error.message, message, what);
        assert.ok(/^[\x20-\x7e]*$/.test(error.message), `${what}: the message quotes no raw character`);
        return true;
      });
    }
  },
);

Deno.test("decodeName() measures nameBytesMax on the normalized name: max passes, max + 1 is refused", () => {
  const options = { what: "key" as const, bytesMax: 10 };
  // Five decomposed é (3 bytes each, 15 bytes) normalize to five composed é (2 bytes each): 10 bytes.
  assert.equal(decodeName("e%CC%81".repeat(5), options), "\u00e9".repeat(5));
  assert.throws(() => decodeName(`${"e%CC%81".repeat(5)}a`, options), /11 bytes after NFC normalization/);
  assert.equal(decodeName("a".repeat(10), options), "a".repeat(10));
  assert.throws(() => decodeName("a".repeat(11), options), /11 bytes, the limit is 10/);
});

Deno.test("decodeTable() refuses reserved tables", () => {
  assert.equal(decodeTable("default", 256), "default");
  assert.equal(codeOf(() => decodeTable("_users", 256)), "reserved_table");
  assert.equal(codeOf(() => decodeTable("auth", 256)), "reserved_table");
  assert.equal(decodeTable("authors", 256), "authors");
});

Deno.test("parseIfMatch() and parseLastEventId() read versions", () => {
  assert.equal(parseIfMatch(null), undefined);
  assert.equal(parseIfMatch('"7"'), 7);
  assert.equal(parseIfMatch("7"), 7);
  assert.equal(parseIfMatch('W/"7"'), 7);
  assert.equal(codeOf(() => parseIfMatch('"abc"')), "invalid_request");
  assert.equal(parseLastEventId("12"), 12);
  assert.equal(parseLastEventId("x"), undefined);
  assert.equal(parseLastEventId(null), undefined);
});

Deno.test("rawSegments() keeps percent-encoding and drops the query", () => {
  assert.deepEqual(rawSegments("http://h:1/t/key/a%2Fb?x=1"), ["t", "key", "a%2Fb"]);
  assert.deepEqual(rawSegments("http://h:1/stats"), ["stats"]);
});

Deno.test("readBodyText() reads up to bytesMax and refuses bytesMax + 1 while reading", async () => {
  const request = (body: BodyInit | null, headers: Record<string, string> = {}) =>
    new Request("http://h/", { method: "POST", body, headers });
  assert.equal(
    await readBodyText(request("x".repeat(10)), { bytesMax: 10, timeoutMs: 1_000 }),
    "x".repeat(10),
  );
  assert.equal(
    await asyncCodeOf(() => readBodyText(request("x".repeat(11)), { bytesMax: 10, timeoutMs: 1_000 })),
    "payload_too_large",
  );
  assert.equal(
    await asyncCodeOf(() =>
      readBodyText(request("x", { "content-length": "11" }), { bytesMax: 10, timeoutMs: 1_000 })
    ),
    "payload_too_large",
  );
  let pulled = 0;
  const endless = new ReadableStream<Uint8Array>({
    pull(controller) {
      pulled += 1;
      controller.enqueue(new Uint8Array(1024));
    },
  });
  assert.equal(
    await asyncCodeOf(() => readBodyText(request(endless), { bytesMax: 4096, timeoutMs: 1_000 })),
    "payload_too_large",
  );
  assert.ok(pulled < 10, "an endless body is cut off near the limit");
  assert.equal(
    await asyncCodeOf(() =>
      readBodyText(request(new Uint8Array([0xff, 0xfe])), { bytesMax: 10, timeoutMs: 1_000 })
    ),
    "invalid_request",
  );
});

Deno.test(
  "readBodyText() gives up on a body that stalls after timeoutMs (408), and a broken one is 400",
  async () => {
    const request = (body: BodyInit) => new Request("http://h/", { method: "POST", body });
    const stalled = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new Uint8Array(10)); // ... and nothing more, ever
      },
    });
    const startedMs = performance.now();
    await assert.rejects(readBodyText(request(stalled), { bytesMax: 4096, timeoutMs: 50 }), {
      code: "request_timeout",
      message: "the request body did not arrive whole within 50 ms",
    });
    assert.ok(performance.now() - startedMs >= 45, "it waited for the timeout");
    const broken = new ReadableStream<Uint8Array>({
      pull(controller) {
        controller.error(new Deno.errors.BadResource("Cannot read body as underlying resource unavailable"));
      },
    });
    assert.equal(
      await asyncCodeOf(() => readBodyText(request(broken), { bytesMax: 4096, timeoutMs: 1_000 })),
      "invalid_request",
    );
  },
);

Deno.test("readJsonBody() checks depth before parsing and reports bad JSON as 400", async () => {
  const request = (body: string) => new Request("http://h/", { method: "POST", body });
  const limits = { bytesMax: 1 << 20, depthMax: 3, timeoutMs: 1_000 };
  assert.deepEqual(await readJsonBody(request("[[[1]]]"), limits), [[[1]]]);
  assert.equal(await asyncCodeOf(() => readJsonBody(request("[[[[1]]]]"), limits)), "invalid_request");
  assert.equal(await asyncCodeOf(() => readJsonBody(request("{"), limits)), "invalid_request");
  assert.equal(await asyncCodeOf(() => readJsonBody(request("   "), limits)), "invalid_request");
  assert.equal(
    await asyncCodeOf(() => readJsonBody(request("[".repeat(500_000)), limits)),
    "invalid_request",
  );
});

Deno.test("readJsonBody() refuses a number that would become Infinity or 0, naming where it is", async () => {
  const request = (body: string) => new Request("http://h/", { method: "POST", body });
  const limits = { bytesMax: 1 << 20, depthMax: 3, timeoutMs: 1_000 };
  assert.deepEqual(await readJsonBody(request('{"value":1.7976931348623157e308}'), limits), {
    value: Number.MAX_VALUE,
  });
  await assert.rejects(readJsonBody(request('{"value":1.8e308}'), limits), {
    code: "invalid_request",
    message: "the JSON number at character 9 is too large: its magnitude is over 1.7976931348623157e308, " +
      "so it would become Infinity; numbers must fit a 64-bit float, and nothing is stored changed",
  });
  await assert.rejects(readJsonBody(request('{"value":1e-400}'), limits), {
    code: "invalid_request",
    message: /character 9 is too small: it is not 0 but its magnitude is under 5e-324, so it would become 0/,
  });
});

Deno.test(
  "valueOfBody() refuses exactly the bodies the documented schemas ValueBody and MergePatchBody " +
    "refuse",
  () => {
    // Bodies as JSON.parse gives them: the hand check and the schema must agree on each.
    const bodies = [
      "{}",
      '{"value":1}',
      '{"value":null}',
      '{"value":"s"}',
      '{"value":[1,{"a":2}]}',
      '{"value":{}}',
      '{"value":{"a":{"b":[null]}}}',
      '{"other":1}',
      '{"value":1,"extra":2}',
      "[]",
      '[{"value":1}]',
      "null",
      "3",
      '"value"',
      '{"value":{},"ttl_secs":1}',
      `{"value":{},"ttl_secs":${defaultLimits.ttlSecsMax}}`,
      `{"value":{},"ttl_secs":${defaultLimits.ttlSecsMax + 1}}`,
      '{"value":{},"ttl_secs":0}',
      '{"value":{},"ttl_secs":-3}',
      '{"value":{},"ttl_secs":1.5}',
      '{"value":{},"ttl_secs":"5"}',
      '{"value":{},"ttl_secs":null}',
      '{"value":{},"ttl_secs":[5]}',
      '{"value":1,"ttl_secs":1e3}',
    ];
    for (const text of bodies) {
      const body = JSON.parse(text);
      for (const [objectOnly, schema] of [[false, ValueBody], [true, MergePatchBody]] as const) {
        const byHand = codeOf(() => {
          valueOfBody(body, { objectOnly });
          ttlSecsOfBody(body, defaultLimits.ttlSecsMax);
        });
        const bySchema = schema.safeParse(body).success ? "none" : "invalid_request";
        assert.equal(byHand, bySchema, `${text} (objectOnly ${objectOnly})`);
      }
    }
  },
);

Deno.test("ListQuery passes where through as text and still checks limit", () => {
  const where = '{"age":{"$gte":18}}';
  assert.deepEqual(parseWith(ListQuery, { limit: "10", after: "k", where }, "query"), {
    limit: 10,
    after: "k",
    where,
  });
  assert.deepEqual(parseWith(ListQuery, {}, "query"), {});
  assert.throws(
    () => parseWith(ListQuery, { limit: "x", where }, "query"),
    /limit must be a positive integer/,
  );
});

Deno.test(
  "ttlSecsOfBody() takes an integer from 1 to ttlSecsMax and names the limit and the value otherwise",
  () => {
    const max = defaultLimits.ttlSecsMax;
    assert.equal(ttlSecsOfBody({ value: 1 }, max), undefined);
    assert.equal(ttlSecsOfBody({ value: 1, ttl_secs: 1 }, max), 1);
    assert.equal(ttlSecsOfBody({ value: 1, ttl_secs: max }, max), max);
    const refusals: Array<[unknown, string]> = [
      [0, "0"],
      [-1, "-1"],
      [1.5, "1.5"],
      [max + 1, String(max + 1)],
      ["5", '"5"'],
      [null, "null"],
      [{ a: "x".repeat(100) }, `{"a":"${"x".repeat(34)}...`],
    ];
    for (const [ttlSecs, shown] of refusals) {
      assert.throws(() => ttlSecsOfBody({ value: 1, ttl_secs: ttlSecs }, max), {
        code: "invalid_request",
        message: `ttl_secs is ${shown}; it must be an integer from 1 to ${max} (ttlSecsMax, seconds)`,
      });
    }
  },
);
