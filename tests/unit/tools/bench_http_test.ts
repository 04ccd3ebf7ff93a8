import assert from "node:assert/strict";
import { formatShortfall, pairedRatio } from "../../../tools/bench/http.ts";

Deno.test("bench http: a fast spell that favoured one run of the baseline does not decide the ratio", () => {
  // The figure makes 0.84–0.86× of the baseline in three rounds; in round 2 a fast spell lifted the
  // baseline's run alone. Best round against best round would say 86 / 120 = 0.72×.
  const figure = { roundRates: [85, 86, 85, 84] };
  const baseline = { roundRates: [100, 120, 100, 100] };
  assert.equal(pairedRatio(figure, baseline), (0.84 + 0.85) / 2);
});

Deno.test("bench http: an odd number of rounds gives the middle round's ratio", () => {
  assert.equal(pairedRatio({ roundRates: [80, 40, 82] }, { roundRates: [100, 100, 100] }), 0.8);
  assert.equal(pairedRatio({ roundRates: [50] }, { roundRates: [100] }), 0.5);
});

Deno.test("bench http: a baseline's shortfall is rounded down, so it never reads as the target", () => {
  assert.equal(formatShortfall(0.3996), "0.39×");
  assert.equal(formatShortfall(2.999), "2.99×");
  assert.equal(formatShortfall(0.78), "0.78×");
  assert.equal(formatShortfall(0.29), "0.29×");
});
