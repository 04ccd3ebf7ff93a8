import { assert } from "../util/assert.ts";
import { deflateRecords, inflateRecords } from "./frame.ts";

/**
 * Bytes of the address space one slot of the page directory covers. A page takes the slots its record
 * starts fall in: a write page or a page of one large record one slot, a page read from a file one per
 * 64 KiB.
 */
export const slotBytes = 64 * 1024;
/** Bytes of a page records are appended to; a record that does not fit one gets a page of its own. */
export const writePageBytes = slotBytes;
/** Write pages sealed after a page before it is deflated (see `Page.freeze`). */
export const freezeLagPages = 8;

/**
 * A run of records, each after its u32 length as in a frame's plaintext: a frame read from a file
 * (adopted as is, without a copy) or a page written records are appended to.
 *
 * A page adopted from a deflated frame goes cold once indexed: it keeps the deflated bytes (about 5x
 * smaller) and inflates them again at the first read of one of its records. So a restart inflates
 * each frame once, to index it, into memory that is reused for the next frame, instead of writing its
 * whole state into fresh memory (the cost that dominated a restart: ~3 ms per MB here, in page faults).
 */
export class Page {
  /** Address of `bytes[0]`. */
  readonly base: number;
  /** Slots of the directory naming this page, from `base / slotBytes`. */
  readonly slotCount: number;
  /** Bytes of `bytes`, cold or not. */
  readonly sizeBytes: number;
  /** Bytes holding records (length prefixes included); the rest of a write page is free. */
  usedBytes: number;
  /** Bytes of the records some key points at, length prefixes included. */
  liveBytes = 0;
  /** False while records may still be appended (the write page) or indexed (a page being adopted). */
  sealed = false;
  /** True while it waits in the sparse queue. */
  queued = false;
  #bytes: Uint8Array | undefined;
  /** The deflated bytes `bytes` inflate from, while the page is adopted or cold. */
  #deflated: Uint8Array | undefined;

  constructor(
    options: { bytes: Uint8Array; deflated?: Uint8Array; base: number; slotCount: number; usedBytes: number },
  ) {
    this.#bytes = options.bytes;
    this.#deflated = options.deflated;
    this.base = options.base;
    this.slotCount = options.slotCount;
    this.sizeBytes = options.bytes.length;
    this.usedBytes = options.usedBytes;
    assert(this.slotCount >= 1);
    assert(this.usedBytes <= this.sizeBytes);
  }

  /** The records, inflated again when the page is cold (and then kept). */
  get bytes(): Uint8Array {
    if (this.#bytes === undefined) {
      assert(this.#deflated !== undefined, "only a page with deflated bytes goes cold");
      this.#bytes = inflateRecords(this.#deflated, this.sizeBytes);
      this.#deflated = undefined;
    }
    return this.#bytes;
  }

  /** True while the page holds only its deflated bytes. */
  get cold(): boolean {
    return this.#bytes === undefined;
  }

  /**
   * Deflates a sealed write page and keeps only that, as a page read from a file is kept after a restart:
   * records written and not read again take about a fifth of the memory. The buffer is left to the
   * garbage collector rather than freed at once, since a span read before may still point into it.
   */
  freeze(): void {
    assert(this.sealed, "a page is frozen once nothing is appended to it");
    if (this.#bytes === undefined || this.#deflated !== undefined) return;
    this.#deflated = deflateRecords(this.#bytes);
    this.#bytes = undefined;
  }

  /**
   * Lets go of the records when they can be inflated again, and frees their buffer at once (the page
   * owns it, see {@linkcode RecordPages.adopt}): the next frame inflated at open then reuses that memory
   * instead of faulting in fresh pages until a garbage collection frees it, ~10% of a restart.
   */
  cool(): void {
    assert(this.sealed, "a page goes cold once nothing is appended or indexed into it");
    if (this.#deflated === undefined || this.#bytes === undefined) return;
    const { buffer } = this.#bytes;
    this.#bytes = undefined;
    if (buffer instanceof ArrayBuffer && !buffer.detached) buffer.transfer(0);
  }
}

/** Where one record lies: `bytes[start, end)`, its u32 length just before `start`. */
export interface RecordSpan {
  readonly bytes: Uint8Array;
  readonly start: number;
  readonly end: number;
}

/** The pages as they were at one moment, to read a cut of addresses while the pages change. */
export interface PagesView {
  /** The record at `address`, as it was when the view was taken. */
  recordAt(address: number): RecordSpan;
}

function lengthAt(bytes: Uint8Array, offset: number): number {
  return ((bytes[offset]! << 24) | (bytes[offset + 1]! << 16) | (bytes[offset + 2]! << 8) |
    bytes[offset + 3]!) >>> 0;
}

function writeLength(bytes: Uint8Array, offset: number, length: number): void {
  bytes[offset] = length >>> 24;
  bytes[offset + 1] = (length >>> 16) & 0xff;
  bytes[offset + 2] = (length >>> 8) & 0xff;
  bytes[offset + 3] = length & 0xff;
}

function spanIn(slots: ReadonlyArray<Page | undefined>, address: number): RecordSpan {
  assert(Number.isSafeInteger(address) && address >= 0, "an address is a non-negative integer");
  const page = slots[Math.floor(address / slotBytes)];
  assert(page !== undefined, "an address names a page in the directory");
  const offset = address - page.base;
  const start = offset + 4;
  const end = start + lengthAt(page.bytes, offset);
  assert(end <= page.usedBytes, "a record lies inside its page");
  return { bytes: page.bytes, start, end };
}

/**
 * The records the visible index points at, packed in pages, each named by an address: a number, so that
 * the index of a million keys holds a million small integers instead of a million objects and strings
 * for the garbage collector to trace and copy. Pages are never modified once written, so a view taken
 * before changes still reads the records it saw.
 *
 * Each page counts the bytes of its records some key points at (`retain`/`release`). A page nobody
 * points at is dropped; a sealed page with less than half of its bytes live is queued as sparse, and the
 * index moves its live records to the write page (`compact`), so dead bytes stay below about as many
 * as live ones.
 */
export class RecordPages {
  /** Page by slot: the page holding address `a` is `slots[floor(a / slotBytes)]`. */
  readonly #slots: Array<Page | undefined> = [];
  #dropCount = 0;
  /** Slots of dropped pages, reused one at a time by write pages. */
  readonly #freeSlots: number[] = [];
  readonly #sparse: Page[] = [];
  /** Write pages sealed lately, oldest first; see `#sealWritePage`. */
  readonly #sealedRecently: Page[] = [];
  #writePage: Page | undefined;
  #liveBytes = 0;
  #pageBytes = 0;

  /** Bytes of records some key points at, length prefixes included. */
  get liveBytes(): number {
    return this.#liveBytes;
  }

  /**
   * Pages dropped so far. The bytes at an address never change while its page is held; once a page is
   * dropped its slots may hold other records, so what was decoded from an address is stale when this moved.
   */
  get dropCount(): number {
    return this.#dropCount;
  }

  /** Bytes of every page held (live, dead and, in the write page, free). */
  get pageBytes(): number {
    return this.#pageBytes;
  }

  /** Pages held that keep only their deflated records. */
  get coldPageCount(): number {
    return this.#countPages((page) => page.cold);
  }

  /** Pages held. */
  get pageCount(): number {
    return this.#countPages(() => true);
  }

  /** Pages held for which `test` holds; each counted once, at its first slot. */
  #countPages(test: (page: Page) => boolean): number {
    let count = 0;
    for (let slot = 0; slot < this.#slots.length; slot += 1) {
      const page = this.#slots[slot];
      if (page !== undefined && page.base === slot * slotBytes && test(page)) count += 1;
    }
    return count;
  }

  /**
   * Takes `bytes` (a frame's plaintext records, read from a file) as a page as is. Its records are
   * addressed by {@linkcode RecordPages.addressIn} while it is being indexed; `seal` ends that. With
   * `deflated` (what `bytes` was inflated from), the page owns the buffer of `bytes`, the only view of
   * it, and frees it when it goes cold at `seal`: nothing may read `bytes` after that.
   */
  adopt(bytes: Uint8Array, deflated?: Uint8Array): Page {
    assert(bytes.length > 0);
    const firstSlot = this.#slots.length;
    const page = this.#newPage({
      bytes,
      ...(deflated === undefined ? {} : { deflated }),
      firstSlot,
      slotCount: Math.ceil(bytes.length / slotBytes),
      usedBytes: bytes.length,
    });
    for (let slot = 0; slot < page.slotCount; slot += 1) this.#slots.push(page);
    assert(this.#slots.length === firstSlot + page.slotCount);
    return page;
  }

  /** The address of the record whose u32 length prefix is at `bytes[offset]` of an adopted `page`. */
  addressIn(page: Page, offset: number): number {
    assert(!page.sealed, "records are addressed while their page is being indexed");
    assert(
      offset >= 0 && offset + 4 + lengthAt(page.bytes, offset) <= page.usedBytes,
      "the record lies in the page",
    );
    return page.base + offset;
  }

  /**
   * Ends the indexing of an adopted page: it is dropped at once when no key points into it, and goes
   * cold when it can (a sparse one stays as it is: compaction reads it next).
   */
  seal(page: Page): void {
    assert(!page.sealed);
    page.sealed = true;
    this.#settle(page);
    if (page.liveBytes > 0 && !page.queued) page.cool();
  }

  /** Copies an encoded record into the write page (a page of its own when larger); returns its address. */
  append(record: Uint8Array): number {
    assert(record.length > 0);
    const framedBytes = 4 + record.length;
    if (framedBytes > writePageBytes) {
      const page = this.#newPage({
        bytes: new Uint8Array(framedBytes),
        firstSlot: this.#takeSlot(),
        slotCount: 1,
        usedBytes: 0,
      });
      this.#slots[page.base / slotBytes] = page;
      return this.#appendTo(page, record);
    }
    let page = this.#writePage;
    if (page === undefined || page.usedBytes + framedBytes > page.bytes.length) {
      if (page !== undefined) this.#sealWritePage(page);
      page = this.#newPage({
        bytes: new Uint8Array(writePageBytes),
        firstSlot: this.#takeSlot(),
        slotCount: 1,
        usedBytes: 0,
      });
      this.#slots[page.base / slotBytes] = page;
      this.#writePage = page;
    }
    return this.#appendTo(page, record);
  }

  /** The record at `address`. */
  recordAt(address: number): RecordSpan {
    return spanIn(this.#slots, address);
  }

  /** The first byte (the op) of the record at `address`. */
  opAt(address: number): number {
    const span = spanIn(this.#slots, address);
    return span.bytes[span.start]!;
  }

  /** A key now points at the record at `address`. */
  retain(address: number): void {
    const page = this.#pageAt(address);
    const bytes = 4 + lengthAt(page.bytes, address - page.base);
    page.liveBytes += bytes;
    this.#liveBytes += bytes;
    assert(page.liveBytes <= page.usedBytes);
  }

  /** No key points at the record at `address` any more: its page may be dropped or become sparse. */
  release(address: number): void {
    const page = this.#pageAt(address);
    const bytes = 4 + lengthAt(page.bytes, address - page.base);
    page.liveBytes -= bytes;
    this.#liveBytes -= bytes;
    assert(page.liveBytes >= 0);
    assert(this.#liveBytes >= 0);
    this.#settle(page);
  }

  /**
   * Takes the sparse pages queued since the last call: the caller moves their live records elsewhere
   * (reading them with {@linkcode RecordPages.records}), and each is dropped when its last goes.
   */
  takeSparse(): Page[] {
    const pages = this.#sparse.splice(0);
    for (const page of pages) page.queued = false;
    return pages.filter((page) => this.#slots[page.base / slotBytes] === page);
  }

  /** Every record of `page` with its address, in page order, live or not. */
  *records(page: Page): Iterable<{ address: number; span: RecordSpan }> {
    let offset = 0;
    // Bounded by the page's used bytes: each step moves past one record.
    while (offset < page.usedBytes) {
      assert(offset + 4 <= page.usedBytes);
      const start = offset + 4;
      const end = start + lengthAt(page.bytes, offset);
      assert(end <= page.usedBytes);
      yield { address: page.base + offset, span: { bytes: page.bytes, start, end } };
      offset = end;
    }
  }

  /** A view of the pages as they are now; later drops and reuse of slots do not change what it reads. */
  view(): PagesView {
    const slots = this.#slots.slice();
    return { recordAt: (address) => spanIn(slots, address) };
  }

  #newPage(
    options: {
      bytes: Uint8Array;
      deflated?: Uint8Array;
      firstSlot: number;
      slotCount: number;
      usedBytes: number;
    },
  ): Page {
    this.#pageBytes += options.bytes.length;
    return new Page({ ...options, base: options.firstSlot * slotBytes });
  }

  #appendTo(page: Page, record: Uint8Array): number {
    const offset = page.usedBytes;
    assert(offset + 4 + record.length <= page.bytes.length);
    writeLength(page.bytes, offset, record.length);
    page.bytes.set(record, offset + 4);
    page.usedBytes = offset + 4 + record.length;
    if (page !== this.#writePage) page.sealed = true; // a page of one large record is complete
    return page.base + offset;
  }

  #sealWritePage(page: Page): void {
    assert(page === this.#writePage);
    this.#writePage = undefined;
    page.sealed = true;
    this.#settle(page);
    // Deflated once `freezeLagPages` newer pages were sealed, if it is still held and dense: under
    // overwrites most pages turn sparse (compaction reads them) or dead by then, and deflating them at
    // once cost ~2% of a durable PUT; records written once are deflated a few pages later.
    this.#sealedRecently.push(page);
    if (this.#sealedRecently.length <= freezeLagPages) return;
    const old = this.#sealedRecently.shift()!;
    if (old.liveBytes > 0 && !old.queued && this.#slots[old.base / slotBytes] === old) old.freeze();
  }

  #takeSlot(): number {
    return this.#freeSlots.pop() ?? this.#slots.push(undefined) - 1;
  }

  #pageAt(address: number): Page {
    const page = this.#slots[Math.floor(address / slotBytes)];
    assert(page !== undefined, "an address names a page in the directory");
    return page;
  }

  /** Drops a sealed page nobody points into, or queues it when less than half of it is live. */
  #settle(page: Page): void {
    if (!page.sealed) return;
    if (page.liveBytes === 0) {
      this.#drop(page);
    } else if (page.liveBytes * 2 < page.usedBytes && !page.queued) {
      page.queued = true;
      this.#sparse.push(page);
    }
  }

  #drop(page: Page): void {
    const firstSlot = page.base / slotBytes;
    if (this.#slots[firstSlot] !== page) return; // dropped already
    this.#dropCount += 1;
    for (let slot = firstSlot; slot < firstSlot + page.slotCount; slot += 1) {
      this.#slots[slot] = undefined;
      this.#freeSlots.push(slot);
    }
    this.#pageBytes -= page.sizeBytes;
    assert(this.#pageBytes >= 0);
  }
}
