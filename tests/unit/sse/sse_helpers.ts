// Shared fixtures of the sse unit tests: limits, change events, entries and a stream reader that
// decodes one frame per chunk (the broker enqueues each frame as one chunk).
import { defaultLimits, type Limits } from "../../../src/config/limits.ts";
import type { Broker } from "../../../src/sse/mod.ts";
import { type ChangeEvent, type Entry, zeroBallot } from "../../../src/store/types.ts";
import type { Logger, LogLevel } from "../../../src/util/log.ts";

const decoder = new TextDecoder();

/** Default limits with test overrides; the keepalive is long unless a test asks for a short one. */
export function testLimits(overrides: Partial<Limits> = {}): Limits {
  return { ...defaultLimits, sseKeepaliveMs: 15_000, ...overrides };
}

/** The VersionedValue json the store would prepare. */
export function liveJson(value: unknown, version: number): string {
  return JSON.stringify({ value, version, timestamp: 1_700_000_000_000 + version, owner: "alice" });
}

/** The tombstone json the store would prepare. */
export function tombstoneJson(key: string, version: number): string {
  return JSON.stringify({ key, version, timestamp: 1_700_000_000_000 + version });
}

/** Makes change events with a store-wide sequence that grows by 1. */
export class EventMaker {
  #sequence = 0;

  get sequence(): number {
    return this.#sequence;
  }

  updated(options: { table: string; key: string; version: number; value?: unknown }): ChangeEvent {
    this.#sequence += 1;
    const json = liveJson(options.value ?? options.version, options.version);
    return {
      kind: "Updated",
      table: options.table,
      key: options.key,
      version: options.version,
      sequence: this.#sequence,
      json,
      source: "local",
    };
  }

  deleted(options: { table: string; key: string; version: number }): ChangeEvent {
    this.#sequence += 1;
    const json = tombstoneJson(options.key, options.version);
    return {
      kind: "Deleted",
      table: options.table,
      key: options.key,
      version: options.version,
      sequence: this.#sequence,
      json,
      source: "local",
    };
  }
}

/** A live entry or a tombstone as the store's index holds it. */
export function entryOf(
  options: { key: string; version: number; deleted?: boolean; value?: unknown },
): Entry {
  const deleted = options.deleted ?? false;
  const json = deleted
    ? tombstoneJson(options.key, options.version)
    : liveJson(options.value ?? options.version, options.version);
  return {
    version: options.version,
    timestamp: 1_700_000_000_000 + options.version,
    owner: "alice",
    deleted,
    ballot: zeroBallot,
    json,
  };
}

/** The expected key-stream frame text. */
export function keyFrameText(kind: "Updated" | "Deleted", id: number, json: string): string {
  return `id: ${id}\ndata: {"event":"${kind}","value":${json}}\n\n`;
}

/** The expected Resync of one key (SPEC §4b): no id, so the client's last event id stays. */
export function keyResyncText(table: string, key: string): string {
  return `data: {"event":"Resync","table":${JSON.stringify(table)},"key":${JSON.stringify(key)}}\n\n`;
}

/** The expected ready block that starts every stream (SPEC §4b), of the stream's position. */
export function readyText(position: number): string {
  return `event: ready\nid: ${position}\ndata: {"event":"Ready"}\n\n`;
}

/**
 * Subscribes once to each key and leaves the streams unread (the broker's close ends them): a client's
 * first connection, after which the broker remembers the key's changes for that client's resumption.
 */
export function watchKeys(broker: Broker, table: string, keys: readonly string[]): void {
  for (const key of keys) broker.subscribeKey(table, key, { current: undefined });
}

/** Reads a stream one chunk (one frame) at a time. */
export class FrameReader {
  readonly reader: ReadableStreamDefaultReader<Uint8Array>;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.reader = stream.getReader();
  }

  /** The next chunk as bytes; fails the test when the stream has ended. */
  async nextBytes(): Promise<Uint8Array> {
    const result = await this.reader.read();
    if (result.done) throw new Error("stream ended, a frame was expected");
    return result.value;
  }

  /** The next chunk as text. */
  async next(): Promise<string> {
    return decoder.decode(await this.nextBytes());
  }

  /** Every chunk left until the stream ends (call after the stream was closed). */
  async rest(options: { frameCountMax: number } = { frameCountMax: 10_000 }): Promise<string[]> {
    const texts: string[] = [];
    for (let frameIndex = 0; frameIndex <= options.frameCountMax; frameIndex += 1) {
      const result = await this.reader.read();
      if (result.done) return texts;
      texts.push(decoder.decode(result.value));
    }
    throw new Error(`stream still open after ${options.frameCountMax} frames`);
  }

  /** Cancels the stream, as a client that went away. */
  async cancel(): Promise<void> {
    await this.reader.cancel();
  }
}

/** Races `promise` against a timeout that is always cleared, so a missing frame fails instead of hanging. */
export async function withTimeout<T>(promise: Promise<T>, timeoutMs: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A logger that records debug messages. */
export function recordingLogger(): Logger & { debugMessages: string[] } {
  const debugMessages: string[] = [];
  return {
    debugMessages,
    error: () => {},
    warn: () => {},
    info: () => {},
    debug: (message: string) => debugMessages.push(message),
    enabled: (_level: LogLevel) => true,
  };
}

/** One block of an event stream as a test reads it: its `id:` (undefined without one), `event:`, and data. */
export interface StreamBlock {
  id: string | undefined;
  name: string | undefined;
  data: {
    event: string;
    table?: string;
    key?: string;
    version?: number;
    value?: { version?: number };
  };
}

/** The blocks of a chunk (a Resync and the frame after it share one); comments are skipped. */
export function streamBlocksOf(text: string): StreamBlock[] {
  return text.split("\n\n").filter((block) => block.length > 0 && !block.startsWith(":")).map((block) => {
    const lines = block.split("\n");
    return {
      id: lines.find((line) => line.startsWith("id: "))?.slice(4),
      name: lines.find((line) => line.startsWith("event: "))?.slice(7),
      data: JSON.parse(lines.find((line) => line.startsWith("data: "))!.slice(6)),
    };
  });
}

/** The version a block names: a change's value's, or a `Left`'s own; undefined for notices. */
export function versionOfBlock(block: StreamBlock): number | undefined {
  return block.data.version ?? block.data.value?.version;
}

/** Reads blocks, frame by frame, until `until` holds for one (it is included); each frame within 2 s. */
export async function readBlocksUntil(
  reader: FrameReader,
  until: (block: StreamBlock) => boolean,
): Promise<StreamBlock[]> {
  const blocks: StreamBlock[] = [];
  // Bounded: a test's stream ends or times out (withTimeout) long before.
  for (let count = 0; count < 100_000; count += 1) {
    for (const block of streamBlocksOf(await withTimeout(reader.next(), 2_000))) {
      blocks.push(block);
      if (until(block)) return blocks;
    }
  }
  throw new Error("the stream never reached the block waited for");
}

/** A block reduced to what most stream tests compare: its id, its event, its key and version. */
export interface SeenEvent {
  id: string | undefined;
  event: string;
  key?: string;
  version?: number;
}

/** The {@linkcode SeenEvent} of a block. */
export function seenOf(block: StreamBlock): SeenEvent {
  const version = versionOfBlock(block);
  return {
    id: block.id,
    event: block.data.event,
    ...(block.data.key === undefined ? {} : { key: block.data.key }),
    ...(version === undefined ? {} : { version }),
  };
}
