// Goal: the nemesis's partitions cut exactly the links they describe between real node processes: in a split
// {n1,n2}|{n3,n4,n5} each side sees the other side down and its own side alive, though every node connects
// to every proxy from 127.0.0.1; after healing all see all alive again.
// Method: the chaos cluster (five processes, one proxy each), Network.partition, membership as each node
// reports it directly to the test.
import { waitFor } from "../helpers/wait_for.ts";
import { ChaosCluster } from "./cluster.ts";
import { Network } from "./network.ts";

async function statuses(cluster: ChaosCluster, observer: string): Promise<Map<string, string>> {
  const response = await cluster.fetch(observer, "/membership", { timeoutMs: 2_000 });
  const body = await response.json() as { nodes: Array<{ id: string; status: string }> };
  return new Map(body.nodes.map((node) => [node.id, node.status]));
}

Deno.test({
  name: "Network.partition() splits {n1,n2}|{n3,n4,n5}: each side sees its own side alive, the other down",
  ignore: !Network.available(),
  fn: async () => {
    await using cluster = await ChaosCluster.start(5);
    const network = new Network(cluster);
    const names = cluster.coreNames();
    const sides = [["n1", "n2"], ["n3", "n4", "n5"]];
    await network.partition(names, { groups: sides });
    const sideOf = (name: string) => sides.find((side) => side.includes(name))!;
    await waitFor(async () => {
      for (const observer of names) {
        const view = await statuses(cluster, observer);
        for (const other of names) {
          const alive = view.get(cluster.memberId(other)) === "alive";
          if (alive !== sideOf(observer).includes(other)) return false;
        }
      }
      return true;
    }, { timeoutMs: 20_000, intervalMs: 100, what: "each side to see only itself alive" });
    network.heal(names);
    await cluster.waitMembership(20_000);
  },
});
