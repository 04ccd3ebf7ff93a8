// Goal: the chaos checker is exact: it passes every history a correct cluster can produce and names each
// kind of violation it exists to catch (a lost acknowledged write, one version acknowledged twice, a refused
// write that took effect, a stream gap, an uncommitted state shown); the nemesis's partitions block exactly
// the links they describe.
// Method: hand-made histories, streams and partition specs; no cluster.
import assert from "node:assert/strict";
import {
  type Attempt,
  changeEntryOf,
  checkHistory,
  checkStream,
  digestOf,
  type Outcome,
  prefixDigests,
  type StreamEntry,
  unavailableWithoutRetryAfter,
} from "./checker.ts";
import { blockedLinksOf } from "./network.ts";
import { availabilityByFault } from "./report.ts";

let clock = 0;

function attempt(
  id: string,
  written: string[],
  outcome: Outcome,
  options: { intruder?: boolean } = {},
): Attempt {
  clock += 10;
  return {
    id,
    key: "k",
    client: id.split("-")[0]!,
    intruder: options.intruder ?? false,
    node: "n1",
    startedMs: clock,
    endedMs: clock + 5,
    readVersion: written.length - 1,
    writtenDigest: digestOf(written),
    outcome,
  };
}

const ok = (version: number): Outcome => ({ kind: "ok", version });
const refused = (status: number): Outcome => ({ kind: "refused", status });
const unknown: Outcome = { kind: "indeterminate", reason: "503" };

/** a-1 (v1), b-1 (v2, acknowledged), c-1 refused, d-1 indeterminate applied at v3, e-1 indeterminate lost. */
function cleanHistory(): Attempt[] {
  return [
    attempt("a-1", ["a-1"], ok(1)),
    attempt("b-1", ["a-1", "b-1"], ok(2)),
    attempt("c-1", ["a-1", "c-1"], refused(412)),
    attempt("d-1", ["a-1", "b-1", "d-1"], unknown),
    attempt("e-1", ["a-1", "b-1", "e-1"], { kind: "indeterminate", reason: "timeout" }),
  ];
}

const finalOf = (writes: string[]) => new Map([["k", { version: writes.length, writes }]]);

Deno.test("checkHistory() passes a history whose chain holds every acknowledged write at its version", () => {
  const check = checkHistory(cleanHistory(), finalOf(["a-1", "b-1", "d-1"]));
  assert.deepEqual(check.findings.texts, []);
  assert.deepEqual([check.acknowledged, check.refused, check.indeterminate], [2, 1, 2]);
  assert.equal(check.indeterminateApplied, 1);
});

Deno.test("checkHistory() reports an acknowledged write replaced by another branch as lost", () => {
  const history = [...cleanHistory(), attempt("f-1", ["a-1", "f-1"], unknown)];
  const check = checkHistory(history, finalOf(["a-1", "f-1"])); // f-1's branch won over b-1
  assert.deepEqual(check.lost, [{ id: "b-1", key: "k", version: 2, foundAt: -1 }]);
  assert.match(check.findings.texts.join("\n"), /acknowledged write b-1 \(201 v2\) lost/);
  assert.equal(check.findings.countsByRule.get("acknowledged write lost"), 1);
});

Deno.test("checkHistory() reports an acknowledged write found at another version as lost", () => {
  const history = [...cleanHistory(), attempt("f-1", ["a-1", "f-1"], unknown)];
  const check = checkHistory(history, finalOf(["a-1", "f-1", "b-1"]));
  assert.deepEqual(check.lost.map((lost) => lost.foundAt), [2]);
});

Deno.test("checkHistory() reports two writes acknowledged with one version", () => {
  const history = [...cleanHistory(), attempt("g-1", ["a-1", "g-1"], ok(2))];
  const check = checkHistory(history, finalOf(["a-1", "b-1", "d-1"]));
  assert.match(check.findings.texts.join("\n"), /b-1 and g-1 were both acknowledged as v2/);
});

Deno.test("checkHistory() reports a refused write that took effect", () => {
  const history = [...cleanHistory(), attempt("h-1", ["a-1", "b-1", "d-1", "h-1"], refused(412))];
  const check = checkHistory(history, finalOf(["a-1", "b-1", "d-1", "h-1"]));
  assert.match(check.findings.texts.join("\n"), /v4 is h-1, which was refused \(412\) yet took effect/);
});

Deno.test("checkHistory() reports a malformed chain: duplicates, a wrong version, unknown writes", () => {
  const check = checkHistory(
    cleanHistory(),
    new Map([["k", { version: 5, writes: ["a-1", "b-1", "b-1", "x"] }]]),
  );
  const text = check.findings.texts.join("\n");
  assert.match(text, /final version 5 but the chain holds 4 writes/);
  assert.match(text, /b-1 appears twice/);
  assert.match(text, /v4 is x, which no client attempted/);
});

Deno.test("checkHistory() reports a 201 for a user not owning the key, and a version off If-Match", () => {
  const history = [
    ...cleanHistory(),
    attempt("i-1", ["a-1", "b-1", "d-1", "i-1"], ok(4), { intruder: true }),
    attempt("j-1", ["a-1", "b-1", "d-1", "i-1", "j-1"], ok(7)),
  ];
  const text = checkHistory(history, finalOf(["a-1", "b-1", "d-1", "i-1"])).findings.texts.join("\n");
  assert.match(text, /i-1, by a user who does not own the key, got 201 v4/);
  assert.match(text, /j-1 sent If-Match 4 and was acknowledged as v7/);
});

Deno.test("checkHistory() reports an acknowledged state that is not the final chain's prefix", () => {
  // k-1 read a dirty v1 (z) and its CAS on version 1 succeeded over a-1.
  const history = [...cleanHistory(), attempt("k-1", ["z", "k-1"], ok(2))];
  const check = checkHistory(history.filter((item) => item.id !== "b-1"), finalOf(["a-1", "k-1"]));
  assert.match(
    check.findings.texts.join("\n"),
    /k-1 \(201 v2\) wrote a state that is not the final chain's prefix/,
  );
});

Deno.test("checkHistory() counts writes answered 503 without Retry-After", () => {
  const bare: Outcome = { kind: "indeterminate", reason: unavailableWithoutRetryAfter };
  const history = [
    ...cleanHistory(),
    attempt("l-1", ["a-1", "l-1"], bare),
    attempt("l-2", ["a-1", "l-2"], bare),
  ];
  const check = checkHistory(history, finalOf(["a-1", "b-1", "d-1"]));
  assert.equal(check.findings.countsByRule.get("503 without Retry-After"), 2);
  assert.equal(check.indeterminate, 4);
});

const chain = ["a", "b", "c", "d", "e"];
const change = (version: number, writes = chain.slice(0, version)): StreamEntry =>
  changeEntryOf({ event: "Updated", id: String(version), version, writes });
const open: StreamEntry = { kind: "open" };
const ready = (id: number): StreamEntry => ({ kind: "ready", id: String(id) });
const final = { version: 5, writes: chain };

Deno.test("checkStream() passes an unbroken run, across a reconnect that replays", () => {
  const check = checkStream(
    [
      open,
      ready(1),
      change(2),
      change(3),
      { kind: "error", message: "lost" },
      open,
      ready(3),
      change(4),
      change(5),
    ],
    final,
  );
  assert.deepEqual(check.findings.texts, []);
  assert.deepEqual([check.shown, check.reconnects], [4, 1]);
});

Deno.test("checkStream() reports a gap on a live connection and at a reconnect, not after a Resync", () => {
  assert.match(
    checkStream([open, ready(0), change(1), change(3), change(4), change(5)], final).findings.texts[0]!,
    /gap on a live connection: v1 then v3/,
  );
  const reconnect = checkStream([open, ready(0), change(1), open, ready(3), change(4), change(5)], final);
  assert.match(reconnect.findings.texts[0]!, /gap at a reconnect: v1 then v4/);
  const resync = checkStream([open, ready(0), change(1), { kind: "resync" }, change(4), change(5)], final);
  assert.deepEqual(resync.findings.texts, []);
  assert.equal(resync.resyncs, 1);
});

Deno.test("checkStream() reports a version shown twice, out of order or with different content", () => {
  const twice = checkStream([
    open,
    ready(0),
    change(1),
    change(2),
    change(2),
    change(3),
    change(4),
    change(5),
  ], final);
  assert.match(twice.findings.texts.join("\n"), /v2 shown after v2/);
  const differing = checkStream([
    open,
    ready(0),
    change(1),
    change(2, ["a", "x"]),
    open,
    change(2),
    change(3),
  ], undefined);
  assert.match(differing.findings.texts.join("\n"), /v2 shown twice with different content/);
});

Deno.test("checkStream() reports a shown state that is not the final chain's prefix, and a stale end", () => {
  const check = checkStream([open, ready(0), change(1), change(2, ["a", "lost"]), change(3)], final);
  const text = check.findings.texts.join("\n");
  assert.match(text, /v2: shown a state that is not the final chain's prefix .*last write: lost/);
  assert.match(text, /never shown the final state: last v3, final v5/);
});

Deno.test("checkStream() reports a Deleted event and an id that is not the version", () => {
  const deleted = changeEntryOf({ event: "Deleted", id: "2", version: 2, writes: ["a", "b"] });
  const wrongId = changeEntryOf({ event: "Updated", id: "9", version: 3, writes: ["a", "b", "c"] });
  const text = checkStream([open, ready(0), change(1), deleted, wrongId], undefined).findings.texts.join(
    "\n",
  );
  assert.match(text, /a Deleted event/);
  assert.match(text, /event id 9 is not the version/);
});

Deno.test("digestOf() tells lists apart by content and order, and prefixDigests() matches it", () => {
  const digests = ["a", "b"].map((_, index) => digestOf(["a", "b"].slice(0, index + 1)));
  assert.notEqual(digestOf(["a", "b"]), digestOf(["b", "a"]));
  assert.notEqual(digestOf(["ab"]), digestOf(["a", "b"]));
  assert.notEqual(digestOf([]), digestOf([""]));
  assert.deepEqual(prefixDigests(["a", "b"]), [digestOf([]), ...digests]);
});

Deno.test("blockedLinksOf() blocks exactly the links between groups, both ways, and one-way links", () => {
  const names = ["n1", "n2", "n3"];
  assert.deepEqual([...blockedLinksOf(names, { groups: [["n1"], ["n2", "n3"]] })].sort(), [
    "n1>n2",
    "n1>n3",
    "n2>n1",
    "n3>n1",
  ]);
  assert.deepEqual([...blockedLinksOf(names, { blocked: [["n2", "n1"]] })], ["n2>n1"]);
  // A bridge: n2 sees both sides, which do not see each other.
  assert.deepEqual([...blockedLinksOf(names, { groups: [["n1", "n2"], ["n2", "n3"]] })].sort(), [
    "n1>n3",
    "n3>n1",
  ]);
});

Deno.test("availabilityByFault() files each attempt under the faults active when it started", () => {
  const attempts = [attempt("a-1", ["a-1"], ok(1)), attempt("b-1", ["a-1", "b-1"], unknown)];
  const spans = [{
    kind: "pause" as const,
    nodes: ["n1"],
    detail: "n1",
    startMs: attempts[1]!.startedMs - 1,
    endMs: undefined,
  }];
  const tallies = availabilityByFault(attempts, spans);
  assert.equal(tallies.get("none")?.ok, 1);
  assert.equal(tallies.get("pause")?.unavailable, 1);
});
