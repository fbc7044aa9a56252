/**
 * Turns a plain WASI module into a suspendable one (DESIGN.md, layer 1):
 * - a countdown poll at every loop header and function entry, so compute
 *   loops reach a safe point within microseconds while crossing into the host
 *   only once every `budget` polls;
 * - Binaryen's Asyncify, so the call stack can be unwound from the poll and
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
import { functionLayout, makeMemoryShared } from "./_binary.js";
import { recursiveFunctions } from "./_callgraph.js";
import { withInliningOnlyTiny } from "./_bounds.js";

/** Bumped whenever the transformation changes: it is part of the cache key. */
export const INSTRUMENTER_VERSION = "ferry-instrument/6";

/** Import through which the injected poll calls the host. */
export const POLL_IMPORT = { module: "ferry", name: "poll" } as const;

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
  /** Milliseconds the instrumentation took (0 when served from cache). */
  instrument_ms: number;
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
 * Binaryen's JS build is large and slow to load (about a second); it is
 * loaded only when a module is actually instrumented, never on a cache hit.
 */
let binaryen: typeof Binaryen;
async function loadBinaryen(): Promise<typeof Binaryen> {
  if (binaryen === undefined) binaryen = (await import("binaryen")).default;
  return binaryen;
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
    const out = transform(m, wasm, options, step);
    return { wasm: out, info: { ...describe(m, sha256, started), layout: functionLayout(out) } };
  } catch (err: unknown) {
    // Binaryen throws values that are not Errors; our own errors get the module's name.
    if (err instanceof InstrumentError) throw new InstrumentError(err.code, `cannot instrument ${label}: ${err.message}`, { cause: err });
    throw instrumentFailure(err, { label, stage: STAGE_TEXT[stage], decoder: binaryen as unknown as ExceptionDecoder });
  } finally {
    m.dispose();
  }
}

function transform(m: Binaryen.Module, wasm: Uint8Array, options: InstrumentOptions, step: (stage: InstrumentStage) => void): Uint8Array {
  if (!m.hasMemory()) throw new InstrumentError("ERR_INSTRUMENT_UNSUPPORTED", "module has no memory");
  const memory = m.getMemoryInfo();
  if (memory.module) throw new InstrumentError("ERR_INSTRUMENT_UNSUPPORTED", "imported memories are not supported yet");
  if (memory.is64) throw new InstrumentError("ERR_INSTRUMENT_UNSUPPORTED", "memory64 is not supported");
  if (m.validate() === 0) throw new InstrumentError("ERR_INSTRUMENT_INVALID", "module does not validate");
  // Passive segments applied from a start function would overwrite restored
  // memory; keep segments as the producer wrote them.
  binaryen.addPassToSkip("memory-packing");

  exportMutableGlobals(m);
  injectPolls(m, wasm, step);

  const blocking = [...(options.blocking_imports ?? DEFAULT_BLOCKING_IMPORTS), `${POLL_IMPORT.module}.${POLL_IMPORT.name}`];
  binaryen.setOptimizeLevel(2);
  binaryen.setShrinkLevel(0);
  binaryen.setPassArgument("asyncify-imports", blocking.join(","));
  try {
    step("asyncify");
    m.runPasses(["asyncify"]);
    step("optimize");
    m.optimize();
  } finally {
    binaryen.clearPassArguments();
    binaryen.clearPassesToSkip();
  }
  if (m.validate() === 0) throw new InstrumentError("ERR_INSTRUMENT_FAILED", "the instrumented module does not validate");
  step("write");
  ensureMemoryExport(m);
  const max = memory.max ?? MEMORY_PAGES_MAX;
  return makeMemoryShared(m.emitBinary(), Math.min(max, MEMORY_PAGES_MAX));
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

/**
 * Binaryen's log-execution pass puts a call to an import at every function
 * entry and loop header; the import is then replaced by a tiny countdown
 * function that the optimizer inlines, so the host is only crossed when the
 * budget runs out.
 */
function injectPolls(m: Binaryen.Module, wasm: Uint8Array, step: (stage: InstrumentStage) => void): void {
  step("call-graph");
  const recursive = recursiveFunctions(binaryen, m, wasm);
  step("polls");
  binaryen.setPassArgument("log-execution", "ferry");
  m.runPasses(["log-execution"]);
  binaryen.clearPassArguments();
  const hook = findImport(m, "ferry", "log_execution");
  if (hook === undefined) return; // no functions at all
  dropEntryPolls(m, hook, recursive);
  m.removeFunction(hook);

  const budget = "__ferry_budget";
  const poll = "__ferry_poll";
  m.addGlobal(budget, binaryen.i32, true, m.i32.const(POLL_BUDGET_INITIAL));
  m.addFunctionImport(poll, POLL_IMPORT.module, POLL_IMPORT.name, binaryen.none, binaryen.i32);
  const left = 1; // local index after the i32 parameter
  m.addFunction(
    hook,
    binaryen.i32,
    binaryen.none,
    [binaryen.i32],
    m.block(null, [
      m.local.set(left, m.global.get(budget, binaryen.i32)),
      m.if(
        m.local.get(left, binaryen.i32),
        m.global.set(budget, m.i32.sub(m.local.get(left, binaryen.i32), m.i32.const(1))),
        m.global.set(budget, m.call(poll, [], binaryen.i32)),
      ),
    ]),
  );
  withInliningOnlyTiny(binaryen, () => m.runPasses(["inlining"]));
  // The hook is not removed here: the inliner leaves some calls in place (it
  // limits how much it inlines into one function), and a call to a removed
  // function aborts Asyncify. The optimizer drops it once nothing calls it.
}

/**
 * log-execution puts a call at the head of every function body; only
 * functions that can recurse keep it (loops keep theirs everywhere).
 */
function dropEntryPolls(m: Binaryen.Module, hook: string, keep: Set<string>): void {
  // The narrow accessors, not getFunctionInfo/getExpressionInfo (which read
  // every field): this runs once per function, hundreds of thousands of times.
  const api = binaryen as unknown as {
    Block: { getNumChildren(block: number): number; getChildAt(block: number, index: number): number; setChildAt(block: number, index: number, child: number): void };
    Call: { getTarget(call: number): string };
    Function: { getName(func: Binaryen.FunctionRef): string; getBody(func: Binaryen.FunctionRef): number };
  };
  const count = m.getNumFunctions();
  for (let i = 0; i < count; i += 1) {
    const func = m.getFunctionByIndex(i);
    const body = api.Function.getBody(func);
    if (body === 0 || binaryen.getExpressionId(body) !== binaryen.BlockId || api.Block.getNumChildren(body) === 0) continue; // an import, or no entry poll
    const first = api.Block.getChildAt(body, 0);
    if (binaryen.getExpressionId(first) !== binaryen.CallId || api.Call.getTarget(first) !== hook) continue;
    if (keep.has(api.Function.getName(func))) continue;
    api.Block.setChildAt(body, 0, m.nop());
  }
}

function findImport(m: Binaryen.Module, module: string, base: string): string | undefined {
  // From the end: a pass that adds an import appends it.
  for (let i = m.getNumFunctions() - 1; i >= 0; i -= 1) {
    const info = binaryen.getFunctionInfo(m.getFunctionByIndex(i));
    if (info.module === module && info.base === base) return info.name;
  }
  return undefined;
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

function describe(m: Binaryen.Module, sha256: string, started: number): Omit<InstrumentInfo, "layout"> {
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
  const count = m.getNumFunctions();
  for (let i = 0; i < count; i += 1) {
    const info = binaryen.getFunctionInfo(m.getFunctionByIndex(i));
    if (info.module) {
      imported.push(0);
      continue;
    }
    let bytes = 8; // call index and alignment slack
    for (const t of binaryen.expandType(info.params)) bytes += typeBytes(t);
    for (const t of info.vars) bytes += typeBytes(t);
    defined.push(bytes);
  }
  const memory = m.getMemoryInfo();
  return {
    instrumenter: INSTRUMENTER_VERSION,
    module_sha256: sha256,
    globals,
    memory: { initial_pages: memory.initial, maximum_pages: Math.min(memory.max ?? MEMORY_PAGES_MAX, MEMORY_PAGES_MAX) },
    frame_bytes: [...imported, ...defined],
    instrument_ms: performance.now() - started,
  };
}
