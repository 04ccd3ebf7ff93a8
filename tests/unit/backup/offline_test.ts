// Goal: exportStore() writes a store's live records in the cluster export's format (users first, then
// tables and keys in order; deleted and expired keys left out; values byte for byte), and importStore()
// applies such lines by the conflict rule: a key holding a newer version keeps it.
// Method: stores on MemoryFs with a manual clock; the export read through a read-only store.
import assert from "node:assert/strict";
import { BackupError, exportStore, importStore } from "../../../src/backup/mod.ts";
import { ExportLine } from "../../../src/backup/backup.ts";
import { MemoryFs, Store } from "../../../src/store/mod.ts";
import { ManualClock } from "../../../src/util/clock.ts";
import { storeOptions } from "../store/test_store.ts";

async function* linesFrom(lines: readonly string[]): AsyncGenerator<string> {
  for (const line of lines) yield line;
}

Deno.test(
  "exportStore() writes users, then every live key in order, as the cluster export does",
  async () => {
    const fs = new MemoryFs();
    const clock = new ManualClock();
    const store = await Store.open(storeOptions({ fs, clock }));
    await store.put("_users", "bob", { hash: "h" }, { owner: "bob" });
    await store.put("notes", "b", { text: 'quote " \u00e9', n: 1.5 }, { owner: "bob" });
    await store.put("apples", "z", 1, { owner: "alice" });
    await store.put("apples", "a", [true, null], { owner: "alice", ttlSecs: 60 });
    await store.put("apples", "short", 1, { owner: "alice", ttlSecs: 1 });
    await store.put("notes", "gone", 1, { owner: "bob" });
    await store.delete("notes", "gone", { owner: "bob" });
    await store.close();
    clock.advance(1_000); // "short" has expired, not yet been expired: left out like a listing leaves it out
    const reader = await Store.open(storeOptions({ fs, clock, readOnly: true }));
    const lines: string[] = [];
    const count = await exportStore(
      { store: reader, dataDir: "/data", nowMs: clock.nowMs() },
      (line) => Promise.resolve(void lines.push(line)),
    );
    await reader.close();
    assert.equal(count, 4);
    assert.equal(lines.length, 5);
    assert.deepEqual(JSON.parse(lines[0]!), {
      dynarust_export: 1,
      data_dir: "/data",
      exported_at: new Date(clock.nowMs()).toISOString(),
    });
    const records = lines.slice(1).map((line) => ExportLine.parse(JSON.parse(line)));
    assert.deepEqual(records.map(({ table, key }) => `${table}/${key}`), [
      "_users/bob",
      "apples/a",
      "apples/z",
      "notes/b",
    ]);
    const start = 1_700_000_000_000;
    assert.deepEqual(records[1], {
      table: "apples",
      key: "a",
      value: [true, null],
      version: 1,
      timestamp: start,
      owner: "alice",
      expires_at: start + 60_000,
    });
    assert.equal(
      lines[4],
      `{"table":"notes","key":"b","value":{"text":"quote \\" \u00e9","n":1.5},` +
        `"version":1,"timestamp":${start},"owner":"bob"}`,
    );
  },
);

Deno.test(
  "importStore() restores records by the conflict rule: a key holding a newer version keeps it",
  async () => {
    const fs = new MemoryFs();
    const store = await Store.open(storeOptions({ fs }));
    await store.put("t", "newer", "v1", { owner: "alice" });
    await store.put("t", "newer", "v2", { owner: "alice" });
    await store.put("t", "older", "mine", { owner: "alice" });
    const header = '{"dynarust_export":1}';
    const line = (key: string, version: number, value: unknown) =>
      JSON.stringify({ table: "t", key, value, version, timestamp: 5, owner: "bob" });
    const result = await importStore(
      store,
      linesFrom([
        header,
        line("newer", 1, "backup"),
        line("older", 3, "backup"),
        line("new", 2, "backup"),
        "",
      ]),
    );
    assert.deepEqual(result, { restored: 2, kept: 1 });
    assert.equal(store.get("t", "newer")?.json.startsWith('{"value":"v2","version":2,'), true);
    assert.equal(store.get("t", "older")?.json, '{"value":"backup","version":3,"timestamp":5,"owner":"bob"}');
    assert.equal(store.get("t", "new")?.version, 2);
    const again = await importStore(store, linesFrom([header, line("older", 3, "backup")]));
    assert.deepEqual(again, { restored: 0, kept: 1 }, "the same state again is kept, not rewritten");
    await assert.rejects(() => importStore(store, linesFrom(["{}"])), BackupError);
    await assert.rejects(
      () => importStore(store, linesFrom([header, '{"table":"t","key":"k"}'])),
      /line 2 is not a record/,
    );
    await store.close();
  },
);
