// Goal: `deno task test` (tools/test.ts) ends with the totals of the whole run, read from each step's deno
// test summary exactly, a step without a summary counting as a failure.
// Method: the summary reader on deno test's real summary shapes (coloured, with steps, failed), and the
// totals line over several steps. The task itself runs in `.ci/run`, whose last line it must match.
import assert from "node:assert/strict";
import { summaryOf, totalsLine } from "../../../tools/test.ts";

Deno.test("summaryOf() reads deno test's summary line, coloured or not, with steps or failures", () => {
  assert.deepEqual(summaryOf("x\nok | 12 passed | 0 failed (4s)\n"), { passed: 12, failed: 0 });
  assert.deepEqual(summaryOf("ok | 12 passed (3 steps) | 0 failed (4s)"), { passed: 12, failed: 0 });
  assert.deepEqual(summaryOf("FAILED | 10 passed | 2 failed (5s)\n\nerror: Test failed"), {
    passed: 10,
    failed: 2,
  });
  const coloured = "\x1b[0m\x1b[32mok\x1b[0m | 857 passed | 0 failed \x1b[0m\x1b[38;5;245m(9m)\x1b[0m\n";
  assert.deepEqual(summaryOf(coloured), { passed: 857, failed: 0 });
  // The last summary counts (a test's own output may quote one earlier).
  assert.deepEqual(summaryOf("ok | 1 passed | 0 failed\nFAILED | 3 passed | 1 failed"), {
    passed: 3,
    failed: 1,
  });
  assert.equal(summaryOf("error: Module not found"), undefined);
  assert.equal(summaryOf("ok | twelve passed | 0 failed"), undefined);
});

Deno.test("totalsLine() adds every step", () => {
  assert.equal(totalsLine([{ passed: 857, failed: 0 }, { passed: 1, failed: 0 }]), "858 passed, 0 failed");
  assert.equal(totalsLine([{ passed: 3, failed: 2 }, { passed: 0, failed: 1 }]), "3 passed, 3 failed");
  assert.equal(totalsLine([]), "0 passed, 0 failed");
});
