// An in-memory network of Membership instances for unit tests: requests are signed and verified by the
// real RequestSigner and InternalHandler, links can be cut, nodes stopped and partitions made; time is a
// ManualClock moved one probe interval per round. No sockets, no sleeps.
import {
  ClusterAuthError,
  type ClusterConfig,
  InternalHandler,
  localTestClusterConfig,
  Membership,
  type MemberStatus,
  PeerRequestError,
  RequestSigner,
  type Transport,
} from "../../../src/cluster/mod.ts";
import { ManualClock } from "../../../src/util/clock.ts";
import { KvError } from "../../../src/util/errors.ts";
import { silentLogger } from "../../../src/util/log.ts";
import { statusByCode } from "../../../src/http/error_map.ts";
import { Random } from "../../helpers/seed.ts";

/** A secret of the test cluster (32 bytes, like a real one). */
export const testSecret = "test-cluster-secret-0123456789abcdef";

/** One node of the fake network. */
export interface FakeNode {
  id: string;
  membership: Membership;
  handler: InternalHandler;
  signer: RequestSigner;
  /** A stopped node neither ticks nor answers, as if its process were killed. */
  down: boolean;
}

/** The Transport of one node: delivers through the network it belongs to. */
class FakeTransport implements Transport {
  readonly #network: FakeNetwork;
  readonly #self: string;

  constructor(network: FakeNetwork, self: string) {
    this.#network = network;
    this.#self = self;
  }

  request(target: string, kind: string, body: unknown, options: { timeoutMs: number }): Promise<unknown> {
    return this.#network.deliver({ source: this.#self, target, kind, body, timeoutMs: options.timeoutMs });
  }
}

/** Several Membership instances wired together in memory. */
export class FakeNetwork {
  readonly clock = new ManualClock();
  readonly config: ClusterConfig;
  readonly nodes = new Map<string, FakeNode>();
  /** Requests sent, by kind. */
  readonly sentCounts = new Map<string, number>();
  /** Directed links that drop every message: `source>target`. */
  readonly #cutLinks = new Set<string>();
  readonly #signers = new Map<string, RequestSigner>();

  constructor(overrides: Partial<ClusterConfig> = {}) {
    this.config = { ...localTestClusterConfig(testSecret), ...overrides };
  }

  /**
   * Adds a node `127.0.0.1:<port>` with its own seeded randomness; `secret` defaults to the cluster's;
   * `known`: the member list it starts from (as after a restart).
   */
  async addNode(port: number, options: { secret?: string; known?: string[] } = {}): Promise<FakeNode> {
    const id = `127.0.0.1:${port}`;
    const signer = await RequestSigner.create(options.secret ?? this.config.secret);
    const handler = new InternalHandler({
      signer,
      clock: this.clock,
      self: id,
      windowMs: this.config.requestWindowMs,
    });
    const random = new Random(port);
    const membership = new Membership({
      self: id,
      config: this.config,
      transport: new FakeTransport(this, id),
      clock: this.clock,
      logger: silentLogger,
      random: () => random.next(),
      ...(options.known === undefined ? {} : { known: options.known }),
    });
    membership.registerHandlers(handler);
    const node: FakeNode = { id, membership, handler, signer, down: false };
    this.nodes.set(id, node);
    this.#signers.set(id, signer);
    return node;
  }

  /** Adds `count` nodes on ports 7001.. and joins each to the first; returns them in order. */
  async startCluster(count: number): Promise<FakeNode[]> {
    const nodes: FakeNode[] = [];
    for (let index = 0; index < count; index += 1) nodes.push(await this.addNode(7001 + index));
    for (const node of nodes.slice(1)) await node.membership.join(nodes[0]!.id);
    return nodes;
  }

  /** The node with `id`. */
  node(id: string): FakeNode {
    const node = this.nodes.get(id);
    if (node === undefined) throw new Error(`no node ${id}`);
    return node;
  }

  /** Registers a signer for a sender id that has no Membership (to inject hand-made messages). */
  async addSender(id: string): Promise<void> {
    this.#signers.set(id, await RequestSigner.create(this.config.secret));
  }

  /** Drops every message between `left` and `right`, both ways. */
  cut(left: string, right: string): void {
    this.#cutLinks.add(`${left}>${right}`);
    this.#cutLinks.add(`${right}>${left}`);
  }

  /** Cuts every link between the two groups. */
  partition(groupA: readonly string[], groupB: readonly string[]): void {
    for (const left of groupA) for (const right of groupB) this.cut(left, right);
  }

  /** Restores every link. */
  heal(): void {
    this.#cutLinks.clear();
  }

  /** Moves time one probe interval and runs one probe round on every running node, concurrently. */
  async round(): Promise<void> {
    this.clock.advance(this.config.probeIntervalMs);
    const running = [...this.nodes.values()].filter((node) => !node.down);
    await Promise.all(running.map((node) => node.membership.tick()));
  }

  /** Runs rounds until `predicate` holds; returns how many it took, or throws after `roundsMax`. */
  async roundsUntil(predicate: () => boolean, roundsMax: number): Promise<number> {
    for (let rounds = 0; rounds <= roundsMax; rounds += 1) {
      if (predicate()) return rounds;
      if (rounds < roundsMax) await this.round();
    }
    throw new Error(`condition still false after ${roundsMax} rounds`);
  }

  /** The status `viewer` has for `subject`, or undefined when it does not know it. */
  statusOf(viewer: string, subject: string): MemberStatus | undefined {
    return this.node(viewer).membership.member(subject)?.status;
  }

  /** Whether every running node sees every running node (itself included) alive, and no other as live. */
  converged(): boolean {
    const running = [...this.nodes.values()].filter((node) => !node.down).map((node) => node.id).sort();
    return running.every((id) => {
      const live = this.node(id).membership.liveIds();
      return live.length === running.length && live.every((liveId, index) => liveId === running[index]) &&
        running.every((other) => this.statusOf(id, other) === "alive");
    });
  }

  /** One request from `source` to `target`, signed, through the target's InternalHandler. */
  async deliver(
    options: { source: string; target: string; kind: string; body: unknown; timeoutMs: number },
  ): Promise<unknown> {
    const { source, target, kind } = options;
    this.sentCounts.set(kind, (this.sentCounts.get(kind) ?? 0) + 1);
    const node = this.nodes.get(target);
    if (node === undefined || node.down || this.nodes.get(source)?.down === true) {
      throw new PeerRequestError({ target, kind, failure: "unreachable" });
    }
    if (this.#cutLinks.has(`${source}>${target}`)) {
      throw new PeerRequestError({ target, kind, failure: "timeout" });
    }
    const bodyText = JSON.stringify(options.body);
    const path = `/_internal/${kind}`;
    const signer = this.#signers.get(source)!;
    const headers = new Headers(
      await signer.sign({ path, sender: source, target, bodyText, nowMs: this.clock.nowMs() }),
    );
    let reply: unknown;
    try {
      reply = await node.handler.handle(kind, headers, bodyText);
    } catch (error) {
      if (error instanceof ClusterAuthError) {
        throw new PeerRequestError({ target, kind, failure: "refused", status: 403, cause: error });
      }
      if (!(error instanceof KvError)) throw error;
      const status = statusByCode[error.code];
      throw new PeerRequestError({ target, kind, failure: "invalid_reply", status, remoteCode: error.code });
    }
    // The reply is lost when the way back is cut (or the target was stopped meanwhile).
    if (this.#cutLinks.has(`${target}>${source}`) || node.down) {
      throw new PeerRequestError({ target, kind, failure: "timeout" });
    }
    return JSON.parse(JSON.stringify(reply));
  }
}
