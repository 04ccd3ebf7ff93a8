import assert from "node:assert/strict";
import { countBounds, Histogram, MetricsText } from "../../../src/util/metrics.ts";
import { parseExposition, valueOf } from "../../helpers/prometheus.ts";

Deno.test("Histogram counts a value into the first bucket whose bound it does not pass", () => {
  const histogram = new Histogram([1, 2, 4]);
  for (const value of [0, 1, 1.5, 2, 3, 4, 5, 100]) histogram.observe(value);
  assert.deepEqual(histogram.cumulative(), [2, 4, 6, 8]);
  assert.equal(histogram.count, 8);
  assert.equal(histogram.sum, 116.5);
  assert.throws(() => new Histogram([2, 1]));
});

Deno.test("MetricsText writes an exposition a strict reader accepts, label values escaped", () => {
  const latency = new Histogram([0.5, 1]);
  latency.observe(0.2);
  latency.observe(0.7);
  latency.observe(9);
  const batch = new Histogram(countBounds);
  const text = new MetricsText()
    .counter("demo_requests_total", "Requests\nwith a \\ in help.", [
      [{ route: 'a "quoted" \\ back\nslash', status: 200 }, 3],
      [{ route: "/plain", status: 404 }, 1],
    ])
    .gauge("demo_open", "Open things.", [[{}, 7]])
    .histogram("demo_seconds", "Latency.", [[{ route: "/x" }, latency], [{ route: "/y" }, batch]])
    .text();
  const families = parseExposition(text);
  assert.equal(families.get("demo_requests_total")?.help, "Requests\nwith a \\ in help.");
  assert.equal(valueOf(families, "demo_requests_total", { route: 'a "quoted" \\ back\nslash' }), 3);
  assert.equal(valueOf(families, "demo_open"), 7);
  assert.equal(valueOf(families, "demo_seconds_bucket", { route: "/x", le: "0.5" }), 1);
  assert.equal(valueOf(families, "demo_seconds_bucket", { route: "/x", le: "1" }), 2);
  assert.equal(valueOf(families, "demo_seconds_bucket", { route: "/x", le: "+Inf" }), 3);
  assert.equal(valueOf(families, "demo_seconds_count", { route: "/y" }), 0);
  assert.equal(families.get("demo_seconds")?.type, "histogram");
});

Deno.test(
  "MetricsText refuses what would break the format: a counter not named _total, a family twice",
  () => {
    assert.throws(() => new MetricsText().counter("demo_requests", "x", []));
    assert.throws(() => new MetricsText().gauge("a", "x", []).gauge("a", "x", []));
    assert.throws(() => new MetricsText().gauge("a-b", "x", []));
    assert.throws(() => new MetricsText().gauge("a", "x", [[{ "bad-label": 1 }, 1]]));
  },
);

Deno.test(
  "parseExposition() refuses what a scraper would: a sample without TYPE, bad escapes, split families",
  () => {
    assert.throws(() => parseExposition("loose 1\n"));
    assert.throws(() => parseExposition('# TYPE a gauge\na{l="\\x"} 1\n'));
    assert.throws(() => parseExposition('# TYPE a gauge\n# TYPE b gauge\na 1\nb 1\na{x="1"} 2\n'));
    assert.throws(() => parseExposition('# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 3\n'));
    assert.throws(() => parseExposition("# TYPE a gauge\na 1"));
  },
);

Deno.test("Histogram.observeMany() counts one value n times, as n observe() calls would", () => {
  const many = new Histogram([1, 2, 4]);
  const single = new Histogram([1, 2, 4]);
  many.observeMany(1.5, 3);
  many.observeMany(5, 1);
  for (const value of [1.5, 1.5, 1.5, 5]) single.observe(value);
  assert.deepEqual(many.cumulative(), single.cumulative());
  assert.equal(many.count, 4);
  assert.equal(many.sum, single.sum);
  assert.throws(() => many.observeMany(1, 0));
  assert.throws(() => many.observeMany(1, 1.5));
});
