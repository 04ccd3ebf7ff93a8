/**
 * One subscriber per node and key: the real npm `eventsource` client (WHATWG EventSource: it records ids,
 * reconnects by itself after a lost connection and sends `Last-Event-ID`), connected straight to the node,
 * logging every open, ready, change, Resync and error in order for `checkStream`. An EventSource gives up
 * for good on a non-200 answer (a node that is starting or leaving answers 503); then, as an application
 * would, a new one is made after a second, resuming with `?since=<last id>` (SPEC §4b).
 */
import { EventSource } from "eventsource";
import type { ChaosCluster } from "./cluster.ts";
import { changeEntryOf, type StreamEntry } from "./checker.ts";
import { chaosTable } from "./clients.ts";

const recreateDelayMs = 1_000;

/** A logged subscription of one key on one node. */
export class KeySubscriber {
  readonly node: string;
  readonly key: string;
  readonly entries: StreamEntry[] = [];
  readonly #url: string;
  #source: EventSource;
  #lastId: string | undefined;
  #closed = false;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(cluster: ChaosCluster, options: { node: string; key: string }) {
    this.node = options.node;
    this.key = options.key;
    this.#url = `http://127.0.0.1:${cluster.port(options.node)}/${chaosTable}/subscribe/${options.key}`;
    this.#source = this.#open(this.#url);
  }

  /** The version of the last change shown, or undefined before any. */
  lastVersion(): number | undefined {
    for (let index = this.entries.length - 1; index >= 0; index -= 1) {
      const entry = this.entries[index]!;
      if (entry.kind === "change") return entry.version;
    }
    return undefined;
  }

  /** True once the stream has received its first ready block. */
  ready(): boolean {
    return this.entries.some((entry) => entry.kind === "ready");
  }

  #open(url: string): EventSource {
    const source = new EventSource(url);
    source.addEventListener("open", () => this.entries.push({ kind: "open" }));
    source.addEventListener("ready", (event) => {
      this.#lastId = event.lastEventId;
      this.entries.push({ kind: "ready", id: event.lastEventId });
    });
    source.addEventListener("message", (event) => {
      this.#lastId = event.lastEventId;
      this.entries.push(entryOf(event.data, event.lastEventId));
    });
    source.addEventListener("error", (event) => {
      this.entries.push({ kind: "error", message: String((event as { message?: string }).message ?? "") });
      if (source.readyState === source.CLOSED && !this.#closed && this.#timer === undefined) {
        this.#timer = setTimeout(() => this.#recreate(), recreateDelayMs);
      }
    });
    return source;
  }

  #recreate(): void {
    this.#timer = undefined;
    if (this.#closed) return;
    const since = this.#lastId;
    this.entries.push({ kind: "recreate", since: since ?? "" });
    this.#source = this.#open(since === undefined ? this.#url : `${this.#url}?since=${since}`);
  }

  close(): void {
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#source.close();
  }
}

function entryOf(data: string, id: string): StreamEntry {
  let parsed: { event?: unknown; value?: { version?: unknown; value?: { writes?: unknown } } };
  try {
    parsed = JSON.parse(data);
  } catch {
    return changeEntryOf({ event: `unparsable ${data.slice(0, 80)}`, id, version: Number.NaN, writes: [] });
  }
  if (parsed.event === "Resync") return { kind: "resync" };
  const version = parsed.value?.version;
  return changeEntryOf({
    event: String(parsed.event),
    id,
    version: typeof version === "number" ? version : Number.NaN,
    writes: parsed.value?.value?.writes,
  });
}

/** One subscriber per node of `nodes` and key of `keys`. */
export function subscribeAll(
  cluster: ChaosCluster,
  options: { nodes: readonly string[]; keys: readonly string[] },
): KeySubscriber[] {
  return options.nodes.flatMap((node) =>
    options.keys.map((key) => new KeySubscriber(cluster, { node, key }))
  );
}
