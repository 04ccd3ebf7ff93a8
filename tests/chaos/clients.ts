/**
 * The clients of a chaos run: each loops over read-then-compare-and-set on a few shared keys through a node
 * drawn at random, and records every write attempt with its outcome (`checker.ts` says how each counts).
 * All writers log in as one user, the keys' owner; one intruder writes as another user and must always be
 * refused. A read goes through `?consistent=true` (SPEC §3: linearizable or 503), so the list a write
 * extends is the committed state of the version it names in `If-Match`.
 */
import type { Random } from "../helpers/seed.ts";
import { waitFor } from "../helpers/wait_for.ts";
import type { ChaosCluster } from "./cluster.ts";
import {
  type Attempt,
  digestOf,
  isStringList,
  type Outcome,
  unavailableWithoutRetryAfter,
} from "./checker.ts";

/** The table every key of the run lives in. */
export const chaosTable = "chaos";
const ownerName = "chaos-owner";
const intruderName = "chaos-intruder";
const secret = "chaos secret 0123456789";
/** Every request of a client is bounded by this (a paused node holds it until SIGCONT or this). */
const requestTimeoutMs = 10_000;
/** A client whose request failed waits this long before its next one: a retry backoff, not a wait. */
const backoffMs = 100;

/**
 * Answers that refuse a write outright (bad request, token, owner, missing key, conflict, stale `If-Match`,
 * too large): the write must not take effect. Any other status (408, 429, 5xx) leaves it indeterminate.
 */
const refusedStatuses = new Set([400, 401, 403, 404, 409, 412, 413]);

/** A key's state as a client read it. */
interface ReadState {
  version: number;
  writes: string[];
}

/** Everything the clients recorded. */
export class Workload {
  readonly attempts: Attempt[] = [];
  /** Reads that got no usable answer, by reason (`503`, `timeout`, …): no write followed them. */
  readonly readFailures = new Map<string, number>();
  readonly #cluster: ChaosCluster;
  readonly #keys: readonly string[];

  constructor(cluster: ChaosCluster, keys: readonly string[]) {
    this.#cluster = cluster;
    this.#keys = keys;
  }

  /** Registers the owner and the intruder (before any fault: a registration waits for every node). */
  async register(): Promise<void> {
    for (const name of [ownerName, intruderName]) {
      await this.login(name, this.#cluster.coreNames()[0]!);
    }
  }

  /** Logs `user` in through `node` (registering it the first time); retried for up to 30 s. */
  async login(user: string, node: string): Promise<string> {
    let token: string | undefined;
    await waitFor(async () => {
      const response = await this.#cluster.fetch(node, `/auth/${user}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ secret }),
      }).catch(() => undefined);
      const body = await response?.json().catch(() => undefined);
      token = typeof body?.token === "string" ? body.token : undefined;
      return token !== undefined;
    }, { timeoutMs: 30_000, intervalMs: 200, what: `${user} to log in through ${node}` });
    return token!;
  }

  /** Creates every key with `If-Match: "0"` as `client`, until each exists (recorded like any write). */
  async createKeys(token: string): Promise<void> {
    const node = this.#cluster.coreNames()[0]!;
    let attemptCount = 0;
    for (const key of this.#keys) {
      await waitFor(async () => {
        const read = await this.#read(node, key);
        if (read !== undefined && read.version > 0) return true;
        attemptCount += 1;
        const id = `setup-${attemptCount}`;
        await this.#attempt({
          node,
          key,
          token,
          id,
          client: "setup",
          intruder: false,
          read: { version: 0, writes: [] },
        });
        return false;
      }, { timeoutMs: 30_000, intervalMs: 50, what: `key ${key} to be created` });
    }
  }

  /** Logs in the user of a writer (the owner) or of the intruder through `node`; returns the token. */
  loginAs(options: { intruder: boolean; node: string }): Promise<string> {
    return this.login(options.intruder ? intruderName : ownerName, options.node);
  }

  /** Runs one client until `stop` aborts; `intruder` writes as a user who does not own the keys. */
  async runClient(
    options: { name: string; random: Random; token: string; intruder: boolean; stop: AbortSignal },
  ) {
    const { name, random, stop } = options;
    let count = 0;
    while (!stop.aborted) {
      const node = random.pick(this.#cluster.liveNames());
      const key = random.pick(this.#keys);
      const read = await this.#read(node, key);
      let failed = read === undefined;
      if (read !== undefined) {
        count += 1;
        const id = `${name}-${count}`;
        const attempt = await this.#attempt({ ...options, node, key, id, client: name, read });
        failed = attempt.outcome.kind === "indeterminate";
      }
      if (failed && !stop.aborted) await new Promise((resolve) => setTimeout(resolve, backoffMs));
    }
  }

  /** A linearizable read; undefined (and counted) when it gets no usable answer. */
  async #read(node: string, key: string): Promise<ReadState | undefined> {
    let reason: string;
    try {
      const path = `/${chaosTable}/key/${key}?consistent=true`;
      const response = await this.#cluster.fetch(node, path, { timeoutMs: requestTimeoutMs });
      if (response.status === 404) {
        await response.body?.cancel();
        return { version: 0, writes: [] };
      }
      if (response.status === 200) {
        const body = await response.json();
        const writes = body?.value?.writes;
        if (Number.isSafeInteger(body?.version) && isStringList(writes)) {
          return { version: body.version, writes };
        }
        reason = "malformed";
      } else {
        await response.body?.cancel();
        reason = String(response.status);
      }
    } catch (error) {
      reason = failureOf(error);
    }
    this.readFailures.set(reason, (this.readFailures.get(reason) ?? 0) + 1);
    return undefined;
  }

  async #attempt(options: {
    node: string;
    key: string;
    token: string;
    id: string;
    client: string;
    intruder: boolean;
    read: ReadState;
  }): Promise<Attempt> {
    const { node, key, read } = options;
    const written = [...read.writes, options.id];
    const startedMs = performance.now();
    let outcome: Outcome;
    try {
      const response = await this.#cluster.fetch(node, `/${chaosTable}/key/${key}`, {
        method: "PUT",
        headers: {
          "content-type": "application/json",
          authorization: `Bearer ${options.token}`,
          "if-match": `"${read.version}"`,
        },
        body: JSON.stringify({ value: { writes: written } }),
        timeoutMs: requestTimeoutMs,
      });
      outcome = await outcomeOf(response);
    } catch (error) {
      outcome = { kind: "indeterminate", reason: failureOf(error) };
    }
    const attempt: Attempt = {
      id: options.id,
      key,
      client: options.client,
      intruder: options.intruder,
      node,
      startedMs,
      endedMs: performance.now(),
      readVersion: read.version,
      writtenDigest: digestOf(written),
      outcome,
    };
    this.attempts.push(attempt);
    return attempt;
  }
}

async function outcomeOf(response: Response): Promise<Outcome> {
  if (response.status === 201) {
    const body = await response.json().catch(() => undefined);
    const version = body?.version;
    // A 201 whose body is unusable is still an acknowledgement; -1 makes the checker report it.
    return { kind: "ok", version: Number.isSafeInteger(version) ? version : -1 };
  }
  await response.body?.cancel();
  if (refusedStatuses.has(response.status)) return { kind: "refused", status: response.status };
  if (response.status === 503 && !response.headers.has("retry-after")) {
    return { kind: "indeterminate", reason: unavailableWithoutRetryAfter };
  }
  return { kind: "indeterminate", reason: String(response.status) };
}

/** `timeout`, `unreachable` (connection refused or reset) or `error`. */
function failureOf(error: unknown): string {
  if (error instanceof DOMException && (error.name === "TimeoutError" || error.name === "AbortError")) {
    return "timeout";
  }
  const text = error instanceof Error ? `${error.message} ${String(error.cause ?? "")}` : String(error);
  if (/refused|reset|broken pipe|connection closed/i.test(text)) return "unreachable";
  return "error";
}
