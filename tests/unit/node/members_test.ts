// Goal: the members file in the data dir (src/node/members.ts): a restart reads back the ring it saved,
// ignores what is not a member id, starts alone when nothing (or garbage) was saved, and recognises a
// node that left gracefully in its last life.
// Method: real files in a temp dir, read through the real DenoFs.
import assert from "node:assert/strict";
import { DenoFs } from "../../../src/store/mod.ts";
import { leftLastTime, loadKnownMembers } from "../../../src/node/members.ts";

async function withDataDir(run: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "dynarust_members_" });
  try {
    await run(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("members file: the saved ids come back, anything else in the list is ignored", async () => {
  await withDataDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/members.json`, JSON.stringify(["a:1", 7, null, "b:2", { id: "c:3" }]));
    assert.deepEqual(await loadKnownMembers(new DenoFs(), dir), ["a:1", "b:2"]);
  });
});

Deno.test("members file: none saved, or not a list, or not JSON, reads as no members", async () => {
  await withDataDir(async (dir) => {
    assert.deepEqual(await loadKnownMembers(new DenoFs(), dir), []);
    await Deno.writeTextFile(`${dir}/members.json`, '{"a:1": true}');
    assert.deepEqual(await loadKnownMembers(new DenoFs(), dir), []);
    await Deno.writeTextFile(`${dir}/members.json`, '["a:1"');
    assert.deepEqual(await loadKnownMembers(new DenoFs(), dir), []);
  });
});

Deno.test("members file: a saved ring without this node means it left last time", () => {
  assert.equal(leftLastTime(["a:1", "b:2"], "c:3"), true);
  assert.equal(leftLastTime(["a:1", "c:3"], "c:3"), false);
  assert.equal(leftLastTime([], "c:3"), false, "nothing saved: a first start, not a leave");
});
