/**
 * A/B of two source trees of dynarust under the same load, for changes of a few percent that this host's
 * noise hides between runs (its speed moves by up to 2× within minutes). Both nodes run at once, pinned
 * to the server CPU; wrk (on the load CPU) alternates 1-second slices between them, so both meet the same
 * spells. Prints each slice and the totals; B/A over 1.00 means B served more. An A/A run of this tree
 * against itself differs by about ±2% over 12 slices.
 *
 * Usage: `deno run -A tools/bench/ab.ts <tree A> <tree B> [get|put|put3] [slices]` (default `put 12`), e.g.
 * A a `git worktree` of the commit before a change, B this tree. `put3`: each side is a settled 3-node
 * cluster on the server CPU (the bench's `cluster` scenario), PUTs through its node 1. Two A/A runs of
 * put3 favoured the cluster started second by 8% and 15% (median slice), whatever its tree: run a put3
 * comparison both ways (A B, then B A) and take the square root of the first ratio over the second.
 *
 * `AB_V8_FLAGS_A` / `AB_V8_FLAGS_B`: V8 flags added to one side's nodes (through `DENO_V8_FLAGS`, after the
 * bench's own), to compare runtime settings such as the garbage collector's; both sides may be one tree.
 *
 * @module
 */
import { startBenchCluster } from "./cluster.ts";
import { startPreloadedNode } from "./dynarust.ts";
import { runWrk } from "./wrk.ts";

const [rootA, rootB, kindArg, slicesArg] = Deno.args;
if (rootA === undefined || rootB === undefined) {
  console.error("usage: deno run -A tools/bench/ab.ts <tree A> <tree B> [get|put] [slices]");
  Deno.exit(2);
}
const kind = kindArg ?? "put";
if (kind !== "get" && kind !== "put" && kind !== "put3") {
  throw new Error(`the load is get, put or put3, not "${kind}"`);
}
const sliceCount = Number(slicesArg ?? 12);
if (!Number.isSafeInteger(sliceCount) || sliceCount < 1) {
  throw new Error(`slices must be a count: ${slicesArg}`);
}

/** Starts the node of one tree with the keys get.lua and put.lua use, and warms it up. */
async function startSide(name: "A" | "B", root: string) {
  const flags = Deno.env.get(`AB_V8_FLAGS_${name}`) ?? "";
  const env: Record<string, string> = flags === "" ? {} : { DENO_V8_FLAGS: flags };
  if (flags !== "") console.log(`side ${name}: DENO_V8_FLAGS=${flags}`);
  const node = kind === "put3"
    ? await startBenchCluster(root, new AbortController().signal, env)
    : await startPreloadedNode({ name, root, env });
  const script = kind === "put3" ? "put.lua" : `${kind}.lua`;
  const load = { url: node.url, script, env: { BENCH_TOKEN: node.token } };
  try {
    // A cluster's first writes of each key take two rounds, and its JIT warms over thousands of writes.
    await runWrk({ ...load, secs: kind === "put3" ? 10 : 2, warmupSecs: 0 });
  } catch (error) {
    await node.stop();
    throw error;
  }
  return { load, stop: () => node.stop() };
}

/** A cluster's slice is longer: a slice starts while the other side's pipelines may still drain. */
const sliceSecs = kind === "put3" ? 3 : 1;
const sideA = await startSide("A", rootA);
const sideB = await startSide("B", rootB).catch(async (error) => {
  await sideA.stop();
  throw error;
});
try {
  let totalA = 0;
  let totalB = 0;
  const ratios: number[] = [];
  for (let slice = 1; slice <= sliceCount; slice += 1) {
    // A then B in odd slices, B then A in even ones: what one side leaves behind (a cluster's pipelines
    // still draining, a warmer cache) does not always favour the same side.
    const run = async (side: typeof sideA) =>
      (await runWrk({ ...side.load, secs: sliceSecs, warmupSecs: 0 })).requestCount;
    const [a, b] = slice % 2 === 1
      ? [await run(sideA), await run(sideB)]
      : [await run(sideB), await run(sideA)].reverse() as [number, number];
    totalA += a;
    totalB += b;
    ratios.push(b / a);
    console.log(`slice ${slice}: A ${a} B ${b} B/A ${(b / a).toFixed(3)}`);
  }
  ratios.sort((x, y) => x - y);
  const median = ratios[ratios.length >> 1]!;
  console.log(
    `${kind}: A ${totalA} B ${totalB} requests; B/A ${(totalB / totalA).toFixed(3)} in total, ` +
      `${median.toFixed(3)} by median slice`,
  );
} finally {
  await sideA.stop();
  await sideB.stop();
}
