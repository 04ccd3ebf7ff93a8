/**
 * The records of the records scenarios: `{"id": i, "text": <50 words of lorem ipsum>}`, the words chosen
 * by a seeded generator (mulberry32) so every run writes the same data, over HTTP or into the store.
 *
 * @module
 */

const loremWords = (
  "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore " +
  "et dolore magna aliqua ut enim ad minim veniam quis nostrud exercitation ullamco laboris nisi ex ea " +
  "commodo consequat duis aute irure in reprehenderit voluptate velit esse cillum fugiat nulla pariatur " +
  "excepteur sint occaecat cupidatat non proident sunt culpa qui officia deserunt mollit anim id est laborum"
).split(" ");

/** Words in each record's text. */
export const loremWordCount = 50;

/** 50 words of lorem ipsum chosen by a generator seeded with `seed`, like a real lorem generator. */
export function lorem(seed: number): string {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let mixed = Math.imul(state ^ (state >>> 15), state | 1);
    mixed ^= mixed + Math.imul(mixed ^ (mixed >>> 7), mixed | 61);
    return ((mixed ^ (mixed >>> 14)) >>> 0) / 4294967296;
  };
  return Array.from({ length: loremWordCount }, () => loremWords[Math.floor(next() * loremWords.length)])
    .join(" ");
}

/** The table the records go to. */
export const recordTable = "lorem";

/** Key and value of record `index`. */
export function recordOf(index: number): { key: string; value: { id: number; text: string } } {
  return { key: `r${index}`, value: { id: index, text: lorem(index) } };
}
