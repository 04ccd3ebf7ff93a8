/**
 * `dynarust health [URL]`: the health check of a container or a supervisor. It asks the node's
 * `GET /health` once, under a short timeout, and answers with an exit code: 0 when the node serves (200),
 * 1 otherwise (starting, draining, refused, no answer in time). A distroless image has no shell and no
 * curl, so the binary checks itself (`HEALTHCHECK CMD ["/dynarust", "health"]`). It is a client of the
 * public API, and knows nothing of the node's insides.
 *
 * @example
 * ```ts
 * const command = parseHealthCommand(["http://127.0.0.1:6660", "--timeout-ms", "2000"]);
 * if (command.kind === "check") {
 *   const result = await checkHealth(command);
 *   console.log(result.message); // "http://127.0.0.1:6660/health: ok"
 * }
 * ```
 * @module
 */
import { parseArgs } from "node:util";
import { DynaClient, DynaError } from "../client/mod.ts";
import { KvError } from "../util/errors.ts";

/** The node asked when no URL is given: the port a container or a unit runs the node on. */
export const healthUrlDefault = "http://127.0.0.1:6660";
/** How long the check waits for the answer; a supervisor's own timeout is usually longer. @default 3 s */
export const healthTimeoutMsDefault = 3_000;
/** The longest `--timeout-ms` accepted. */
export const healthTimeoutMsMax = 60_000;

/** A health command line that cannot be run: an unknown flag, a URL that is not http(s), a bad timeout. */
export class HealthUsageError extends KvError {
  constructor(message: string) {
    super("invalid_request", `${message} (see dynarust health --help)`);
  }
}

/** A parsed `dynarust health` command line. */
export type HealthCommand =
  | { kind: "help"; text: string }
  | {
    kind: "check";
    /** The node, e.g. `http://127.0.0.1:6660`. */
    url: string;
    timeoutMs: number;
    /** A PEM file of CA certificates to trust for an https node. */
    caPath: string | undefined;
  };

const helpLines = [
  "usage: dynarust health [URL] [--timeout-ms N] [--ca PEM]",
  "",
  "Asks the node at URL for GET /health once: exits 0 when it answers 200 (serving), 1 otherwise",
  "(starting, shutting down, unreachable, or no answer within the timeout). For container health checks.",
  "",
  `  URL                     the node (default ${healthUrlDefault}; http:// is added to a bare host:port)`,
  `  --timeout-ms N          longest wait for the answer, 1 to ${healthTimeoutMsMax} ` +
  `(default ${healthTimeoutMsDefault})`,
  "  --ca PEM                CA certificates to trust for an https node",
];

/**
 * Parses `args` (after the word `health`).
 *
 * @throws {HealthUsageError} naming the flag or argument that is wrong.
 */
export function parseHealthCommand(args: readonly string[]): HealthCommand {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...args],
      strict: true,
      allowPositionals: true,
      options: {
        help: { type: "boolean", short: "h" },
        "timeout-ms": { type: "string" },
        ca: { type: "string" },
      },
    });
  } catch (error) {
    throw new HealthUsageError(error instanceof Error ? error.message : String(error));
  }
  const { values, positionals } = parsed;
  if (values.help === true) return { kind: "help", text: helpLines.join("\n") };
  if (positionals.length > 1) throw new HealthUsageError(`unexpected argument "${positionals[1]}"`);
  const given = positionals[0] ?? healthUrlDefault;
  const url = /^[a-z][a-z0-9+.-]*:\/\//i.test(given) ? given : `http://${given}`;
  let protocol: string;
  try {
    protocol = new URL(url).protocol;
  } catch {
    throw new HealthUsageError(`"${given}" is not a URL or host:port`);
  }
  if (protocol !== "http:" && protocol !== "https:") {
    throw new HealthUsageError(`"${given}" is not an http:// or https:// URL`);
  }
  const timeoutText = values["timeout-ms"] ?? String(healthTimeoutMsDefault);
  const timeoutMs = Number(timeoutText);
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > healthTimeoutMsMax) {
    throw new HealthUsageError(
      `--timeout-ms must be an integer from 1 to ${healthTimeoutMsMax}, not ${timeoutText}`,
    );
  }
  return { kind: "check", url: url.replace(/\/+$/, ""), timeoutMs, caPath: values.ca };
}

/** The outcome of one check: whether the node serves, and one line saying what was seen. */
export interface HealthResult {
  healthy: boolean;
  message: string;
}

/**
 * Asks `url`'s `GET /health` once; never throws: every failure is an unhealthy result saying why.
 *
 * @param options.fetch the `fetch` to use (one that trusts a CA, for https); default: the platform's.
 */
export async function checkHealth(
  options: { url: string; timeoutMs: number; fetch?: typeof fetch },
): Promise<HealthResult> {
  const client = new DynaClient({
    baseUrl: options.url,
    ...(options.fetch === undefined ? {} : { fetch: options.fetch }),
  });
  const target = `${client.baseUrl}/health`;
  try {
    const body = await client.health({ signal: AbortSignal.timeout(options.timeoutMs) });
    return { healthy: true, message: `${target}: ${body.status}` };
  } catch (error) {
    if (error instanceof DynaError) return { healthy: false, message: `${target} answered ${error.message}` };
    if (error instanceof DOMException && error.name === "TimeoutError") {
      return { healthy: false, message: `${target}: no answer within ${options.timeoutMs} ms` };
    }
    return { healthy: false, message: `${target}: ${describeFailure(error)}` };
  }
}

/** `error`'s message with its causes' (fetch says "fetch failed" and nests the OS error in `cause`). */
function describeFailure(error: unknown): string {
  const messages: string[] = [];
  let current: unknown = error;
  for (let depth = 0; depth < 4 && current !== undefined; depth += 1) {
    messages.push(current instanceof Error ? current.message : String(current));
    current = current instanceof Error ? current.cause : undefined;
  }
  return messages.join(": ");
}
