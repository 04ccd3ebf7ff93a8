import { assert } from "../util/assert.ts";
import type { Logger } from "../util/log.ts";
import { type ApplyItem, applyItemsMax, ApplyReply, type ApplyResult } from "./replication_wire.ts";
import type { Transport } from "./transport.ts";

/** Items waiting for one peer before new ones are refused (and left to hints and anti-entropy). */
export const pipelineItemsMax = 20_000;

/**
 * Estimated bytes of one `apply` request: under the transport's 4 MiB with room for JSON escaping,
 * which can double a value's text inside a string.
 */
export const batchBytesMax = 3 << 20;

function itemBytes(item: ApplyItem): number {
  const text = item.store ? item.entry.valueJson ?? "" : item.json;
  return 2 * text.length + item.table.length + item.key.length + 160;
}

/** Items in the next request: at least one, at most `applyItemsMax` and `batchBytesMax`. */
function batchLength(queue: readonly Pending[]): number {
  let bytes = 0;
  let length = 0;
  while (length < queue.length && length < applyItemsMax) {
    bytes += itemBytes(queue[length]!.item);
    if (length > 0 && bytes > batchBytesMax) break;
    length += 1;
  }
  return length;
}

interface Pending {
  item: ApplyItem;
  resolve: (result: ApplyResult) => void;
  reject: (error: unknown) => void;
}

/**
 * The ordered stream of `apply` items to one peer: one request in flight at a time, each carrying every
 * item queued meanwhile (up to `applyItemsMax`), so items arrive in the order they were sent and a
 * busy peer costs one request per batch, not per write.
 */
export class PeerPipeline {
  readonly peer: string;
  readonly #transport: Transport;
  readonly #timeoutMs: number;
  readonly #logger: Logger;
  #queue: Pending[] = [];
  #sending = false;
  #inFlight = 0;
  #closed = false;

  constructor(options: { peer: string; transport: Transport; timeoutMs: number; logger: Logger }) {
    this.peer = options.peer;
    this.#transport = options.transport;
    this.#timeoutMs = options.timeoutMs;
    this.#logger = options.logger;
  }

  /** Items queued or in flight. */
  get backlog(): number {
    return this.#queue.length + this.#inFlight;
  }

  /**
   * Queues one item; resolves when the peer acknowledged the batch holding it.
   *
   * @returns false (and queues nothing) when the backlog is full or the pipeline is closed.
   */
  send(item: ApplyItem): { accepted: false } | { accepted: true; acknowledged: Promise<ApplyResult> } {
    if (this.#closed || this.backlog >= pipelineItemsMax) return { accepted: false };
    const acknowledged = new Promise<ApplyResult>((resolve, reject) =>
      this.#queue.push({ item, resolve, reject })
    );
    acknowledged.catch(() => {}); // a caller that does not wait must not leave an unhandled rejection
    if (!this.#sending) void this.#drain();
    return { accepted: true, acknowledged };
  }

  /** Fails everything queued and refuses new items. */
  close(): void {
    this.#closed = true;
    const queue = this.#queue;
    this.#queue = [];
    for (const pending of queue) pending.reject(new Error(`pipeline to ${this.peer} closed`));
  }

  async #drain(): Promise<void> {
    assert(!this.#sending);
    this.#sending = true;
    try {
      // Bounded by the queue: each round removes up to applyItemsMax items.
      while (this.#queue.length > 0 && !this.#closed) {
        const batch = this.#queue.splice(0, batchLength(this.#queue));
        assert(batch.length > 0);
        this.#inFlight = batch.length;
        try {
          const reply = await this.#transport.request(this.peer, "apply", {
            items: batch.map((pending) => pending.item),
          }, { timeoutMs: this.#timeoutMs });
          const results = resultsOf(reply, batch.length);
          batch.forEach((pending, index) => pending.resolve(results[index]!));
        } catch (error) {
          this.#logger.debug("replication batch failed", { peer: this.peer, items: batch.length });
          for (const pending of batch) pending.reject(error);
        } finally {
          this.#inFlight = 0;
        }
      }
    } finally {
      this.#sending = false;
    }
  }
}

const applied: ApplyResult = { result: "applied" };

/** The per-item results of an `apply` answer; a peer that sent none applied everything. */
function resultsOf(reply: unknown, count: number): ApplyResult[] {
  const parsed = ApplyReply.safeParse(reply);
  if (!parsed.success || parsed.data.results.length !== count) {
    return Array.from({ length: count }, () => applied);
  }
  return parsed.data.results;
}
