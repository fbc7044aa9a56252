/**
 * Turns a plain WASI module into a suspendable one (DESIGN.md, layer 1):
 * - a countdown poll at every loop header and function entry, so compute
 *   loops reach a safe point within microseconds while crossing into the host
 *   only once every `budget` polls;
 * - Ferry's unwinding pass (`_unwind.ts`; Binaryen's Asyncify for what it
 *   does not handle), so the call stack can be unwound from the poll and
 *   from every blocking import, and rewound after a restore;
 * - every mutable global exported so it can be captured;
 * - the memory made shared, so the controlling thread reads pages in place.
 */
import { createHash } from "node:crypto";
import type Binaryen from "binaryen";
import { InstrumentError } from "../errors.js";
import { instrumentFailure, moduleLabel, type ExceptionDecoder } from "./_failure.js";
import type { InstrumentStage, StageListener } from "./stages.js";
import { STAGE_TEXT } from "./stages.js";
import { definedMemory, functionLayout, makeMemoryShared } from "./_binary.js";
import { readCallGraph } from "./_callgraph.js";
import { injectPolls, type PollSites } from "./_polls.js";
import { loadBinaryenModule } from "./_load.js";
import { fastCopy, makeRestartable, RESTART_POLL_IMPORT } from "./_restart.js";
import { addSafePoints } from "./_safepoints.js";
import { addUnwinding, UnwindUnsupported } from "./_unwind.js";
export { RESTART_POLL_IMPORT } from "./_restart.js";

/**
 * Which pass makes the stack unwindable: Ferry's own (`_unwind.ts`), or
 * Binaryen's Asyncify when `FERRY_UNWINDER=binaryen` (for comparisons, and a
 * way around a fault of the former). Binaryen's is also used for a module
 * the former cannot handle.
 */
function unwinder(): "ferry" | "binaryen" {
  return process.env["FERRY_UNWINDER"] === "binaryen" ? "binaryen" : "ferry";
}

/** Bumped whenever the transformation changes: it is part of the cache key. */
export const INSTRUMENTER_VERSION = unwinder() === "binaryen" ? "ferry-instrument/33+asyncify" : "ferry-instrument/33";

/** Import through which the injected poll calls the host. */
export const POLL_IMPORT = { module: "ferry", name: "poll" } as const;

/** The countdown's global (`_polls.ts`). */
const BUDGET_GLOBAL = "__ferry_budget";

/** Prefix of the exports that expose mutable globals. */
export const GLOBAL_EXPORT_PREFIX = "__ferry_global_";

/**
 * Polls between two host crossings right after start. The host's poll returns
 * the next budget, so it can tune the rate; this is only the first one.
 */
export const POLL_BUDGET_INITIAL = 10_000;

/**
 * A memory without a declared maximum gets the whole 32-bit space: a shared
 * memory must declare one, and wasm32 cannot address more than 4 GiB.
 */
const MEMORY_PAGES_MAX = 65_536;

/**
 * Features a module may use: what Node 20's V8 runs. Producers do not always
 * declare what they use (asc writes no target_features section), so the
 * reader accepts all of these, and the optimizer never emits anything else.
 */
function features(binaryen: typeof Binaryen): Binaryen.Features {
  return binaryen.Features.MutableGlobals |
  binaryen.Features.NontrappingFPToInt |
  binaryen.Features.SIMD128 |
  binaryen.Features.BulkMemory |
  binaryen.Features.BulkMemoryOpt |
  binaryen.Features.SignExt |
  binaryen.Features.ReferenceTypes |
  binaryen.Features.Multivalue |
  binaryen.Features.CallIndirectOverlong;
}

/** Imports that may block, and so must be able to unwind the stack. */
export const DEFAULT_BLOCKING_IMPORTS: readonly string[] = [
  "wasi_snapshot_preview1.poll_oneoff",
  "wasi_snapshot_preview1.fd_read",
  "wasi_snapshot_preview1.fd_write",
  "wasi_snapshot_preview1.sched_yield",
  "wasi_snapshot_preview1.sock_accept",
  "wasi_snapshot_preview1.sock_recv",
  "wasi_snapshot_preview1.sock_send",
  "ferry.send",
  "ferry.recv",
  "ferry.migrate",
];

/** What the runtime must know about an instrumented module. */
export interface InstrumentInfo {
  instrumenter: string;
  /** SHA-256 (hex) of the original module. */
  module_sha256: string;
  /** Exported mutable globals, in capture order. */
  globals: { export_name: string; type: "i32" | "i64" | "f32" | "f64" }[];
  memory: { initial_pages: number; maximum_pages: number };
  /**
   * Upper bound of the Asyncify bytes one frame of each function may need,
   * indexed by function index in the instrumented binary (imports are 0).
   * Lets the runtime size the unwind buffer from the live stack depth.
   */
  frame_bytes: number[];
  /**
   * Module offset where each defined function's body starts, ascending, and
   * how many functions are imported: maps the position V8 reports for a wasm
   * frame to its function (and so to its `frame_bytes`) cheaply.
   */
  layout: { imported: number; body_offsets: number[] };
  /**
   * Bounds the bytes an unwind writes without walking the live stack (which
   * takes V8 about a microsecond a frame). A function on no cycle of the call
   * graph is at most once on any stack: `fixed_bytes` is the sum of every
   * function's frame bound. A function that can recurse counts its live
   * frames in a depth counter, an exported global, each frame taking at most
   * `frame_bytes`. The bound is `fixed_bytes + Σ depth × frame_bytes`.
   */
  unwind: { fixed_bytes: number; depth: { export_name: string; frame_bytes: number }[] };
  /** Milliseconds the instrumentation took (0 when served from cache). */
  instrument_ms: number;
  /** Functions given a fast copy with no safe point, run again in their instrumented copy when one is wanted (`_restart.ts`). */
  restartable: number;
  /**
   * The pass that made the stack unwindable: "ferry" (`_unwind.ts`), or
   * "asyncify" (Binaryen's) with why, when asked for or when the module
   * holds what Ferry's pass does not handle. Absent in older cache entries.
   */
  unwinder?: string;
  /**
   * What wrote the polls: "ferry" (`_safepoints.ts`, with no Binaryen), or
   * "binaryen" with why. Absent in older cache entries.
   */
  polls?: string;
}

/** Options of {@link instrumentModule}. */
export interface InstrumentOptions {
  /** "module.name" of every import that may block; defaults to the WASI ones. */
  blocking_imports?: readonly string[];
  /** The module's name (its file name), for error messages. */
  name?: string;
  /** Told when each step starts: lets a caller show progress on a large module. */
  on_stage?: StageListener;
}

/** Result of {@link instrumentModule}. */
export interface Instrumented {
  wasm: Uint8Array;
  info: InstrumentInfo;
}

/** SHA-256 of a module as lower-case hex. */
export function moduleHash(wasm: Uint8Array): string {
  return createHash("sha256").update(wasm).digest("hex");
}

/**
 * Binaryen's JS build is large and slow to load (about a second without the
 * code cache of `_load.ts`); it is loaded only when a module is actually
 * instrumented, never on a cache hit, and once per thread.
 */
let binaryen: typeof Binaryen;
let loading: Promise<typeof Binaryen> | undefined;
async function loadBinaryen(): Promise<typeof Binaryen> {
  loading ??= loadBinaryenModule().then(
    (loaded) => (binaryen = loaded.binaryen),
    (err: unknown) => {
      // Not kept: the next module tries again (the caller is told of this failure).
      loading = undefined;
      throw err;
    },
  );
  return loading;
}

function typeBytes(type: number): number {
  if (type === binaryen.i64 || type === binaryen.f64) return 8;
  if (type === binaryen.v128) return 16;
  // i32, f32, and references (stored as pointers, 8 at most).
  return type === binaryen.i32 || type === binaryen.f32 ? 4 : 8;
}

function globalKind(type: number): "i32" | "i64" | "f32" | "f64" | undefined {
  if (type === binaryen.i32) return "i32";
  if (type === binaryen.i64) return "i64";
  if (type === binaryen.f32) return "f32";
  if (type === binaryen.f64) return "f64";
  return undefined;
}

/** Instruments a module. Pure: no cache, no I/O; see `cache.ts` for that. */
export async function instrumentModule(wasm: Uint8Array, options: InstrumentOptions = {}): Promise<Instrumented> {
  const started = performance.now();
  const sha256 = moduleHash(wasm);
  const label = moduleLabel(options.name, sha256);
  let stage: InstrumentStage = "read";
  const step = (next: InstrumentStage): void => {
    stage = next;
    options.on_stage?.(next);
  };
  step("read");
  let fallback = "";
  if (unwinder() === "ferry") {
    const direct = instrumentDirect(wasm, options, step, sha256, started);
    if (typeof direct !== "string") return direct;
    // Binaryen does what the binary passes do not (below).
    fallback = direct;
  }
  await loadBinaryen();
  let m: Binaryen.Module;
  try {
    m = binaryen.readBinary(wasm);
    m.setFeatures(m.getFeatures() | features(binaryen));
  } catch (err: unknown) {
    const failure = instrumentFailure(err, { label, stage: STAGE_TEXT[stage], decoder: binaryen as unknown as ExceptionDecoder });
    if (failure.code === "ERR_INSTRUMENT_LIMIT") throw failure;
    throw new InstrumentError("ERR_INSTRUMENT_INVALID", `${label} is not a valid WebAssembly module: ${failure.message}`, { cause: err });
  }
  try {
    const { wasm: out, sites, restartable, frame_bytes, unwinder: used } = transform(m, wasm, options, step);
    const polls = fallback === "" ? "binaryen (FERRY_UNWINDER=binaryen)" : `binaryen (${fallback})`;
    return { wasm: out, info: { ...describe(m, sha256, started, sites, frame_bytes), restartable, layout: functionLayout(out), unwinder: used, polls } };
  } catch (err: unknown) {
    // Binaryen throws values that are not Errors; our own errors get the module's name.
    if (err instanceof InstrumentError) throw new InstrumentError(err.code, `cannot instrument ${label}: ${err.message}`, { cause: err });
    throw instrumentFailure(err, { label, stage: STAGE_TEXT[stage], decoder: binaryen as unknown as ExceptionDecoder });
  } finally {
    m.dispose();
  }
}

/**
 * As {@link instrumentModule}, but only the way that needs no Binaryen;
 * returns why not for a module that needs it (then `instrumentModule`, in
 * a thread or process set for Binaryen, does it). Synchronous: for a caller
 * that can afford to wait here for a small module.
 */
export function instrumentWithoutBinaryen(wasm: Uint8Array, options: InstrumentOptions = {}): Instrumented | string {
  if (unwinder() !== "ferry") return "FERRY_UNWINDER=binaryen";
  const started = performance.now();
  options.on_stage?.("read");
  return instrumentDirect(wasm, options, (stage) => options.on_stage?.(stage), moduleHash(wasm), started);
}

/**
 * Instruments `wasm` with no Binaryen at all: the safe points written into
 * the binary (`_safepoints.ts`), then Ferry's unwinding pass. Returns why
 * not, for a module either pass does not handle (or one that may not be
 * valid: Binaryen's path says what is wrong with it).
 */
function instrumentDirect(wasm: Uint8Array, options: InstrumentOptions, step: (stage: InstrumentStage) => void, sha256: string, started: number): Instrumented | string {
  const memory = definedMemory(wasm);
  if (memory === undefined) return "the module defines no single memory of its own";
  if (!WebAssembly.validate(wasm)) return "the engine does not validate the module";
  const blocking = [...(options.blocking_imports ?? DEFAULT_BLOCKING_IMPORTS), `${POLL_IMPORT.module}.${POLL_IMPORT.name}`];
  try {
    step("call-graph");
    const polled = addSafePoints(wasm, { blocking, budget: POLL_BUDGET_INITIAL, poll: POLL_IMPORT, restart_poll: RESTART_POLL_IMPORT, global_prefix: GLOBAL_EXPORT_PREFIX, on_polls: () => step("polls") });
    step("asyncify");
    const unwound = addUnwinding(polled.wasm, blocking, polled.reach);
    // A module the passes wrote wrong must not reach the cache: Binaryen's path does it then.
    if (!WebAssembly.validate(unwound.wasm)) return "the module the binary passes wrote does not validate (a fault of theirs)";
    step("write");
    const maximum_pages = Math.min(memory.maximum ?? MEMORY_PAGES_MAX, MEMORY_PAGES_MAX);
    const out = makeMemoryShared(unwound.wasm, maximum_pages);
    const frame_bytes = unwound.frame_bytes;
    // A function is on a stack as its running version or its rewinding one, never both: each counted once.
    let fixed_bytes = 0;
    for (let f = 0; f < frame_bytes.length - unwound.rewinding; f += 1) fixed_bytes += frame_bytes[f] as number;
    const depth = polled.depth.map(({ export_name, function: f }) => ({ export_name, frame_bytes: frame_bytes[f] ?? 0 }));
    return {
      wasm: out,
      info: {
        instrumenter: INSTRUMENTER_VERSION,
        module_sha256: sha256,
        globals: polled.globals,
        memory: { initial_pages: memory.initial, maximum_pages },
        frame_bytes,
        layout: functionLayout(out),
        unwind: { fixed_bytes, depth },
        instrument_ms: performance.now() - started,
        restartable: polled.restartable,
        unwinder: "ferry",
        polls: "ferry",
      },
    };
  } catch (err: unknown) {
    if (err instanceof UnwindUnsupported || err instanceof InstrumentError) return err.message;
    throw err;
  }
}

function transform(m: Binaryen.Module, wasm: Uint8Array, options: InstrumentOptions, step: (stage: InstrumentStage) => void): { wasm: Uint8Array; sites: PollSites; restartable: number; frame_bytes?: number[]; unwinder: string } {
  if (!m.hasMemory()) throw new InstrumentError("ERR_INSTRUMENT_UNSUPPORTED", "module has no memory");
  const memory = m.getMemoryInfo();
  if (memory.module) throw new InstrumentError("ERR_INSTRUMENT_UNSUPPORTED", "imported memories are not supported yet");
  if (memory.is64) throw new InstrumentError("ERR_INSTRUMENT_UNSUPPORTED", "memory64 is not supported");
  if (m.validate() === 0) throw new InstrumentError("ERR_INSTRUMENT_INVALID", "module does not validate");
  // Passive segments applied from a start function would overwrite restored
  // memory; keep segments as the producer wrote them.
  binaryen.addPassToSkip("memory-packing");

  exportMutableGlobals(m);
  const blocking = [...(options.blocking_imports ?? DEFAULT_BLOCKING_IMPORTS), `${POLL_IMPORT.module}.${POLL_IMPORT.name}`];
  step("call-graph");
  const graph = readCallGraph(binaryen, m, wasm, blocking);
  const { recursive, looping, unreaching_indirect } = graph;
  step("polls");
  // Functions that can run again from their start get a fast copy with no safe point (`_restart.ts`).
  const restart = makeRestartable(binaryen, m, graph.restartable, graph.restartable_callers, BUDGET_GLOBAL);
  for (const [original, slow] of restart.slow) {
    // The wrapper keeps the name and has no loop; the copies have the original's.
    if (!looping.delete(original)) continue;
    looping.add(slow);
    looping.add(fastCopy(original));
  }
  const reaches = (callee: string): boolean => (restart.fast.has(callee) ? false : graph.reaches(callee));
  const sites = injectPolls(binaryen, m, recursive, { budget: BUDGET_GLOBAL, initial: POLL_BUDGET_INITIAL, import: POLL_IMPORT, looping, reaches, restart });
  exportDepthCounters(m, sites);

  step("asyncify");
  ensureMemoryExport(m);
  const max = memory.max ?? MEMORY_PAGES_MAX;
  let used = "asyncify (FERRY_UNWINDER=binaryen)";
  if (unwinder() === "ferry") {
    try {
      const unwound = addUnwinding(m.emitBinary(), blocking);
      // A module the pass wrote wrong must not reach the cache: Asyncify does it then.
      if (!WebAssembly.validate(unwound.wasm)) throw new UnwindUnsupported("the module it wrote does not validate (a fault of the pass)");
      step("write");
      return { wasm: makeMemoryShared(unwound.wasm, Math.min(max, MEMORY_PAGES_MAX)), sites, restartable: restart.slow.size, frame_bytes: unwound.frame_bytes, unwinder: "ferry" };
    } catch (err: unknown) {
      if (!(err instanceof UnwindUnsupported)) throw err;
      // Binaryen's Asyncify handles what the pass does not (below).
      used = `asyncify (${err.message})`;
    }
  }
  // Asyncify optimizes the functions it instruments (before and after adding
  // its code: the coalescing it needs happens there) when the optimize level
  // is above zero. No whole-module -O2 follows: the code it would revisit is
  // the producer's, already optimized, plus the polls; and its inliner and
  // global passes grow faster than the module (minutes on 50 MB; tens of
  // seconds on a half-megabyte module whose functions each have one caller),
  // for no measurable gain at run time (docs/runtime.md, "Instrumentation").
  binaryen.setOptimizeLevel(2);
  binaryen.setShrinkLevel(0);
  binaryen.setPassArgument("asyncify-imports", blocking.join(","));
  // Asyncify assumes an indirect call may reach anything; the call graph
  // knows better (by signature and table contents): functions whose indirect
  // calls reach no safe point are left alone, and so are their callers.
  const removable = removeList(unreaching_indirect);
  if (removable !== undefined) binaryen.setPassArgument("asyncify-removelist", removable);
  try {
    m.runPasses(["asyncify"]);
  } finally {
    binaryen.clearPassArguments();
    binaryen.clearPassesToSkip();
  }
  if (m.validate() === 0) throw new InstrumentError("ERR_INSTRUMENT_FAILED", "the instrumented module does not validate");
  step("write");
  return { wasm: makeMemoryShared(m.emitBinary(), Math.min(max, MEMORY_PAGES_MAX)), sites, restartable: restart.slow.size, unwinder: used };
}

/**
 * Asyncify's remove-list for `names`, or undefined when empty. One name a
 * line: Binaryen splits on newlines when there are any, with no bracket
 * matching (C++ names hold commas and brackets). Left out, so that Asyncify
 * decides for them as it would anyway: names it would read as something
 * else (a `*` is a wildcard there, and could remove a function that must be
 * instrumented; a line break; white space at the ends, trimmed).
 */
export function removeList(names: readonly string[]): string | undefined {
  const listed = names.filter((n) => n !== "" && !/[*\n\r\0]/.test(n) && n.trim() === n);
  if (listed.length === 0) return undefined;
  // A single line would be split on commas instead: list it twice.
  return (listed.length === 1 ? [listed[0], listed[0]] : listed).join("\n");
}

/** The depth counters are captured like the program's own globals: a rewind skips the increments. */
function exportDepthCounters(m: Binaryen.Module, sites: PollSites): void {
  for (const { global } of sites.depth) m.addGlobalExport(global, `${GLOBAL_EXPORT_PREFIX}${global}`);
}

function exportMutableGlobals(m: Binaryen.Module): void {
  const count = m.getNumGlobals();
  for (let i = 0; i < count; i += 1) {
    const info = binaryen.getGlobalInfo(m.getGlobalByIndex(i));
    if (!info.mutable) continue;
    if (info.module) throw new InstrumentError("ERR_INSTRUMENT_UNSUPPORTED", `imported mutable global ${info.module}.${info.base ?? ""} cannot be captured`);
    if (globalKind(info.type) === undefined) throw new InstrumentError("ERR_INSTRUMENT_UNSUPPORTED", `mutable global ${info.name} has a type that cannot be captured`);
    m.addGlobalExport(info.name, `${GLOBAL_EXPORT_PREFIX}${i}`);
  }
}

function ensureMemoryExport(m: Binaryen.Module): void {
  const count = m.getNumExports();
  for (let i = 0; i < count; i += 1) {
    const info = binaryen.getExportInfo(m.getExportByIndex(i));
    if (info.kind === binaryen.ExternalMemory) {
      if (info.name !== "memory") m.addMemoryExport(info.value, "memory");
      return;
    }
  }
  m.addMemoryExport("0", "memory");
}

/**
 * What the runtime must know of the instrumented module. `unwound` gives the
 * frame sizes Ferry's unwinding pass wrote, by function index; without it,
 * they are bounded from what Asyncify left in each function.
 */
function describe(m: Binaryen.Module, sha256: string, started: number, sites: PollSites, unwound?: number[]): Omit<InstrumentInfo, "layout" | "restartable"> {
  const globals: InstrumentInfo["globals"] = [];
  const exports = m.getNumExports();
  for (let i = 0; i < exports; i += 1) {
    const info = binaryen.getExportInfo(m.getExportByIndex(i));
    if (info.kind !== binaryen.ExternalGlobal || !info.name.startsWith(GLOBAL_EXPORT_PREFIX)) continue;
    const type = globalKind(binaryen.getGlobalInfo(m.getGlobal(info.value)).type);
    if (type !== undefined) globals.push({ export_name: info.name, type });
  }
  // The binary lists imported functions first, then defined ones, each in
  // module order.
  const imported: number[] = [];
  const defined: number[] = [];
  const by_name = new Map<string, number>();
  const names: string[] = [];
  const count = m.getNumFunctions();
  for (let i = 0; i < count; i += 1) {
    const info = binaryen.getFunctionInfo(m.getFunctionByIndex(i));
    if (info.module) {
      imported.push(0);
      continue;
    }
    let bytes = 8; // call index and alignment slack
    if (unwound === undefined) {
      for (const t of binaryen.expandType(info.params)) bytes += typeBytes(t);
      for (const t of info.vars) bytes += typeBytes(t);
    }
    defined.push(bytes);
    names.push(info.name);
  }
  names.forEach((name, k) => {
    // The pass's frames are indexed as in the binary: every import first.
    if (unwound !== undefined) defined[k] = unwound[imported.length + k] ?? 0;
    by_name.set(name, defined[k] as number);
  });
  let fixed_bytes = 0;
  let largest = 0;
  for (const bytes of defined) {
    fixed_bytes += bytes;
    largest = Math.max(largest, bytes);
  }
  const depth = sites.depth.map(({ global, function: name }) => {
    // A body that could not be counted in place has a wrapper (a frame of
    // each per level); missing, the largest bound serves.
    const own = [name, `${name}$ferry_body`].map((n) => by_name.get(n)).filter((x) => x !== undefined);
    const frame_bytes = own.length === 0 ? largest : own.reduce((a, x) => a + x, 0);
    return { export_name: `${GLOBAL_EXPORT_PREFIX}${global}`, frame_bytes };
  });
  const memory = m.getMemoryInfo();
  return {
    instrumenter: INSTRUMENTER_VERSION,
    module_sha256: sha256,
    globals,
    memory: { initial_pages: memory.initial, maximum_pages: Math.min(memory.max ?? MEMORY_PAGES_MAX, MEMORY_PAGES_MAX) },
    frame_bytes: [...imported, ...defined],
    unwind: { fixed_bytes, depth },
    instrument_ms: performance.now() - started,
  };
}
