/**
 * A real EventSource (the npm `eventsource` package, WHATWG-conformant: it records ids, sends
 * `Last-Event-ID` and reconnects by itself) with everything it dispatched recorded, for tests that check
 * what a browser-like client receives across cuts and restarts.
 */
import { EventSource } from "eventsource";

/** One `message` (a change) as the client received it. */
export interface ReceivedChange {
  /** The event's `lastEventId`: the change's version on a key stream. */
  id: string;
  data: {
    event: string;
    table?: string;
    key?: string;
    version?: number;
    value?: { version?: number; value?: unknown };
  };
}

/** An open EventSource and what it received; `await using` closes it. */
export class EventSourceLog implements AsyncDisposable {
  readonly source: EventSource;
  /** The ids of the `ready` events, one per (re)connection. */
  readonly readyIds: string[] = [];
  readonly changes: ReceivedChange[] = [];
  /** Connections opened (`open` events). */
  openCount = 0;
  /** `error` events: a lost connection, a refused reconnect. */
  errorCount = 0;

  constructor(url: string) {
    this.source = new EventSource(url);
    this.source.addEventListener("open", () => this.openCount += 1);
    this.source.addEventListener("error", () => this.errorCount += 1);
    this.source.addEventListener("ready", (event) => this.readyIds.push(event.lastEventId));
    this.source.addEventListener("message", (event) => {
      this.changes.push({ id: event.lastEventId, data: JSON.parse(event.data) });
    });
  }

  /** The versions of the changes received, in order. */
  versions(): number[] {
    return this.changes.map((change) => change.data.value?.version ?? Number.NaN);
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.source.close();
    return Promise.resolve();
  }
}
