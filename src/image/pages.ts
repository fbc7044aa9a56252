/**
 * Memory as a sparse set of pages: reading the non-zero pages out of a live
 * memory view, holding decoded pages, and writing them back into a memory.
 */
import { ImageLimits, PAGE_BYTES } from "./format.js";
import type { DecodedImage, DecodedMemory, MemoryPage, MemoryRun, MemorySource } from "./types.js";

// Compared against with Buffer#compare, i.e. native memcmp: scanning 1 GiB this
// way runs at memory bandwidth, where a JS byte loop would take seconds.
const ZERO_PAGE = Buffer.alloc(PAGE_BYTES);

/**
 * Whether the page at `offset` is all zero. Its first and last words are
 * read here first: most pages in use have one of them set, and reading a
 * word costs far less than the call into memcmp (about 2 µs a page here,
 * 8 ms for a 16 MiB memory, all of it downtime for a stop-copy).
 */
function zeroPage(bytes: Buffer, words: Int32Array | null, offset: number): boolean {
  if (words !== null && (words[offset >> 2] !== 0 || words[((offset + PAGE_BYTES) >> 2) - 1] !== 0)) return false;
  return ZERO_PAGE.compare(bytes, offset, offset + PAGE_BYTES) === 0;
}

/** The memory's words, where it is aligned for them (a wasm memory always is); null otherwise. */
function wordsOf(memory: Uint8Array): Int32Array | null {
  return memory.byteOffset % 4 === 0 ? new Int32Array(memory.buffer, memory.byteOffset, memory.length >> 2) : null;
}

/**
 * The non-zero pages of a memory view (a WebAssembly memory's buffer, shared
 * or not), as views: nothing is copied, so the pages reflect the memory at the
 * moment they are read. `size_bytes` is `memory.length`, which must be a
 * multiple of PAGE_BYTES (wasm memories always are).
 */
export function sparsePages(memory: Uint8Array): MemorySource {
  if (memory.length % PAGE_BYTES !== 0) {
    throw new RangeError(`memory of ${memory.length} bytes is not a whole number of ${PAGE_BYTES}-byte pages`);
  }
  return {
    size_bytes: memory.length,
    *pages(): Generator<MemoryPage, void, undefined> {
      // One Buffer over the same bytes, so compare() can address ranges without a view per page.
      const bytes = Buffer.from(memory.buffer, memory.byteOffset, memory.length);
      const words = wordsOf(memory);
      for (let offset = 0; offset < bytes.length; offset += PAGE_BYTES) {
        if (!zeroPage(bytes, words, offset)) {
          yield { index: offset / PAGE_BYTES, data: memory.subarray(offset, offset + PAGE_BYTES) };
        }
      }
    },
    *pageRuns(): Generator<MemoryRun, void, undefined> {
      // The same scan, but one view per run of non-zero pages: a stop-copy of a dense memory is a few thousand views, not a view per page.
      const bytes = Buffer.from(memory.buffer, memory.byteOffset, memory.length);
      const words = wordsOf(memory);
      const run_bytes_max = ImageLimits.page_run_pages_max * PAGE_BYTES;
      let start = -1;
      for (let offset = 0; offset <= bytes.length; offset += PAGE_BYTES) {
        const zero = offset === bytes.length || zeroPage(bytes, words, offset);
        if (start >= 0 && (zero || offset - start === run_bytes_max)) {
          yield { first: start / PAGE_BYTES, data: memory.subarray(start, offset) };
          start = -1;
        }
        if (!zero && start < 0) start = offset;
      }
    },
  };
}

/** A run of consecutive pages stored as one buffer. */
export interface PageRun {
  first: number;
  /** A whole number of pages: the decoder's own copy, or a view into the decoded input. */
  data: Uint8Array;
}

/**
 * Decoded memory: the runs the image held, in increasing order. Exported for
 * the decoder; callers see it as a DecodedMemory.
 */
export class RunMemory implements DecodedMemory {
  readonly size_bytes: number;
  readonly page_count: number;
  readonly runs: readonly PageRun[];

  constructor(size_bytes: number, runs: readonly PageRun[]) {
    this.size_bytes = size_bytes;
    this.runs = runs;
    this.page_count = runs.reduce((n, run) => n + run.data.length / PAGE_BYTES, 0);
  }

  *pages(): Generator<MemoryPage, void, undefined> {
    for (const run of this.runs) {
      for (let offset = 0; offset < run.data.length; offset += PAGE_BYTES) {
        yield { index: run.first + offset / PAGE_BYTES, data: run.data.subarray(offset, offset + PAGE_BYTES) };
      }
    }
  }
}

/**
 * Copies a decoded image's pages into a memory view at their offsets, one
 * native copy per run. Bytes of pages the image omits are left as they are:
 * a freshly grown wasm memory is already zero.
 */
export function writeMemory(decoded: Pick<DecodedImage, "memory">, target: Uint8Array): void {
  const memory = decoded.memory;
  if (target.length < memory.size_bytes) {
    throw new RangeError(`target memory is ${target.length} bytes; the image needs ${memory.size_bytes}`);
  }
  if (memory instanceof RunMemory) {
    for (const run of memory.runs) target.set(run.data, run.first * PAGE_BYTES);
    return;
  }
  // A DecodedImage assembled by hand: fall back to its page iterator.
  for (const page of memory.pages()) target.set(page.data, page.index * PAGE_BYTES);
}
