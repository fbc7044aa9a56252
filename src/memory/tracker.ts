/**
 * Page tracking behind one interface (DESIGN.md layer 4): which pages of a
 * live memory changed since the last look. Pre-copy migration sends, each
 * round, only what its tracker reports.
 */

/** Tracking granularity: the image's page size. */
export const TRACK_PAGE_BYTES = 4096;

/** A page and its contents. */
export interface TrackedPage {
  index: number;
  /**
   * Valid until the next call of `changed`. Either a copy taken when the
   * page was found changed, or a view of the live page — in which case any
   * write after it was found is reported by the next call, so a sender that
   * reads it late still ends consistent once the process has stopped.
   */
  data: Uint8Array;
}

/** Options of a look at what changed. */
export interface LookOptions {
  /**
   * The last look before the tracker is closed (a migration's, with the
   * process stopped): a backend need not get ready for another, so the look
   * costs no more than reading what changed (the kernel's re-arms nothing).
   */
  last?: boolean;
}

/** Finds the pages of a memory that changed since it last looked. */
export interface PageTracker {
  /** Backend name, as `ferry nodes` reports it. */
  readonly name: string;
  /**
   * Pages that differ from what the previous call reported (the first call:
   * every page that is not all zero), in address order. `memory` may have
   * grown since the last call; grown pages count as changed if not zero.
   * Reported pages may be all zero (a page cleared since), which matters to
   * a receiver that holds an older copy.
   */
  changed(memory: Uint8Array, options?: LookOptions): Generator<TrackedPage>;
  /**
   * The same pages as `changed` would report, as runs [first, end) of page
   * indices in address order, without reading them: where a backend knows
   * them without a compare (the kernel's), post-copy's handover costs a
   * page-table walk instead of a pass over the memory while the process is
   * stopped. Absent: call `changed`.
   */
  changedRuns?(memory: Uint8Array, options?: LookOptions): Uint32Array;
  /**
   * Starts tracking without a first look: from here a look reports only the
   * pages written since. For a caller that copies every non-zero page itself
   * right after (pre-copy's first round on a connection of its own). Only on
   * a tracker that has not looked yet; absent where a backend cannot track
   * without reading every page first (the shadow copy).
   */
  arm?(memory: Uint8Array): void;
  /** Releases what the tracker holds (kernel registrations, shadow copies). */
  close(): void;
}

/**
 * Portable backend: keeps a shadow copy of the memory and compares page by
 * page with a native memcmp. Costs one copy of the memory and a scan per
 * round (about 0.1 s per GiB); a kernel-assisted backend (userfaultfd
 * write-protect) will plug in behind the same interface.
 */
export class ShadowTracker implements PageTracker {
  readonly name = "portable";
  #shadow: Buffer = Buffer.alloc(0);

  *changed(memory: Uint8Array): Generator<TrackedPage> {
    if (memory.length % TRACK_PAGE_BYTES !== 0) throw new RangeError("memory is not a whole number of pages");
    if (memory.length > this.#shadow.length) {
      const bigger = Buffer.alloc(memory.length);
      this.#shadow.copy(bigger);
      this.#shadow = bigger;
    }
    const live = Buffer.from(memory.buffer, memory.byteOffset, memory.length);
    const pages = memory.length / TRACK_PAGE_BYTES;
    for (let i = 0; i < pages; i += 1) {
      const at = i * TRACK_PAGE_BYTES;
      const end = at + TRACK_PAGE_BYTES;
      if (live.compare(this.#shadow, at, end, at, end) === 0) continue;
      // Copy first, then report the copy: the guest may write the live page
      // meanwhile, and that write shows up as a difference next round.
      live.copy(this.#shadow, at, at, end);
      yield { index: i, data: this.#shadow.subarray(at, end) };
    }
  }

  close(): void {
    this.#shadow = Buffer.alloc(0);
  }
}
