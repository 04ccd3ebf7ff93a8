import assert from "node:assert/strict";
import { Report } from "../../../tools/bench/report.ts";

const common = { figure: "f", target: "t", value: 1, unit: "×" };

Deno.test("bench report: a target missed while the run's own baseline misses it is out of reach", () => {
  const report = new Report();
  report.check({ ...common, scenario: "missed", met: false });
  report.check({ ...common, scenario: "limit", met: false, outOfReach: "the limit itself: 0.36×" });
  report.check({ ...common, scenario: "met", met: true, outOfReach: "ignored when met" });
  assert.deepEqual(report.rows.map((row) => row.met), [
    "NO",
    "no: out of reach, the limit itself: 0.36×",
    "yes",
  ]);
  assert.deepEqual(report.targets.map((target) => target.outOfReach), [
    undefined,
    "the limit itself: 0.36×",
    undefined,
  ]);
  assert.deepEqual(report.targets.map((target) => target.met), [false, false, true]);
  assert.match(report.markdown(), /\| no: out of reach, the limit itself: 0\.36× \|$/m);
});
