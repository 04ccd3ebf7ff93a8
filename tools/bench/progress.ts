/**
 * The progress display of `deno task bench`. On a terminal each step is one line that updates in place
 * (`▸ step  12.3 s / ~20 s`) and ends as `✓ step  19.8 s`; otherwise (a log file, CI) each step prints
 * one line when it starts and one when it ends. Every step has a deadline: when it passes, the step's
 * signal aborts and the step fails, so no step can hang the run.
 *
 * @module
 */
import { messageOf } from "./lib.ts";

/** Options of {@linkcode Progress.step}. */
export interface StepOptions {
  /** What the step is expected to take, shown next to the elapsed time. */
  expectedSecs: number;
  /** The step fails when it takes longer. @default 3 × expectedSecs + 30 */
  timeoutSecs?: number;
}

const encoder = new TextEncoder();
const redrawIntervalMs = 250;

/** Shows steps as they run; see the module doc. */
export class Progress {
  readonly #terminal = Deno.stdout.isTerminal();
  readonly #runStartedMs = performance.now();

  /** Seconds since the run started. */
  get elapsedSecs(): number {
    return (performance.now() - this.#runStartedMs) / 1000;
  }

  /**
   * Runs one step under a deadline; `run` gets a signal that aborts at the deadline.
   *
   * @throws whatever `run` throws, or an Error naming the step when the deadline passes.
   */
  async step<T>(name: string, options: StepOptions, run: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const timeoutSecs = options.timeoutSecs ?? options.expectedSecs * 3 + 30;
    const controller = new AbortController();
    const startedMs = performance.now();
    const elapsed = () => ((performance.now() - startedMs) / 1000).toFixed(1);
    const expected = `~${Math.ceil(options.expectedSecs)} s`;
    this.#begin(`▸ ${name}`, expected);
    const redraw = this.#terminal
      ? setInterval(() => this.#write(`\r\x1b[2K▸ ${name}  ${elapsed()} s / ${expected}`), redrawIntervalMs)
      : undefined;
    let deadline: ReturnType<typeof setTimeout> | undefined;
    const expired = new Promise<never>((_, reject) => {
      deadline = setTimeout(() => {
        const error = new Error(`step "${name}" took longer than its ${timeoutSecs} s deadline`);
        controller.abort(error);
        reject(error);
      }, timeoutSecs * 1000);
    });
    try {
      const result = await Promise.race([run(controller.signal), expired]);
      this.#end(`✓ ${name}  ${elapsed()} s`);
      return result;
    } catch (error) {
      controller.abort(error);
      this.#end(`✗ ${name}  ${elapsed()} s: ${messageOf(error).slice(0, 300)}`);
      throw error;
    } finally {
      clearInterval(redraw);
      clearTimeout(deadline);
    }
  }

  /** Prints a line of its own (between steps). */
  note(line: string): void {
    this.#write(`${line}\n`);
  }

  #begin(label: string, expected: string): void {
    if (this.#terminal) this.#write(`${label}  0.0 s / ${expected}`);
    else this.#write(`${label} (expected ${expected})\n`);
  }

  #end(line: string): void {
    this.#write(this.#terminal ? `\r\x1b[2K${line}\n` : `${line}\n`);
  }

  #write(text: string): void {
    Deno.stdout.writeSync(encoder.encode(text));
  }
}
