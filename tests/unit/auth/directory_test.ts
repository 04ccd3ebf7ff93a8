// Goal: ReplicatedUsers.find() finds a user's record wherever it is readable: here at once, on another
// member, or here once a pending write becomes durable, waiting no longer than asked and leaving no waiter.
// Method: the in-memory UserStorage with held (pending) writes.
import assert from "node:assert/strict";
import { hashSecret } from "../../../src/auth/passwords.ts";
import { MemoryUsers } from "./memory_users.ts";

const record = await hashSecret("pw", { iterations: 1 });

Deno.test(
  "ReplicatedUsers.find() answers a durable record at once, without asking other members",
  async () => {
    const users = new MemoryUsers();
    users.records.set("alice", record);
    const directory = users.directory();
    assert.equal(await directory.find("alice", { waitMs: 1_000 }), record);
    assert.equal(users.elsewhereCount, 0);
  },
);

Deno.test("ReplicatedUsers.find() with waitMs 0 asks the other members once", async () => {
  const users = new MemoryUsers();
  const directory = users.directory();
  assert.equal(await directory.find("bob", { waitMs: 0 }), undefined);
  users.elsewhere.set("bob", record);
  assert.equal(await directory.find("bob", { waitMs: 0 }), record);
  assert.equal(users.elsewhereCount, 2);
  assert.equal(directory.waiterCount, 0);
});

Deno.test("ReplicatedUsers.find() waits for a pending record to become durable here", async () => {
  const users = new MemoryUsers();
  const directory = users.directory();
  users.holdWrites();
  const created = directory.create("carol", record);
  const found = directory.find("carol", { waitMs: 10_000 });
  while (users.pendingCount === 0) await Promise.resolve();
  assert.equal(directory.get("carol"), undefined, "pending: not readable yet");
  users.releaseWrites();
  assert.equal(await created, "created");
  assert.equal(await found, record);
  assert.equal(directory.waiterCount, 0);
});

Deno.test("ReplicatedUsers.find() gives up after waitMs, asking the other members once more", async () => {
  const users = new MemoryUsers();
  const directory = users.directory();
  const startedMs = performance.now();
  assert.equal(await directory.find("dave", { waitMs: 30 }), undefined);
  assert.ok(performance.now() - startedMs >= 29, "it waited");
  assert.equal(users.elsewhereCount, 2, "at the start and at the end");
  assert.equal(directory.waiterCount, 0);
});
