/**
 * A strict reader of the Prometheus text exposition format 0.0.4, for tests: it throws on any line the
 * format does not allow, and checks the rules a scraper relies on (one HELP and TYPE per family, before
 * its samples; samples of a family together; names and label names well formed; label values escaped;
 * no duplicate series; histogram buckets ascending by `le`, cumulative, ending at +Inf equal to `_count`;
 * counters non-negative and named `_total`).
 */
import assert from "node:assert/strict";

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  type: "counter" | "gauge" | "histogram" | "summary" | "untyped";
  help: string;
  samples: Sample[];
}

const metricName = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const labelName = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const suffixes: Record<Family["type"], readonly string[]> = {
  counter: [""],
  gauge: [""],
  untyped: [""],
  histogram: ["_bucket", "_sum", "_count"],
  summary: ["", "_sum", "_count"],
};

/** Parses `text`; throws an AssertionError naming the line that breaks a rule. */
export function parseExposition(text: string): Map<string, Family> {
  assert.ok(text.endsWith("\n"), "the exposition ends with a newline");
  const families = new Map<string, Family>();
  let current: Family | undefined;
  const closed = new Set<string>();
  const seriesSeen = new Set<string>();
  for (const [index, line] of text.slice(0, -1).split("\n").entries()) {
    const where = `line ${index + 1}: ${line}`;
    if (line.startsWith("# HELP ") || line.startsWith("# TYPE ")) {
      const [, kind, name, ...rest] = line.split(" ");
      assert.ok(name !== undefined && metricName.test(name), where);
      let family = families.get(name);
      if (family === undefined) {
        assert.ok(!closed.has(name), `${where}: family announced after its samples ended`);
        family = { name, type: "untyped", help: "", samples: [] };
        families.set(name, family);
      }
      assert.equal(family.samples.length, 0, `${where}: HELP/TYPE after samples`);
      if (current !== undefined && current !== family) closed.add(current.name);
      current = family;
      if (kind === "TYPE") {
        assert.ok(rest.length === 1 && rest[0]! in suffixes, `${where}: unknown type`);
        family.type = rest[0] as Family["type"];
      } else {
        family.help = unescape(rest.join(" "), false);
      }
      continue;
    }
    if (line.startsWith("#") || line === "") continue;
    const sample = parseSample(line, where);
    const family = familyOf(sample.name, families);
    assert.ok(family !== undefined, `${where}: sample without a TYPE`);
    assert.ok(!closed.has(family.name), `${where}: samples of ${family.name} are not together`);
    if (current !== family) {
      if (current !== undefined) closed.add(current.name);
      current = family;
    }
    const series = `${sample.name}${JSON.stringify(Object.entries(sample.labels).sort())}`;
    assert.ok(!seriesSeen.has(series), `${where}: duplicate series`);
    seriesSeen.add(series);
    family.samples.push(sample);
  }
  for (const family of families.values()) checkFamily(family);
  return families;
}

function familyOf(sampleName: string, families: Map<string, Family>): Family | undefined {
  for (const family of families.values()) {
    for (const suffix of suffixes[family.type]) {
      if (sampleName === `${family.name}${suffix}`) return family;
    }
  }
  return undefined;
}

function parseSample(line: string, where: string): Sample {
  const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)( -?\d+)?$/.exec(line);
  assert.ok(match !== null, `${where}: not a sample`);
  const labels: Record<string, string> = {};
  if (match[2] !== undefined) {
    let rest = match[2].slice(1, -1);
    while (rest.length > 0) {
      const pair = /^([^=]+)="((?:[^"\\]|\\[\\"n])*)"(,|$)/.exec(rest);
      assert.ok(pair !== null, `${where}: bad label pair in ${rest}`);
      assert.ok(labelName.test(pair[1]!) && !pair[1]!.startsWith("__"), `${where}: label name ${pair[1]}`);
      assert.ok(!(pair[1]! in labels), `${where}: label ${pair[1]} twice`);
      labels[pair[1]!] = unescape(pair[2]!, true);
      rest = rest.slice(pair[0].length);
    }
  }
  const text = match[3]!;
  const value = text === "+Inf" ? Infinity : text === "-Inf" ? -Infinity : Number(text);
  assert.ok(text === "NaN" || !Number.isNaN(value), `${where}: value ${text}`);
  return { name: match[1]!, labels, value };
}

function unescape(text: string, quotes: boolean): string {
  return text.replace(/\\(.)/g, (whole, char: string) => {
    if (char === "\\") return "\\";
    if (char === "n") return "\n";
    if (char === '"' && quotes) return '"';
    throw new assert.AssertionError({ message: `bad escape ${whole} in ${text}` });
  });
}

function checkFamily(family: Family): void {
  if (family.type === "counter") {
    assert.ok(family.name.endsWith("_total"), `counter ${family.name} is named _total`);
    for (const sample of family.samples) assert.ok(sample.value >= 0, `${family.name} is negative`);
  }
  if (family.type !== "histogram") return;
  const groups = new Map<string, Sample[]>();
  for (const sample of family.samples) {
    const { le: _le, ...rest } = sample.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    groups.set(key, [...(groups.get(key) ?? []), sample]);
  }
  for (const [key, samples] of groups) {
    const buckets = samples.filter((sample) => sample.name === `${family.name}_bucket`);
    const count = samples.find((sample) => sample.name === `${family.name}_count`);
    const sum = samples.find((sample) => sample.name === `${family.name}_sum`);
    assert.ok(count !== undefined && sum !== undefined, `${family.name}${key}: _count and _sum`);
    assert.ok(buckets.length > 0, `${family.name}${key}: buckets`);
    const bounds = buckets.map((bucket) => {
      assert.ok(bucket.labels.le !== undefined, `${family.name}${key}: bucket without le`);
      return bucket.labels.le === "+Inf" ? Infinity : Number(bucket.labels.le);
    });
    for (let index = 1; index < buckets.length; index += 1) {
      assert.ok(bounds[index]! > bounds[index - 1]!, `${family.name}${key}: le ascends`);
      assert.ok(buckets[index]!.value >= buckets[index - 1]!.value, `${family.name}${key}: cumulative`);
    }
    assert.equal(bounds.at(-1), Infinity, `${family.name}${key}: ends at +Inf`);
    assert.equal(buckets.at(-1)!.value, count.value, `${family.name}${key}: +Inf bucket equals _count`);
  }
}

/** The value of the one sample of `name` whose labels include `labels`, or undefined. */
export function valueOf(
  families: Map<string, Family>,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  for (const family of families.values()) {
    for (const sample of family.samples) {
      if (sample.name !== name) continue;
      if (Object.entries(labels).every(([label, value]) => sample.labels[label] === value)) {
        return sample.value;
      }
    }
  }
  return undefined;
}
