// Goal: RequestMetrics counts every answer under its own method, route and status, also when requests of
// different series interleave (it remembers the series it counted last).
// Method: record an interleaved sequence, render it, read it back with the strict exposition reader.
import assert from "node:assert/strict";
import { RequestMetrics } from "../../../src/http/metrics.ts";
import { MetricsText } from "../../../src/util/metrics.ts";
import { parseExposition, valueOf } from "../../helpers/prometheus.ts";

Deno.test("RequestMetrics counts interleaved series each under its own labels", () => {
  const metrics = new RequestMetrics();
  const key = "/{table}/key/{key}";
  const sequence: Array<[string, string, number]> = [
    ["GET", key, 200],
    ["GET", key, 200],
    ["GET", key, 404],
    ["PUT", key, 201],
    ["GET", key, 200],
    ["GET", "/stats", 200],
    ["GET", key, 200],
    ["BREW", key, 405],
    ["PUT", key, 201],
  ];
  for (const [method, route, status] of sequence) metrics.record(method, route, status, 0);
  const text = new MetricsText();
  metrics.writeTo(text);
  const families = parseExposition(text.text());
  const count = (method: string, route: string, status: number) =>
    valueOf(families, "dynarust_http_requests_total", { method, route, status: String(status) });
  assert.equal(count("GET", key, 200), 4);
  assert.equal(count("GET", key, 404), 1);
  assert.equal(count("PUT", key, 201), 2);
  assert.equal(count("GET", "/stats", 200), 1);
  assert.equal(count("other", key, 405), 1, "an unknown method is counted as other");
  assert.deepEqual(metrics.totals(), { count: sequence.length, latencyMsTotal: 0 });
});
