import { KvError } from "../util/errors.ts";

/** A subscribe over `subscribersMax`; the HTTP layer answers it before the stream starts. */
export class TooManySubscribersError extends KvError {
  constructor(options: { subscriberCount: number; subscribersMax: number }) {
    super(
      "too_many_subscribers",
      `Cannot subscribe: ${options.subscriberCount} subscribers are open, ` +
        `limit is subscribersMax=${options.subscribersMax}`,
    );
  }
}

/**
 * The reason a subscriber's stream is errored when its queue is full. It never reaches a client as a
 * body (the stream has started); the client sees the stream end and reconnects with `Last-Event-ID`.
 */
export class SubscriberTooSlowError extends KvError {
  /**
   * Deno.serve prints the error that ends a response stream; this makes that print one log-shaped line
   * instead of a stack trace.
   */
  [Symbol.for("Deno.customInspect")](): string {
    return `${new Date().toISOString()} WARN ${this.message}`;
  }

  constructor(options: { queueDepthMax: number }) {
    super(
      "subscriber_too_slow",
      `Disconnected a slow subscriber: ${options.queueDepthMax} events were queued, ` +
        "limit is sseQueueDepthMax",
    );
  }
}
