import { assert } from "../util/assert.ts";

/** Options of {@linkcode FilterStates}. */
export interface FilterStatesOptions {
  /** States remembered per table. */
  entriesMax: number;
  /** UTF-16 code units of json remembered per table (a bound on memory, about 2 bytes each). */
  charsMax: number;
}

/** One table's remembered states: a Map in least-recently-changed-first order, and its size in chars. */
interface TableStates {
  readonly byKey: Map<string, string>;
  chars: number;
}

/**
 * The last published json of each key of the tables that have filtered subscribers, so a change can be
 * told apart as "left the filter" (the previous state matched, the new one does not) from "never was in
 * it" (see `DESIGN.md`, "Filters"). Bounded per table by entries and by chars; the least recently changed
 * are forgotten first, and a forgotten state reads as unknown (the broker then sends `Left` to be safe).
 */
export class FilterStates {
  readonly #options: FilterStatesOptions;
  readonly #tables = new Map<string, TableStates>();

  constructor(options: FilterStatesOptions) {
    assert(options.entriesMax >= 1);
    assert(options.charsMax >= 1);
    this.#options = options;
  }

  /** Tables whose states are remembered. */
  get tableCount(): number {
    return this.#tables.size;
  }

  /** The last state remembered for the key, or undefined when unknown. */
  get(table: string, key: string): string | undefined {
    return this.#tables.get(table)?.byKey.get(key);
  }

  /** Remembers `json` as the key's newest state, forgetting the least recently changed beyond the bounds. */
  set(table: string, key: string, json: string): void {
    let states = this.#tables.get(table);
    if (states === undefined) {
      states = { byKey: new Map(), chars: 0 };
      this.#tables.set(table, states);
    }
    const previous = states.byKey.get(key);
    if (previous !== undefined) {
      states.byKey.delete(key);
      states.chars -= previous.length;
    }
    if (json.length > this.#options.charsMax) return; // too large to remember: it reads as unknown
    states.byKey.set(key, json);
    states.chars += json.length;
    // Bounded: each pass forgets one state.
    while (states.byKey.size > this.#options.entriesMax || states.chars > this.#options.charsMax) {
      const [oldestKey, oldestJson] = states.byKey.entries().next().value!;
      states.byKey.delete(oldestKey);
      states.chars -= oldestJson.length;
    }
    assert(states.chars >= 0);
    assert(states.byKey.size <= this.#options.entriesMax);
  }

  /** Forgets a table's states (its last filtered subscriber left). */
  dropTable(table: string): void {
    this.#tables.delete(table);
    assert(!this.#tables.has(table));
  }
}
