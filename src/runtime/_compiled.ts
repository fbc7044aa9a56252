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
import { capMemory, holdBackData, inSharedMemory, type HeldSegment, type InstrumentInfo } from "../instrument/mod.js";
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
   * The active data segments held back from `wasm` (`holdBackData`), read
   * where they are in the instrumented module's bytes, which live in shared
   * memory: a fresh start writes them into memory backed in bulk first, a
   * standby not at all. Null when the module's instantiation writes them.
   */
  data: HeldData | null;
}

/** Data segments a worker writes itself: where each goes, and its bytes at `at` in `bytes`. */
export interface HeldData {
  bytes: SharedArrayBuffer;
  segments: HeldSegment[];
}

/**
 * Held back when they are at least this many bytes: below it, V8's own copy
 * faults in a few pages at most, and a second form of the module is not
 * worth keeping.
 */
export const HELD_DATA_BYTES_MIN = 256 * 1024;

/**
 * The instrumented module with its data segments held back when they are
 * worth it, their bytes read in place: the cache gives the module's bytes in
 * shared memory (`instrument/cache.ts`); a caller's own bytes are copied
 * there once.
 */
function holdBack(instrumented: Uint8Array): { wasm: Uint8Array; data: HeldData | null } {
  const held = holdBackData(instrumented);
  if (held === null || held.segments.reduce((n, s) => n + s.length, 0) < HELD_DATA_BYTES_MIN) return { wasm: instrumented, data: null };
  const bytes = inSharedMemory(instrumented);
  const segments = held.segments.map((s) => ({ ...s, at: bytes.byteOffset + s.at }));
  return { wasm: held.wasm, data: { bytes: bytes.buffer as SharedArrayBuffer, segments } };
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
  // The cap rewrites the memory section only: the segments' places in the instrumented bytes still hold.
  const held = holdBack(instrumented.wasm);
  const data = held.data;
  const wasm = capped ? capMemory(held.wasm, memory_max_bytes / WASM_PAGE_BYTES) : held.wasm;
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
