// Goal: InternalHandler authenticates before anything else, then routes by kind and parses the body
// within its bounds, throwing the documented KvError for each failure.
// Method: sign requests with RequestSigner and hand them to a handler on a ManualClock.
import assert from "node:assert/strict";
import {
  bodyMsPerMiB,
  ClusterAuthError,
  InternalHandler,
  internalJsonDepthMax,
  internalMessageBytesCeiling,
  internalMessageBytesMax,
  internalPath,
  messageBytesMaxFor,
  parseInternalJson,
  RequestSigner,
  UnknownKindError,
} from "../../../src/cluster/mod.ts";
import { AssertionError } from "../../../src/util/assert.ts";
import { ManualClock } from "../../../src/util/clock.ts";
import { InvalidRequestError, PayloadTooLargeError } from "../../../src/util/errors.ts";

const secret = "transport-test-secret-0123456789abcd";
const sender = "127.0.0.1:7001";
const receiver = "127.0.0.1:7000";

async function setup() {
  const clock = new ManualClock();
  const signer = await RequestSigner.create(secret);
  const handler = new InternalHandler({ signer, clock, self: receiver, windowMs: 30_000 });
  const received: Array<{ body: unknown; sender: string }> = [];
  handler.register("echo", (body, from) => {
    received.push({ body, sender: from });
    return Promise.resolve({ echoed: body });
  });
  const headersFor = async (kind: string, bodyText: string, options: { signer?: RequestSigner } = {}) =>
    new Headers(
      await (options.signer ?? signer).sign({
        path: internalPath(kind),
        sender,
        target: receiver,
        bodyText,
        nowMs: clock.nowMs(),
      }),
    );
  return { clock, handler, received, headersFor };
}

Deno.test(
  "InternalHandler.handle() runs the kind's handler with the parsed body and the verified sender",
  async () => {
    const { handler, received, headersFor } = await setup();
    const bodyText = '{"n":1}';
    assert.deepEqual(await handler.handle("echo", await headersFor("echo", bodyText), bodyText), {
      echoed: { n: 1 },
    });
    assert.deepEqual(received, [{ body: { n: 1 }, sender }]);
    assert.deepEqual(handler.kinds(), ["echo"]);
  },
);

Deno.test("InternalHandler.handle() checks authentication before the kind and the body", async () => {
  const { handler, received, headersFor } = await setup();
  const wrong = await RequestSigner.create("wrong-secret-0123456789abcdef0123456");
  for (const [kind, bodyText] of [["echo", "{}"], ["nope", "{}"], ["echo", "not json"]]) {
    const headers = await headersFor(kind!, bodyText!, { signer: wrong });
    await assert.rejects(handler.handle(kind!, headers, bodyText!), ClusterAuthError);
  }
  await assert.rejects(handler.handle("echo", new Headers(), "{}"), ClusterAuthError);
  assert.equal(received.length, 0);
});

Deno.test("InternalHandler.handle() refuses a request signed for another kind (path)", async () => {
  const { handler, headersFor } = await setup();
  handler.register("other", () => Promise.resolve({}));
  await assert.rejects(handler.handle("other", await headersFor("echo", "{}"), "{}"), ClusterAuthError);
});

Deno.test(
  "InternalHandler.handle() throws not_found for an unknown kind and invalid_request for bad JSON",
  async () => {
    const { handler, headersFor } = await setup();
    await assert.rejects(handler.handle("nope", await headersFor("nope", "{}"), "{}"), (error: unknown) => {
      assert.ok(error instanceof UnknownKindError);
      assert.equal(error.code, "not_found");
      return true;
    });
    await assert.rejects(handler.handle("echo", await headersFor("echo", "{"), "{"), InvalidRequestError);
    await assert.rejects(handler.handle("echo", await headersFor("echo", ""), ""), InvalidRequestError);
  },
);

Deno.test(
  "InternalHandler.handle() takes JSON nested internalJsonDepthMax deep and refuses one level more",
  async () => {
    const { handler, headersFor } = await setup();
    const nested = (depth: number) => "[".repeat(depth) + "]".repeat(depth);
    const atMax = nested(internalJsonDepthMax);
    assert.ok(await handler.handle("echo", await headersFor("echo", atMax), atMax));
    const over = nested(internalJsonDepthMax + 1);
    await assert.rejects(
      handler.handle("echo", await headersFor("echo", over), over),
      /129 levels deep, limit is 128/,
    );
  },
);

Deno.test(
  "InternalHandler.handle() takes a body of internalMessageBytesMax bytes and refuses one more",
  async () => {
    const { handler, headersFor } = await setup();
    const bodyOf = (bytes: number) => `"${"é".repeat((bytes - 2) / 2)}"`;
    const atMax = bodyOf(internalMessageBytesMax);
    assert.equal(new TextEncoder().encode(atMax).length, internalMessageBytesMax);
    assert.equal(typeof await handler.handle("echo", await headersFor("echo", atMax), atMax), "object");
    const over = `${atMax} `;
    await assert.rejects(handler.handle("echo", await headersFor("echo", over), over), PayloadTooLargeError);
  },
);

Deno.test(
  "messageBytesMaxFor() fits twice the largest request, never below the default or over the ceiling",
  async () => {
    assert.equal(messageBytesMaxFor(1 << 20), internalMessageBytesMax);
    assert.equal(messageBytesMaxFor(6 << 20), (12 << 20) + (64 << 10));
    assert.equal(messageBytesMaxFor(64 << 20), internalMessageBytesCeiling);
    const clock = new ManualClock();
    const signer = await RequestSigner.create(secret);
    const handler = new InternalHandler({
      signer,
      clock,
      self: receiver,
      windowMs: 30_000,
      messageBytesMax: 6 << 20,
    });
    handler.register("echo", (body) => Promise.resolve(body));
    const sign = async (bodyText: string) =>
      new Headers(
        await signer.sign({
          path: internalPath("echo"),
          sender,
          target: receiver,
          bodyText,
          nowMs: clock.nowMs(),
        }),
      );
    const five = `"${"a".repeat((5 << 20) - 2)}"`;
    assert.equal(
      typeof await handler.handle("echo", await sign(five), five),
      "string",
      "5 MiB under a 6 MiB limit",
    );
    const seven = `"${"a".repeat((7 << 20) - 2)}"`;
    await assert.rejects(handler.handle("echo", await sign(seven), seven), PayloadTooLargeError);
  },
);

Deno.test(
  "InternalHandler.register() refuses a kind twice or a kind that is not a path segment",
  async () => {
    const { handler } = await setup();
    assert.throws(() => handler.register("echo", () => Promise.resolve({})), AssertionError);
    assert.throws(() => handler.register("../x", () => Promise.resolve({})), AssertionError);
    assert.throws(() => internalPath("Bad Kind"), AssertionError);
  },
);

Deno.test(
  "InternalHandler.admit() refuses a declared body over the limit before anything else (413)",
  async () => {
    const { handler, headersFor } = await setup();
    for (const headers of [new Headers(), await headersFor("echo", "{}")]) {
      headers.set("content-length", String(internalMessageBytesMax + 1));
      assert.throws(() => handler.admit("echo", headers), PayloadTooLargeError);
    }
    const atMax = await headersFor("echo", "{}");
    atMax.set("content-length", String(internalMessageBytesMax));
    assert.equal(handler.admit("echo", atMax).bodyBytesMax, internalMessageBytesMax);
  },
);

Deno.test(
  "InternalHandler.admit() checks the headers alone; serve() holds the body to its digest",
  async () => {
    const { handler, received, headersFor } = await setup();
    const headers = await headersFor("echo", '{"n":1}');
    const admission = handler.admit("echo", headers);
    assert.equal(admission.verified.sender, sender);
    await assert.rejects(
      handler.serve(admission, new TextEncoder().encode('{"n":2}')),
      /its body does not match its digest/,
    );
    assert.equal(received.length, 0, "a body that does not match never reaches the handler");
    // The kind is looked at only after the body matched: an unknown kind over another body is a 403.
    const unknownKind = handler.admit("nope", await headersFor("nope", "{}"));
    await assert.rejects(handler.serve(unknownKind, new TextEncoder().encode("[]")), ClusterAuthError);
  },
);

Deno.test(
  "InternalHandler allows the body bodyTimeoutMs plus bodyMsPerMiB per declared (or allowed) MiB",
  async () => {
    const { handler, headersFor } = await setup();
    const headers = await headersFor("echo", "{}");
    assert.equal(
      handler.admit("echo", headers).bodyDeadlineMs,
      4_000 + 4 * bodyMsPerMiB,
      "no length: the limit",
    );
    headers.set("content-length", String((1 << 20) + 1));
    assert.equal(handler.admit("echo", headers).bodyDeadlineMs, 4_000 + 2 * bodyMsPerMiB);
    headers.set("content-length", "2");
    assert.equal(handler.admit("echo", headers).bodyDeadlineMs, 4_000 + bodyMsPerMiB);
  },
);

Deno.test(
  "InternalHandler refuses a replayed request, served once even when two copies were in flight",
  async () => {
    const { clock, handler, received, headersFor } = await setup();
    const bodyText = '{"n":1}';
    const headers = await headersFor("echo", bodyText);
    const first = handler.admit("echo", headers);
    const second = handler.admit("echo", headers); // a copy admitted before the first was served
    await handler.serve(first, new TextEncoder().encode(bodyText));
    await assert.rejects(handler.serve(second, new TextEncoder().encode(bodyText)), /it is a replay/);
    clock.advance(29_000);
    assert.throws(() => handler.admit("echo", headers), /it is a replay/, "refused before its body is read");
    assert.equal(received.length, 1);
    // Later requests of the same sender, in any order, are accepted.
    const later = [await headersFor("echo", "1"), await headersFor("echo", "2")];
    assert.deepEqual(await handler.handle("echo", later[1]!, "2"), { echoed: 2 });
    assert.deepEqual(await handler.handle("echo", later[0]!, "1"), { echoed: 1 });
  },
);

Deno.test("InternalHandler refuses a request addressed to another node, naming its own id", async () => {
  const { handler, clock } = await setup();
  const signer = await RequestSigner.create(secret);
  const headers = new Headers(
    signer.sign({
      path: internalPath("echo"),
      sender,
      target: "localhost:7000",
      bodyText: "{}",
      nowMs: clock.nowMs(),
    }),
  );
  assert.throws(() => handler.admit("echo", headers), (error: unknown) => {
    assert.ok(error instanceof ClusterAuthError);
    assert.equal(error.headers["x-dyna-node"], receiver);
    return true;
  });
});

Deno.test(
  "InternalHandler refuses a request signed before it started: its replay memory begins then",
  async () => {
    const clock = new ManualClock();
    clock.advance(60_000);
    const signer = await RequestSigner.create(secret);
    const signedEarlier = new Headers(
      signer.sign({
        path: internalPath("echo"),
        sender,
        target: receiver,
        bodyText: "{}",
        nowMs: clock.nowMs() - 1,
      }),
    );
    const handler = new InternalHandler({ signer, clock, self: receiver, windowMs: 30_000 });
    handler.register("echo", (body) => Promise.resolve(body));
    assert.throws(() => handler.admit("echo", signedEarlier), /signed before this node started/);
    const signedNow = new Headers(
      signer.sign({
        path: internalPath("echo"),
        sender,
        target: receiver,
        bodyText: "{}",
        nowMs: clock.nowMs(),
      }),
    );
    assert.deepEqual(await handler.handle("echo", signedNow, "{}"), {});
  },
);

Deno.test("parseInternalJson() refuses a number that overflows to infinity, anywhere in the message", () => {
  for (const text of ["1e400", '{"a":[1,2,{"b":-1E+309}]}', `[${"9".repeat(400)}]`, "[1e0400]"]) {
    assert.throws(() => parseInternalJson(text), /overflows to infinity/, text);
  }
  for (const text of ["1e308", "1e-400", '"1e400"', `[0.${"9".repeat(400)}]`, "[-1.7976931348623157e308]"]) {
    assert.doesNotThrow(() => parseInternalJson(text), text);
  }
});
