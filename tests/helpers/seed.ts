/** A seeded PRNG (mulberry32) so a randomized test can be replayed with `KV_TEST_SEED=<n>`. */
export class Random {
  readonly seed: number;
  #state: number;

  constructor(seed: number) {
    this.seed = seed >>> 0;
    this.#state = this.seed;
  }

  /** Seed from `KV_TEST_SEED`, else a fresh one; prints it either way. */
  static fromEnv(label: string): Random {
    const given = Deno.env.get("KV_TEST_SEED");
    const seed = given === undefined ? Math.floor(Math.random() * 2 ** 32) : Number(given);
    console.log(`${label}: KV_TEST_SEED=${seed}`);
    return new Random(seed);
  }

  /** A float in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, bound). */
  int(bound: number): number {
    return Math.floor(this.next() * bound);
  }

  /** One element of `items`. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
}
