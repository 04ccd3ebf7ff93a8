// The floor of a 3-node write → read elsewhere on this machine: three bare `Deno.serve` processes with
// dynarust's write path and nothing else. A client's PUT on any node goes to the key's coordinator (hash of
// the key, mod 3), forwarded when that is another node; the coordinator appends the value to its log with
// group commit and, at the same time, sends it to the two others, which append it, sync and keep it in a
// Map; it answers 201 once its own sync and one other node's are done. A GET answers 200 once the node
// holds the key. No authentication, no encryption, no checks, no events, no membership.
// Usage: deno run -A tools/bench/cluster_baseline.ts <self index> <data dir> <port 0> <port 1> <port 2>
import { hashText } from "../../src/cluster/ring.ts";
import { GroupCommitLog } from "./group_commit.ts";

const self = Number(Deno.args[0]);
const dataDir = Deno.args[1]!;
const ports = Deno.args.slice(2, 5).map(Number);
const urls = ports.map((port) => `http://127.0.0.1:${port}`);
const log = await GroupCommitLog.open(`${dataDir}/log`);
const values = new Map<string, string>();
/** What a write answers, as dynarust's 201 does: the new version. */
const created = JSON.stringify({ version: 1 });

function coordinatorOf(key: string): number {
  return hashText(key) % urls.length;
}

async function store(key: string, text: string): Promise<void> {
  await log.append(`${key}\t${text}\n`);
  values.set(key, text);
}

async function send(target: number, path: string, text: string): Promise<Response> {
  const response = await fetch(`${urls[target]}${path}`, { method: "POST", body: text });
  await response.arrayBuffer();
  return response;
}

/** Local sync and the other nodes' at once; done when ours and one of theirs are. */
async function coordinate(key: string, text: string): Promise<Response> {
  const others = urls.map((_, index) => index).filter((index) => index !== self);
  const acknowledged = Promise.any(others.map((index) => send(index, `/apply/x/${key}`, text)));
  await Promise.all([store(key, text), acknowledged]);
  return new Response(created, { status: 201 });
}

Deno.serve({
  hostname: "127.0.0.1",
  port: ports[self]!,
  onListen: () => console.log(`listening on ${urls[self]}`),
}, async (request) => {
  const [, first, second, key] = new URL(request.url).pathname.split("/");
  if (key === undefined) return new Response(null, { status: 404 });
  if (request.method === "GET") {
    const text = values.get(key);
    return new Response(text ?? null, { status: text === undefined ? 404 : 200 });
  }
  const text = await request.text();
  if (first === "apply") {
    await store(key, text);
    return new Response(null, { status: 200 });
  }
  if (first === "write") return await coordinate(key, text);
  if (second !== "key") return new Response(null, { status: 404 });
  const coordinator = coordinatorOf(key);
  if (coordinator === self) return await coordinate(key, text);
  const answer = await send(coordinator, `/write/x/${key}`, text);
  return new Response(created, { status: answer.status });
});
