/**
 * The fault-injecting transport seam: wraps each node's real transport so tests can cut links between
 * real nodes (symmetric and one-way partitions), drop requests and add delays, seeded for replay.
 */
import { PeerRequestError, type Transport } from "../../src/cluster/mod.ts";
import type { Random } from "./seed.ts";

/** Faults shared by every node of one test cluster. */
export class FaultyNetwork {
  readonly #blocked = new Set<string>();
  /** Probability that a request is dropped before it is sent. */
  dropRate = 0;
  /** Largest extra delay of a request, in ms (uniform). */
  delayMsMax = 0;
  readonly #random: Random | undefined;
  droppedCount = 0;

  constructor(random?: Random) {
    this.#random = random;
  }

  /** Cuts every link between the groups, both ways. */
  partition(...groups: string[][]): void {
    for (const [index, group] of groups.entries()) {
      for (const other of groups.slice(index + 1)) {
        for (const left of group) {
          for (const right of other) {
            this.#blocked.add(`${left}>${right}`);
            this.#blocked.add(`${right}>${left}`);
          }
        }
      }
    }
  }

  /** Cuts the link from `source` to `target` only: requests arrive the other way, replies do not. */
  blockOneWay(source: string, target: string): void {
    this.#blocked.add(`${source}>${target}`);
  }

  /** Restores every link and removes drops and delays. */
  heal(): void {
    this.#blocked.clear();
    this.dropRate = 0;
    this.delayMsMax = 0;
  }

  /** A wrapper for the transport of node `self`. */
  wrap(self: string): (inner: Transport) => Transport {
    return (inner) => ({
      request: async (target, kind, body, options) => {
        if (this.#blocked.has(`${self}>${target}`)) {
          throw new PeerRequestError({
            target,
            kind,
            failure: "unreachable",
            detail: "partitioned by the test",
          });
        }
        if (this.dropRate > 0 && (this.#random?.next() ?? Math.random()) < this.dropRate) {
          this.droppedCount += 1;
          throw new PeerRequestError({ target, kind, failure: "unreachable", detail: "dropped by the test" });
        }
        if (this.delayMsMax > 0) {
          const delayMs = Math.floor((this.#random?.next() ?? Math.random()) * this.delayMsMax);
          await new Promise((resolve) => setTimeout(resolve, delayMs));
        }
        const reply = await inner.request(target, kind, body, options);
        if (this.#blocked.has(`${target}>${self}`)) {
          throw new PeerRequestError({
            target,
            kind,
            failure: "timeout",
            detail: "reply lost to a one-way cut",
          });
        }
        return reply;
      },
    });
  }
}
