import { assert } from "./assert.ts";

/**
 * One item's place in a {@linkcode RecencyList}. The item holds its links itself, so moving it to the
 * newest end writes a few pointers: no hashing, and no Map or Set entry deleted and re-added (which
 * leaves a hole in the table each time and makes it rehash every few thousand touches).
 */
export class RecencyLink<T> {
  readonly item: T;
  older: RecencyLink<T> | undefined = undefined;
  newer: RecencyLink<T> | undefined = undefined;
  listed = false;

  constructor(item: T) {
    this.item = item;
  }
}

/** Items from least to most recently touched, as a doubly linked list of their {@linkcode RecencyLink}s. */
export class RecencyList<T> {
  #oldest: RecencyLink<T> | undefined = undefined;
  #newest: RecencyLink<T> | undefined = undefined;
  #size = 0;

  /** Items listed. */
  get size(): number {
    return this.#size;
  }

  /** The least recently touched item, or undefined when the list is empty. */
  get oldest(): T | undefined {
    return this.#oldest?.item;
  }

  /** Makes `link` the most recently touched, listing it first when it is not listed. */
  touch(link: RecencyLink<T>): void {
    if (link.listed) {
      if (link === this.#newest) return;
      this.#unlink(link);
    } else {
      link.listed = true;
      this.#size += 1;
    }
    link.older = this.#newest;
    link.newer = undefined;
    if (this.#newest === undefined) this.#oldest = link;
    else this.#newest.newer = link;
    this.#newest = link;
  }

  /** Takes `link` off the list. */
  remove(link: RecencyLink<T>): void {
    assert(link.listed, "only a listed item is removed");
    this.#unlink(link);
    link.older = undefined;
    link.newer = undefined;
    link.listed = false;
    this.#size -= 1;
    assert(this.#size >= 0);
  }

  #unlink(link: RecencyLink<T>): void {
    if (link.older === undefined) this.#oldest = link.newer;
    else link.older.newer = link.newer;
    if (link.newer === undefined) this.#newest = link.older;
    else link.newer.older = link.older;
  }
}
