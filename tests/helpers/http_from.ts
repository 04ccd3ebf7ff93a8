/**
 * One HTTP/1.1 request over a TCP connection made from a chosen local loopback address (127.0.0.2, ...),
 * so a test can act as several clients of a node that listens on 127.0.0.1: the node sees each source
 * address as a different client (rate limits per address). `fetch` cannot choose the source address.
 */
import net from "node:net";
import { concatBytes } from "../../src/util/bytes.ts";

/** A parsed answer of {@linkcode requestFrom}. */
export interface AnswerFrom {
  status: number;
  /** Header names lower-cased. */
  headers: Map<string, string>;
  body: string;
}

/**
 * Sends `method path` with a JSON `body` to `baseUrl` (http only) from `localAddress`; `Connection: close`.
 */
export function requestFrom(
  localAddress: string,
  request: { baseUrl: string; method: string; path: string; body?: string },
): Promise<AnswerFrom> {
  const url = new URL(request.baseUrl);
  const body = new TextEncoder().encode(request.body ?? "");
  const head = `${request.method} ${request.path} HTTP/1.1\r\nHost: ${url.host}\r\n` +
    `Content-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`;
  return new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    const socket = net.connect({ host: url.hostname, port: Number(url.port), localAddress });
    socket.setTimeout(30_000, () => socket.destroy(new Error("no answer within 30 s")));
    // Not `end()`: a client that half-closes after its body gets a 500 from Deno's server (BadResource
    // reading the body); `Connection: close` makes the node close once it answered.
    socket.on("connect", () => socket.write(concatBytes([new TextEncoder().encode(head), body])));
    socket.on("data", (chunk: Uint8Array) => chunks.push(chunk));
    socket.on("error", reject);
    socket.on("close", () => {
      try {
        resolve(parseAnswer(new TextDecoder().decode(concatBytes(chunks))));
      } catch (error) {
        reject(error);
      }
    });
  });
}

function parseAnswer(text: string): AnswerFrom {
  const split = text.indexOf("\r\n\r\n");
  if (split === -1) throw new Error(`not an HTTP answer: ${text.slice(0, 200)}`);
  const [statusLine = "", ...lines] = text.slice(0, split).split("\r\n");
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine)?.[1]);
  if (!Number.isInteger(status)) throw new Error(`bad status line: ${statusLine}`);
  const headers = new Map<string, string>();
  for (const line of lines) {
    const colon = line.indexOf(":");
    headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  let body = text.slice(split + 4);
  if (headers.get("transfer-encoding") === "chunked") body = unchunk(body);
  return { status, headers, body };
}

function unchunk(text: string): string {
  let body = "";
  let rest = text;
  for (;;) {
    const lineEnd = rest.indexOf("\r\n");
    const size = parseInt(rest.slice(0, lineEnd), 16);
    if (!(size > 0)) return body;
    // Sizes count bytes; the bodies here are ASCII JSON, so characters and bytes agree.
    body += rest.slice(lineEnd + 2, lineEnd + 2 + size);
    rest = rest.slice(lineEnd + 2 + size + 2);
  }
}
