import assert from "node:assert/strict";
import { peerKey } from "../../../src/server/sockets.ts";

Deno.test("peerKey() names an IPv4 peer as address:port and an IPv6 one by its eight full groups", () => {
  assert.equal(peerKey("127.0.0.1", 5000), "127.0.0.1:5000");
  assert.equal(peerKey("::1", 80), "[0:0:0:0:0:0:0:1]:80");
  assert.equal(peerKey("2001:db8::17", 443), "[2001:db8:0:0:0:0:0:17]:443");
  assert.equal(peerKey("[fe80::0001]", 1), "[fe80:0:0:0:0:0:0:1]:1");
  assert.equal(peerKey("fe80::1%eth0", 1), "[fe80:0:0:0:0:0:0:1]:1", "a zone is not part of the address");
});
