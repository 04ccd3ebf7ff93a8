// Goal: issue 19 item 5, SPEC §5 and §4b under a Jepsen-style nemesis: no acknowledged write is ever lost
// or acknowledged twice, refused writes never take effect, replicas converge, every subscriber sees each
// key's committed versions as an unbroken run of prefixes of the final history, and no node exits
// unexpectedly.
// Method: five node processes behind per-node TCP proxies; clients doing compare-and-set appends through
// random nodes, recording every attempt; a seeded nemesis (kill -9, SIGSTOP, SIGTERM, a sixth node joining
// and leaving, partitions by group, one-way, bridge and ring); then heal, converge and check exactly.
// README.md in this folder tells how to run, replay and read the report.
import assert from "node:assert/strict";
import { chaosConfigsFromEnv, replayLine } from "./config.ts";
import { runChaos } from "./run.ts";

for (const config of chaosConfigsFromEnv((name) => Deno.env.get(name))) {
  const faults = config.kinds.length === 0 ? "without faults" : `nemesis ${config.kinds.length} kinds`;
  const name = `chaos: seed ${config.seed}, ${config.nemesisSecs} s, ${faults}: nothing acknowledged is lost`;
  Deno.test(name, async () => {
    console.log(`replay: ${replayLine(config)}`);
    const result = await runChaos(config, (line) => console.log(line));
    console.log(result.report);
    assert.equal(
      result.failures.length,
      0,
      `${result.failures.length} failures (listed above), ${result.lostCount} of ` +
        `${result.acknowledgedCount} acknowledged writes lost; replay: ${replayLine(config)}`,
    );
  });
}
