/**
 * A/B of two source trees' 3-node write path inside one process, for changes of the consensus and store
 * code whose few percent `bench:ab put3` cannot resolve. Each tree's `FakeCluster` (the cluster unit tests'
 * harness: three real Stores on an in-memory file system, a transport that round-trips every message through
 * JSON, no HTTP, no fsync) takes 64 concurrent PUTs through its node A; the two trees alternate rounds of
 * 10,000 writes in the same process, so both meet the same spells of the host. Prints µs per write (the
 * three nodes' work on one thread) and the median ratio; A/B over 1.00 means B is faster. An A/A run of one
 * tree against itself gave 0.99 and 1.02 (6 and 8 rounds). What it leaves out (HTTP, fetch, fsync), the
 * put3 A/B of `ab.ts` covers.
 *
 * Usage: `deno task bench:ab-inproc <tree A> <tree B> [rounds]` (default 10), each tree a checkout that has
 * `tests/unit/cluster/fake_cluster.ts`. `PROFILE=<file.cpuprofile>` writes a CPU profile of the measured
 * rounds (open it in Chrome's DevTools): each tree's functions appear under its own path.
 *
 * @module
 */
import { Session } from "node:inspector/promises";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

/** The write a client sends, as the harness's replicator takes it. */
interface Write {
  op: "put";
  table: string;
  key: string;
  value: unknown;
  conditions: { owner: string };
}

interface Harness {
  FakeCluster: {
    start(): Promise<
      AsyncDisposable & { node(id: string): { replicator: { write(write: Write): Promise<unknown> } } }
    >;
  };
  nodeA: string;
}

const [rootA, rootB, roundsArg] = Deno.args;
if (rootA === undefined || rootB === undefined) {
  console.error("usage: deno task bench:ab-inproc <tree A> <tree B> [rounds]");
  Deno.exit(2);
}
const rounds = Number(roundsArg ?? 10);
if (!Number.isSafeInteger(rounds) || rounds < 1) throw new Error(`rounds must be a count: ${roundsArg}`);

async function load(root: string): Promise<Harness> {
  const url = pathToFileURL(resolve(root, "tests/unit/cluster/fake_cluster.ts"));
  return await import(url.href) as Harness;
}

const harnessA = await load(rootA);
const harnessB = await load(rootB);
await using clusterA = await harnessA.FakeCluster.start();
await using clusterB = await harnessB.FakeCluster.start();

/** µs per write of `writes` PUTs of 1,000 keys through node A, 64 at a time. */
async function measure(harness: Harness, cluster: Awaited<ReturnType<Harness["FakeCluster"]["start"]>>) {
  const { replicator } = cluster.node(harness.nodeA);
  const writes = 10_000;
  let next = 0;
  const writer = async () => {
    while (next < writes) {
      const index = next++;
      const value = { n: index, s: "hello" };
      await replicator.write({
        op: "put",
        table: "t",
        key: `k${index % 1000}`,
        value,
        conditions: { owner: "bench" },
      });
    }
  };
  const startMs = performance.now();
  await Promise.all(Array.from({ length: 64 }, writer));
  return (performance.now() - startMs) * 1000 / writes;
}

// Warm-up: each key's first write takes two rounds, and the JIT warms over thousands of writes.
for (let index = 0; index < 2; index += 1) {
  await measure(harnessA, clusterA);
  await measure(harnessB, clusterB);
}
const profileFile = Deno.env.get("PROFILE");
const session = profileFile === undefined ? undefined : new Session();
if (session !== undefined) {
  session.connect();
  await session.post("Profiler.enable");
  await session.post("Profiler.start");
}
const ratios: number[] = [];
for (let round = 0; round < rounds; round += 1) {
  // Alternate which side goes first, so neither always follows the other's garbage.
  const bFirst = round % 2 === 1;
  const usB1 = bFirst ? await measure(harnessB, clusterB) : 0;
  const usA = await measure(harnessA, clusterA);
  const usB = bFirst ? usB1 : await measure(harnessB, clusterB);
  ratios.push(usA / usB);
  console.log(
    `round ${round + 1}: A ${usA.toFixed(1)} B ${usB.toFixed(1)} µs/write, A/B ${(usA / usB).toFixed(3)}`,
  );
}
if (session !== undefined && profileFile !== undefined) {
  const { profile } = await session.post("Profiler.stop");
  await Deno.writeTextFile(profileFile, JSON.stringify(profile));
  console.log(`CPU profile written to ${profileFile}`);
}
ratios.sort((left, right) => left - right);
console.log(
  `inproc3: A/B ${ratios[Math.floor(ratios.length / 2)]!.toFixed(3)} by median round (over 1: B is faster)`,
);
