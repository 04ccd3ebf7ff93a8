// Goal: a RecencyList keeps its items in the order a plain array moved-to-end would, through any mix of
// touches and removals.
// Method: random operations on both, compared after each step.
import assert from "node:assert/strict";
import { RecencyLink, RecencyList } from "../../../src/util/recency.ts";

function order(list: RecencyList<number>, links: RecencyLink<number>[]): number[] {
  // Walk from the oldest by following `newer`, starting at the link whose item is list.oldest.
  const oldest = list.oldest;
  if (oldest === undefined) return [];
  const items: number[] = [];
  for (let link: RecencyLink<number> | undefined = links[oldest]; link !== undefined; link = link.newer) {
    items.push(link.item);
  }
  return items;
}

Deno.test("RecencyList matches a move-to-end array through random touches and removals", () => {
  let seed = 11;
  const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const links = Array.from({ length: 8 }, (_, item) => new RecencyLink(item));
  const list = new RecencyList<number>();
  let model: number[] = [];
  for (let step = 0; step < 2_000; step += 1) {
    const item = Math.floor(next() * links.length);
    if (next() < 0.7) {
      list.touch(links[item]!);
      model = [...model.filter((held) => held !== item), item];
    } else if (model.includes(item)) {
      list.remove(links[item]!);
      model = model.filter((held) => held !== item);
    }
    assert.deepEqual(order(list, links), model);
    assert.equal(list.size, model.length);
    assert.equal(list.oldest, model[0]);
  }
});

Deno.test("RecencyList: touching the newest changes nothing, and a removed link can be listed again", () => {
  const [a, b] = [new RecencyLink("a"), new RecencyLink("b")];
  const list = new RecencyList<string>();
  list.touch(a);
  list.touch(b);
  list.touch(b);
  assert.equal(list.oldest, "a");
  assert.equal(list.size, 2);
  list.remove(a);
  assert.equal(list.oldest, "b");
  list.touch(a);
  assert.equal(list.oldest, "b");
  assert.equal(list.size, 2);
  list.remove(b);
  list.remove(a);
  assert.equal(list.oldest, undefined);
  assert.equal(list.size, 0);
  assert.throws(() => list.remove(a));
});
