/**
 * Giving the memory of ended processes back to the system.
 *
 * A guest's memory is a shared wasm memory. Its pages stay mapped as long as
 * any isolate holds a WebAssembly.Memory for it: the worker's goes with the
 * worker, but the controlling thread keeps one (to read and write pages in
 * place) until V8 collects it. V8 does not count a wasm memory towards the
 * heap pressure that triggers a collection, so an idle node never collects:
 * every process that ended, and every standby of a migration that was given
 * up (populated in full the moment it was offered), kept its memory for as
 * long as the node ran. So once a large memory is dropped, a full collection
 * is asked for. A process that ends, and the copy a move leaves at its
 * source, give their pages back to the kernel first, from their worker
 * (`discardPages`, with the native addon): they wait only for their address
 * space, and bring on a collection one in {@link RECLAIM_MEMORIES_MAX}.
 */
import v8 from "node:v8";
import vm from "node:vm";

/** Less than this dropped in all is left to V8's own rhythm: a forced collection costs milliseconds, and a little memory costs little. */
export const RECLAIM_BYTES_MIN = 16 * 1024 * 1024;

/**
 * Wait after a memory is dropped before collecting: long enough for its
 * owners (a migration's landing, the process table) to let go of the process
 * object, and to fold the ends of many processes into one collection.
 */
const RECLAIM_DELAY_MS = 500;

let collect: (() => void) | null | undefined;
let timer: NodeJS.Timeout | null = null;

/** V8's full collection, exposed once (node is not started with --expose-gc). */
function collector(): (() => void) | null {
  if (collect !== undefined) return collect;
  try {
    const global_gc = (globalThis as { gc?: () => void }).gc;
    if (typeof global_gc === "function") collect = global_gc;
    else {
      // The flag only for the context made here, which keeps its `gc`: V8's
      // flags are the process's, and every isolate started while one differs
      // from the flags Node was built with compiles Node's own bootstrap
      // without its embedded code cache (a process worker's boot: 51-64 ms
      // with the flags as started, 64-87 with the flag left set) and refuses
      // the code cache of Ferry's worker made under other flags.
      v8.setFlagsFromString("--expose-gc");
      try {
        const gc = vm.runInNewContext("gc") as unknown;
        collect = typeof gc === "function" ? (gc as () => void) : null;
      } finally {
        v8.setFlagsFromString("--no-expose-gc");
      }
    }
  } catch (err: unknown) {
    // Without it, memory is still given back at V8's next collection: later, not never.
    process.emitWarning(`Ferry cannot ask V8 for a collection; memory of ended processes is given back later: ${(err as Error).message}`);
    collect = null;
  }
  return collect;
}

/** A full collection now (in this thread's isolate), if V8 lets Ferry ask for one. */
export function collectNow(): void {
  collector()?.();
}

/** Bytes of memories dropped since the last collection was asked for, their pages still mapped: many small ones (hibernated guests, `_hibernate.ts`) add up. */
let dropped_bytes = 0;

/**
 * Memories dropped since the last collection was asked for whose pages were
 * given back already. Each still holds its reservation of V8's address
 * space for wasm memories until collected: 10 GiB with its guard regions, of
 * 1 TiB for the whole process (V8's `kAddressSpaceLimit` on 64-bit machines).
 */
let dropped_memories = 0;

/**
 * Memories dropped with their pages given back that bring on a collection:
 * 160 GiB of reservations at most, and one forced collection (15-30 ms of
 * the node's thread, docs/cluster.md) per so many processes that end.
 */
export const RECLAIM_MEMORIES_MAX = 16;

/**
 * A memory of `bytes` was dropped: collect soon, so that its pages (unless
 * `pages_discarded`: given back to the kernel already, `discardPages`) and
 * its address space go back to the system. Memories whose pages were given
 * back bring on a collection only once {@link RECLAIM_MEMORIES_MAX} of them
 * are waiting; others once {@link RECLAIM_BYTES_MIN} of their bytes are.
 */
export function reclaimSoon(bytes: number, options: { pages_discarded?: boolean } = {}): void {
  if (options.pages_discarded === true) dropped_memories += 1;
  else dropped_bytes += bytes;
  if ((dropped_bytes < RECLAIM_BYTES_MIN && dropped_memories < RECLAIM_MEMORIES_MAX) || timer !== null) return;
  timer = setTimeout(() => {
    timer = null;
    dropped_bytes = 0;
    dropped_memories = 0;
    collector()?.();
  }, RECLAIM_DELAY_MS);
  // A node that is stopping need not wait for it.
  timer.unref();
}

/** What waits for a collection now, and whether one is due (for tests). */
export function reclaimPending(): { bytes: number; memories: number; due: boolean } {
  return { bytes: dropped_bytes, memories: dropped_memories, due: timer !== null };
}
