/**
 * Seeded generators of hostile HTTP input (paths, headers, bodies, internal messages) and the small tools
 * the hostile and fuzz tests share: a bounded worker pool, raw-socket requests and a node's RSS.
 * Everything random comes from a {@linkcode Random}, so a failure replays with `KV_TEST_SEED=<n>`.
 */
import type { Random } from "./seed.ts";

/** Methods `fetch` can send (it refuses CONNECT, TRACE and TRACK; raw sockets send those). */
export const fuzzMethods = ["GET", "PUT", "POST", "PATCH", "DELETE", "OPTIONS", "HEAD", "PROPFIND", "X-Ü"];

/** The internal request kinds of SPEC §5, each served at `POST /_internal/<kind>`. */
export const internalKinds = [
  "join",
  "ping",
  "ping-req",
  "leave",
  "apply",
  "paxos",
  "write",
  "writes",
  "read",
  "restore",
  "list",
  "digest",
  "sync",
] as const;

/** Path segments: route words, traversal, bad and overlong percent-encodings, unicode, limits. */
export const fuzzSegments = [
  "t",
  "key",
  "store",
  "keys",
  "subscribe",
  "auth",
  "_users",
  "_internal",
  "..",
  ".",
  "%2e%2e",
  "%2e",
  "..%2f..%2f..%2fetc%2fpasswd",
  "%2F",
  "%5C",
  "%00",
  "a%00b",
  "%7f",
  "%ff",
  "%c0%af",
  "%ED%A0%80",
  "%EF%BF%BF",
  "%E0%A4%A",
  "%",
  "%%",
  "%25",
  "%u0041",
  "💥",
  "%F0%9F%92%A5",
  "a".repeat(256),
  "a".repeat(257),
  "%61".repeat(257),
  "é".repeat(128),
  "é".repeat(129),
  "",
  "stats",
  "health",
  "membership",
  "%20",
  "k?x=1",
  "k#frag",
  "\u202e",
  "\ufeff",
  "con",
  "null",
  "__proto__",
  "constructor",
];

/** Route shapes of SPEC §3 and §5 with the methods each serves; `*` is replaced by a fuzzed segment. */
const routeTemplates: Array<[string, string[]]> = [
  ["/auth/*", ["POST"]],
  ["/*/key/*", ["GET", "PUT", "PATCH", "DELETE"]],
  ["/*/store", ["GET"]],
  ["/*/keys", ["GET", "POST"]],
  ["/*/subscribe/*", ["GET"]],
  ["/*/subscribe", ["GET"]],
  ["/stats", ["GET"]],
  ["/health", ["GET"]],
  ["/membership", ["GET"]],
  ["/_internal/*", ["POST"]],
];

/** Names that pass validation, so a request gets past the path to its headers and body. */
const validNames = ["t", "k", "obj", "alice", "join", "k%20x", "%C3%A9", "💥"];

/** Query strings, mostly for the listing routes. */
const queries = [
  "",
  "",
  "",
  "?limit=1",
  "?limit=0",
  "?limit=-1",
  "?limit=100001",
  "?limit=99999999999999999999",
  "?limit=abc",
  "?after=",
  "?after=%ff",
  `?after=${"a".repeat(300)}`,
  "?limit=2&after=k",
  "?limit=1&limit=2",
  "?after[]=x",
  "?%zz=1",
];

/** Bodies that are not what any route wants, or are at or just past a limit. */
export const fuzzStaticBodies = [
  "",
  " ",
  "{",
  "null",
  "[]",
  "{}",
  "[1,2",
  "1",
  '"x"',
  '{"value":',
  '{"value":1,"value":2}',
  '{"value":{"a":1,"a":{"b":2}}}',
  '{"secret":null}',
  '{"secret":""}',
  '{"secret":1}',
  '{"secret":"x","secret":{"y":1}}',
  '{"value":1e999999}',
  '{"value":-1e999999}',
  '{"value":123456789012345678901234567890123456789}',
  '{"value":1e-999999}',
  '{"value":-0}',
  '{"value":NaN}',
  '{"value":Infinity}',
  `{"value":${"[".repeat(10_000)}}`,
  `{"value":${"[".repeat(64)}${"]".repeat(64)}}`,
  `{"value":${"[".repeat(65)}${"]".repeat(65)}}`,
  `{"value":${'{"a":'.repeat(65)}1${"}".repeat(65)}}`,
  '"\\ud800"',
  '{"value":"\\ud800"}',
  "\u0000\u0001",
  '{"value":"\\u0000"}',
  '{"__proto__":{"value":1}}',
  '{"value":{"__proto__":{"polluted":1}}}',
  '{"constructor":{"prototype":{}}}',
  '["k1","k1","k2"]',
  `[${Array.from({ length: 1001 }, (_, index) => `"k${index}"`).join(",")}]`,
  '[1,null,{},"k"]',
  `["${"a".repeat(257)}"]`,
  '{"secret":"' + "s".repeat(5000) + '"}',
  "\ufeff{}",
];

/** Keys the random JSON generator draws object names from: real field names, pollution, oddities. */
const fuzzKeys = [
  "value",
  "secret",
  "items",
  "member",
  "members",
  "target",
  "table",
  "key",
  "op",
  "owner",
  "ifVersion",
  "entry",
  "buckets",
  "limit",
  "after",
  "__proto__",
  "constructor",
  "",
  "\u0000",
  "💥",
  "a".repeat(300),
];

/** Scalars of the random JSON generator, as JSON text. */
const fuzzScalars = [
  "0",
  "-0",
  "1",
  "-1",
  "1.5",
  "9007199254740991",
  "9007199254740993",
  "-9007199254740993",
  "1e308",
  "1e309",
  "-1e400",
  "1e-400",
  "123456789012345678901234567890",
  "true",
  "false",
  "null",
  '""',
  '"x"',
  '"\\ud800"',
  '"\\u0000"',
  '"💥"',
  '"put"',
  '"alive"',
  '"127.0.0.1:1"',
];

/** A random JSON text of at most `depth` levels, with duplicate keys, huge numbers and odd strings. */
export function randomJsonText(random: Random, depth = 4): string {
  const roll = random.int(10);
  if (depth <= 0 || roll < 4) return random.pick(fuzzScalars);
  const count = random.int(5);
  if (roll < 7) {
    return `[${Array.from({ length: count }, () => randomJsonText(random, depth - 1)).join(",")}]`;
  }
  const members = Array.from({ length: count }, () => {
    const name = JSON.stringify(random.pick(fuzzKeys));
    return `${name}:${randomJsonText(random, depth - 1)}`;
  });
  if (count > 0 && random.next() < 0.3) members.push(members[0]!); // a duplicate key
  return `{${members.join(",")}}`;
}

/** Nesting of `depth` arrays or objects, balanced or cut short. */
export function deepNesting(random: Random, depth: number): string {
  const useObjects = random.next() < 0.5;
  const open = useObjects ? '{"a":'.repeat(depth) : "[".repeat(depth);
  const close = "]}"[useObjects ? 1 : 0]!.repeat(random.next() < 0.8 ? depth : Math.floor(depth / 2));
  return `${open}1${close}`;
}

/** Random bytes, mostly not UTF-8. */
export function garbageBytes(random: Random, length: number): Uint8Array<ArrayBuffer> {
  return Uint8Array.from({ length }, () => random.int(256));
}

/** A hostile body: a fixed one, random JSON (bare or as a route's field), deep nesting or garbage. */
export function fuzzBody(random: Random): string | Uint8Array<ArrayBuffer> {
  switch (random.int(7)) {
    case 0:
    case 1:
      return random.pick(fuzzStaticBodies);
    case 2:
      return randomJsonText(random);
    case 3:
      return `{"${random.pick(["value", "secret"])}":${randomJsonText(random)}}`;
    case 4:
      return deepNesting(random, random.pick([63, 64, 65, 66, 129, 1_000, 100_000]));
    case 5:
      return garbageBytes(random, random.pick([1, 16, 1_000, 70_000]));
    default:
      return random.pick(["x".repeat((1 << 20) + 1), '{"value":"' + "v".repeat(1 << 20) + '"}', "{}"]);
  }
}

/** A hostile path and the method to send it with: a route shape with fuzzed segments, or random segments. */
export function fuzzTarget(random: Random): { path: string; method: string } {
  const segment = () => {
    const roll = random.next();
    if (roll < 0.05) return "x".repeat(random.pick([1_000, 9_000]));
    return roll < 0.45 ? random.pick(validNames) : random.pick(fuzzSegments);
  };
  if (random.next() < 0.7) {
    const [template, methods] = random.pick(routeTemplates);
    const path = template.replaceAll("*", () => segment()) + random.pick(queries);
    return { path, method: random.next() < 0.7 ? random.pick(methods) : random.pick(fuzzMethods) };
  }
  const depth = 1 + random.int(5);
  return { path: `/${Array.from({ length: depth }, segment).join("/")}`, method: random.pick(fuzzMethods) };
}

/** Hostile headers: auth variants, conditional and event headers, content types and odd sizes. */
export function fuzzHeaders(random: Random, token: string): Record<string, string> {
  const headers: Record<string, string> = {};
  if (random.next() < 0.5) {
    headers.authorization = random.pick([
      `Bearer ${token}`,
      `bearer   ${token}  `,
      `Bearer ${token} ${token}`,
      `Bearer ${token.slice(0, -3)}abc`,
      "Bearer",
      "Bearer ",
      "Bearer a.b.c",
      "Bearer ...",
      `Bearer ${"a".repeat(10_000)}`,
      "Basic YWxpY2U6eA==",
      "x",
    ]);
  }
  if (random.next() < 0.3) {
    headers["if-match"] = random.pick([
      '"1"',
      "*",
      "abc",
      '"-1"',
      '"0"',
      '"999999999999999999"',
      'W/"1"',
      "",
    ]);
  }
  if (random.next() < 0.1) headers["if-none-match"] = random.pick(['"1"', "*", "x"]);
  if (random.next() < 0.3) {
    headers["last-event-id"] = random.pick(["0", "-1", "abc", "1.5", "99999999999999999999", ""]);
  }
  if (random.next() < 0.3) {
    headers["content-type"] = random.pick([
      "text/plain",
      "application/json",
      "application/json; charset=latin1",
      "multipart/form-data; boundary=x",
      "",
    ]);
  }
  if (random.next() < 0.2) headers["x-pad"] = "p".repeat(random.pick([0, 1, 1_000, 8_192, 16_384, 60_000]));
  if (random.next() < 0.05) {
    const count = random.pick([50, 99, 120]);
    for (let index = 0; index < count; index += 1) headers[`x-many-${index}`] = String(index);
  }
  if (random.next() < 0.05) headers["x-internal-request"] = "true";
  return headers;
}

/** One hostile request for `fetch`. */
export interface FuzzRequest {
  path: string;
  init: RequestInit;
}

/** A hostile request to a public route or a random path. */
export function hostileRequest(random: Random, token: string): FuzzRequest {
  const { path, method } = fuzzTarget(random);
  const headers = fuzzHeaders(random, token);
  const hasBody = !["GET", "HEAD", "OPTIONS", "PROPFIND"].includes(method);
  return { path, init: { method, headers, ...(hasBody ? { body: fuzzBody(random) } : {}) } };
}

/** How a request went: an HTTP status, or the client refused to send it, or the connection failed. */
export type FuzzOutcome =
  | { kind: "status"; status: number; detail: string }
  | { kind: "refused_by_client" }
  | { kind: "connection_failed"; detail: string };

/** Sends one fuzzed request and reads no more of the answer than its first bytes. */
export async function sendFuzz(baseUrl: string, request: FuzzRequest): Promise<FuzzOutcome> {
  let response: Response;
  try {
    response = await fetch(`${baseUrl}${request.path}`, {
      ...request.init,
      signal: AbortSignal.timeout(10_000),
    });
  } catch (error) {
    // `fetch` refuses some methods, header values and URLs before sending anything.
    if (error instanceof TypeError && /invalid|URL|method|header|forbidden/i.test(error.message)) {
      return { kind: "refused_by_client" };
    }
    return { kind: "connection_failed", detail: String(error) };
  }
  let detail = "";
  if (response.status >= 500 && !response.headers.get("content-type")?.includes("event-stream")) {
    detail = (await response.text()).slice(0, 300);
  } else {
    await response.body?.cancel();
  }
  return { kind: "status", status: response.status, detail };
}

/** A short, replayable description of a request. */
export function describeRequest(request: FuzzRequest): string {
  const body = request.init.body;
  const bodyText = typeof body === "string"
    ? JSON.stringify(body.slice(0, 80)) + (body.length > 80 ? `…(${body.length} chars)` : "")
    : body instanceof Uint8Array
    ? `<${body.length} random bytes>`
    : "<none>";
  const headers = Object.entries(request.init.headers as Record<string, string> ?? {})
    .map(([name, value]) =>
      `${name}: ${value.length > 40 ? `${value.slice(0, 40)}…(${value.length})` : value}`
    )
    .join("; ");
  return `${request.init.method} ${request.path.slice(0, 200)} [${headers}] body=${bodyText}`;
}

/** Runs `task(0..count-1)` with at most `concurrency` in flight. */
export async function runPool(
  count: number,
  concurrency: number,
  task: (index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) { // each iteration takes one index, so this ends after `count` tasks
      const index = next;
      next += 1;
      await task(index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
}

/** The resident set size of process `pid` in MiB, from `/proc/<pid>/status`. */
export async function rssMiB(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  if (match === null) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(match[1]) / 1024;
}

/** Opens a raw TCP connection to the node at `baseUrl`. */
export async function connectRaw(baseUrl: string): Promise<Deno.TcpConn> {
  const url = new URL(baseUrl);
  return await Deno.connect({ hostname: url.hostname, port: Number(url.port) });
}

/** Closes a raw connection the node may already have closed. */
export function closeQuietly(connection: Deno.Conn): void {
  try {
    connection.close();
  } catch {
    // already closed
  }
}

/**
 * Reads from a raw connection until `"\r\n\r\n"` (the end of a response head), the peer closes, or
 * `timeoutMs` passes; returns what was read as text (maybe empty).
 */
export async function readHead(connection: Deno.Conn, timeoutMs: number): Promise<string> {
  const decoder = new TextDecoder();
  const buffer = new Uint8Array(4096);
  let text = "";
  const deadline = performance.now() + timeoutMs;
  while (!text.includes("\r\n\r\n") && performance.now() < deadline) { // bounded by the deadline
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), Math.max(1, deadline - performance.now()));
    });
    const read = await Promise.race([connection.read(buffer).catch(() => null), timeout]);
    clearTimeout(timer);
    if (read === "timeout" || read === null) break;
    text += decoder.decode(buffer.subarray(0, read));
  }
  return text;
}

/** The status code of a raw HTTP/1.1 response head, or undefined when there is none. */
export function statusOfHead(head: string): number | undefined {
  const match = /^HTTP\/1\.[01] (\d{3})/.exec(head);
  return match === null ? undefined : Number(match[1]);
}
