// Goal: SPEC §3 "no request, however malformed, gets a 500 or kills the node", for every public route and
// every internal route, while the node keeps serving normal traffic and its memory stays bounded
// (issue 4, item 4).
// Method: a seeded fuzzer (`KV_TEST_SEED=<n>` replays it) against a 3-node TestCluster: random methods,
// paths (percent-encoding, traversal, unicode, huge segments), headers of odd sizes and bodies (random
// JSON, garbage, huge numbers, deep nesting, duplicate keys); internal requests unsigned, badly signed
// and signed over malformed bodies. Then raw sockets against one node: slowloris (a byte at a time),
// truncated requests, 500 idle event streams and subscribers that never read, with the node's VmRSS
// read from /proc before, during and after.
import assert from "node:assert/strict";
import { RequestSigner } from "../../src/cluster/mod.ts";
import {
  closeQuietly,
  connectRaw,
  deepNesting,
  describeRequest,
  type FuzzOutcome,
  type FuzzRequest,
  hostileRequest,
  internalKinds,
  randomJsonText,
  readHead,
  rssMiB,
  runPool,
  sendFuzz,
  statusOfHead,
} from "../helpers/fuzz.ts";
import { NodeProcess, putValue, tokenFor } from "../helpers/node_process.ts";
import { Random } from "../helpers/seed.ts";
import { clusterSecret, TestCluster } from "../helpers/test_cluster.ts";
import { waitFor } from "../helpers/wait_for.ts";

/** Generous bound on RSS growth of a node under the fuzzer (SPEC: memory bounded). */
const rssGrowthMaxMiB = 200;
const encoder = new TextEncoder();

/** Collects what went wrong, so one run reports every failing request with its replay description. */
class Failures {
  readonly list: string[] = [];
  add(message: string): void {
    if (this.list.length < 40) this.list.push(message);
  }
  check(outcome: FuzzOutcome, what: string, expect: (status: number) => boolean): void {
    if (outcome.kind === "status" && !expect(outcome.status)) {
      this.add(`${what} -> ${outcome.status} ${outcome.detail}`);
    }
    if (outcome.kind === "connection_failed") this.add(`${what} -> connection failed: ${outcome.detail}`);
  }
}

/**
 * Writes and reads back one key per round on the nodes in turn until `signal` aborts; every failure is
 * recorded. This is the "keeps serving normal traffic meanwhile" half of the fuzz tests.
 */
async function normalTraffic(
  nodes: NodeProcess[],
  token: string,
  signal: AbortSignal,
): Promise<{ rounds: number; errors: string[] }> {
  const errors: string[] = [];
  let rounds = 0;
  while (!signal.aborted && errors.length < 5) { // ends when the fuzzer is done (or after 5 errors)
    const node = nodes[rounds % nodes.length]!;
    const path = `/normal/key/k${rounds}`;
    try {
      const written = await putValue(node, path, { round: rounds }, { token });
      await written.body?.cancel();
      if (written.status !== 201) errors.push(`PUT ${path} on ${node.baseUrl} -> ${written.status}`);
      await waitFor(async () => {
        const read = await node.fetch(path);
        const body = read.status === 200 ? await read.json() : await read.body?.cancel();
        return read.status === 200 && body.value.round === rounds;
      }, { timeoutMs: 5_000, what: `${path} to read back` });
    } catch (error) {
      errors.push(`round ${rounds} on ${node.baseUrl}: ${error}`);
    }
    rounds += 1;
  }
  return { rounds, errors };
}

/** Every node answers /health and takes a normal write and read; nothing is left subscribed. */
async function assertServing(nodes: NodeProcess[], token: string, label: string): Promise<void> {
  for (const [index, node] of nodes.entries()) {
    const health = await node.fetch("/health");
    assert.equal(health.status, 200, `${label}: node ${index} answers /health`);
    await health.body?.cancel();
    const path = `/after/key/${label.replaceAll(/\W/g, "_")}_${index}`;
    const written = await putValue(node, path, { index }, { token });
    assert.equal(written.status, 201, `${label}: node ${index} takes a write`);
    await written.body?.cancel();
    // A write acknowledged by a quorum may reach the node that took it a moment later (SPEC §5).
    await waitFor(async () => {
      const read = await node.fetch(path);
      const body = read.status === 200 ? await read.json() : await read.body?.cancel();
      return read.status === 200 && body.value.index === index;
    }, { timeoutMs: 5_000, what: `${label}: node ${index} to read its write back` });
  }
}

async function activeSse(node: NodeProcess): Promise<number> {
  const response = await node.fetch("/stats");
  return (await response.json()).active_sse_connections;
}

// ---------------------------------------------------------------------------------------------------
// Internal routes.

/** Bodies a peer would send that are well formed: used to show authentication alone refuses them. */
function wellFormedBody(kind: string, peer: string): string {
  const member = { id: "127.0.0.1:1", status: "alive", incarnation: 0 };
  const bodies: Record<string, unknown> = {
    join: { member },
    ping: { members: [member] },
    "ping-req": { target: peer, members: [] },
    leave: { member: { id: peer, status: "left", incarnation: Number.MAX_SAFE_INTEGER } },
    apply: {
      items: [{
        store: true,
        table: "t",
        key: "forged",
        entry: { version: 999, timestamp: 1, owner: "mallory", deleted: false, valueJson: '"forged"' },
      }],
    },
    write: { op: "put", table: "t", key: "forged", value: "forged", owner: "mallory" },
    writes: { items: [{ op: "put", table: "t", key: "forged", value: "forged", owner: "mallory" }] },
    read: { table: "t", key: "k" },
    restore: {
      items: [{
        table: "t",
        key: "forged",
        entry: { version: 999, timestamp: 1, owner: "mallory", deleted: false, valueJson: '"forged"' },
      }],
    },
    list: { table: "t", limit: 10 },
    digest: { buckets: Array.from({ length: 256 }, () => "") },
    sync: { buckets: [{ bucket: 0, summaries: [] }] },
  };
  return JSON.stringify(bodies[kind] ?? {});
}

/** Signed bodies that break each kind's schema; each must be answered 4xx. */
/** A message given as its text, for what JSON.stringify cannot write (a number that overflows). */
class RawJson {
  constructor(readonly text: string) {}
}

/** A replica entry as a peer sends it, with `fields` changed. */
function entryWith(fields: Record<string, unknown>): Record<string, unknown> {
  return { version: 1, timestamp: 1, owner: "a", deleted: false, valueJson: '{"a":1}', ...fields };
}

/**
 * Notices of chosen states, in a proposer's paxos batches: their JSON goes to the event broker. Proposals at
 * the zero ballot, which names no proposer (the acceptor asserts on it).
 */
function paxosPreconditionBodies(): unknown[] {
  const zero = { counter: 0, node: "" };
  return [
    { items: [{ op: "prepare", table: "t", key: "k", ballot: zero, replicas: ["127.0.0.1:1"] }] },
    {
      items: [{
        op: "accept",
        table: "t",
        key: "k",
        ballot: zero,
        replicas: ["127.0.0.1:1"],
        entry: entryWith({}),
      }],
    },
    ...['{"value":\n1}', "", "{", "1e999", '"\udc00"'].map((json) => ({
      items: [{ op: "chosen", table: "t", key: "k", kind: "Updated", version: 1, json }],
    })),
    { items: [{ op: "chosen", table: "t", key: "k", kind: "Updated", version: 0, json: "{}" }] },
    { items: [{ op: "chosen", table: "a\ud800", key: "k", kind: "Deleted", version: 1, json: "{}" }] },
  ];
}

/**
 * Signed messages that break a precondition the store or the event broker asserts (issue 18, item 4): JSON
 * spanning lines (the `apply` that stopped a node), JSON that is not JSON, not valid Unicode, too deep or
 * holding a number that overflows; names, owners, versions and timestamps out of range; a tombstone with a
 * value. Every one must be refused with a 4xx (a forwarded write may answer 200 with its error), the node up.
 */
const storePreconditionBodies: Record<"apply" | "paxos" | "write" | "restore" | "other", unknown[]> = (() => {
  const badEntries = [
    entryWith({ valueJson: '{\n"a":1}' }),
    entryWith({ valueJson: '{"a":1}\r' }),
    entryWith({ valueJson: "1e400" }),
    entryWith({ valueJson: '{"a":[-2e308]}' }),
    entryWith({ valueJson: "[".repeat(200) + "]".repeat(200) }),
    entryWith({ valueJson: '"\ud800"' }),
    entryWith({ valueJson: "" }),
    entryWith({ valueJson: "{" }),
    entryWith({ version: 2 ** 52 + 1 }),
    entryWith({ version: Number.MAX_SAFE_INTEGER }),
    entryWith({ version: 1.5 }),
    entryWith({ timestamp: -1 }),
    entryWith({ deleted: true }),
    entryWith({ owner: "" }),
    entryWith({ owner: "\ud800" }),
  ];
  const badNames = ["x".repeat(300), "é".repeat(200), "a\ud800", "a\u0085b"];
  const apply: unknown[] = [
    ...badEntries.map((entry) => ({ items: [{ store: true, table: "t", key: "k", entry }] })),
    ...badEntries.map((entry) => ({ items: [{ store: true, strict: true, table: "t", key: "k", entry }] })),
    ...badNames.map((name) => ({ items: [{ store: true, table: name, key: "k", entry: entryWith({}) }] })),
  ];
  const paxos = paxosPreconditionBodies();
  const write: unknown[] = [
    new RawJson('{"op":"put","table":"t","key":"k","owner":"a","value":{"n":1e400}}'),
    new RawJson(`{"op":"put","table":"t","key":"k","owner":"a","value":[${"9".repeat(400)}]}`),
    { op: "put", table: "t", key: "k", owner: "a", value: JSON.parse("[".repeat(150) + "]".repeat(150)) },
    {
      op: "put",
      table: "t",
      key: "k",
      owner: "a",
      value: 1,
      forwarderState: entryWith({ valueJson: "[\n]" }),
    },
    { op: "put", table: "t", key: "k", owner: "\ud800", value: 1 },
    { op: "patch", table: "t", key: "k", owner: "a", value: { a: 1 }, ifVersion: 2 ** 60 },
    ...badNames.map((name) => ({ op: "put", table: "t", key: name, owner: "a", value: 1 })),
  ];
  const restore: unknown[] = [
    ...badEntries.map((entry) => ({ items: [{ table: "t", key: "k", entry }] })),
    new RawJson(
      '{"items":[{"table":"t","key":"k","entry":' +
        '{"version":1e400,"timestamp":1,"owner":"a","deleted":true}}]}',
    ),
  ];
  const other: unknown[] = [
    { table: "a\ud800", key: "k" },
    { table: "t", after: "\ud800", limit: 1 },
    {
      buckets: [{
        bucket: 0,
        summaries: [{ table: "t", key: "k", version: 2 ** 53, timestamp: 1, deleted: false, contentHash: 1 }],
      }],
    },
  ];
  return { apply, paxos, write, restore, other };
})();

function messageText(message: unknown): string {
  return message instanceof RawJson ? message.text : JSON.stringify(message);
}

/** Membership messages (join, ping, ping-req, leave) whose fields are out of range or of the wrong type. */
function malformedMembershipBodies(): Record<string, unknown[]> {
  const member = (fields: Record<string, unknown>) => ({
    id: "127.0.0.1:1",
    status: "alive",
    incarnation: 0,
    ...fields,
  });
  return {
    join: [
      { member: member({ id: "no-port" }) },
      { member: member({ status: "zombie" }) },
      { member: member({ incarnation: -1 }) },
      { member: member({ incarnation: 1e400 }) },
      { member: member({ id: "a/b:1" }) },
    ],
    ping: [
      { members: "x" },
      {
        members: Array.from(
          { length: 257 },
          (_, index) => member({ id: `10.0.0.${index % 250}:${index + 1}` }),
        ),
      },
      { members: [member({ incarnation: "1" })] },
    ],
    "ping-req": [{ target: "nope", members: [] }, { target: "127.0.0.1:1" }, { target: 1, members: [] }],
    leave: [{ member: member({ status: "gone" }) }, { member: null }],
  };
}

/** Replication messages (apply, paxos) that break the schema or a precondition of the store. */
function malformedReplicationBodies(): Record<string, unknown[]> {
  return {
    apply: [
      { items: "x" },
      { items: [{ store: "yes", table: "t", key: "k" }] },
      { items: [{ store: true, table: "", key: "k", entry: {} }] },
      {
        items: [{
          store: true,
          table: "t",
          key: "k",
          entry: { version: 0, timestamp: 1, owner: "a", deleted: false, valueJson: "1" },
        }],
      },
      {
        items: [{
          store: true,
          table: "t",
          key: "k",
          entry: { version: 1, timestamp: 1, owner: "a", deleted: false },
        }],
      },
      { items: Array.from({ length: 513 }, () => ({ store: false })) },
      ...storePreconditionBodies.apply,
    ],
    paxos: [
      { items: [] },
      { items: [{ op: "decide", table: "t", key: "k" }] },
      {
        items: [{ op: "prepare", table: "t", key: "k", ballot: { counter: 1, node: "" }, replicas: ["a:1"] }],
      },
      {
        items: [{
          op: "prepare",
          table: "t",
          key: "k",
          ballot: { counter: 0, node: "a:1" },
          replicas: ["a:1"],
        }],
      },
      { items: [{ op: "prepare", table: "t", key: "k", ballot: { counter: 1, node: "a:1" }, replicas: [] }] },
      {
        items: [{
          op: "accept",
          table: "t",
          key: "k",
          ballot: { counter: 1, node: "a:1" },
          replicas: ["a:1"],
        }],
      },
      { items: [{ op: "chosen", table: "t", key: "k", kind: "Created", version: 1, json: "{}" }] },
      { items: Array.from({ length: 513 }, () => ({ op: "chosen" })) },
      ...storePreconditionBodies.paxos,
    ],
  };
}

/** Data messages (write, writes, read, restore, list, digest, sync) that break the schema. */
function malformedDataBodies(): Record<string, unknown[]> {
  return {
    write: [
      { op: "drop", table: "t", key: "k", owner: "a" },
      { op: "put", table: "t", key: "k" },
      { op: "put", table: "t", key: "k", owner: "" },
      { op: "put", table: "t", key: "k", owner: "a", ifVersion: -1, value: 1 },
      { op: "put", table: "t", key: "k".repeat(5_000), owner: "a", value: 1 },
      ...storePreconditionBodies.write,
    ],
    writes: [
      { items: "x" },
      { items: [{ op: "drop", table: "t", key: "k", owner: "a" }] },
      { items: [{ op: "put", table: "t", key: "k", owner: "a", value: 1 }, { op: "put", table: "t" }] },
      {
        items: Array.from({ length: 513 }, () => ({ op: "put", table: "t", key: "k", owner: "a", value: 1 })),
      },
    ],
    read: [{ table: "t" }, { table: "t", key: "" }, { table: 1, key: "k" }],
    restore: [
      { items: "x" },
      { items: [{ table: "t", key: "k" }] },
      { items: [{ table: "t", key: "k", entry: { version: 0, timestamp: 1, owner: "a", deleted: false } }] },
      {
        items: Array.from({ length: 513 }, () => ({
          table: "t",
          key: "k",
          entry: { version: 1, timestamp: 1, owner: "a", deleted: false, valueJson: "1" },
        })),
      },
      ...storePreconditionBodies.restore,
    ],
    list: [{ table: "t", limit: 0 }, { table: "t", limit: 10_001 }, { table: "t" }, { table: "", limit: 1 }],
    digest: [
      { buckets: Array.from({ length: 255 }, () => "") },
      { buckets: Array.from({ length: 256 }, () => 1) },
      { buckets: Array.from({ length: 256 }, () => "x".repeat(65)) },
    ],
    sync: [
      { buckets: [{ bucket: 256, summaries: [] }] },
      { buckets: [{ bucket: 0, summaries: [{ table: "t" }] }] },
      { buckets: "x" },
    ],
  };
}

function malformedBody(random: Random, kind: string): string {
  const generic = [
    "",
    "{",
    "null",
    "[]",
    "1",
    '"x"',
    "{}",
    '{"a":1,"a":2}',
    deepNesting(random, random.pick([129, 1_000, 50_000])),
    "\u0000",
  ];
  const specific: Record<string, unknown[]> = {
    ...malformedMembershipBodies(),
    ...malformedReplicationBodies(),
    ...malformedDataBodies(),
  };
  if (random.next() < 0.4) return random.pick(generic);
  return messageText(random.pick(specific[kind] ?? [{}]));
}

/** One way to get node-to-node authentication wrong; every one must be answered 403. */
type BadAuth = (options: {
  random: Random;
  path: string;
  body: string;
  signer: RequestSigner;
  wrongSigner: RequestSigner;
  /** The id of the node the request goes to. */
  target: string;
}) => Record<string, string> | Promise<Record<string, string>>;

const sender = "127.0.0.1:1";
const hourMs = 3_600_000;

const badAuths: Record<string, BadAuth> = {
  "no headers": () => Promise.resolve({}),
  "only x-internal-request": () => Promise.resolve({ "x-internal-request": "true" }),
  "random MAC": ({ random }) =>
    Promise.resolve({
      "x-dyna-node": sender,
      "x-dyna-time": String(Date.now()),
      "x-dyna-mac": btoa(String.fromCharCode(...Array.from({ length: 32 }, () => random.int(256))))
        .replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, ""),
    }),
  "wrong secret": ({ wrongSigner, path, body, target }) =>
    wrongSigner.sign({ path, sender, target, bodyText: body, nowMs: Date.now() }),
  "signed for another path": ({ signer, path, body, target }) =>
    signer.sign({
      target,
      path: path === "/_internal/read" ? "/_internal/list" : "/_internal/read",
      sender,
      bodyText: body,
      nowMs: Date.now(),
    }),
  "signed over another body": ({ signer, path, body, target }) =>
    signer.sign({ path, sender, target, bodyText: `${body} `, nowMs: Date.now() }),
  "an hour old": ({ signer, path, body, target }) =>
    signer.sign({ path, sender, target, bodyText: body, nowMs: Date.now() - hourMs }),
  "an hour ahead": ({ signer, path, body, target }) =>
    signer.sign({ path, sender, target, bodyText: body, nowMs: Date.now() + hourMs }),
  "time not digits": async ({ signer, path, body, random, target }) => ({
    ...await signer.sign({ path, sender, target, bodyText: body, nowMs: Date.now() }),
    "x-dyna-time": random.pick(["12a", "-5", "1e12", "99999999999999999", " ", "0x1"]),
  }),
  "sender changed after signing": async ({ signer, path, body, target }) => ({
    ...await signer.sign({ path, sender, target, bodyText: body, nowMs: Date.now() }),
    "x-dyna-node": "127.0.0.1:2",
  }),
  "sender over 300 characters": ({ signer, path, body, target }) =>
    signer.sign({ path, sender: "s".repeat(301), target, bodyText: body, nowMs: Date.now() }),
  "no MAC header": async ({ signer, path, body, target }) => {
    const { "x-dyna-mac": _, ...rest } = await signer.sign({
      target,
      path,
      sender,
      bodyText: body,
      nowMs: Date.now(),
    });
    return rest;
  },
  "MAC too long": async ({ signer, path, body, target }) => ({
    ...await signer.sign({ path, sender, target, bodyText: body, nowMs: Date.now() }),
    "x-dyna-mac": "A".repeat(200),
  }),
  "MAC not base64url": async ({ signer, path, body, target }) => ({
    ...await signer.sign({ path, sender, target, bodyText: body, nowMs: Date.now() }),
    "x-dyna-mac": "!!!!/+==",
  }),
  "MAC truncated": async ({ signer, path, body, target }) => {
    const headers = await signer.sign({ path, sender, target, bodyText: body, nowMs: Date.now() });
    return { ...headers, "x-dyna-mac": headers["x-dyna-mac"]!.slice(0, 20) };
  },
};

/** Sends one internal request and returns its outcome and whether it was a "write" reply with an error. */
async function sendInternal(
  node: NodeProcess,
  path: string,
  body: string,
  headers: Record<string, string>,
): Promise<{ outcome: FuzzOutcome; refusedInReply: boolean }> {
  try {
    const response = await node.fetch(path, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body,
      signal: AbortSignal.timeout(10_000),
    });
    const text = await response.text();
    // A forwarded write answers 200 with `{"error": ...}` for the caller to re-raise: also a refusal.
    const refusedInReply = response.status === 200 && path === "/_internal/write" &&
      text.startsWith('{"error"');
    return {
      outcome: { kind: "status", status: response.status, detail: text.slice(0, 200) },
      refusedInReply,
    };
  } catch (error) {
    return { outcome: { kind: "connection_failed", detail: String(error) }, refusedInReply: false };
  }
}

async function fuzzInternal(options: {
  random: Random;
  cluster: TestCluster;
  count: number;
  failures: Failures;
}): Promise<Record<string, number>> {
  const { random, cluster, failures } = options;
  const signer = await RequestSigner.create(clusterSecret);
  const wrongSigner = await RequestSigner.create("a-wrong-cluster-secret-0123456789abcdef");
  const tally: Record<string, number> = {};
  const plans = Array.from({ length: options.count }, () => {
    const kind = random.next() < 0.9
      ? random.pick(internalKinds)
      : random.pick(["unknown", "JOIN", "%2e%2e", "join%00", "💥", "a".repeat(300), ""]);
    return { kind, index: random.int(3), roll: random.next(), seed: random.int(2 ** 31) };
  });
  await runPool(plans.length, 6, async (planIndex) => {
    const { kind, index, roll, seed } = plans[planIndex]!;
    const local = new Random(seed); // each plan draws from its own stream, so concurrency keeps it replayable
    const node = cluster.node(index);
    // What the node sees after URL parsing (`%2e%2e` climbs out of /_internal/, emoji get encoded).
    const path = new URL(`http://x/_internal/${kind}`).pathname;
    const isInternalRoute = /^\/_internal\/[^/]+$/.test(path);
    const peer = cluster.id((index + 1) % 3);
    const target = cluster.id(index);
    if (roll < 0.5) {
      const name = local.pick(Object.keys(badAuths));
      const body = local.next() < 0.5 ? wellFormedBody(kind, peer) : randomJsonText(local);
      const headers = await badAuths[name]!({ random: local, path, body, signer, wrongSigner, target });
      const { outcome } = await sendInternal(node, path, body, headers);
      tally[`bad auth: ${name}`] = (tally[`bad auth: ${name}`] ?? 0) + 1;
      // A path that is no internal route is a 404; on every internal route authentication comes first.
      failures.check(
        outcome,
        `POST ${path} (${name}) body=${body.slice(0, 80)}`,
        (status) => isInternalRoute ? status === 403 : status === 404,
      );
      return;
    }
    if (!(internalKinds as readonly string[]).includes(kind)) {
      const body = wellFormedBody("read", peer);
      const headers = await signer.sign({ path, sender, target, bodyText: body, nowMs: Date.now() });
      const { outcome } = await sendInternal(node, path, body, headers);
      tally["signed, unknown kind"] = (tally["signed, unknown kind"] ?? 0) + 1;
      failures.check(outcome, `signed POST ${path}`, (status) => status === 404);
      return;
    }
    const malformed = roll < 0.8;
    const body = malformed
      ? malformedBody(local, kind)
      : `{${JSON.stringify(local.pick(["items", "member", "members", "buckets", "op"]))}:${
        randomJsonText(local)
      }}`;
    const headers = await signer.sign({ path, sender, target, bodyText: body, nowMs: Date.now() });
    const { outcome, refusedInReply } = await sendInternal(node, path, body, headers);
    tally[malformed ? "signed, malformed" : "signed, random JSON"] =
      (tally[malformed ? "signed, malformed" : "signed, random JSON"] ?? 0) + 1;
    failures.check(
      outcome,
      `signed POST ${path} body=${body.slice(0, 120)}`,
      (status) => malformed ? (status >= 400 && status < 500) || refusedInReply : status < 500,
    );
  });
  return tally;
}

// ---------------------------------------------------------------------------------------------------

Deno.test(
  "fuzz: hostile requests to every public and internal route of a 3-node cluster get no 5xx",
  async () => {
    const random = Random.fromEnv("fuzz routes");
    await using cluster = await TestCluster.start({ nodeCount: 3 });
    const nodes = [0, 1, 2].map((index) => cluster.node(index));
    const token = await tokenFor(nodes[0]!, "alice");
    for (const key of ["k", "obj"]) {
      const written = await putValue(nodes[0]!, `/t/key/${key}`, key === "obj" ? { a: 1 } : "v", { token });
      assert.equal(written.status, 201);
      await written.body?.cancel();
    }
    const rssBefore = await Promise.all(nodes.map((node) => rssMiB(node.pid)));
    const stopTraffic = new AbortController();
    const traffic = normalTraffic(nodes, token, stopTraffic.signal);
    const failures = new Failures();
    const statuses = new Map<number, number>();
    const requests: FuzzRequest[] = Array.from({ length: 1_500 }, () => hostileRequest(random, token));
    const targets = requests.map(() => random.int(3));
    const startedMs = performance.now();
    await runPool(requests.length, 8, async (index) => {
      const request = requests[index]!;
      const outcome = await sendFuzz(nodes[targets[index]!]!.baseUrl, request);
      if (outcome.kind === "status") statuses.set(outcome.status, (statuses.get(outcome.status) ?? 0) + 1);
      failures.check(
        outcome,
        `#${index} node ${targets[index]} ${describeRequest(request)}`,
        (status) => status < 500,
      );
    });
    const tally = await fuzzInternal({ random, cluster, count: 600, failures });
    stopTraffic.abort();
    const { rounds, errors } = await traffic;
    console.log(
      `fuzzed ${requests.length} public and 600 internal requests in ${
        (performance.now() - startedMs).toFixed(0)
      } ms;`,
      `statuses ${JSON.stringify(Object.fromEntries([...statuses].sort()))}; internal ${
        JSON.stringify(tally)
      };`,
      `${rounds} rounds of normal traffic meanwhile`,
    );
    assert.deepEqual(failures.list, [], "requests answered 5xx (or a wrong status for internal routes)");
    assert.deepEqual(errors, [], "normal traffic failed while the fuzzer ran");
    assert.ok(rounds >= 3, `normal traffic made progress (${rounds} rounds)`);
    await assertServing(nodes, token, "after the fuzzer");
    for (const node of nodes) {
      await waitFor(async () => await activeSse(node) === 0, {
        timeoutMs: 5_000,
        what: "fuzzed streams to close",
      });
    }
    for (const [index, node] of nodes.entries()) {
      const rss = await rssMiB(node.pid);
      console.log(`node ${index} RSS ${rssBefore[index]!.toFixed(0)} -> ${rss.toFixed(0)} MiB`);
      assert.ok(rss < rssBefore[index]! + rssGrowthMaxMiB, `node ${index} RSS grew to ${rss.toFixed(0)} MiB`);
    }
  },
);

/** Sends `text` one byte at a time, `delayMs` apart, then reads the answer's head. */
async function dribble(connection: Deno.Conn, text: string, delayMs: number): Promise<string> {
  const bytes = encoder.encode(text);
  for (const byte of bytes) {
    await connection.write(Uint8Array.of(byte));
    await new Promise((resolve) => setTimeout(resolve, delayMs));
  }
  return await readHead(connection, 5_000);
}

/** Opens `count` raw event streams to `paths` (in turn) and waits until each has its response head. */
async function openStreams(baseUrl: string, paths: string[], count: number): Promise<Deno.Conn[]> {
  const connections: Deno.Conn[] = [];
  await runPool(count, 50, async (index) => {
    const connection = await connectRaw(baseUrl);
    connections.push(connection);
    const request = `GET ${paths[index % paths.length]} HTTP/1.1\r\nHost: x\r\n\r\n`;
    await connection.write(encoder.encode(request));
    const head = await readHead(connection, 10_000);
    assert.equal(statusOfHead(head), 200, `stream ${index} opened: ${head.slice(0, 100)}`);
  });
  return connections;
}

/**
 * Slowloris: complete requests sent a byte at a time are answered; unfinished ones hold no one up. Answers
 * the 30 unfinished connections, still open.
 */
async function assertSlowlorisAnswered(
  node: NodeProcess,
  token: string,
  random: Random,
): Promise<Deno.Conn[]> {
  const slowBody = JSON.stringify({ value: "slow" });
  const slow = [
    `PUT /t/key/slow HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n` +
    `Content-Type: application/json\r\n` +
    `Content-Length: ${slowBody.length}\r\n\r\n${slowBody}`,
    "GET /t/key/slow HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
  ];
  const unfinished: Deno.Conn[] = [];
  for (let index = 0; index < 30; index += 1) {
    const connection = await connectRaw(node.baseUrl);
    unfinished.push(connection);
    await connection.write(encoder.encode(random.pick([
      "GET /t/key/slow HTTP/1.1\r\nHost: x\r\n",
      'PUT /t/key/k HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"value":',
      'POST /auth/bob HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"sec',
      "G",
    ])));
  }
  const slowHeads = await Promise.all(Array.from({ length: 24 }, async (_, index) => {
    const connection = await connectRaw(node.baseUrl);
    try {
      return await dribble(connection, slow[index % slow.length]!, 3);
    } finally {
      closeQuietly(connection);
    }
  }));
  for (const [index, head] of slowHeads.entries()) {
    const status = statusOfHead(head);
    assert.ok(status !== undefined && status < 500, `slow request ${index} answered ${head.slice(0, 80)}`);
  }
  return unfinished;
}

/** Truncated requests: cut at a random byte, then the connection is closed. */
async function sendTruncatedRequests(node: NodeProcess, token: string, random: Random): Promise<void> {
  for (let index = 0; index < 40; index += 1) {
    const body = random.pick(['{"value":"truncated"}', '{"value":{"a":[1,2,3]}}', "{}"]);
    const full = encoder.encode(
      `PUT /t/key/cut${index} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
    );
    const connection = await connectRaw(node.baseUrl);
    await connection.write(full.subarray(0, 1 + random.int(full.length - 1))).catch(() => 0);
    closeQuietly(connection);
  }
}

/**
 * Two rounds of 500 idle streams plus 20 that never read a hot key written 60 times with 250 kB (15 MB:
 * more than a non-reading socket's kernel buffers plus a queue of 16 frames hold). Answers the node's RSS
 * with the streams open and after they closed, per round.
 */
async function floodStreams(
  node: NodeProcess,
  token: string,
): Promise<{ rssPeaks: number[]; rssAfterClose: number[] }> {
  const rssPeaks: number[] = [];
  const rssAfterClose: number[] = [];
  const big = "v".repeat(250_000);
  for (let round = 0; round < 2; round += 1) {
    const idle = await openStreams(
      node.baseUrl,
      Array.from({ length: 50 }, (_, index) => `/t/subscribe/k${index}`),
      500,
    );
    const stuck = await openStreams(node.baseUrl, ["/t/subscribe/hot", "/t/subscribe"], 20);
    await waitFor(async () => await activeSse(node) === 520, {
      timeoutMs: 10_000,
      what: "520 streams open",
    });
    for (let write = 0; write < 60; write += 1) {
      const written = await putValue(node, "/t/key/hot", `${big}${write}`, { token });
      assert.equal(written.status, 201, `hot write ${write} with 520 streams open`);
      await written.body?.cancel();
    }
    await waitFor(async () => await activeSse(node) <= 500, {
      timeoutMs: 10_000,
      what: "subscribers that never read to be disconnected",
    });
    rssPeaks.push(await rssMiB(node.pid));
    for (const connection of [...idle, ...stuck]) closeQuietly(connection);
    await waitFor(async () => await activeSse(node) === 0, {
      timeoutMs: 10_000,
      what: "every stream to close",
    });
    rssAfterClose.push(await rssMiB(node.pid));
  }
  return { rssPeaks, rssAfterClose };
}

Deno.test(
  "fuzz: slowloris, truncated requests, 500 idle streams and subscribers that never read keep one " +
    "node serving with bounded memory",
  async () => {
    const random = Random.fromEnv("fuzz connections");
    // A small queue makes the never-reading subscribers overflow after a few writes instead of 512.
    await using node = await NodeProcess.start({ env: { DYNA_SSE_QUEUE_DEPTH_MAX: "16" } });
    const token = await tokenFor(node, "alice");
    const rssBefore = await rssMiB(node.pid);
    const stopTraffic = new AbortController();
    const traffic = normalTraffic([node], token, stopTraffic.signal);

    const unfinished = await assertSlowlorisAnswered(node, token, random);
    await sendTruncatedRequests(node, token, random);
    for (const connection of unfinished) closeQuietly(connection);
    const { rssPeaks, rssAfterClose } = await floodStreams(node, token);
    stopTraffic.abort();
    const { rounds, errors } = await traffic;
    console.log(
      `RSS before ${rssBefore.toFixed(0)} MiB; with 520 streams ${rssPeaks.map((r) => r.toFixed(0))};`,
      `after they closed ${rssAfterClose.map((r) => r.toFixed(0))}; ${rounds} rounds of normal traffic`,
    );
    assert.deepEqual(errors, [], "normal traffic failed during the connection attacks");
    for (const rss of [...rssPeaks, ...rssAfterClose]) {
      assert.ok(
        rss < rssBefore + rssGrowthMaxMiB,
        `RSS ${rss.toFixed(0)} MiB is over ${rssBefore.toFixed(0)} + ${rssGrowthMaxMiB}`,
      );
    }
    // A second identical round must not keep what the first left behind (no leak per stream).
    assert.ok(
      rssAfterClose[1]! < rssAfterClose[0]! + 64,
      `RSS after the second round ${rssAfterClose[1]!.toFixed(0)} MiB vs ${
        rssAfterClose[0]!.toFixed(0)
      } after the first`,
    );
    await assertServing([node], token, "after the connection attacks");
  },
);

Deno.test({
  name: "fuzz: HEAD on a subscribe route does not leave a subscriber open",
  fn: async () => {
    await using node = await NodeProcess.start({ env: { DYNA_SUBSCRIBERS_MAX: "20" } });
    for (let index = 0; index < 25; index += 1) {
      const response = await node.fetch(index % 2 === 0 ? "/t/subscribe/k" : "/t/subscribe", {
        method: "HEAD",
      });
      assert.ok(response.status < 500, `HEAD ${index} answered ${response.status}`);
      await response.body?.cancel();
    }
    await waitFor(async () => await activeSse(node) === 0, {
      timeoutMs: 5_000,
      what: "HEAD subscribers to go",
    });
    const response = await node.fetch("/t/subscribe/k");
    assert.equal(response.status, 200);
    await response.body?.cancel();
  },
});

Deno.test({
  name: "fuzz: a signed apply whose valueJson is not JSON is refused, not stored and served",
  fn: async () => {
    await using cluster = await TestCluster.start({ nodeCount: 3 });
    const signer = await RequestSigner.create(clusterSecret);
    const entry = { version: 1, timestamp: 1, owner: "a", deleted: false, valueJson: "{" };
    const body = JSON.stringify({ items: [{ store: true, table: "t", key: "bad", entry }] });
    const path = "/_internal/apply";
    const target = cluster.id(0);
    const headers = await signer.sign({ path, sender, target, bodyText: body, nowMs: Date.now() });
    const applied = await cluster.node(0).fetch(path, { method: "POST", headers, body });
    await applied.body?.cancel();
    assert.equal(applied.status, 400, "a replica whose value is not JSON is refused");
    const read = await cluster.node(0).fetch("/t/key/bad");
    const text = await read.text();
    if (read.status === 200) assert.doesNotThrow(() => JSON.parse(text), `GET served invalid JSON: ${text}`);
  },
});

Deno.test({
  name: "fuzz: signed messages of every internal kind that break what the store or broker asserts are 4xx, " +
    "node up",
  fn: async () => {
    await using cluster = await TestCluster.start({ nodeCount: 2 });
    const signer = await RequestSigner.create(clusterSecret);
    const token = await tokenFor(cluster.node(0), "alice");
    const written = await putValue(cluster.node(0), "/t/key/k", { a: 1 }, { token });
    assert.equal(written.status, 201);
    await written.body?.cancel();
    const plans: Array<[string, unknown]> = [
      ...storePreconditionBodies.apply.map((body) => ["apply", body] as [string, unknown]),
      ...storePreconditionBodies.paxos.map((body) => ["paxos", body] as [string, unknown]),
      ...storePreconditionBodies.write.map((body) => ["write", body] as [string, unknown]),
      ...storePreconditionBodies.write.map((body) => ["writes", { items: [body] }] as [string, unknown]),
      ...storePreconditionBodies.restore.map((body) => ["restore", body] as [string, unknown]),
      ...internalKinds.flatMap((kind) =>
        storePreconditionBodies.other.map((body) => [kind, body] as [string, unknown])
      ),
    ];
    const failures = new Failures();
    for (const [index, [kind, message]] of plans.entries()) {
      const node = cluster.node(index % 2);
      const target = cluster.id(index % 2);
      const path = `/_internal/${kind}`;
      const body = messageText(message);
      const headers = await signer.sign({ path, sender, target, bodyText: body, nowMs: Date.now() });
      const { outcome, refusedInReply } = await sendInternal(node, path, body, headers);
      // A forwarded `writes` answers 200 with each item's error; its items were checked one by one.
      const itemErrors = kind === "writes" && outcome.kind === "status" && outcome.detail.includes('"error"');
      failures.check(
        outcome,
        `signed POST ${path} body=${body.slice(0, 160)}`,
        (status) => (status >= 400 && status < 500) || refusedInReply || itemErrors,
      );
    }
    assert.deepEqual(failures.list, [], "a signed message was not refused with a 4xx");
    for (const index of [0, 1]) {
      const read = await cluster.node(index).fetch("/t/key/k");
      const text = await read.text();
      assert.equal(read.status, 200, `node ${index} serves: ${text}`);
      assert.deepEqual(JSON.parse(text).value, { a: 1 }, "nothing changed the key");
    }
  },
});
