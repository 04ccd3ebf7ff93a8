// Goal: the presets keep their documented relations, and suspicionTimeoutMs follows its formula.
// Method: compute the values and DESIGN.md's detection arithmetic.
import assert from "node:assert/strict";
import {
  assertClusterConfig,
  lanClusterConfig,
  localTestClusterConfig,
  suspicionTimeoutMs,
} from "../../../src/cluster/mod.ts";
import { AssertionError } from "../../../src/util/assert.ts";

const secret = "presets-test-secret-0123456789abcdef";

Deno.test(
  "suspicionTimeoutMs() is suspicionMult * max(1, log10(n + 1)) * probeIntervalMs, at least 2 " +
    "intervals",
  () => {
    const lan = lanClusterConfig(secret);
    assert.equal(suspicionTimeoutMs(lan, 0), 1_500);
    assert.equal(suspicionTimeoutMs(lan, 5), 1_500);
    assert.equal(suspicionTimeoutMs(lan, 9), 1_500);
    assert.equal(suspicionTimeoutMs(lan, 99), 3_000);
    assert.equal(suspicionTimeoutMs(lan, 20), Math.ceil(3 * Math.log10(21) * 500));
    assert.equal(suspicionTimeoutMs(localTestClusterConfig(secret), 5), 400);
    assert.equal(suspicionTimeoutMs({ ...lan, suspicionMult: 1 }, 5), 1_000, "floor of 2 intervals");
  },
);

Deno.test("lanClusterConfig() marks a dead member of a 5-node cluster dead within 5 s (DESIGN.md)", () => {
  const lan = lanClusterConfig(secret);
  assertClusterConfig(lan);
  const memberCount = 5;
  // Worst case: the failure just after a probe; the prober's order cycles every n - 1 rounds.
  const firstProbeMs = (memberCount - 1) * lan.probeIntervalMs;
  // Direct ping, then ping-req with twice the probe timeout.
  const probeMs = lan.probeTimeoutMs + 2 * lan.probeTimeoutMs;
  const suspicionMs = suspicionTimeoutMs(lan, memberCount);
  // The round ran over; the next ones start at once and every interval; expiry is checked at each start.
  const expiryMs = Math.ceil(suspicionMs / lan.probeIntervalMs) * lan.probeIntervalMs;
  assert.equal(firstProbeMs + probeMs + expiryMs, 4_400);
  assert.ok(firstProbeMs + probeMs + expiryMs <= 5_000);
});

Deno.test("localTestClusterConfig() keeps the LAN settings it does not shorten and passes the checks", () => {
  const local = localTestClusterConfig(secret);
  assertClusterConfig(local);
  assert.equal(local.secret, secret);
  assert.equal(local.probeIntervalMs, 200);
  assert.equal(local.probeTimeoutMs, 150);
  assert.equal(local.replicationFactor, lanClusterConfig(secret).replicationFactor);
  assert.equal(local.indirectProbeCount, 3);
});

Deno.test("assertClusterConfig() refuses a probe timeout not under the interval", () => {
  const lan = lanClusterConfig(secret);
  assert.throws(() => assertClusterConfig({ ...lan, probeTimeoutMs: 500 }), AssertionError);
  assert.throws(() => assertClusterConfig({ ...lan, virtualNodeCount: 0 }), AssertionError);
  assert.throws(() => assertClusterConfig({ ...lan, secret: "" }), AssertionError);
});
