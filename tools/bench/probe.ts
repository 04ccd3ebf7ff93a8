// Two floors of this machine, each printed as one JSON line of latency quantiles in ms:
//   fsync <dir> — one 300-byte append + fdatasync, 300 times a second (what one durable write waits for);
//   rtt         — one small POST round trip between two Deno processes over loopback (one hop between nodes).
// Usage: deno run -A tools/bench/probe.ts fsync <dir> | rtt
import { summarize } from "./lib.ts";

const sampleCount = 1_500;
const pauseMs = 3;

const pause = () => new Promise((resolve) => setTimeout(resolve, pauseMs));

async function probeFsync(dir: string): Promise<number[]> {
  const path = `${dir}/probe.dat`;
  const file = await Deno.open(path, { create: true, write: true, append: true });
  const record = new Uint8Array(300).fill(97);
  const samples: number[] = [];
  try {
    for (let index = 0; index < sampleCount; index += 1) {
      const startedMs = performance.now();
      file.writeSync(record);
      await file.syncData();
      samples.push(performance.now() - startedMs);
      await pause();
    }
  } finally {
    file.close();
    await Deno.remove(path);
  }
  return samples;
}

/** The server runs in a child process, so each hop crosses processes as it does between nodes. */
async function probeRoundTrip(): Promise<number[]> {
  const server = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL(import.meta.url).pathname, "serve"],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = server.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let banner = "";
  while (!banner.includes("\n")) {
    const { done, value } = await reader.read();
    if (done) throw new Error("the probe server did not start");
    banner += value;
  }
  const url = banner.trim();
  const samples: number[] = [];
  try {
    for (let index = 0; index < sampleCount; index += 1) {
      const startedMs = performance.now();
      const response = await fetch(url, { method: "POST", body: '{"table":"t","key":"k"}' });
      await response.text();
      samples.push(performance.now() - startedMs);
      await pause();
    }
  } finally {
    server.kill("SIGTERM");
    await server.status;
    await reader.cancel();
  }
  return samples;
}

const [mode, dir] = Deno.args;
if (mode === "serve") {
  Deno.serve(
    {
      hostname: "127.0.0.1",
      port: 0,
      onListen: ({ port }) => console.log(`http://127.0.0.1:${port}/probe`),
    },
    async (request) =>
      new Response(await request.text(), { headers: { "content-type": "application/json" } }),
  );
} else if (mode === "fsync" && dir !== undefined) {
  console.log(JSON.stringify({ probe: "fsync", ...summarize(await probeFsync(dir)) }));
} else if (mode === "rtt") {
  console.log(JSON.stringify({ probe: "rtt", ...summarize(await probeRoundTrip()) }));
} else {
  console.error("usage: probe.ts fsync <dir> | rtt");
  Deno.exit(2);
}
