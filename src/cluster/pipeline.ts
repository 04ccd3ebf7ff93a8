import { assert } from "../util/assert.ts";
import { utf8Length } from "../util/bytes.ts";
import type { Logger } from "../util/log.ts";
import {
  type ApplyItem,
  applyItemsMax,
  ApplyReply,
  type ApplyResult,
  writeItemsMax,
  type WriteReplyWire,
  type WriteRequest,
  WritesReply,
} from "./replication_wire.ts";
import { answers, type PaxosItem, paxosItemsMax, type PaxosResult } from "./paxos_wire.ts";
import { PaxosReplyChecked } from "./paxos_fast.ts";
import { type Transport, withJsonText } from "./transport.ts";

/** Items waiting for one peer before new ones are refused (and left to hints and anti-entropy). */
export const pipelineItemsMax = 20_000;

/**
 * Estimated bytes of one batch request: under the transport's 4 MiB with room for JSON escaping,
 * which can double a value's text inside a string.
 */
export const batchBytesMax = 3 << 20;

/** What a {@linkcode PeerPipeline} sends: the request kind, its batch limits, and how to read its answer. */
export interface BatchKind<Item, Result> {
  /** The internal request kind; its body is `{ items }`. */
  readonly kind: string;
  readonly itemsMax: number;
  /** Estimated bytes of one item in the request. */
  itemBytes(item: Item): number;
  /**
   * The per-item results of an answer to `items`, in order.
   *
   * @throws when the answer cannot be used: every item of the batch fails with that error (an answer that
   * does not parse is a failure, never an acknowledgement).
   */
  resultsOf(reply: unknown, items: readonly Item[]): Result[];
}

/** `apply` batches: replicas (delayed accepts), in order. */
export const applyBatches: BatchKind<ApplyItem, ApplyResult> = {
  kind: "apply",
  itemsMax: applyItemsMax,
  // A value's JSON text travels inside a JSON string: at most twice its UTF-8 bytes once escaped.
  itemBytes(item) {
    const text = item.entry.valueJson ?? "";
    return 2 * utf8Length(text) + utf8Length(item.table) + utf8Length(item.key) + 160;
  },
  resultsOf(reply, items) {
    const parsed = ApplyReply.safeParse(reply);
    if (!parsed.success || parsed.data.results.length !== items.length) {
      throw new Error(`the answer to a batch of ${items.length} replicas is malformed`);
    }
    return parsed.data.results;
  },
};

/** `writes` batches: client writes forwarded to their coordinator, each answered on its own. */
export const writeBatches: BatchKind<WriteRequest, WriteReplyWire> = {
  kind: "writes",
  itemsMax: writeItemsMax,
  // The value travels as JSON, the forwarder's state as a JSON string (escaped: at most twice its bytes).
  itemBytes(item) {
    const valueBytes = item.value === undefined ? 0 : utf8Length(JSON.stringify(item.value));
    const nameBytes = utf8Length(item.table) + utf8Length(item.key) + utf8Length(item.owner);
    return valueBytes + nameBytes + 200;
  },
  resultsOf(reply, items) {
    const parsed = WritesReply.safeParse(reply);
    if (!parsed.success || parsed.data.results.length !== items.length) {
      throw new Error(`the answer to a batch of ${items.length} forwarded writes is malformed`);
    }
    return parsed.data.results;
  },
};

/** `paxos` batches: one proposer's prepares, accepts and notices to one member, each answered on its own. */
export const paxosBatches: BatchKind<PaxosItem, PaxosResult> = {
  kind: "paxos",
  itemsMax: paxosItemsMax,
  itemBytes(item) {
    const names = utf8Length(item.table) + utf8Length(item.key);
    if (item.op === "chosen") return 2 * utf8Length(item.json) + names + 120;
    const text = item.op === "accept" ? item.entry.valueJson ?? "" : "";
    return 2 * utf8Length(text) + names + 2 * utf8Length(item.ballot.node) + 200;
  },
  resultsOf(reply, items) {
    const parsed = PaxosReplyChecked.safeParse(reply);
    if (!parsed.success || parsed.data.results.length !== items.length) {
      throw new Error(`the answer to a batch of ${items.length} paxos items is malformed`);
    }
    const results = parsed.data.results;
    // An answer of the wrong kind (a promise to an accept) is unusable: the whole batch fails.
    if (!items.every((item, index) => answers(item, results[index]!))) {
      throw new Error("an answer to a paxos batch does not answer its item");
    }
    return results;
  },
};

/**
 * Where the answer to a delivered item goes (see {@linkcode PeerPipeline.deliver}): exactly one call per
 * item, `answered` with the peer's result for it or `failed` with why there is none, never synchronously
 * from `deliver` itself. `tag` is the caller's, handed back as given (a round tells its members apart by it),
 * so one sink serves every item of a round without a closure or a promise per item.
 */
export interface AnswerSink<Result> {
  answered(tag: number, result: Result): void;
  failed(tag: number, error: unknown): void;
}

/** The sink of a posted item: nobody waits for its answer. */
const ignoring: AnswerSink<unknown> = { answered() {}, failed() {} };

/** The sink of {@linkcode PeerPipeline.send}: settles its promise. */
class PromiseSink<Result> implements AnswerSink<Result> {
  readonly promise: Promise<Result>;
  #resolve!: (result: Result) => void;
  #reject!: (error: unknown) => void;

  constructor() {
    this.promise = new Promise<Result>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
  }

  answered(_tag: number, result: Result): void {
    this.#resolve(result);
  }

  failed(_tag: number, error: unknown): void {
    this.#reject(error);
  }
}

interface Pending<Item, Result> {
  item: Item;
  /** `itemBytes(item)`, measured once when queued. */
  bytes: number;
  sink: AnswerSink<Result>;
  tag: number;
}

/**
 * The ordered stream of batch items to one peer: one request in flight at a time, each carrying every
 * item queued meanwhile (up to the kind's `itemsMax` and `batchBytesMax`), so items arrive in the order
 * they were sent and a busy peer costs one request per batch, not per write.
 */
export class PeerPipeline<Item, Result> {
  readonly peer: string;
  readonly #transport: Transport;
  readonly #timeoutMs: number;
  readonly #logger: Logger;
  readonly #batches: BatchKind<Item, Result>;
  #queue: Pending<Item, Result>[] = [];
  #sending = false;
  #inFlight = 0;
  #closed = false;

  constructor(
    options: {
      peer: string;
      transport: Transport;
      timeoutMs: number;
      logger: Logger;
      batches: BatchKind<Item, Result>;
    },
  ) {
    this.peer = options.peer;
    this.#transport = options.transport;
    this.#timeoutMs = options.timeoutMs;
    this.#logger = options.logger;
    this.#batches = options.batches;
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
  send(item: Item): { accepted: false } | { accepted: true; acknowledged: Promise<Result> } {
    const sink = new PromiseSink<Result>();
    if (!this.deliver(item, sink, 0)) return { accepted: false };
    sink.promise.catch(() => {}); // a caller that does not wait must not leave an unhandled rejection
    return { accepted: true, acknowledged: sink.promise };
  }

  /**
   * Queues one item whose answer nobody waits for (a notice), without the promise `send` makes.
   *
   * @returns false (and queues nothing) when the backlog is full or the pipeline is closed.
   */
  post(item: Item): boolean {
    return this.deliver(item, ignoring as AnswerSink<Result>, 0);
  }

  /**
   * Queues one item whose answer goes to `sink` with `tag` (see {@linkcode AnswerSink}): what `send` does
   * without a promise per item, for a caller that waits on many items at once.
   *
   * @returns false (and queues nothing, and never calls `sink`) when the backlog is full or the pipeline is
   * closed.
   */
  deliver(item: Item, sink: AnswerSink<Result>, tag: number): boolean {
    assert(Number.isSafeInteger(tag), "a tag is an integer");
    if (this.#closed || this.backlog >= pipelineItemsMax) return false;
    this.#queue.push({ item, bytes: this.#batches.itemBytes(item), sink, tag });
    assert(this.#queue.length <= pipelineItemsMax, "the backlog is bounded");
    if (!this.#sending) void this.#drain();
    return true;
  }

  /** Fails everything queued and refuses new items. */
  close(): void {
    this.#closed = true;
    const queue = this.#queue;
    this.#queue = [];
    const error = new Error(`pipeline to ${this.peer} closed`);
    for (const pending of queue) pending.sink.failed(pending.tag, error);
  }

  /** Items in the next request: at least one, at most `itemsMax` and `batchBytesMax`. */
  #batchLength(): number {
    let bytes = 0;
    let length = 0;
    while (length < this.#queue.length && length < this.#batches.itemsMax) {
      bytes += this.#queue[length]!.bytes;
      if (length > 0 && bytes > batchBytesMax) break;
      length += 1;
    }
    return length;
  }

  async #drain(): Promise<void> {
    assert(!this.#sending);
    this.#sending = true;
    try {
      // Bounded by the queue: each round removes up to itemsMax items.
      while (this.#queue.length > 0 && !this.#closed) {
        const batch = this.#queue.splice(0, this.#batchLength());
        assert(batch.length > 0);
        this.#inFlight = batch.length;
        let results: Result[] | undefined;
        let failure: unknown;
        try {
          const reply = await this.#transport.request(this.peer, this.#batches.kind, bodyOf(batch), {
            timeoutMs: this.#timeoutMs,
          });
          results = this.#batches.resultsOf(reply, batch.map((pending) => pending.item));
        } catch (error) {
          failure = error;
          const { kind } = this.#batches;
          this.#logger.debug("batch failed", { peer: this.peer, kind, items: batch.length });
        } finally {
          this.#inFlight = 0;
        }
        // Outside the try: each sink is called once, with the answer or with the failure, never both.
        assert(results === undefined || results.length === batch.length, "one result per item");
        for (let index = 0; index < batch.length; index += 1) {
          const pending = batch[index]!;
          if (results === undefined) pending.sink.failed(pending.tag, failure);
          else pending.sink.answered(pending.tag, results[index]!);
        }
      }
    } finally {
      this.#sending = false;
    }
  }
}

/**
 * Each item's JSON text, made by the first pipeline that sends it: a round's item and a notice go to every
 * peer as one object, and are serialized once for all of them. Items are not changed once queued.
 */
const itemTexts = new WeakMap<object, string>();

function itemTextOf(item: unknown): string {
  assert(typeof item === "object" && item !== null, "a batch item is an object");
  let text = itemTexts.get(item);
  if (text === undefined) {
    text = JSON.stringify(item);
    itemTexts.set(item, text);
  }
  return text;
}

/** The body of a batch, `{ items }`, with its JSON text built from the items' texts. */
function bodyOf<Item, Result>(batch: readonly Pending<Item, Result>[]): { items: Item[] } {
  assert(batch.length > 0, "a batch holds an item");
  const items = batch.map((pending) => pending.item);
  const text = `{"items":[${items.map(itemTextOf).join(",")}]}`;
  assert(text.length > 12, "every item has a text");
  return withJsonText({ items }, text);
}
