/**
 * Having the kernel back a guest's pages before they are written, in bulk,
 * rather than one fault at a time. On a virtual machine the first write to
 * each 4 KiB page of a process traps to the hypervisor, about 10 µs a page
 * (docs/cluster.md, "Where the time goes"): 1.9 s for 1 GiB here.
 */

import { CopyMode, nativeAddon, type NativeAddon } from "../native.js";

/** Bytes of a page as the kernel maps them. */
const PAGE_BYTES = 4096;

/**
 * Backs `view`'s pages before they are first written (MADV_POPULATE_WRITE):
 * the top of a guest's memory that an unwind lends, the save area, and the
 * buffer its stack is copied out to are all fresh pages the first time, and
 * a fault per page cost 4–12 ms for a stack 60,000 frames deep, against a few
 * hundred µs in bulk. Already backed pages cost a page-table walk.
 */
export function backPages(view: Uint8Array): void {
  const n = nativeAddon();
  if (!("addon" in n) || view.length === 0) return;
  try {
    n.addon.populate(view, view.length);
  } catch {
    // Only a speed-up: without it (an older kernel) the writes fault the pages in one by one, as before.
  }
}

/**
 * Backs every page of a standby's memory before a migration's pages are
 * written into it, or while they are: with transparent huge pages where the
 * kernel has them, so the first write costs one trap per 2 MiB instead of
 * one per 4 KiB page; then each page is written once from this thread, which
 * pays whatever trap is left now rather than in the downtime. That write is
 * an atomic add of 0 to one byte of the page: it needs write access as any
 * store does, and it leaves the byte as it was, also when another thread
 * writes the page at the same moment (pre-copy's first round arrives while
 * this runs). Runs in the guest's worker, so the node's event loop does not
 * wait on the kernel (compacting memory for huge pages can take a while).
 */
export function backStandby(view: Uint8Array): void {
  const n = nativeAddon();
  if ("addon" in n && view.length > 0) {
    try {
      n.addon.populate(view, view.length, true);
    } catch {
      // The writes below fault the pages in one by one instead.
    }
  }
  for (let at = 0; at < view.length; at += PAGE_BYTES) Atomics.add(view, at, 0);
}

/**
 * Copies a guest memory's bytes `src` to the start of `dst`, reading them the
 * faster of two ways. On virtual CPUs with shadow page tables, the first
 * access from the process to a page mapped since it was last touched traps
 * to the hypervisor, 4 KiB at a time: about 780 MB/s here, where the
 * kernel's own mapping of the pages (/proc/self/mem) reads 5.3 GB/s; pages
 * the process has touched, memcpy reads about three times faster than that.
 * Post-copy places a process's pages with UFFDIO_COPY, and an idle process
 * does not touch them again: moved on, its pages were read at the trap's
 * rate. The addon times its copy of the first 64 KiB and reads the rest
 * through /proc/self/mem when that was slow (docs/cluster.md, "Page
 * channel"). Without the addon, a plain copy.
 */
export function copyOut(src: Uint8Array, dst: Uint8Array): void {
  const copy = nativeCopy();
  if (copy !== null) copy(src, dst);
  else dst.set(src);
}

/** The addon's copyOut, or null without the addon (or with one built before it had it). */
function nativeCopy(): NativeAddon["copyOut"] | null {
  const n = nativeAddon();
  return "addon" in n && typeof n.addon.copyOut === "function" ? n.addon.copyOut : null;
}

/**
 * `src` to read now, fast: itself where the process has touched its pages
 * (or without the addon), else a copy in `spare` (as {@link copyOut}), whose
 * length is at least src's. For a reader that needs no copy of its own,
 * such as a sealer that encrypts into a buffer of its own.
 */
export function readable(src: Uint8Array, spare: Uint8Array): Uint8Array {
  const copy = nativeCopy();
  if (copy === null) return src;
  return copy(src, spare, CopyMode.if_slow) ? spare.subarray(0, src.length) : src;
}

/** Whether {@link discardPages} gives pages back here (it needs the native addon); else a dropped memory waits for a collection. */
export function canDiscard(): boolean {
  return "addon" in nativeAddon();
}

/**
 * Gives `view`'s pages back to the kernel now (MADV_DONTNEED): for a memory
 * nobody reads again, such as that of a process that moved away. Its pages
 * stay mapped otherwise until every isolate that held the memory has
 * collected it (on the node's thread, a forced collection half a second
 * later, `_reclaim.ts`), and the kernel hands out just-freed pages first: on
 * a virtual machine a standby backed with pages the guest system used
 * before took 13-45 ms for 256 MiB, with pages it never used 370-450 ms
 * (the host backs those on first touch). Without the addon
 * ({@link canDiscard}), left to the collection as before.
 */
export function discardPages(view: Uint8Array): void {
  const n = nativeAddon();
  if (!("addon" in n) || view.length === 0) return;
  try {
    n.addon.discard(view, view.length);
  } catch {
    // MADV_DONTNEED does not fail on a mapped range; if it did, the pages would wait for V8's next collection of the memory.
  }
}

/**
 * Loads what {@link backPages} needs (the native addon) now. A worker does
 * this when it starts, while it waits to be used: loading the addon takes
 * about 1 ms in a new thread, which its first unwind or rewind paid
 * otherwise, inside a migration's downtime (a standby's rewind, a source's
 * first suspend; issue 15).
 */
export function loadBacking(): void {
  nativeAddon();
}
