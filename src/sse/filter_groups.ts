import { type Filter, type FilterRecord, recordOfJson } from "../filter/mod.ts";
import { assert } from "../util/assert.ts";
import { FilterStates } from "./filter_states.ts";

/** States of filtered tables remembered per table, to tell a `Left` (see `FilterStates`). */
export const filterStatesPerTableMax = 100_000;
/** Chars of those states per table: about 32 MiB. */
export const filterStateCharsPerTableMax = 16 << 20;

/** What one change is to the subscribers of one filter. */
export type FilterVerdict = "change" | "left";

/** The stored json a tombstone leaves in `FilterStates`: matches no filter. */
const deletedState = "";

/**
 * The filters of the filtered table streams, grouped by table and by canonical text, so that a change is
 * parsed once and each distinct filter evaluated once, whatever the number of subscribers sharing it; a
 * table without filtered subscribers costs a change one map lookup (see `DESIGN.md`, "Filters").
 */
export class FilterGroups {
  /** table -> filter text -> the filter and its group's topic (the broker's registry key). */
  readonly #groups = new Map<string, Map<string, { filter: Filter; topic: string }>>();
  readonly #states = new FilterStates({
    entriesMax: filterStatesPerTableMax,
    charsMax: filterStateCharsPerTableMax,
  });

  /** The registry topic of `filter`'s group on `table`, created when new. */
  join(table: string, filter: Filter): string {
    let groups = this.#groups.get(table);
    if (groups === undefined) {
      groups = new Map();
      this.#groups.set(table, groups);
    }
    let group = groups.get(filter.text);
    if (group === undefined) {
      group = { filter, topic: `${table.length}:${table}\n${filter.text}` };
      groups.set(filter.text, group);
    }
    assert(groups.get(filter.text) === group);
    return group.topic;
  }

  /** The group of `topic` has no subscriber left: forgets it, and its table's states with its last group. */
  leave(table: string, filter: Filter): void {
    const groups = this.#groups.get(table);
    if (groups === undefined) return;
    groups.delete(filter.text);
    if (groups.size > 0) return;
    this.#groups.delete(table);
    this.#states.dropTable(table);
    assert(!this.#groups.has(table));
  }

  /** Tables some stream filters. */
  get tableCount(): number {
    return this.#groups.size;
  }

  /** True when some stream filters `table`. */
  has(table: string): boolean {
    return this.#groups.has(table);
  }

  /**
   * Calls `send` once per group that must hear of a change: `"change"` when the new state matches (or the
   * key was deleted and its previous state matched, or is unknown), `"left"` when it does not and the
   * previous state matched or is unknown. Remembers the new state.
   */
  eachVerdict(
    change: { table: string; key: string; json: string; deleted: boolean },
    send: (topic: string, verdict: FilterVerdict) => void,
  ): void {
    const groups = this.#groups.get(change.table);
    if (groups === undefined) return;
    const record = change.deleted ? undefined : recordOfJson(change.key, change.json);
    const previousJson = this.#states.get(change.table, change.key);
    let previous: FilterRecord | null | undefined; // null: deleted before; undefined: not parsed yet
    for (const { filter, topic } of groups.values()) {
      if (record !== undefined && filter.matches(record)) {
        send(topic, "change");
        continue;
      }
      if (previousJson !== undefined) {
        previous ??= previousJson === deletedState ? null : recordOfJson(change.key, previousJson);
        if (previous === null || !filter.matches(previous)) continue; // it was not in the filter either
      }
      send(topic, change.deleted ? "change" : "left");
    }
    this.remember(change);
  }

  /** Remembers a key's state (a published change, or a snapshot's record) for later verdicts. */
  remember(change: { table: string; key: string; json: string; deleted: boolean }): void {
    if (!this.#groups.has(change.table)) return;
    this.#states.set(change.table, change.key, change.deleted ? deletedState : change.json);
  }

  /** True when `filter` admits the live state `json` of `key` (snapshots and replays). */
  static admits(filter: Filter, state: { key: string; json: string }): boolean {
    return filter.matches(recordOfJson(state.key, state.json));
  }
}
