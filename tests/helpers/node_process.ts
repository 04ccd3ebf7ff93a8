/**
 * Runs a real node (`main.ts` in a child process) on 127.0.0.1:0 with its own data dir, and talks to it
 * over HTTP only. `await using node = await NodeProcess.start()` stops it and removes the dir.
 */
const mainPath = new URL("../../main.ts", import.meta.url).pathname;

/** Options of {@linkcode NodeProcess.start}. */
export interface NodeOptions {
  /** Data dir to use; a fresh temp dir when omitted (and removed at dispose). */
  dataDir?: string;
  /** Extra env vars. */
  env?: Record<string, string>;
  /** Extra arguments after the listen address. */
  args?: string[];
  /** Listen address; default 127.0.0.1:0. */
  listen?: string;
  /** Runs the node under `ulimit -n <fdLimit>` (soft and hard), as a host with few descriptors would. */
  fdLimit?: number;
  /** Deno permission flags instead of `-A` (e.g. without `--allow-ffi`). */
  permissions?: string[];
  /** The node's umask, e.g. `0o022`, set by `sh` before it execs Deno; default the test process's. */
  umask?: number;
  /** Called with the child's pid as soon as it is spawned, before it prints its address. */
  onSpawn?: (pid: number) => void;
}

/** A running node child process. */
export class NodeProcess implements AsyncDisposable {
  readonly baseUrl: string;
  readonly dataDir: string;
  readonly #child: Deno.ChildProcess;
  readonly #ownsDir: boolean;
  readonly #stderr: Promise<string>;
  #exited: Promise<Deno.CommandStatus>;

  private constructor(options: {
    child: Deno.ChildProcess;
    baseUrl: string;
    dataDir: string;
    ownsDir: boolean;
    stderr: Promise<string>;
  }) {
    this.#child = options.child;
    this.baseUrl = options.baseUrl;
    this.dataDir = options.dataDir;
    this.#ownsDir = options.ownsDir;
    this.#stderr = options.stderr;
    this.#exited = options.child.status;
  }

  /** Starts a node and waits for its `listening on` line. */
  static async start(options: NodeOptions = {}): Promise<NodeProcess> {
    const ownsDir = options.dataDir === undefined;
    const dataDir = options.dataDir ?? await Deno.makeTempDir({ prefix: "dynarust_test_" });
    const command = [
      Deno.execPath(),
      "run",
      ...(options.permissions ?? ["-A"]),
      mainPath,
      options.listen ?? "127.0.0.1:0",
      "--data-dir",
      dataDir,
      ...(options.args ?? []),
    ];
    // A shell that sets the umask and descriptor limit, then becomes the node: they apply to it alone.
    const umask = options.umask?.toString(8).padStart(4, "0");
    const setup = [
      ...(umask === undefined ? [] : [`umask ${umask}`]),
      ...(options.fdLimit === undefined ? [] : [`ulimit -n ${options.fdLimit}`]),
    ];
    const child = new Deno.Command(setup.length === 0 ? command[0]! : "sh", {
      args: setup.length === 0
        ? command.slice(1)
        : ["-c", `${setup.join(" && ")} && exec "$@"`, "sh", ...command],
      env: { DYNA_LOG: "warn", ...(options.env ?? {}) },
      stdout: "piped",
      stderr: "piped",
      stdin: "null",
    }).spawn();
    options.onSpawn?.(child.pid);
    const stderr = new Response(child.stderr).text();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let output = "";
    for (;;) { // until the first line, or the child exits
      const { done, value } = await reader.read();
      if (done) break;
      output += value;
      if (output.includes("\n")) break;
    }
    // Keep draining stdout so the child never blocks on a full pipe.
    (async () => {
      while (!(await reader.read()).done) { /* drain */ }
    })().catch(() => {});
    const match = /^listening on (https?:\/\/\S+)/.exec(output);
    if (match === null) {
      const status = await child.status;
      throw new Error(`node did not start (exit ${status.code}): ${output}${await stderr}`);
    }
    return new NodeProcess({ child, baseUrl: match[1]!, dataDir, ownsDir, stderr });
  }

  /** Runs `main.ts` to completion with the given arguments (for config errors, --help). */
  static async runToExit(args: string[], env: Record<string, string> = {}): Promise<{
    code: number;
    stdout: string;
    stderr: string;
  }> {
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", mainPath, ...args],
      env: { DYNA_LOG: "warn", ...env },
      stdout: "piped",
      stderr: "piped",
      stdin: "null",
    }).output();
    const decoder = new TextDecoder();
    return {
      code: output.code,
      stdout: decoder.decode(output.stdout),
      stderr: decoder.decode(output.stderr),
    };
  }

  /** The PID of the child. */
  get pid(): number {
    return this.#child.pid;
  }

  /** Resolves with the exit status once the child exits, whoever stopped it. */
  get exited(): Promise<Deno.CommandStatus> {
    return this.#exited;
  }

  /** Sends `signal` without waiting for an exit (SIGSTOP/SIGCONT); a child gone already is not an error. */
  signal(signal: Deno.Signal): void {
    try {
      this.#child.kill(signal);
    } catch {
      // already exited
    }
  }

  /** `fetch` against this node. */
  fetch(path: string, init?: RequestInit): Promise<Response> {
    return fetch(`${this.baseUrl}${path}`, init);
  }

  /** Sends a signal and waits for the exit status. */
  async stop(signal: Deno.Signal = "SIGTERM"): Promise<Deno.CommandStatus> {
    try {
      this.#child.kill(signal);
    } catch {
      // already exited
    }
    return await this.#exited;
  }

  /** Everything the node printed on stderr (after it exited). */
  stderrText(): Promise<string> {
    return this.#stderr;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop("SIGKILL");
    await this.#stderr.catch(() => "");
    if (this.#ownsDir) await Deno.remove(this.dataDir, { recursive: true }).catch(() => {});
  }
}

/** Registers (or logs in) a user and returns the token. */
export async function tokenFor(
  node: NodeProcess,
  user: string,
  secret = "correct horse battery",
): Promise<string> {
  const response = await node.fetch(`/auth/${user}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ secret }),
  });
  const body = await response.json();
  if (typeof body.token !== "string") throw new Error(`no token for ${user}: ${JSON.stringify(body)}`);
  return body.token;
}

/** A `PUT` of `{"value": value}` with a bearer token. */
export function putValue(
  node: NodeProcess,
  path: string,
  value: unknown,
  options: { token: string; headers?: Record<string, string> },
): Promise<Response> {
  return node.fetch(path, {
    method: "PUT",
    headers: {
      "content-type": "application/json",
      authorization: `Bearer ${options.token}`,
      ...options.headers,
    },
    body: JSON.stringify({ value }),
  });
}

/**
 * For a node started by hand (a binary, other permissions): reads its `listening on` line from `reader`,
 * registers a user, and writes `value` to `/t/key/k`, failing unless it is answered 201.
 *
 * @returns the node's base URL.
 */
export async function listenAndWrite(
  reader: ReadableStreamDefaultReader<string>,
  value: unknown,
): Promise<string> {
  const first = (await reader.read()).value ?? "";
  const baseUrl = /listening on (\S+)/.exec(first)?.[1];
  if (baseUrl === undefined) throw new Error(`no listening line: ${first}`);
  const auth = await fetch(`${baseUrl}/auth/alice`, { method: "POST", body: '{"secret":"pw"}' });
  const { token } = await auth.json();
  const put = await fetch(`${baseUrl}/t/key/k`, {
    method: "PUT",
    headers: { authorization: `Bearer ${token}` },
    body: JSON.stringify({ value }),
  });
  if (put.status !== 201) throw new Error(`PUT answered ${put.status}: ${await put.text()}`);
  await put.body?.cancel();
  return baseUrl;
}
