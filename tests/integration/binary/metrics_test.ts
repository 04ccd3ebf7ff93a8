// Goal: `GET /metrics` (issue 6) gives a monitoring system what it needs, in a format Prometheus reads.
// Method: real nodes; traffic of known shape; the scrape parsed by a strict reader of the exposition rules.
import assert from "node:assert/strict";
import { NodeProcess, putValue, tokenFor } from "../../helpers/node_process.ts";
import { parseExposition, valueOf } from "../../helpers/prometheus.ts";
import { SseReader } from "../../helpers/sse_reader.ts";
import { TestCluster } from "../../helpers/test_cluster.ts";
import { waitFor } from "../../helpers/wait_for.ts";

async function scrape(node: NodeProcess) {
  const response = await node.fetch("/metrics");
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  return parseExposition(await response.text());
}

const keyRoute = "/{table}/key/{key}";

Deno.test("metrics: requests by route and status, latency, WAL batches and fsyncs, SSE, keys", async () => {
  await using node = await NodeProcess.start();
  const token = await tokenFor(node, "alice");
  const table = 'odd "table" \\ name';
  for (const index of [1, 2, 3]) {
    const response = await putValue(node, `/${encodeURIComponent(table)}/key/k${index}`, index, { token });
    assert.equal(response.status, 201);
    await response.body?.cancel();
  }
  for (const path of [`/${encodeURIComponent(table)}/key/k1`, "/t/key/absent", "/no/such/route/here"]) {
    await (await node.fetch(path)).body?.cancel();
  }
  for (const method of ["PROPFIND", "BREW"]) await (await node.fetch("/stats", { method })).body?.cancel();
  const reader = await SseReader.open(`${node.baseUrl}/t/subscribe/k`);
  const families = await scrape(node);
  const requests = (labels: Record<string, string>) =>
    valueOf(families, "dynarust_http_requests_total", labels);
  assert.equal(requests({ method: "PUT", route: keyRoute, status: "201" }), 3);
  assert.equal(requests({ method: "GET", route: keyRoute, status: "200" }), 1);
  assert.equal(requests({ method: "GET", route: keyRoute, status: "404" }), 1);
  assert.equal(requests({ method: "POST", route: "/auth/{user}", status: "201" }), 1);
  assert.equal(requests({ method: "GET", route: "other", status: "404" }), 1);
  assert.equal(
    requests({ method: "other", route: "/stats", status: "405" }),
    2,
    "unknown methods are one series",
  );
  const family = families.get("dynarust_http_requests_total")!;
  assert.ok(family.samples.every((sample) => !sample.labels.route!.includes("k1")), "no raw path in labels");
  assert.equal(valueOf(families, "dynarust_http_request_duration_seconds_count", { method: "PUT" }), 3);
  assert.ok(valueOf(families, "dynarust_http_request_duration_seconds_sum", { method: "PUT" })! > 0);
  // The user record and the three values: four records, in at least one batch, each with one fsync.
  assert.ok(valueOf(families, "dynarust_wal_batch_records_sum")! >= 4);
  const batches = valueOf(families, "dynarust_wal_batch_records_count")!;
  assert.ok(batches >= 1);
  assert.equal(valueOf(families, "dynarust_wal_fsync_duration_seconds_count"), batches);
  assert.equal(valueOf(families, "dynarust_keys", { table }), 3);
  assert.equal(valueOf(families, "dynarust_keys_all_tables"), 3, "users are not keys of a table");
  assert.equal(valueOf(families, "dynarust_sse_connections"), 1);
  assert.equal(valueOf(families, "dynarust_sse_dropped_subscribers_total"), 0);
  assert.equal(valueOf(families, "dynarust_cluster_members", { state: "alive" }), 1);
  assert.equal(valueOf(families, "dynarust_replication_backlog"), 0);
  assert.equal(valueOf(families, "dynarust_hinted_handoff_backlog"), 0);
  await reader[Symbol.asyncDispose]();
  await waitFor(async () => valueOf(await scrape(node), "dynarust_sse_connections") === 0, {
    timeoutMs: 5_000,
    what: "the closed stream to leave the gauge",
  });
});

Deno.test("metrics: gossip member states and the hinted-handoff backlog of a 3-node cluster", async () => {
  await using cluster = await TestCluster.start({ nodeCount: 3 });
  await cluster.waitConverged();
  // users live on every node: registered before the kill
  const token = await tokenFor(cluster.node(0), "bob");
  const families = await scrape(cluster.node(0));
  assert.equal(valueOf(families, "dynarust_cluster_members", { state: "alive" }), 3);
  assert.equal(valueOf(families, "dynarust_cluster_members", { state: "dead" }), 0);
  await cluster.stop(2, "SIGKILL");
  await waitFor(async () => {
    const view = await scrape(cluster.node(0));
    return valueOf(view, "dynarust_cluster_members", { state: "alive" }) === 2 &&
      valueOf(view, "dynarust_cluster_members", { state: "suspect" })! +
            valueOf(view, "dynarust_cluster_members", { state: "dead" })! === 1;
  }, { timeoutMs: 15_000, what: "the killed node to be suspect or dead in the metrics" });
  await waitFor(async () => {
    const response = await putValue(cluster.node(0), "/t/key/while-down", 1, { token });
    await response.body?.cancel();
    return response.status === 201;
  }, { timeoutMs: 15_000, what: "a write with one replica down" });
  // The key's coordinator (node 0 or 1) keeps a hint for the replica that is down.
  let hints = 0;
  for (const index of [0, 1]) {
    hints += valueOf(await scrape(cluster.node(index)), "dynarust_hinted_handoff_backlog")!;
  }
  assert.ok(hints >= 1, `a write while a replica is down leaves a hint (${hints})`);
});

Deno.test(
  "metrics: only the 100 largest tables get a series of their own; the total counts every table",
  async () => {
    await using node = await NodeProcess.start();
    const token = await tokenFor(node, "alice");
    const writes: Promise<void>[] = [];
    for (let index = 0; index < 103; index += 1) {
      const count = index < 3 ? 1 : 2; // tables 0..2 are the smallest
      for (let key = 0; key < count; key += 1) {
        writes.push(
          putValue(node, `/t${index}/key/k${key}`, key, { token }).then(async (response) => {
            assert.equal(response.status, 201);
            await response.body?.cancel();
          }),
        );
      }
    }
    await Promise.all(writes);
    const families = await scrape(node);
    const series = families.get("dynarust_keys")!.samples;
    assert.equal(series.length, 100);
    assert.ok(
      series.every((sample) => sample.value === 2),
      "the three smallest tables are the ones left out",
    );
    assert.equal(valueOf(families, "dynarust_keys_all_tables"), 3 + 2 * 100);
  },
);

/** `promtool`'s path when it runs here; undefined (and the test below skipped) when it is not installed. */
async function findPromtool(): Promise<string | undefined> {
  try {
    const output = await new Deno.Command("promtool", { args: ["--version"], stdout: "null", stderr: "null" })
      .output();
    return output.success ? "promtool" : undefined;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

const promtool = await findPromtool();
if (promtool === undefined) {
  console.log("metrics: skipping the promtool check: promtool is not installed (apt-get install prometheus)");
}

/** Runs `promtool check metrics` on `text`: its exit code and everything it printed. */
async function promtoolCheck(text: string): Promise<{ code: number; output: string }> {
  const child = new Deno.Command(promtool!, {
    args: ["check", "metrics"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const output = await child.output();
  const decoder = new TextDecoder();
  return { code: output.code, output: decoder.decode(output.stdout) + decoder.decode(output.stderr) };
}

Deno.test({
  name: "metrics: promtool check metrics accepts a scrape with build info, process figures and SSE " +
    "delivery times",
  ignore: promtool === undefined,
  fn: async () => {
    const { stdout: versionLine } = await NodeProcess.runToExit(["--version"]);
    await using node = await NodeProcess.start();
    const token = await tokenFor(node, "alice");
    await using keyReader = await SseReader.open(`${node.baseUrl}/t/subscribe/k`);
    await using tableReader = await SseReader.open(`${node.baseUrl}/t/subscribe`);
    for (const [key, value] of [["k", 1], ["other", 2], ["k", 3], ["other", 4], ["k", 5]] as const) {
      const response = await putValue(node, `/t/key/${key}`, value, { token });
      assert.equal(response.status, 201);
      await response.body?.cancel();
    }
    // Three changes of t/k to its key stream, all five to the table stream.
    let delivered = 0;
    for (const [reader, count] of [[keyReader, 3], [tableReader, 5]] as const) {
      for (let index = 0; index < count; index += 1) {
        assert.equal((await reader.nextEvent()).data.event, "Updated");
        delivered += 1;
      }
    }
    const response = await node.fetch("/metrics");
    const text = await response.text();
    const check = await promtoolCheck(text);
    assert.deepEqual(check, { code: 0, output: "" }, "promtool check metrics has no complaint");

    const families = parseExposition(text);
    const version = /^dynarust (\S+)$/m.exec(versionLine)?.[1];
    assert.ok(version !== undefined, `--version printed ${versionLine}`);
    assert.equal(valueOf(families, "dynarust_build_info", { version }), 1);
    assert.equal(valueOf(families, "dynarust_sse_event_delivery_seconds_count"), delivered);
    assert.ok(valueOf(families, "dynarust_sse_event_delivery_seconds_sum")! >= 0);
    const resident = valueOf(families, "process_resident_memory_bytes")!;
    const open = valueOf(families, "process_open_fds")!;
    const max = valueOf(families, "process_max_fds")!;
    const started = valueOf(families, "process_start_time_seconds")!;
    assert.ok(resident > 1 << 20, `RSS ${resident} bytes`);
    assert.ok(open >= 1, `${open} open descriptors`);
    assert.ok(max >= open, `limit ${max} >= ${open} open descriptors`);
    assert.ok(valueOf(families, "process_cpu_seconds_total")! > 0);
    const nowSeconds = Date.now() / 1000;
    // /proc/stat's boot time is whole seconds: a second or two of slack on the side of the future.
    assert.ok(
      started > nowSeconds - 3600 && started < nowSeconds + 2,
      `started at ${started}, now ${nowSeconds}`,
    );
  },
});
