import assert from "node:assert/strict";
import { capacityOf } from "../../../src/server/mod.ts";
import { reservedFdsOf } from "../../../src/server/capacity.ts";

Deno.test(
  "capacityOf() keeps connections a reserve below the descriptor limit, subscribers below connections",
  () => {
    const capacity = capacityOf({ fdLimit: 1_024, connectionsMax: 1_000_000, subscribersMax: 20_000 });
    assert.deepEqual(capacity, { connectionsMax: 896, subscribersMax: 851, reservedFds: 128 });
  },
);

Deno.test("capacityOf() reserves a tenth of a large limit", () => {
  const capacity = capacityOf({ fdLimit: 20_000, connectionsMax: 1_000_000, subscribersMax: 20_000 });
  assert.equal(capacity.reservedFds, 2_000);
  assert.equal(capacity.connectionsMax, 18_000);
  assert.equal(capacity.subscribersMax, 17_100);
});

Deno.test("capacityOf() keeps configured caps that already fit", () => {
  const capacity = capacityOf({ fdLimit: 1_048_576, connectionsMax: 5_000, subscribersMax: 2_000 });
  assert.equal(capacity.connectionsMax, 5_000);
  assert.equal(capacity.subscribersMax, 2_000);
});

Deno.test("capacityOf() never goes below one connection and one subscriber on a tiny limit", () => {
  const capacity = capacityOf({ fdLimit: 16, connectionsMax: 1_000_000, subscribersMax: 20_000 });
  assert.equal(capacity.connectionsMax, 1);
  assert.equal(capacity.subscribersMax, 1);
});

Deno.test("reservedFdsOf() is 128 up to 1,280 descriptors, then a tenth", () => {
  assert.equal(reservedFdsOf(1_280), 128);
  assert.equal(reservedFdsOf(1_281), 129);
});
