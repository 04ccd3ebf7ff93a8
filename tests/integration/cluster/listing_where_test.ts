// Goal: `GET /{table}/store?where=` and `/keys?where=` (SPEC §3, filters of src/filter/) answer exactly the
// matching records in key order, page with `limit` (counting matches) and `after`, refuse a malformed
// filter with 400 `invalid_request` before answering anything (an unknown table stays 404), on one node
// and on every node of a 3-node cluster whose writes went through different nodes.
// Method: real nodes in this process (InProcessCluster), plain fetch on 127.0.0.1; expected key sets are
// written out by hand from the records below.
import assert from "node:assert/strict";
import { InProcessCluster } from "../../helpers/in_process_cluster.ts";
import { waitFor } from "../../helpers/wait_for.ts";

const records: Record<string, { owner: "alice" | "bob"; value: unknown }> = {
  ann: { owner: "alice", value: { age: 30, name: "Ann", tags: ["admin", "dev"], city: "Oslo" } },
  bob: { owner: "bob", value: { age: 17, name: "Bob", tags: ["dev"] } },
  cid: { owner: "alice", value: { age: "30", name: "Cid", tags: [] } },
  dee: { owner: "bob", value: { age: 41, name: "Dee", city: "Bergen", meta: { vip: true } } },
  eve: { owner: "alice", value: { age: 25, name: "Eve", meta: { vip: false } } },
  "user:fay": { owner: "bob", value: 7 },
  "user:gus": { owner: "alice", value: { age: 30, name: "Gus" } },
};

/** Filters and the keys each matches, in key order. */
const expectations: Array<[unknown, string[]]> = [
  [{ age: 30 }, ["ann", "user:gus"]],
  [{ age: { $gte: 25, $lt: 41 } }, ["ann", "eve", "user:gus"]],
  [{ age: { $gt: "2" } }, ["cid"]],
  [{ $owner: "bob" }, ["bob", "dee", "user:fay"]],
  [{ $key: { $prefix: "user:" } }, ["user:fay", "user:gus"]],
  [{ "tags.0": "dev" }, ["bob"]],
  [{ tags: ["admin", "dev"] }, ["ann"]],
  [{ "meta.vip": true }, ["dee"]],
  [{ city: { $exists: false } }, ["bob", "cid", "eve", "user:fay", "user:gus"]],
  [{ city: { $ne: "Oslo" } }, ["bob", "cid", "dee", "eve", "user:fay", "user:gus"]],
  [{ name: { $in: ["Bob", "Eve", "Zed"] } }, ["bob", "eve"]],
  [{ name: { $nin: ["Bob", "Eve"] }, $owner: "alice" }, ["ann", "cid", "user:gus"]],
  [{ $or: [{ city: "Bergen" }, { age: { $lt: 20 } }] }, ["bob", "dee"]],
  [{ $owner: "alice", $or: [{ age: 30 }, { "meta.vip": false }] }, ["ann", "eve", "user:gus"]],
  [{ name: { $prefix: "Q" } }, []],
];

const malformed: Array<[string, string]> = [
  ["not json", "where is not JSON"],
  ["{}", "empty object"],
  ['{"$foo":1}', 'unknown operator "$foo"'],
  ['{"age":{"$gt":{}}}', 'field "age": operator "$gt" needs a number or string, got object'],
  ['{"a":{"$in":[]}}', "got an empty array"],
  ['{"a":{"$exists":"yes"}}', '"$exists" needs true or false'],
  ['{"a":{"$prefix":1}}', '"$prefix" needs a string'],
  [JSON.stringify({ a: "x".repeat(5_000) }), "bytes, the limit is 4096"],
];

async function seed(cluster: InProcessCluster): Promise<void> {
  const tokens: Record<string, string> = {};
  for (const user of ["alice", "bob"]) {
    const response = await cluster.fetch(0, `/auth/${user}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ secret: `${user}-secret` }),
    });
    assert.equal(response.status, 201);
    tokens[user] = (await response.json()).token;
  }
  const nodes = cluster.running();
  let index = 0;
  for (const [key, { owner, value }] of Object.entries(records)) {
    const node = nodes[index % nodes.length]!;
    index += 1;
    const response = await cluster.fetch(node, `/people/key/${encodeURIComponent(key)}`, {
      method: "PUT",
      headers: { authorization: `Bearer ${tokens[owner]}`, "content-type": "application/json" },
      body: JSON.stringify({ value }),
    });
    assert.equal(response.status, 201, await response.text());
  }
}

function whereQuery(where: unknown, extra = ""): string {
  return `?where=${encodeURIComponent(typeof where === "string" ? where : JSON.stringify(where))}${extra}`;
}

async function keysOf(
  cluster: InProcessCluster,
  node: number,
  where: unknown,
  extra = "",
): Promise<string[]> {
  const response = await cluster.fetch(node, `/people/keys${whereQuery(where, extra)}`);
  assert.equal(response.status, 200, `keys ${JSON.stringify(where)}`);
  return await response.json();
}

async function storeOf(
  cluster: InProcessCluster,
  node: number,
  where: unknown,
  extra = "",
): Promise<Record<string, { value: unknown; owner: string }>> {
  const response = await cluster.fetch(node, `/people/store${whereQuery(where, extra)}`);
  assert.equal(response.status, 200, `store ${JSON.stringify(where)}`);
  return await response.json();
}

async function checkFilters(cluster: InProcessCluster, node: number): Promise<void> {
  for (const [where, expected] of expectations) {
    const label = `node ${node} where=${JSON.stringify(where)}`;
    assert.deepEqual(await keysOf(cluster, node, where), expected, `/keys ${label}`);
    const store = await storeOf(cluster, node, where);
    assert.deepEqual(Object.keys(store), expected, `/store ${label}`);
    for (const key of expected) {
      assert.deepEqual(store[key]!.value, records[key]!.value, label);
      assert.equal(store[key]!.owner, records[key]!.owner, label);
    }
  }
}

async function checkPaging(cluster: InProcessCluster, node: number): Promise<void> {
  const alice = { $owner: "alice" }; // ann, cid, eve, user:gus
  assert.deepEqual(await keysOf(cluster, node, alice, "&limit=2"), ["ann", "cid"], "limit counts matches");
  assert.deepEqual(await keysOf(cluster, node, alice, "&limit=2&after=cid"), ["eve", "user:gus"]);
  assert.deepEqual(await keysOf(cluster, node, alice, "&limit=2&after=eve"), ["user:gus"]);
  assert.deepEqual(await keysOf(cluster, node, alice, "&after=user%3Agus"), []);
  assert.deepEqual(await keysOf(cluster, node, alice, "&after=bob&limit=1"), ["cid"], "after a non-match");
  const page = await storeOf(cluster, node, alice, "&limit=3&after=ann");
  assert.deepEqual(Object.keys(page), ["cid", "eve", "user:gus"]);
}

async function checkRefusals(cluster: InProcessCluster, node: number): Promise<void> {
  for (const [text, words] of malformed) {
    for (const route of ["store", "keys"]) {
      for (const table of ["people", "no_such_table"]) {
        const response = await cluster.fetch(node, `/${table}/${route}${whereQuery(text)}`);
        assert.equal(response.status, 400, `${table}/${route} where=${text}`);
        assert.equal(response.headers.get("content-type"), "application/problem+json");
        const problem = await response.json();
        assert.equal(problem.code, "invalid_request");
        assert.ok(problem.detail.includes(words), `"${problem.detail}" names "${words}"`);
      }
    }
  }
  const unknown = await cluster.fetch(node, `/no_such_table/store${whereQuery({ age: 1 })}`);
  assert.equal(unknown.status, 404, "a good filter on an unknown table is 404");
  assert.equal((await unknown.json()).code, "table_not_found");
  const badLimit = await cluster.fetch(node, `/people/keys${whereQuery({ age: 1 }, "&limit=0")}`);
  assert.equal(badLimit.status, 400);
  await badLimit.body?.cancel();
}

Deno.test(
  "listing where: one node answers matching records of /store and /keys, pages and refuses",
  async () => {
    await using cluster = await InProcessCluster.start({ nodeCount: 1 });
    await seed(cluster);
    await checkFilters(cluster, 0);
    await checkPaging(cluster, 0);
    await checkRefusals(cluster, 0);
  },
);

Deno.test("listing where: every node of a 3-node cluster answers the same matches", async () => {
  await using cluster = await InProcessCluster.start({ nodeCount: 3 });
  await seed(cluster);
  const everyKey = Object.keys(records).sort();
  for (const node of [0, 1, 2]) {
    // Each write is acknowledged by a majority; the third replica may trail it by the replication delay.
    await waitFor(async () => {
      const response = await cluster.fetch(node, "/people/keys");
      return response.status === 200 && JSON.stringify(await response.json()) === JSON.stringify(everyKey);
    }, { timeoutMs: 10_000, what: `node ${node} to hold every record` });
    await checkFilters(cluster, node);
    await checkPaging(cluster, node);
  }
  await checkRefusals(cluster, 2);
});
