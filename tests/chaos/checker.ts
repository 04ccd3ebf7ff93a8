/**
 * The exact checker of a chaos run, pure functions over what the clients and subscribers recorded and the
 * converged final state. Each write puts `{"writes": [...the ids before it, its own id]}` with `If-Match`
 * on the version it read, so the final value of a key is the chain of the writes that survived, in version
 * order, and version v's state is `chain.slice(0, v)`.
 */

/** The reason of an indeterminate write answered 503 without `Retry-After` (SPEC §5 asks for one). */
export const unavailableWithoutRetryAfter = "503 without Retry-After";

/** How a write attempt ended, as its client saw it. */
export type Outcome =
  /** 201, with the version the answer gave. */
  | { kind: "ok"; version: number }
  /** 4xx (409, 412, 403, 404, …): must not take effect. */
  | { kind: "refused"; status: number }
  /** 5xx or no answer: may or may not take effect. */
  | { kind: "indeterminate"; reason: string };

/** One compare-and-set attempt. */
export interface Attempt {
  /** Unique per attempt; what the write adds to the chain. */
  id: string;
  key: string;
  client: string;
  /** Written by a user who does not own the key: must never be acknowledged. */
  intruder: boolean;
  /** The node the client sent it to. */
  node: string;
  startedMs: number;
  endedMs: number;
  /** The version the client read and sent as `If-Match` (0: absent). */
  readVersion: number;
  /** {@linkcode digestOf} the whole `writes` list it sent (its last id is `id`). */
  writtenDigest: string;
  outcome: Outcome;
}

/** A key's converged final state. */
export interface FinalState {
  version: number;
  writes: readonly string[];
}

/** An acknowledged write not found at its place in the final chain. */
export interface LostWrite {
  id: string;
  key: string;
  version: number;
  /** Its 0-based place in the final chain (not `version - 1`), or -1 when absent. */
  foundAt: number;
}

/** Broken rules as sentences, also counted by rule for the report. */
export class Findings {
  readonly texts: string[] = [];
  readonly countsByRule = new Map<string, number>();

  /** Records `count` (default 1) breaks of `rule`, told by `text`. */
  add(rule: string, text: string, count = 1): void {
    this.texts.push(text);
    this.countsByRule.set(rule, (this.countsByRule.get(rule) ?? 0) + count);
  }
}

/** The findings over the client history. */
export interface HistoryCheck {
  acknowledged: number;
  refused: number;
  indeterminate: number;
  /** Indeterminate writes found in a final chain (they took effect). */
  indeterminateApplied: number;
  lost: LostWrite[];
  /** Every broken rule, lost writes included. */
  findings: Findings;
}

/** Checks the attempts against the final chains. */
export function checkHistory(
  attempts: readonly Attempt[],
  finals: ReadonlyMap<string, FinalState>,
): HistoryCheck {
  const byId = new Map(attempts.map((attempt) => [attempt.id, attempt]));
  if (byId.size !== attempts.length) throw new Error("attempt ids must be unique");
  const findings = new Findings();
  for (const [key, final] of finals) checkChain({ key, final, byId, findings });
  const prefixesByKey = new Map([...finals].map(([key, final]) => [key, prefixDigests(final.writes)]));
  const lost: LostWrite[] = [];
  const byVersion = new Map<string, Attempt>();
  for (const attempt of attempts) {
    if (attempt.outcome.kind !== "ok") continue;
    const version = attempt.outcome.version;
    const twin = byVersion.get(`${attempt.key}@${version}`);
    if (twin !== undefined) {
      findings.add(
        "one version acknowledged twice",
        `${attempt.key}: ${twin.id} and ${attempt.id} were both acknowledged as v${version}`,
      );
    }
    byVersion.set(`${attempt.key}@${version}`, attempt);
    const final = finals.get(attempt.key);
    const prefixes = prefixesByKey.get(attempt.key) ?? [digestOf([])];
    checkAcknowledged(attempt, { version, final, prefixes, lost, findings });
  }
  const bare = attempts.filter((attempt) =>
    attempt.outcome.kind === "indeterminate" && attempt.outcome.reason === unavailableWithoutRetryAfter
  );
  if (bare.length > 0) {
    const example = `${bare[0]!.id} on ${bare[0]!.node}`;
    findings.add(
      "503 without Retry-After",
      `${bare.length} writes answered 503 without Retry-After (${example})`,
      bare.length,
    );
  }
  const chainIds = new Set([...finals.values()].flatMap((final) => final.writes));
  const count = (kind: Outcome["kind"]) => attempts.filter((attempt) => attempt.outcome.kind === kind).length;
  return {
    acknowledged: count("ok"),
    refused: count("refused"),
    indeterminate: count("indeterminate"),
    indeterminateApplied:
      attempts.filter((attempt) => attempt.outcome.kind === "indeterminate" && chainIds.has(attempt.id))
        .length,
    lost,
    findings,
  };
}

/** The rules of one final chain on its own: well formed, no duplicates, only writes that may be there. */
function checkChain(options: {
  key: string;
  final: FinalState;
  byId: ReadonlyMap<string, Attempt>;
  findings: Findings;
}): void {
  const { key, final, byId, findings } = options;
  const chain = final.writes;
  if (final.version !== chain.length) {
    findings.add(
      "malformed chain",
      `${key}: final version ${final.version} but the chain holds ${chain.length} writes`,
    );
  }
  const seen = new Set<string>();
  chain.forEach((id, index) => {
    if (seen.has(id)) {
      findings.add(
        "malformed chain",
        `${key}: ${id} appears twice in the final chain (again at v${index + 1})`,
      );
    }
    seen.add(id);
    const attempt = byId.get(id);
    if (attempt === undefined) {
      findings.add("malformed chain", `${key}: v${index + 1} is ${id}, which no client attempted`);
    } else if (attempt.key !== key) {
      findings.add("malformed chain", `${key}: v${index + 1} is ${id}, a write of ${attempt.key}`);
    } else if (attempt.outcome.kind === "refused") {
      findings.add(
        "refused write took effect",
        `${key}: v${index + 1} is ${id}, which was refused (${attempt.outcome.status}) yet took effect`,
      );
    }
  });
}

/** An acknowledged write is `chain[version - 1]`, and the state it wrote is the chain's prefix. */
function checkAcknowledged(
  attempt: Attempt,
  options: {
    version: number;
    final: FinalState | undefined;
    /** Digests of the final chain's prefixes, by length. */
    prefixes: readonly string[];
    lost: LostWrite[];
    findings: Findings;
  },
): void {
  const { version, findings } = options;
  const { id, key } = attempt;
  if (attempt.intruder) {
    findings.add(
      "non-owner acknowledged",
      `${key}: ${id}, by a user who does not own the key, got 201 v${version}`,
    );
  }
  if (version !== attempt.readVersion + 1) {
    findings.add(
      "version not If-Match + 1",
      `${key}: ${id} sent If-Match ${attempt.readVersion} and was acknowledged as v${version}`,
    );
  }
  const chain = options.final?.writes ?? [];
  if (chain[version - 1] !== id) {
    const foundAt = chain.indexOf(id);
    options.lost.push({ id, key, version, foundAt });
    const where = foundAt < 0
      ? "absent from the final chain"
      : `at v${foundAt + 1} of the final chain instead`;
    findings.add(
      "acknowledged write lost",
      `${key}: acknowledged write ${id} (201 v${version}) lost: ${where}`,
    );
  } else if (attempt.writtenDigest !== options.prefixes[version]) {
    findings.add(
      "acknowledged state not the prefix",
      `${key}: ${id} (201 v${version}) wrote a state that is not the final chain's prefix`,
    );
  }
}

/** One entry of a subscriber's log, in the order the EventSource dispatched them. */
export type StreamEntry =
  | { kind: "open" }
  | { kind: "ready"; id: string }
  | {
    kind: "change";
    event: string;
    id: string;
    version: number;
    /** The length and {@linkcode digestOf} the `writes` list shown; length -1 when it was not a list. */
    length: number;
    digest: string;
    /** The list's last id, to name a stray write. */
    lastWrite: string | undefined;
  }
  | { kind: "resync" }
  | { kind: "error"; message: string }
  /** The EventSource gave up (a non-200 answer) and a new one was made with `?since=`. */
  | { kind: "recreate"; since: string };

/** The findings over one subscriber's stream. */
export interface StreamCheck {
  /** Changes shown. */
  shown: number;
  /** Connections after the first. */
  reconnects: number;
  resyncs: number;
  findings: Findings;
}

/** Order, content and prefix of one subscriber's stream of one key; `final` undefined skips the prefix. */
export function checkStream(entries: readonly StreamEntry[], final: FinalState | undefined): StreamCheck {
  const check: StreamCheck = { shown: 0, reconnects: 0, resyncs: 0, findings: new Findings() };
  const { findings } = check;
  const digests = new Map<number, string>();
  const prefixes = final === undefined ? undefined : prefixDigests(final.writes);
  let last: number | undefined;
  let fresh = false; // no change yet on this connection
  let afterResync = false;
  let opens = 0;
  for (const entry of entries) {
    if (entry.kind === "open") {
      opens += 1;
      check.reconnects = opens - 1;
      fresh = true;
    } else if (entry.kind === "ready" && last === undefined) {
      last = Number(entry.id); // the stream's starting position
    } else if (entry.kind === "resync") {
      check.resyncs += 1;
      afterResync = true;
    } else if (entry.kind === "change") {
      check.shown += 1;
      checkShown(entry, { digests, prefixes, findings });
      const version = entry.version;
      if (last !== undefined && version !== last + 1 && !(afterResync && version > last)) {
        const where = fresh ? "at a reconnect" : "on a live connection";
        if (version > last) {
          findings.add(`SSE gap ${where}`, `gap ${where}: v${last} then v${version}, with no Resync`);
        } else {
          findings.add("SSE version repeated or back", `v${version} shown after v${last} ${where}`);
        }
      }
      last = version;
      fresh = false;
      afterResync = false;
    }
  }
  if (final !== undefined && (last ?? 0) < final.version) {
    findings.add(
      "SSE final state never shown",
      `never shown the final state: last v${last ?? 0}, final v${final.version}`,
    );
  }
  return check;
}

/** The log entry of a change event, keeping a digest of the list shown rather than the list. */
export function changeEntryOf(
  change: { event: string; id: string; version: number; writes: unknown },
): Extract<StreamEntry, { kind: "change" }> {
  const { writes } = change;
  const list = isStringList(writes);
  return {
    kind: "change",
    event: change.event,
    id: change.id,
    version: change.version,
    length: list ? writes.length : -1,
    digest: list ? digestOf(writes) : `not a list: ${JSON.stringify(writes)?.slice(0, 80)}`,
    lastWrite: list ? writes.at(-1) : undefined,
  };
}

/** One shown change: an Updated event whose state is the final chain's prefix, once per version. */
function checkShown(
  change: Extract<StreamEntry, { kind: "change" }>,
  state: { digests: Map<number, string>; prefixes: readonly string[] | undefined; findings: Findings },
): void {
  const { findings } = state;
  const { version, digest } = change;
  if (change.event !== "Updated") {
    findings.add("SSE unexpected event", `v${version}: a ${change.event} event (nothing is deleted)`);
  }
  if (change.id !== String(version)) {
    findings.add("SSE id is not the version", `v${version}: event id ${change.id} is not the version`);
  }
  const earlier = state.digests.get(version);
  if (earlier !== undefined && earlier !== digest) {
    findings.add("SSE version shown with two contents", `v${version} shown twice with different content`);
  }
  state.digests.set(version, digest);
  if (change.length !== version) {
    findings.add(
      "SSE malformed state",
      `v${version}: the state shown is not a list of ${version} ids: ${digest}`,
    );
  } else if (state.prefixes !== undefined && digest !== state.prefixes[version]) {
    findings.add(
      "SSE state not a prefix of the final chain",
      `v${version}: shown a state that is not the final chain's prefix (uncommitted or lost writes ` +
        `shown; its last write: ${change.lastWrite})`,
    );
  }
}

/**
 * A digest of a list of write ids (two 32-bit FNV-style hashes over the ids and a separator), so records
 * need not keep every list they saw: a 180 s run shows ~40,000 states of up to ~2,000 ids each.
 */
export function digestOf(writes: readonly string[]): string {
  return prefixDigests(writes).at(-1)!;
}

/** `digestOf(chain.slice(0, n))` for every n from 0 to `chain.length`, in one pass. */
export function prefixDigests(chain: readonly string[]): string[] {
  let first = 0x811c9dc5;
  let second = 0x5bd1e995;
  const digests = [hexPair(first, second)];
  for (const id of chain) {
    for (let index = 0; index <= id.length; index += 1) {
      const code = index < id.length ? id.charCodeAt(index) : 0x1f; // 0x1f ends each id
      first = Math.imul(first ^ code, 0x01000193);
      second = Math.imul(second ^ code, 0x5bd1e995);
      second ^= second >>> 15;
    }
    digests.push(hexPair(first, second));
  }
  return digests;
}

function hexPair(first: number, second: number): string {
  return (first >>> 0).toString(16).padStart(8, "0") + (second >>> 0).toString(16).padStart(8, "0");
}

/** True for an array of strings. */
export function isStringList(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((item) => typeof item === "string");
}
