/** One server-sent event or comment as received. */
export interface SseFrame {
  /** The `event:` field: `ready` for the block that starts every stream (SPEC §4b). */
  event?: string;
  id?: string;
  data?: string;
  comment?: string;
}

/** Reads an event stream frame by frame (`fetch` based; fine for a few streams). */
export class SseReader implements AsyncDisposable {
  readonly response: Response;
  readonly #reader: ReadableStreamDefaultReader<string>;
  #buffer = "";

  private constructor(response: Response) {
    this.response = response;
    this.#reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  }

  /** Opens a stream; throws when the answer is not 200. */
  static async open(url: string, headers: Record<string, string> = {}): Promise<SseReader> {
    const response = await fetch(url, { headers });
    if (response.status !== 200) {
      throw new Error(`subscribe answered ${response.status}: ${await response.text()}`);
    }
    return new SseReader(response);
  }

  /** The next frame, or undefined when the stream ended. Rejects after `timeoutMs`. */
  async next(timeoutMs = 5_000): Promise<SseFrame | undefined> {
    const timer = AbortSignal.timeout(timeoutMs);
    for (;;) { // until a whole frame is buffered or the stream ends
      const end = this.#buffer.indexOf("\n\n");
      if (end !== -1) {
        const block = this.#buffer.slice(0, end);
        this.#buffer = this.#buffer.slice(end + 2);
        return parseFrame(block);
      }
      const read = await Promise.race([
        this.#reader.read(),
        new Promise<never>((_, reject) =>
          timer.addEventListener("abort", () => reject(new Error(`no SSE frame within ${timeoutMs} ms`)))
        ),
      ]);
      if (read.done) return undefined;
      this.#buffer += read.value;
    }
  }

  /** The next frame that is a change (comments and the stream's `ready` block skipped). */
  async nextEvent(timeoutMs = 5_000): Promise<{ id: string; data: Record<string, unknown> }> {
    for (;;) { // skips comments and the ready block until an event
      const frame = await this.next(timeoutMs);
      if (frame === undefined) throw new Error("stream ended");
      if (frame.data !== undefined && frame.event !== "ready") {
        return { id: frame.id ?? "", data: JSON.parse(frame.data) };
      }
    }
  }

  /**
   * The id of the stream's ready block, which must be its first block (comments aside): the position
   * the stream starts from.
   */
  async readyId(timeoutMs = 5_000): Promise<string> {
    for (;;) { // skips comments until the first block
      const frame = await this.next(timeoutMs);
      if (frame === undefined) throw new Error("stream ended before its ready block");
      if (frame.comment !== undefined && frame.data === undefined) continue;
      if (frame.event !== "ready" || frame.id === undefined || frame.data !== '{"event":"Ready"}') {
        throw new Error(`the stream's first block is not its ready block: ${JSON.stringify(frame)}`);
      }
      return frame.id;
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#reader.cancel().catch(() => {});
  }
}

function parseFrame(block: string): SseFrame {
  const frame: SseFrame = {};
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) frame.comment = line.slice(1).trim();
    else if (line.startsWith("event: ")) frame.event = line.slice(7);
    else if (line.startsWith("id: ")) frame.id = line.slice(4);
    else if (line.startsWith("data: ")) {
      frame.data = frame.data === undefined ? line.slice(6) : `${frame.data}\n${line.slice(6)}`;
    }
  }
  return frame;
}
