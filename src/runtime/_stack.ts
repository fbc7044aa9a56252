/**
 * Where the Asyncify stack lives while it is written or read. Asyncify keeps
 * its data in the guest's own memory; Ferry borrows the top of that memory for
 * the moment of an unwind or a rewind and puts the guest's bytes back before
 * the guest runs again, so the guest never sees a byte or a page of it.
 */

import { backPages } from "./_backing.js";

/** Bytes of the Asyncify data header: current pointer, end pointer (two i32). */
export const ASYNCIFY_HEADER_BYTES = 8;

/** Slack added to the estimated unwind size; frames carry small extras. */
const UNWIND_SLACK_BYTES = 4096;

/** Asyncify states as `asyncify_get_state` reports them. */
export const AsyncifyState = { normal: 0, unwinding: 1, rewinding: 2 } as const;

/**
 * Upper bound of the bytes an unwind from here will write, from the
 * instrumenter's bound and the module's depth counters (see
 * `InstrumentInfo.unwind`): no stack walk, so a guest 60,000 frames deep
 * suspends as fast as a shallow one. `undefined` when a counter is missing or
 * negative, which only a module that breaks the counters' invariant can
 * cause; the caller then walks the stack.
 */
export function unwindBoundFromCounters(
  unwind: { fixed_bytes: number; depth: readonly { export_name: string; frame_bytes: number }[] },
  exports: WebAssembly.Exports,
): number | undefined {
  let total = UNWIND_SLACK_BYTES + unwind.fixed_bytes;
  for (const { export_name, frame_bytes } of unwind.depth) {
    const global = exports[export_name];
    if (!(global instanceof WebAssembly.Global)) return undefined;
    const depth = global.value as number;
    if (depth < 0) return undefined;
    total += depth * frame_bytes;
  }
  return total;
}

/**
 * Upper bound of the bytes an unwind from here will write: the sum, over the
 * guest frames on the live stack, of each function's frame bound. Reads the
 * stack as structured call sites (no text formatting) and maps each wasm
 * frame's module offset to its function. Only paid when suspending.
 */
export function unwindBoundBytes(frame_bytes: readonly number[], layout: { imported: number; body_offsets: readonly number[] }): number {
  const limit = Error.stackTraceLimit;
  const prepare = Error.prepareStackTrace;
  Error.stackTraceLimit = Infinity;
  Error.prepareStackTrace = (_err, sites) => sites;
  const holder: { stack?: NodeJS.CallSite[] } = {};
  Error.captureStackTrace(holder);
  const sites = holder.stack ?? [];
  Error.stackTraceLimit = limit;
  Error.prepareStackTrace = prepare;
  let largest = 0;
  for (const bytes of frame_bytes) largest = Math.max(largest, bytes);
  const offsets = layout.body_offsets;
  let total = UNWIND_SLACK_BYTES;
  let last_position = -1;
  let last_bytes = largest;
  for (const site of sites) {
    if (!(site.getFileName() ?? "").startsWith("wasm://")) continue;
    const position = (site.getColumnNumber() ?? 0) - 1;
    if (position !== last_position) {
      // Deep recursion repeats one position: look it up once.
      last_position = position;
      let lo = 0;
      let hi = offsets.length - 1;
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if ((offsets[mid] as number) <= position) lo = mid;
        else hi = mid - 1;
      }
      // A frame we cannot place gets the largest bound: never too small.
      last_bytes = offsets.length > 0 && (offsets[lo] as number) <= position ? (frame_bytes[layout.imported + lo] ?? largest) : largest;
    }
    total += last_bytes;
  }
  return total;
}

/** A region of guest memory lent to Asyncify, with the guest's bytes saved. */
export interface BorrowedRegion {
  start: number;
  /** A view of this thread's save area, valid until the next {@link borrowTop}. */
  saved: Uint8Array;
}

/**
 * The largest area a worker keeps between borrows: a deeper stack's bytes
 * get a buffer of their own, so a worker does not hold tens of megabytes for
 * one deep moment.
 */
const SAVE_AREA_KEPT_BYTES_MAX = 16 * 1024 * 1024;

/**
 * A buffer kept from one use to the next (grown by doubling when too small,
 * up to {@link SAVE_AREA_KEPT_BYTES_MAX}), its pages backed when made. A
 * fresh buffer per use cost far more than the copy into it: in a guest
 * 60,000 frames deep (megabytes lent) its pages were faulted in on every
 * suspend and every resume, about 10 ms of CPU for 2.5 MB against 0.1 ms
 * into pages already in place.
 */
class KeptArea {
  #area = new Uint8Array(0);

  /** `bytes` of the area, valid until the next call (a buffer of its own past the limit). */
  view(bytes: number): Uint8Array {
    if (this.#area.length < bytes && bytes <= SAVE_AREA_KEPT_BYTES_MAX) {
      this.#area = new Uint8Array(Math.min(SAVE_AREA_KEPT_BYTES_MAX, Math.max(bytes, this.#area.length * 2)));
      backPages(this.#area);
    }
    if (bytes <= this.#area.length) return this.#area.subarray(0, bytes);
    const own = new Uint8Array(bytes);
    backPages(own);
    return own;
  }

  drop(): void {
    this.#area = new Uint8Array(0);
  }
}

/**
 * Where this thread keeps the guest's bytes while their place is lent. One
 * worker lends one region at a time, so one area serves.
 */
const save_area = new KeptArea();

/** Where this thread keeps its copy of the last stack it unwound, for a resume in place. */
const last_area = new KeptArea();

/** Drops the save area and the last stack's copy (a worker taking another guest: they held the last one's bytes). */
export function dropSaveArea(): void {
  save_area.drop();
  last_area.drop();
}

/**
 * A copy of an unwound stack's bytes in this thread's kept area (valid until
 * the next call), so the bytes themselves can move to another thread without
 * faulting in a fresh buffer's pages on every suspend.
 */
export function keptCopy(bytes: Uint8Array): Uint8Array {
  const copy = last_area.view(bytes.length);
  copy.set(bytes);
  return copy;
}

/** Bytes at the top of memory lent for a stack of `bytes`: the header, and a multiple of 16. */
export function borrowedBytes(bytes: number): number {
  return Math.ceil((bytes + ASYNCIFY_HEADER_BYTES) / 16) * 16;
}

/**
 * Lends the top `bytes` (+ header) of memory to Asyncify. Grows the memory
 * only if it is smaller than the stack to unwind (a tiny memory with a deep
 * native stack), the one case where the guest can see Ferry's hand. The
 * region's `saved` bytes live in a buffer the next borrow reuses: give the
 * region back before borrowing again.
 */
export function borrowTop(memory: WebAssembly.Memory, bytes: number): BorrowedRegion {
  const need = borrowedBytes(bytes);
  if (memory.buffer.byteLength < need) {
    memory.grow(Math.ceil((need - memory.buffer.byteLength) / 65536));
  }
  const length = memory.buffer.byteLength;
  const start = length - need;
  const saved = save_area.view(need);
  const lent = new Uint8Array(memory.buffer, start, need);
  // Usually above anything the guest touched: never backed until lent once.
  backPages(lent);
  saved.set(lent);
  return { start, saved };
}

/** Puts the guest's bytes back. */
export function giveBack(memory: WebAssembly.Memory, region: BorrowedRegion): void {
  new Uint8Array(memory.buffer).set(region.saved, region.start);
}

/** Prepares a region for an unwind: data starts right after the header. */
export function prepareUnwind(memory: WebAssembly.Memory, region: BorrowedRegion): number {
  const words = new Int32Array(memory.buffer, region.start, 2);
  words[0] = region.start + ASYNCIFY_HEADER_BYTES;
  words[1] = memory.buffer.byteLength;
  return region.start;
}

/** Copies out what an unwind wrote. */
export function unwoundBytes(memory: WebAssembly.Memory, region: BorrowedRegion): Uint8Array {
  const current = new Int32Array(memory.buffer, region.start, 1)[0] as number;
  const from = region.start + ASYNCIFY_HEADER_BYTES;
  // Copied from a view of just those bytes: slice() with offsets on a view
  // of a whole shared memory took V8's slow path, ten times the time.
  const out = new Uint8Array(current - from);
  backPages(out);
  out.set(new Uint8Array(memory.buffer, from, current - from));
  return out;
}

/**
 * Writes a captured stack into a region for a rewind. Asyncify reads it back
 * as a stack, from the end, so `current` points past the data.
 */
export function prepareRewind(memory: WebAssembly.Memory, region: BorrowedRegion, data: Uint8Array): number {
  const from = region.start + ASYNCIFY_HEADER_BYTES;
  new Uint8Array(memory.buffer).set(data, from);
  const words = new Int32Array(memory.buffer, region.start, 2);
  words[0] = from + data.length;
  words[1] = from + data.length;
  return region.start;
}
