// Goal: `?snapshot=true` (SPEC §4b) shows the current state, then Synced, then live, with no change lost
// or doubled between them and each key's versions increasing, while writes race the snapshot's pages.
// Method: a Broker fed pages by a generator that publishes changes between pages (to keys before and
// after the cursor, deletes, new keys); the client's state is rebuilt from the stream exactly as a page
// would and compared with a model of the writes; per key, the versions seen must increase.
import assert from "node:assert/strict";
import { Broker, type SnapshotRecord } from "../../../src/sse/mod.ts";
import { silentLogger } from "../../../src/util/log.ts";
import { Random } from "../../helpers/seed.ts";
import {
  entryOf,
  EventMaker,
  FrameReader,
  liveJson,
  readBlocksUntil,
  type StreamBlock,
  streamBlocksOf,
  testLimits,
} from "./sse_helpers.ts";

/** A client's table state from its events: Updated sets, Deleted removes, Resync clears. */
function applyBlocks(
  state: Map<string, number>,
  blocks: StreamBlock[],
  versionsSeen: Map<string, number[]>,
): void {
  for (const { data } of blocks) {
    if (data.event === "Resync" && data.key === undefined) state.clear();
    if (data.key === undefined || data.value?.version === undefined) continue;
    const seen = versionsSeen.get(data.key) ?? [];
    seen.push(data.value.version);
    versionsSeen.set(data.key, seen);
    if (data.event === "Updated") state.set(data.key, data.value.version);
    if (data.event === "Deleted") state.delete(data.key);
  }
}

/** Each key's versions, in the order its events came, only increase. */
function assertVersionsIncrease(seen: Map<string, number[]>): void {
  for (const [key, list] of seen) {
    assert.ok(
      list.every((version, index) => index === 0 || version > list[index - 1]!),
      `${key}: ${list}`,
    );
  }
}

Deno.test(
  "Broker table snapshot: racing writes are neither lost nor doubled, versions increase per key " +
    "(seeded)",
  async () => {
    const random = Random.fromEnv("snapshot race");
    for (let round = 0; round < 20; round += 1) {
      const broker = new Broker({ limits: testLimits({ sseQueueDepthMax: 4096 }), logger: silentLogger });
      const events = new EventMaker();
      const model = new Map<string, number>(); // key -> version of the live record
      const versions = new Map<string, number>(); // key -> newest version, tombstones included
      const write = (key: string, remove: boolean) => {
        const version = (versions.get(key) ?? 0) + 1;
        versions.set(key, version);
        if (remove) {
          model.delete(key);
          broker.publish(events.deleted({ table: "t", key, version }));
        } else {
          model.set(key, version);
          broker.publish(events.updated({ table: "t", key, version }));
        }
      };
      const keyOf = (index: number) => `k${String(index).padStart(3, "0")}`;
      for (let index = 0; index < 200; index += 1) write(keyOf(index), false);
      // A page is read from the model, then writes race before it reaches the broker (a read that is stale
      // by the time it is sent, as a replica's may be), and more race between pages.
      const pages = async function* (): AsyncGenerator<SnapshotRecord[]> {
        const keys = () => [...model.keys()].sort();
        let after = "";
        for (let step = 0; step < 1_000; step += 1) {
          const page = keys().filter((key) => key > after).slice(0, 1 + random.int(30));
          if (page.length === 0) return;
          const records = page.map((key) => ({
            table: "t",
            key,
            version: model.get(key)!,
            json: liveJson(key, model.get(key)!),
          }));
          for (let count = random.int(8); count > 0; count -= 1) {
            write(keyOf(random.int(260)), random.next() < 0.2);
          }
          yield records;
          after = page.at(-1)!;
          for (let count = random.int(8); count > 0; count -= 1) {
            write(keyOf(random.int(260)), random.next() < 0.2);
          }
        }
      };
      const subscription = broker.subscribeTable("t", { snapshot: { pages: pages() } });
      const reader = new FrameReader(subscription.stream);
      const blocks = await readBlocksUntil(reader, (block) => block.data.event === "Synced");
      assert.deepEqual(blocks[0], { id: "0", name: "ready", data: { event: "Ready" } });
      assert.ok(blocks.slice(1, -1).every((block) => block.id === undefined), "no id before Synced");
      const state = new Map<string, number>();
      const seen = new Map<string, number[]>();
      applyBlocks(state, blocks, seen);
      assert.deepEqual(
        new Map([...state].sort()),
        new Map([...model].sort()),
        `seed ${random.seed} round ${round}`,
      );
      // Live after Synced: ids, and each change once.
      write(keyOf(0), false);
      const live = await readBlocksUntil(reader, () => true);
      assert.equal(Number(live[0]!.id), Number(blocks.at(-1)!.id) + 1);
      applyBlocks(state, live, seen);
      assertVersionsIncrease(seen);
      broker.close();
    }
  },
);

Deno.test(
  "Broker table snapshot in a cluster shows only states it can vouch for, confirming the others",
  async () => {
    const broker = new Broker({ limits: testLimits(), logger: silentLogger });
    const events = new EventMaker();
    broker.publish(events.updated({ table: "t", key: "a", version: 1 }));
    const confirmed: string[][] = [];
    async function* pages(): AsyncGenerator<SnapshotRecord[]> {
      yield [
        { table: "t", key: "a", version: 1, json: liveJson("a", 1) }, // published here: vouched
        { table: "t", key: "b", version: 4, json: liveJson("b-accepted-only", 4) }, // accepted, never chosen
        { table: "t", key: "c", version: 2, json: liveJson("c", 2) }, // chosen, then deleted
      ];
    }
    const confirm = (names: Array<{ table: string; key: string }>) => {
      const keys = names.map((name) => name.key);
      confirmed.push(keys);
      return Promise.resolve(
        keys.map((key) =>
          key === "b"
            ? { version: 3, json: liveJson("b", 3), deleted: false }
            : { ...entryOf({ key, version: 3, deleted: true }) }
        ),
      );
    };
    const reader = new FrameReader(
      broker.subscribeTable("t", { snapshot: { pages: pages(), confirm } }).stream,
    );
    const blocks = await readBlocksUntil(reader, (block) => block.data.event === "Synced");
    assert.deepEqual(confirmed, [["b", "c"]]);
    assert.deepEqual(
      blocks.slice(1, -1).map((block) => [block.data.key, block.data.value?.version]),
      [["a", 1], ["b", 3]],
    );
    // The chosen notice of b's version 3 arrives late: shown already, it is not sent again; version 4 is.
    broker.publish(events.updated({ table: "t", key: "b", version: 3 }));
    broker.publish(events.updated({ table: "t", key: "b", version: 4 }));
    const live = streamBlocksOf(await reader.next());
    assert.deepEqual(live.map((block) => [block.data.key, block.data.value?.version]), [["b", 4]]);
    broker.close();
  },
);

Deno.test(
  "Broker table snapshot: a resume the node can replay skips the snapshot; one it cannot gets Resync " +
    "and the snapshot",
  async () => {
    const broker = new Broker({ limits: testLimits(), logger: silentLogger });
    const events = new EventMaker();
    const fresh = new FrameReader(broker.subscribeTable("t", {}).stream);
    const ready = streamBlocksOf(await fresh.next())[0]!;
    broker.publish(events.updated({ table: "t", key: "a", version: 1 }));
    const first = streamBlocksOf(await fresh.next())[0]!;
    broker.publish(events.updated({ table: "t", key: "a", version: 2 }));
    async function* pages(): AsyncGenerator<SnapshotRecord[]> {
      yield [{ table: "t", key: "a", version: 2, json: liveJson("a", 2) }];
    }
    const resumed = new FrameReader(
      broker.subscribeTable("t", { lastEventId: Number(first.id), snapshot: { pages: pages() } }).stream,
    );
    const replay = await readBlocksUntil(resumed, (block) => block.data.event === "Synced");
    assert.deepEqual(replay.map((block) => [block.id, block.data.event]), [
      [first.id, "Ready"],
      [String(Number(first.id) + 1), "Updated"],
      [String(Number(first.id) + 1), "Synced"],
    ]);
    // From 0 (a client cut during an earlier snapshot): drop what you have, then the snapshot again.
    const again = new FrameReader(
      broker.subscribeTable("t", { lastEventId: 0, snapshot: { pages: pages() } }).stream,
    );
    const blocks = await readBlocksUntil(again, (block) => block.data.event === "Synced");
    assert.deepEqual(blocks.map((block) => [block.id, block.data.event, block.data.key]), [
      ["0", "Ready", undefined],
      [undefined, "Resync", undefined],
      [undefined, "Updated", "a"],
      [String(Number(first.id) + 1), "Synced", undefined],
    ]);
    assert.equal(ready.data.event, "Ready");
    broker.close();
  },
);

Deno.test(
  "Broker key snapshot: the current value, then Synced, then live; nothing for a missing key",
  async () => {
    const broker = new Broker({ limits: testLimits(), logger: silentLogger });
    const events = new EventMaker();
    const reader = new FrameReader(
      broker.subscribeKey("t", "a", { current: entryOf({ key: "a", version: 7 }), snapshot: true }).stream,
    );
    const blocks = await readBlocksUntil(reader, (block) => block.data.event === "Synced");
    assert.deepEqual(blocks.map((block) => [block.id, block.data.event]), [
      ["0", "Ready"],
      ["7", "Updated"],
      [undefined, "Synced"],
    ]);
    broker.publish(events.updated({ table: "t", key: "a", version: 8 }));
    assert.equal(streamBlocksOf(await reader.next())[0]!.id, "8");
    const missing = new FrameReader(
      broker.subscribeKey("t", "none", { current: undefined, snapshot: true }).stream,
    );
    assert.deepEqual(
      (await readBlocksUntil(missing, (block) => block.data.event === "Synced")).map((block) =>
        block.data.event
      ),
      [
        "Ready",
        "Synced",
      ],
    );
    broker.close();
  },
);

Deno.test(
  "Broker key snapshot of a deleted key starts at its tombstone: a re-creation follows with no Resync",
  async () => {
    const broker = new Broker({ limits: testLimits(), logger: silentLogger });
    const events = new EventMaker();
    const reader = new FrameReader(
      broker.subscribeKey("t", "a", {
        current: entryOf({ key: "a", version: 5, deleted: true }),
        snapshot: true,
      })
        .stream,
    );
    const blocks = await readBlocksUntil(reader, (block) => block.data.event === "Synced");
    assert.deepEqual(blocks.map((block) => [block.id, block.data.event]), [["5", "Ready"], [
      undefined,
      "Synced",
    ]]);
    broker.publish(events.updated({ table: "t", key: "a", version: 6 }));
    assert.deepEqual(streamBlocksOf(await reader.next()).map((block) => [block.id, block.data.event]), [[
      "6",
      "Updated",
    ]]);
    broker.close();
  },
);

/** Lets every task queued so far run (a few turns of the event loop), to see what did not happen. */
async function settleTurns(count = 5): Promise<void> {
  for (let turn = 0; turn < count; turn += 1) await new Promise((resolve) => setTimeout(resolve, 0));
}

Deno.test(
  "Broker table snapshot reads its next page only once the client took the last: a client that does " +
    "not read holds one page",
  async () => {
    const broker = new Broker({ limits: testLimits(), logger: silentLogger });
    let pagesRead = 0;
    async function* pages(): AsyncGenerator<SnapshotRecord[]> {
      for (let page = 0; page < 4; page += 1) {
        pagesRead += 1;
        yield [{ table: "t", key: `k${page}`, version: 1, json: liveJson(`k${page}`, 1) }];
      }
    }
    const client = new FrameReader(broker.subscribeTable("t", { snapshot: { pages: pages() } }).stream);
    await settleTurns();
    assert.equal(pagesRead, 1, "one page is read while the client reads nothing");
    assert.equal(streamBlocksOf(await client.next())[0]!.data.event, "Ready");
    await settleTurns();
    assert.equal(pagesRead, 1, "the first page is still queued: the second waits");
    assert.equal(streamBlocksOf(await client.next())[0]!.data.key, "k0");
    const rest = await readBlocksUntil(client, (block) => block.data.event === "Synced");
    assert.deepEqual(rest.map((block) => block.data.key ?? block.data.event), ["k1", "k2", "k3", "Synced"]);
    assert.equal(pagesRead, 4);
    broker.close();
  },
);
