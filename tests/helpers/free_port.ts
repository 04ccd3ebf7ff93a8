/**
 * A port of 127.0.0.1 nothing listens on now (bound, then released), for a node that must be started on a
 * port known in advance (a joiner pointing at a seed that starts later, a proxy in front of a node). Another
 * process may take it in between: prefer port 0 wherever the port can be read back.
 */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}
