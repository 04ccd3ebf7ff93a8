/**
 * Counters for `GET /metrics`: a histogram, and a writer of the Prometheus text exposition format
 * (version 0.0.4): `# HELP` and `# TYPE` once per family, then its samples, label values escaped.
 */
import { assert } from "./assert.ts";

/** Upper bounds, in seconds, for latencies from a fraction of a millisecond to seconds. */
export const secondsBounds: readonly number[] = [
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  10,
];

/** Upper bounds for counts of things per batch. */
export const countBounds: readonly number[] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/** Observations counted into buckets by upper bound (`value <= bound`), plus their sum and count. */
export class Histogram {
  readonly bounds: readonly number[];
  /** Per bucket, not cumulative; the last one is +Inf. */
  readonly #counts: number[];
  sum = 0;
  count = 0;

  constructor(bounds: readonly number[]) {
    assert(bounds.every((bound, index) => index === 0 || bound > bounds[index - 1]!), "bounds ascend");
    this.bounds = bounds;
    this.#counts = new Array<number>(bounds.length + 1).fill(0);
  }

  observe(value: number): void {
    let index = 0;
    while (index < this.bounds.length && value > this.bounds[index]!) index += 1;
    this.#counts[index]! += 1;
    this.sum += value;
    this.count += 1;
  }

  /** Counts `count` observations of one `value` (a fan-out's deliveries, all timed by one clock read). */
  observeMany(value: number, count: number): void {
    assert(Number.isSafeInteger(count));
    assert(count >= 1);
    let index = 0;
    while (index < this.bounds.length && value > this.bounds[index]!) index += 1;
    this.#counts[index]! += count;
    this.sum += value * count;
    this.count += count;
  }

  /** Cumulative counts, one per bound and a last one for +Inf (equal to `count`). */
  cumulative(): number[] {
    let total = 0;
    return this.#counts.map((count) => total += count);
  }
}

/** Label names to values of one sample. Names must match `[a-zA-Z_][a-zA-Z0-9_]*`. */
export type Labels = Readonly<Record<string, string | number>>;

const metricName = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const labelName = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Builds one exposition: families in the order written, each announced once. */
export class MetricsText {
  readonly #lines: string[] = [];
  readonly #families = new Set<string>();

  /** A counter family; `name` must end in `_total`. */
  counter(name: string, help: string, samples: ReadonlyArray<readonly [Labels, number]>): this {
    assert(name.endsWith("_total"), `counter ${name} must end in _total`);
    this.#family(name, "counter", help);
    for (const [labels, value] of samples) this.#sample(name, labels, value);
    return this;
  }

  gauge(name: string, help: string, samples: ReadonlyArray<readonly [Labels, number]>): this {
    this.#family(name, "gauge", help);
    for (const [labels, value] of samples) this.#sample(name, labels, value);
    return this;
  }

  histogram(name: string, help: string, samples: ReadonlyArray<readonly [Labels, Histogram]>): this {
    this.#family(name, "histogram", help);
    for (const [labels, histogram] of samples) {
      const cumulative = histogram.cumulative();
      histogram.bounds.forEach((bound, index) => {
        this.#sample(`${name}_bucket`, { ...labels, le: formatValue(bound) }, cumulative[index]!);
      });
      this.#sample(`${name}_bucket`, { ...labels, le: "+Inf" }, histogram.count);
      this.#sample(`${name}_sum`, labels, histogram.sum);
      this.#sample(`${name}_count`, labels, histogram.count);
    }
    return this;
  }

  /** The exposition, ending with a newline. */
  text(): string {
    return this.#lines.length === 0 ? "" : `${this.#lines.join("\n")}\n`;
  }

  #family(name: string, type: string, help: string): void {
    assert(metricName.test(name), `metric name ${name}`);
    assert(!this.#families.has(name), `family ${name} written twice`);
    this.#families.add(name);
    this.#lines.push(`# HELP ${name} ${help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}`);
    this.#lines.push(`# TYPE ${name} ${type}`);
  }

  #sample(name: string, labels: Labels, value: number): void {
    const pairs = Object.entries(labels).map(([label, text]) => {
      assert(labelName.test(label) && !label.startsWith("__"), `label name ${label}`);
      return `${label}="${escapeLabelValue(String(text))}"`;
    });
    const labelText = pairs.length === 0 ? "" : `{${pairs.join(",")}}`;
    this.#lines.push(`${name}${labelText} ${formatValue(value)}`);
  }
}

function escapeLabelValue(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}
