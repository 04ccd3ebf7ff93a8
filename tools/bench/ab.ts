/**
 * A/B of two source trees of dynarust under the same load, for changes of a few percent that this host's
 * noise hides between runs (its speed moves by up to 2× within minutes). Both nodes run at once, pinned
 * to the server CPU; wrk (on the load CPU) alternates 1-second slices between them, so both meet the same
 * spells. Prints each slice and the totals; B/A over 1.00 means B served more. An A/A run of this tree
 * against itself differs by about ±2% over 12 slices.
 *
 * Usage: `deno run -A tools/bench/ab.ts <tree A> <tree B> [get|put] [slices]` (default `put 12`), e.g.
 * A a `git worktree` of the commit before a change, B this tree.
 *
 * @module
 */
import { startPreloadedNode } from "./dynarust.ts";
import { runWrk } from "./wrk.ts";

const [rootA, rootB, kindArg, slicesArg] = Deno.args;
if (rootA === undefined || rootB === undefined) {
  console.error("usage: deno run -A tools/bench/ab.ts <tree A> <tree B> [get|put] [slices]");
  Deno.exit(2);
}
const kind = kindArg ?? "put";
if (kind !== "get" && kind !== "put") throw new Error(`the load is get or put, not "${kind}"`);
const sliceCount = Number(slicesArg ?? 12);
if (!Number.isSafeInteger(sliceCount) || sliceCount < 1) {
  throw new Error(`slices must be a count: ${slicesArg}`);
}

/** Starts the node of one tree with the keys get.lua and put.lua use, and warms it up. */
async function startSide(name: string, root: string) {
  const node = await startPreloadedNode({ name, root });
  const load = { url: node.url, script: `${kind}.lua`, env: { BENCH_TOKEN: node.token } };
  try {
    await runWrk({ ...load, secs: 2, warmupSecs: 0 });
  } catch (error) {
    await node.stop();
    throw error;
  }
  return { load, stop: () => node.stop() };
}

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
    const a = (await runWrk({ ...sideA.load, secs: 1, warmupSecs: 0 })).requestCount;
    const b = (await runWrk({ ...sideB.load, secs: 1, warmupSecs: 0 })).requestCount;
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
