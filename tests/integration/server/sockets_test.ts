// Goal: the one tool the server has against a TLS client that never handshakes (Deno cannot close such a
// socket) really ends the connection, and only the one asked for.
// Method: real loopback sockets in this process; libc through FFI, as the node opens it.
import assert from "node:assert/strict";
import { openLibc } from "../../../src/server/fd_limit.ts";
import { shutdownPeers } from "../../../src/server/sockets.ts";

Deno.test("shutdownPeers() ends the connection of the peer named, and leaves the others open", async () => {
  const libc = openLibc();
  if (typeof libc === "string") {
    console.log(`shutdownPeers test skipped: ${libc}`);
    return;
  }
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const clients = [
    await Deno.connect({ hostname: "127.0.0.1", port }),
    await Deno.connect({ hostname: "127.0.0.1", port }),
  ];
  const served = [await listener.accept(), await listener.accept()];
  try {
    const target = served[0]!.remoteAddr as Deno.NetAddr;
    const shut = shutdownPeers(libc, { localPort: port, peers: [target], fdMax: 1 << 16 });
    assert.equal(shut, 1);
    const victim = clients.find((client) => (client.localAddr as Deno.NetAddr).port === target.port)!;
    const other = clients.find((client) => client !== victim)!;
    assert.equal(await victim.read(new Uint8Array(8)), null, "the peer named sees the end of its connection");
    await served[1]!.write(new Uint8Array([7]));
    const buffer = new Uint8Array(8);
    assert.equal(await other.read(buffer), 1, "the other connection still carries data");
  } finally {
    for (const connection of [...clients, ...served]) connection.close();
    libc.close();
  }
});
