// `deno task bench`: the side-by-side benchmark suite of issue #5. The suite lives in tools/bench/
// (main.ts runs it; see its module doc for the scenarios and the BENCH_* settings).
import { main } from "./bench/main.ts";

if (import.meta.main) Deno.exit(await main());
