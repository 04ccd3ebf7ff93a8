// Goal: issue 4, item 5 and SPEC §3: no password, token, JWT_SECRET, CLUSTER_SECRET or stored value
// appears in any line a node prints, at any log level, or in any error body it sends.
// Method: real node processes (one at trace level, a 2-node cluster at debug) with secrets the test
// chose, each holding a unique marker; every route is exercised, with failing logins, bad tokens,
// refused writes, malformed bodies, internal requests and a brute-force lockout; then everything the
// nodes printed on stdout and stderr (captured here, to the end of a graceful stop) and every error body
// received are searched for the secrets.
import assert from "node:assert/strict";
import { NodeProcess } from "../helpers/node_process.ts";
import { SseReader } from "../helpers/sse_reader.ts";
import { waitFor } from "../helpers/wait_for.ts";

const mainPath = new URL("../../main.ts", import.meta.url).pathname;

function randomHex(bytes: number): string {
  return Array.from(
    crypto.getRandomValues(new Uint8Array(bytes)),
    (byte) => byte.toString(16).padStart(2, "0"),
  )
    .join("");
}

/** The secrets of one run; each is unique, so finding one anywhere cannot be a coincidence. */
function makeSecrets() {
  return {
    jwtSecret: `jwt-secret-${randomHex(24)}`,
    clusterSecret: `cluster-secret-${randomHex(24)}`,
    password: `password-${randomHex(12)}`,
    wrongPassword: `guess-${randomHex(12)}`,
    storedValue: `stored-value-${randomHex(12)}`,
  };
}
type Secrets = ReturnType<typeof makeSecrets>;

/** A node process whose stdout and stderr are both kept in full. */
class LoggedNode implements AsyncDisposable {
  readonly baseUrl: string;
  readonly #child: Deno.ChildProcess;
  readonly #dataDir: string;
  readonly #output: Promise<[string, string]>;

  private constructor(
    child: Deno.ChildProcess,
    baseUrl: string,
    dataDir: string,
    output: Promise<[string, string]>,
  ) {
    this.#child = child;
    this.baseUrl = baseUrl;
    this.#dataDir = dataDir;
    this.#output = output;
  }

  static async start(
    options: { env: Record<string, string>; listen?: string; join?: string },
  ): Promise<LoggedNode> {
    const dataDir = await Deno.makeTempDir({ prefix: "dynarust_secrets_" });
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        mainPath,
        options.listen ?? "127.0.0.1:0",
        ...(options.join === undefined ? [] : [options.join]),
        "--data-dir",
        dataDir,
      ],
      env: options.env,
      stdout: "piped",
      stderr: "piped",
      stdin: "null",
    }).spawn();
    let stdout = "";
    let listening: (baseUrl: string | undefined) => void = () => {};
    const baseUrl = new Promise<string | undefined>((resolve) => listening = resolve);
    const stdoutDone = (async () => {
      for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
        stdout += chunk;
        const match = /^listening on (https?:\/\/\S+)/m.exec(stdout);
        if (match !== null) listening(match[1]);
      }
      listening(undefined);
      return stdout;
    })();
    const stderrDone = new Response(child.stderr).text();
    const output = Promise.all([stdoutDone, stderrDone]);
    const url = await baseUrl;
    if (url === undefined) {
      const [out, err] = await output;
      await child.status;
      throw new Error(`node did not start: ${out}${err}`);
    }
    const node = new LoggedNode(child, url, dataDir, output);
    await waitFor(
      async () => (await node.fetch("/health").then((r) => r.body?.cancel().then(() => r.status))) === 200,
      {
        timeoutMs: 30_000,
        what: "the node to serve",
      },
    );
    return node;
  }

  fetch(path: string, init?: RequestInit): Promise<Response> {
    return fetch(`${this.baseUrl}${path}`, init);
  }

  /** Stops the node gracefully and returns everything it printed on stdout and stderr. */
  async stop(): Promise<string> {
    try {
      this.#child.kill("SIGTERM");
    } catch {
      // already exited
    }
    await this.#child.status;
    const [stdout, stderr] = await this.#output;
    return `${stdout}\n${stderr}`;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // already exited
    }
    await this.#child.status;
    await this.#output.catch(() => {});
    await Deno.remove(this.#dataDir, { recursive: true }).catch(() => {});
  }
}

/** Every error body a test received, with the request that got it. */
class ErrorBodies {
  readonly list: Array<{ what: string; body: string }> = [];

  /** Sends a request; keeps the body of a non-2xx answer; returns status and body. */
  async send(
    node: LoggedNode,
    path: string,
    init: RequestInit = {},
  ): Promise<{ status: number; body: string }> {
    const response = await node.fetch(path, init);
    const body = await response.text();
    if (response.status >= 300) {
      this.list.push({ what: `${init.method ?? "GET"} ${path} -> ${response.status}`, body });
      const headers = [...response.headers].map(([name, value]) => `${name}: ${value}`).join("\n");
      this.list.push({ what: `headers of ${init.method ?? "GET"} ${path}`, body: headers });
    }
    return { status: response.status, body };
  }
}

function json(method: string, body: unknown, token?: string): RequestInit {
  return {
    method,
    headers: {
      "content-type": "application/json",
      ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
    },
    body: typeof body === "string" ? body : JSON.stringify(body),
  };
}

/** What the steps of {@linkcode exerciseRoutes} share: the nodes, secrets, error log and users' tokens. */
interface RouteRun {
  nodes: LoggedNode[];
  first: LoggedNode;
  second: LoggedNode;
  secrets: Secrets;
  errors: ErrorBodies;
  token: string;
  secondToken: string;
  bob: string;
}

/** Failing logins and malformed login bodies that carry the password are refused. */
async function refuseBadLogins(run: RouteRun): Promise<void> {
  const { first, nodes, secrets, errors } = run;
  for (const node of nodes) {
    assert.equal(
      (await errors.send(node, "/auth/alice", json("POST", { secret: secrets.wrongPassword }))).status,
      401,
    );
  }
  for (
    const body of [
      `{"secret":"${secrets.password}"`,
      `{"secret":["${secrets.password}"]}`,
      `{"secret":{"value":"${secrets.password}"}}`,
      `{"secret":"${secrets.password.repeat(60)}"}`,
      `["${secrets.password}"]`,
      `${secrets.password}`,
    ]
  ) {
    const response = await errors.send(first, "/auth/alice", json("POST", body));
    assert.equal(response.status, 400, `${body.slice(0, 60)} -> ${response.status}`);
  }
  assert.equal(
    (await errors.send(first, `/auth/${"a".repeat(300)}`, json("POST", { secret: secrets.password }))).status,
    400,
  );
}

/** Writes, reads, listings and a live event of the stored value, on every node. */
async function writeAndReadEverywhere(run: RouteRun): Promise<void> {
  const { first, second, nodes, secrets, errors, token, secondToken } = run;
  const events = await SseReader.open(`${second.baseUrl}/t/subscribe/k`);
  const put = await errors.send(first, "/t/key/k", json("PUT", { value: secrets.storedValue }, token));
  assert.equal(put.status, 201, put.body);
  const event = await events.nextEvent(10_000);
  assert.equal((event.data.value as { value: string }).value, secrets.storedValue);
  await events[Symbol.asyncDispose]();
  for (const node of nodes) {
    await waitFor(async () => (await errors.send(node, "/t/key/k")).status === 200, {
      timeoutMs: 5_000,
      what: "k",
    });
    assert.equal((await errors.send(node, "/t/store")).status, 200);
    assert.equal((await errors.send(node, "/t/keys?limit=10")).status, 200);
    assert.equal((await errors.send(node, "/t/keys", json("POST", ["k", "missing"]))).status, 200);
    for (const path of ["/stats", "/membership", "/health"]) {
      assert.equal((await errors.send(node, path)).status, 200);
    }
  }
  const patchable = await errors.send(
    second,
    "/t/key/obj",
    json("PUT", { value: { secret: secrets.storedValue } }, secondToken),
  );
  assert.equal(patchable.status, 201, patchable.body);
  assert.equal(
    (await errors.send(first, "/t/key/obj", json("PATCH", { value: { more: 1 } }, token))).status,
    201,
  );
}

/** Refused writes and reads whose error could quote the stored value, the token or the body. */
async function refuseWritesAndReads(run: RouteRun): Promise<void> {
  const { nodes, secrets, errors, token, bob } = run;
  const refusals: Array<[string, RequestInit, number]> = [
    ["/t/key/k", {
      ...json("PUT", { value: "x" }, token),
      headers: { authorization: `Bearer ${token}`, "if-match": '"99"' },
    }, 412],
    ["/t/key/k", json("PATCH", { value: { a: 1 } }, token), 400],
    ["/t/key/k", json("PUT", { value: secrets.storedValue }, bob), 403],
    ["/t/key/k", json("PATCH", { value: { a: secrets.storedValue } }, bob), 403],
    ["/t/key/k", { method: "DELETE", headers: { authorization: `Bearer ${bob}` } }, 403],
    ["/t/key/k", json("PUT", { value: secrets.storedValue }, `${token.slice(0, -4)}AAAA`), 401],
    ["/t/key/k", json("PUT", { value: secrets.storedValue }, `${token}x`), 401],
    ["/t/key/k", json("PUT", { value: secrets.storedValue }, token.split(".").slice(0, 2).join(".")), 401],
    ["/t/key/k", { ...json("PUT", { value: 1 }), headers: { authorization: `Token ${token}` } }, 401],
    ["/t/key/k", {
      ...json("PUT", { value: 1 }),
      headers: { authorization: `Bearer ${token} ${secrets.password}` },
    }, 401],
    ["/t/key/k", json("PUT", `{"value":"${secrets.storedValue}"`, token), 400],
    [
      "/t/key/k",
      json("PUT", `{"value":${"[".repeat(70)}"${secrets.storedValue}"${"]".repeat(70)}}`, token),
      400,
    ],
    ["/t/key/k", json("PUT", `{"value":"${secrets.storedValue.repeat(80_000)}"}`, token), 413],
    ["/t/key/k", json("PUT", { notValue: secrets.storedValue }, token), 400],
    ["/t/key/missing", json("PATCH", { value: { a: 1 } }, token), 404],
    ["/t/key/missing", {}, 404],
    ["/nope/store", {}, 404],
    ["/t/keys", json("POST", `["k", ${JSON.stringify(secrets.storedValue.repeat(30))}]`), 400],
    ["/_users/key/alice", {}, 400],
    ["/auth/key/alice", {}, 400],
    ["/t/key/k", { method: "POST", headers: { authorization: `Bearer ${token}` } }, 405],
  ];
  for (const [index, [path, init, status]] of refusals.entries()) {
    const node = nodes[index % nodes.length]!;
    const response = await errors.send(node, path, init);
    assert.equal(response.status, status, `${init.method ?? "GET"} ${path}: ${response.body.slice(0, 200)}`);
  }
}

/** Internal requests, unsigned, badly signed, carrying a secret in the body, are 403. */
async function refuseForgedInternal(run: RouteRun): Promise<void> {
  const { nodes, secrets, errors } = run;
  for (const node of nodes) {
    for (const kind of ["read", "write", "join"]) {
      const body = JSON.stringify({
        table: "t",
        key: "k",
        owner: "alice",
        value: secrets.storedValue,
        op: "put",
      });
      const forged = {
        "x-dyna-node": "127.0.0.1:1",
        "x-dyna-time": String(Date.now()),
        "x-dyna-mac": "A".repeat(43),
      };
      for (const headers of [{}, forged, { ...forged, "x-dyna-time": "1" }]) {
        const response = await errors.send(node, `/_internal/${kind}`, { method: "POST", headers, body });
        assert.equal(response.status, 403, response.body);
      }
    }
  }
}

/** Runs every route of SPEC §3 against `nodes` (in turn), successes and failures; returns the token. */
async function exerciseRoutes(nodes: LoggedNode[], secrets: Secrets, errors: ErrorBodies): Promise<string[]> {
  const [first, second] = [nodes[0]!, nodes[nodes.length - 1]!];
  const created = await errors.send(first, "/auth/alice", json("POST", { secret: secrets.password }));
  assert.equal(created.status, 201, created.body);
  const token = JSON.parse(created.body).token as string;
  const login = await errors.send(second, "/auth/alice", json("POST", { secret: secrets.password }));
  assert.equal(login.status, 200, login.body);
  const secondToken = JSON.parse(login.body).token as string;
  const bob = JSON.parse(
    (await errors.send(first, "/auth/bob", json("POST", { secret: `${secrets.password}-bob` }))).body,
  ).token as string;
  const run: RouteRun = { nodes, first, second, secrets, errors, token, secondToken, bob };
  await refuseBadLogins(run);
  await writeAndReadEverywhere(run);
  await refuseWritesAndReads(run);
  await refuseForgedInternal(run);

  const deleted = await errors.send(second, "/t/key/obj", {
    method: "DELETE",
    headers: { authorization: `Bearer ${secondToken}` },
  });
  assert.equal(deleted.status, 200, deleted.body);

  // Brute force last: the address is locked out for a minute after this.
  let lockedOut = false;
  for (let attempt = 0; attempt < 12 && !lockedOut; attempt += 1) {
    const response = await errors.send(
      first,
      "/auth/alice",
      json("POST", { secret: `${secrets.wrongPassword}${attempt}` }),
    );
    lockedOut = response.status === 429;
  }
  assert.ok(lockedOut, "a brute force ends in 429");
  const whileLocked = await errors.send(first, "/auth/alice", json("POST", { secret: secrets.password }));
  assert.equal(whileLocked.status, 429);
  return [token, secondToken, bob];
}

/** Asserts no secret (nor a token, nor a token's signature) occurs in `text`. */
function assertNoSecrets(text: string, where: string, secrets: Secrets, tokens: string[]): void {
  const needles: Array<[string, string]> = [
    ["JWT_SECRET", secrets.jwtSecret],
    ["CLUSTER_SECRET", secrets.clusterSecret],
    ["the password", secrets.password],
    ["a wrong password", secrets.wrongPassword],
    ["the stored value", secrets.storedValue],
  ];
  for (const [index, token] of tokens.entries()) {
    needles.push([`token ${index}`, token], [`token ${index}'s signature`, token.split(".")[2]!]);
  }
  for (const [name, needle] of needles) {
    const at = text.indexOf(needle);
    assert.ok(
      at === -1,
      `${where} contains ${name}: …${text.slice(Math.max(0, at - 120), at + needle.length + 40)}…`,
    );
  }
}

Deno.test(
  "secrets: a node at trace level prints no secret, token or stored value, and no error body holds " +
    "one",
  async () => {
    const secrets = makeSecrets();
    await using node = await LoggedNode.start({
      env: { RUST_LOG: "trace", JWT_SECRET: secrets.jwtSecret, CLUSTER_SECRET: secrets.clusterSecret },
    });
    const errors = new ErrorBodies();
    const tokens = await exerciseRoutes([node], secrets, errors);
    const printed = await node.stop();
    assert.match(printed, /DEBUG request/, "trace level printed the request lines (the level took effect)");
    console.log(
      `checked ${
        printed.split("\n").length
      } printed lines and ${errors.list.length} error bodies and headers`,
    );
    assertNoSecrets(printed, "the node's output", secrets, tokens);
    for (const { what, body } of errors.list) assertNoSecrets(body, what, secrets, tokens);
  },
);

Deno.test(
  "secrets: a 2-node cluster at debug level prints no secret, token or stored value, and no error " +
    "body holds one",
  async () => {
    const secrets = makeSecrets();
    const env = {
      DYNA_LOG: "debug",
      JWT_SECRET: secrets.jwtSecret,
      CLUSTER_SECRET: secrets.clusterSecret,
      DYNA_CLUSTER_PRESET: "local-test",
    };
    // Port 0: a port probed free beforehand could be taken by a parallel test before the node binds it.
    await using first = await LoggedNode.start({ env });
    await using second = await LoggedNode.start({ env, join: new URL(first.baseUrl).host });
    await waitFor(async () => {
      const views = await Promise.all(
        [first, second].map(async (node) => (await (await node.fetch("/membership")).json()).nodes),
      );
      return views.every((nodes: Array<{ status: string }>) =>
        nodes.length === 2 && nodes.every((n) => n.status === "alive")
      );
    }, { timeoutMs: 10_000, what: "the two nodes to see each other" });
    const errors = new ErrorBodies();
    const tokens = await exerciseRoutes([first, second], secrets, errors);
    // The second node leaves gracefully (hand-off, leave messages), then the first stops.
    const printed = `${await second.stop()}\n${await first.stop()}`;
    assert.match(printed, /DEBUG request/, "debug level printed the request lines");
    console.log(
      `checked ${
        printed.split("\n").length
      } printed lines and ${errors.list.length} error bodies and headers`,
    );
    assertNoSecrets(printed, "the nodes' output", secrets, tokens);
    for (const { what, body } of errors.list) assertNoSecrets(body, what, secrets, tokens);
  },
);

Deno.test(
  "secrets: a refused configuration names the setting but never prints the secret given",
  async () => {
    const dataDir = await Deno.makeTempDir({ prefix: "dynarust_secrets_config_" });
    try {
      const cases: Array<[string, string]> = [
        ["JWT_SECRET", `short-${randomHex(4)}`],
        ["CLUSTER_SECRET", `short-${randomHex(4)}`],
      ];
      for (const [name, value] of cases) {
        const env = { [name]: value, DYNA_LOG: "trace" };
        const result = await NodeProcess.runToExit(["127.0.0.1:0", "--data-dir", dataDir], env);
        assert.notEqual(result.code, 0, `${name} too short is refused`);
        assert.match(
          result.stderr,
          new RegExp(name.replace("_", "_?"), "i"),
          `names ${name}: ${result.stderr}`,
        );
        assert.ok(
          !`${result.stdout}${result.stderr}`.includes(value),
          `${name}'s value printed: ${result.stderr}`,
        );
      }
    } finally {
      await Deno.remove(dataDir, { recursive: true });
    }
  },
);
