// Goal: the ring spreads keys evenly, moves about 1/n of them when a member joins, gives each key
// distinct replicas, and computes the same positions on every node and in every version.
// Method: build rings over fixed member ids and count placements of 10,000 keys.
import assert from "node:assert/strict";
import { fmix32, fnv1a32, keyHash, lanClusterConfig, Ring } from "../../../src/cluster/mod.ts";
import { fnv1a32Utf8, hashText } from "../../../src/cluster/ring.ts";
import { Random } from "../../helpers/seed.ts";

const virtualNodeCount = lanClusterConfig("unused-secret-0123456789abcdef01234").virtualNodeCount;
const fiveIds = ["10.0.0.1:6660", "10.0.0.2:6660", "10.0.0.3:6660", "10.0.0.4:6660", "10.0.0.5:6660"];
const keyCount = 10_000;

function primaries(ring: Ring): string[] {
  return Array.from({ length: keyCount }, (_, index) => ring.replicasOf("users", `user-${index}`, 1)[0]!);
}

Deno.test("fnv1a32() and fmix32() match known test vectors", () => {
  const utf8 = (text: string) => new TextEncoder().encode(text);
  assert.equal(fnv1a32(utf8("")), 0x811c9dc5);
  assert.equal(fnv1a32(utf8("a")), 0xe40c292c);
  assert.equal(fnv1a32(utf8("foobar")), 0xbf9cf968);
  assert.equal(fmix32(0), 0);
  assert.equal(fmix32(1), 0x514e28b7);
});

Deno.test(
  "fnv1a32Utf8() hashes exactly the bytes TextEncoder gives, lone surrogates included (seeded)",
  () => {
    const random = Random.fromEnv("ring utf8");
    const encoder = new TextEncoder();
    // One of each UTF-8 length, both surrogate halves alone and paired, at every position of a string.
    const units = [
      0x41,
      0x00,
      0x7f,
      0x80,
      0x7ff,
      0x800,
      0x8868,
      0xfffd,
      0xffff,
      0xd800,
      0xdbff,
      0xdc00,
      0xdfff,
    ];
    const cases = ["", "a", "t\u0000k", "\ud83d\ude00", "x\ud83d", "\ude00x", "\udc00\ud800"];
    for (let index = 0; index < 2_000; index += 1) {
      const length = random.int(12);
      cases.push(String.fromCharCode(...Array.from({ length }, () => random.pick(units))));
    }
    for (const text of cases) {
      assert.equal(fnv1a32Utf8(text), fnv1a32(encoder.encode(text)), JSON.stringify(text));
    }
  },
);

Deno.test("keyHash() is stable: golden values never change", () => {
  assert.equal(keyHash("users", "alice"), keyHash("users", "alice"));
  assert.notEqual(keyHash("users", "alice"), keyHash("usersa", "lice"));
  assert.deepEqual(
    [keyHash("users", "alice"), keyHash("t", ""), keyHash("表", "キー")],
    [4124019922, 2289336383, 2766200159], // cross-checked with an independent Python implementation
  );
});

Deno.test("keyHash() is the hash of table, NUL and key joined, without joining them (seeded names)", () => {
  const random = Random.fromEnv("ring key hash");
  const alphabet = ["a", "Z", "0", "-", "é", "表", "キ", "\ud83d\ude00", "~", "ÿ"];
  const nameOf = () => Array.from({ length: random.int(9) }, () => random.pick(alphabet)).join("");
  for (let index = 0; index < 2_000; index += 1) {
    const table = nameOf();
    const key = nameOf();
    assert.equal(keyHash(table, key), hashText(`${table}\u0000${key}`), JSON.stringify([table, key]));
  }
});

Deno.test("Ring.replicasOf() shares one frozen list per ring position, equal to a walk from scratch", () => {
  const ring = new Ring({ memberIds: fiveIds, virtualNodeCount });
  const sorted = [...fiveIds].sort();
  for (let index = 0; index < 500; index += 1) {
    const key = `k${index}`;
    const replicas = ring.replicasOf("t", key, 3);
    assert.ok(Object.isFrozen(replicas));
    assert.equal(ring.replicasOf("t", key, 3), replicas, "asked again: the same list");
    assert.deepEqual(ring.replicasOf("t", key, 5).slice(0, 3), replicas, "a longer list starts with it");
    // From scratch: the members of each virtual node clockwise from the key, first of each kept.
    const points = sorted.flatMap((id) =>
      Array.from({ length: virtualNodeCount }, (_, point) => ({ id, position: hashText(`${id}#${point}`) }))
    ).sort((left, right) =>
      left.position - right.position || sorted.indexOf(left.id) - sorted.indexOf(right.id)
    );
    const hash = keyHash("t", key);
    const start = Math.max(0, points.findIndex((point) => point.position >= hash));
    const walked: string[] = [];
    for (let step = 0; walked.length < 3; step += 1) {
      const { id } = points[(start + step) % points.length]!;
      if (!walked.includes(id)) walked.push(id);
    }
    assert.deepEqual(replicas, walked, key);
  }
});

Deno.test("Ring.replicasOf() spreads 10k keys over 5 members within ±25% of a fair share", () => {
  const ring = new Ring({ memberIds: fiveIds, virtualNodeCount });
  const counts = new Map<string, number>();
  for (const id of primaries(ring)) counts.set(id, (counts.get(id) ?? 0) + 1);
  const fair = keyCount / fiveIds.length;
  for (const id of fiveIds) {
    const count = counts.get(id) ?? 0;
    assert.ok(Math.abs(count - fair) <= 0.25 * fair, `${id} holds ${count} keys, fair is ${fair}`);
  }
});

Deno.test("Ring: adding a sixth member moves about 1/6 of the keys, all to the newcomer", () => {
  const before = primaries(new Ring({ memberIds: fiveIds, virtualNodeCount }));
  const newcomer = "10.0.0.6:6660";
  const after = primaries(new Ring({ memberIds: [...fiveIds, newcomer], virtualNodeCount }));
  let movedCount = 0;
  for (let index = 0; index < keyCount; index += 1) {
    if (before[index] === after[index]) continue;
    movedCount += 1;
    assert.equal(after[index], newcomer, "a key only moves to the new member");
  }
  const fraction = movedCount / keyCount;
  assert.ok(fraction > 0.75 / 6 && fraction < 1.25 / 6, `moved ${fraction}`);
});

Deno.test(
  "Ring.replicasOf() gives distinct members, capped at the member count, the same for any input order",
  () => {
    const ring = new Ring({ memberIds: fiveIds, virtualNodeCount });
    const shuffled = new Ring({ memberIds: [...fiveIds].reverse(), virtualNodeCount });
    for (let index = 0; index < 500; index += 1) {
      const replicas = ring.replicasOf("t", `k${index}`, 3);
      assert.equal(replicas.length, 3);
      assert.equal(new Set(replicas).size, 3);
      assert.deepEqual(shuffled.replicasOf("t", `k${index}`, 3), replicas);
      assert.deepEqual(ring.replicasOf("t", `k${index}`, 2), replicas.slice(0, 2));
    }
    assert.equal(ring.replicasOf("t", "k", 9).length, 5);
    assert.deepEqual(ring.replicasOf("t", "k", 0), []);
    assert.deepEqual(new Ring({ memberIds: [], virtualNodeCount }).replicasOf("t", "k", 3), []);
    assert.deepEqual(new Ring({ memberIds: ["a:1"], virtualNodeCount: 1 }).replicasOf("t", "k", 3), ["a:1"]);
    assert.deepEqual(ring.memberIds(), fiveIds);
  },
);
