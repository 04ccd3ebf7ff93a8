// Goal: a round asks every member of its replica sets exactly once, this node first, as the Set-based
// definition it replaced did (the round's order decides which acceptor is asked directly, first).
// Method: random replica sets (one or several, overlapping, with and without this node), compared with
// that definition.
import assert from "node:assert/strict";
import { membersOf } from "../../../src/cluster/proposer.ts";
import { Random } from "../../helpers/seed.ts";

/** The definition `membersOf` replaced: distinct members in first-seen order, then self moved first. */
function reference(sets: ReadonlyArray<readonly string[]>, self: string): string[] {
  return [...new Set(sets.flat())].sort((a, b) => a === self ? -1 : b === self ? 1 : 0);
}

Deno.test("membersOf() names each member of the sets once, self first, as the Set-based rule (seeded)", () => {
  const random = Random.fromEnv("round members");
  const ids = ["a:1", "b:2", "c:3", "d:4", "e:5", "f:6"];
  for (let run = 0; run < 2_000; run += 1) {
    const self = random.pick(ids);
    const sets = Array.from({ length: 1 + random.int(3) }, () => {
      const set: string[] = [];
      const size = 1 + random.int(5);
      while (set.length < size) {
        const id = random.pick(ids);
        if (!set.includes(id)) set.push(id);
      }
      return set;
    });
    assert.deepEqual(membersOf(sets, self), reference(sets, self), JSON.stringify({ sets, self }));
  }
});

Deno.test("membersOf() of one set without this node keeps the set's order", () => {
  assert.deepEqual(membersOf([["c:3", "a:1", "b:2"]], "z:9"), ["c:3", "a:1", "b:2"]);
  assert.deepEqual(membersOf([["c:3", "a:1", "b:2"]], "a:1"), ["a:1", "c:3", "b:2"]);
});
