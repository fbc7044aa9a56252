/**
 * Compiled modules kept warm (issue 15, "setup"): every process worker is an
 * isolate of its own, and compiling the instrumented module there was most
 * of a warm worker's start (about 8 ms for a 65 KB module here, far more for
 * a large one), paid again by every standby and every start. The thread
 * that controls the processes compiles each module (per memory cap, which
 * is written into the module) once, asynchronously, and posts the compiled
 * WebAssembly.Module with the worker's init: V8 shares its code between the
 * isolates of one process, so a worker only instantiates it.
 */
import { capMemory, holdBackData, type HeldSegment, type InstrumentInfo } from "../instrument/mod.js";
import { WASM_MEMORY_BYTES_MAX, WASM_PAGE_BYTES } from "../process_spec.js";

/**
 * Most compiled modules kept: each holds its machine code (MiBs for a large
 * module) for as long as it is kept; the least recently used goes first.
 */
export const COMPILED_MODULES_MAX = 8;

/** A module ready for a worker: its bytes with the memory cap written in, and the compiled module, or null if V8 would not compile it here. */
export interface CompiledModule {
  wasm: Uint8Array;
  module: WebAssembly.Module | null;
  /**
   * The active data segments held back from `wasm` (`holdBackData`), their
   * bytes in one shared buffer every worker of the module reads: a fresh
   * start writes them into memory backed in bulk first, a standby not at
   * all. Null when the module's instantiation writes them itself.
   */
  data: HeldData | null;
}

/** Data segments a worker writes itself: where each goes, and its bytes at `at` in `bytes`. */
export interface HeldData {
  bytes: SharedArrayBuffer;
  segments: HeldSegment[];
}

/**
 * Held back when they are at least this many bytes: below it, what a fresh
 * start saves is less than the copy into the shared buffer (and V8's own
 * copy faults in at most a few pages).
 */
export const HELD_DATA_BYTES_MIN = 256 * 1024;

/**
 * `wasm` with its data segments held back when they are worth it. Their
 * bytes are read where they are in `original` (the instrumented module,
 * `wasm` before its cap was written in) when that lives in shared memory, as
 * the cache gives it (`instrument/cache.ts`): no copy. Otherwise (a caller's
 * own bytes) they are copied into a shared buffer once.
 */
function holdBack(original: Uint8Array, wasm: Uint8Array): { wasm: Uint8Array; data: HeldData | null } {
  const held = holdBackData(wasm);
  const total = held === null ? 0 : held.segments.reduce((n, s) => n + s.length, 0);
  if (held === null || total < HELD_DATA_BYTES_MIN) return { wasm, data: null };
  if (original.buffer instanceof SharedArrayBuffer) {
    const where = wasm === original ? held : holdBackData(original);
    if (where !== null && where.segments.length === held.segments.length) {
      const segments = where.segments.map((s) => ({ offset: s.offset, at: original.byteOffset + s.at, length: s.length }));
      return { wasm: held.wasm, data: { bytes: original.buffer, segments } };
    }
  }
  const bytes = new SharedArrayBuffer(total);
  const into = new Uint8Array(bytes);
  let at = 0;
  const segments = held.segments.map((s) => {
    into.set(wasm.subarray(s.at, s.at + s.length), at);
    const moved = { offset: s.offset, at, length: s.length };
    at += s.length;
    return moved;
  });
  return { wasm: held.wasm, data: { bytes, segments } };
}

/** By instrumented module and cap, most recently used last. */
const kept = new Map<string, Promise<CompiledModule>>();

/**
 * The instrumented module with its memory capped at `memory_max_bytes`,
 * compiled, from the cache or now. A module that does not compile is left to
 * the worker (which reports why, as it always did) and not kept.
 */
export function compiledModule(instrumented: { wasm: Uint8Array; info: InstrumentInfo }, memory_max_bytes: number): Promise<CompiledModule> {
  const capped = memory_max_bytes < WASM_MEMORY_BYTES_MAX;
  // The instrumented bytes are a function of the original module's hash and the instrumenter's version (instrument/cache.ts keys its files so too).
  const key = `${instrumented.info.module_sha256}.${instrumented.info.instrumenter}.${capped ? memory_max_bytes : "uncapped"}`;
  const hit = kept.get(key);
  if (hit !== undefined) {
    kept.delete(key);
    kept.set(key, hit);
    return hit;
  }
  const { wasm, data } = holdBack(instrumented.wasm, capped ? capMemory(instrumented.wasm, memory_max_bytes / WASM_PAGE_BYTES) : instrumented.wasm);
  const entry = WebAssembly.compile(wasm).then(
    (module) => ({ wasm, module, data }),
    () => {
      kept.delete(key);
      return { wasm, module: null, data };
    },
  );
  kept.set(key, entry);
  for (const old of kept.keys()) {
    if (kept.size <= COMPILED_MODULES_MAX) break;
    kept.delete(old);
  }
  return entry;
}
