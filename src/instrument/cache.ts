/**
 * On-disk cache of instrumented modules, keyed by the SHA-256 of the original
 * module and the instrumenter's version, so a program is instrumented once
 * per machine however often it starts (or is restored).
 */
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { INSTRUMENTER_VERSION, instrumentModule, instrumentWithoutBinaryen, moduleHash, type InstrumentInfo, type Instrumented } from "./instrument.js";
import { instrumentInKeptWorker, instrumentInWorker, WORKER_MODULE_BYTES_MIN } from "./_thread.js";
import { BASELINE_ONLY_BYTES_MAX, instrumentInProcess, withoutOptimizingCompiler } from "./_process.js";
import type { StageListener } from "./stages.js";

/** Where instrumented modules are kept unless told otherwise. */
export function defaultCacheDir(): string {
  const fromEnv = process.env["FERRY_CACHE_DIR"];
  if (fromEnv !== undefined && fromEnv !== "") return fromEnv;
  return path.join(os.homedir(), ".cache", "ferry", "instrumented");
}

/** Options of {@link loadInstrumented}. */
export interface CacheOptions {
  /** Cache folder; `null` disables the cache. */
  cache_dir?: string | null;
  /** The module's name (its file name), for error messages. */
  name?: string;
  /** Told when each step of an instrumentation starts (not on a cache hit). */
  on_stage?: StageListener;
  /**
   * Where to instrument: "worker" (a thread of its own, see `_thread.ts`),
   * "process" (a child process of its own whose V8 suits one instrumentation,
   * see `_process.ts`: for a process that instruments once, like `ferry
   * exec`), "inline" (this thread, where Binaryen stays loaded and warm for
   * the next module, and the thread waits for it), or "auto" (default): a
   * worker of its own for modules of {@link WORKER_MODULE_BYTES_MIN} and
   * more, else the one worker kept for small modules (`instrumentInKeptWorker`).
   */
  thread?: InstrumentThread;
}

/** Where a module is instrumented: see {@link CacheOptions.thread}. */
export type InstrumentThread = "auto" | "worker" | "process" | "inline";

async function instrument(wasm: Uint8Array, options: CacheOptions): Promise<Instrumented> {
  const pass = { ...(options.name !== undefined ? { name: options.name } : {}), ...(options.on_stage !== undefined ? { on_stage: options.on_stage } : {}) };
  const thread = options.thread ?? "auto";
  if (thread === "process") {
    // A small module is done here when it needs no Binaryen (tens of
    // milliseconds, where starting the process alone takes more); a large
    // one in the process, so this thread stays free to show progress. One
    // that needs Binaryen is tried again there (the binary passes' refusal
    // comes early, and is the rare case).
    if (wasm.byteLength < WORKER_MODULE_BYTES_MIN) {
      const here = (): Instrumented | string => instrumentWithoutBinaryen(wasm, pass);
      const direct = wasm.byteLength < BASELINE_ONLY_BYTES_MAX ? withoutOptimizingCompiler(here) : here();
      if (typeof direct !== "string") return direct;
    }
    return instrumentInProcess(wasm, pass);
  }
  if (thread === "inline") return instrumentModule(wasm, pass);
  const inWorker = thread === "worker" || wasm.byteLength >= WORKER_MODULE_BYTES_MIN;
  return inWorker ? instrumentInWorker(wasm, pass) : instrumentInKeptWorker(wasm, pass);
}

/** An instrumented module and whether it came from the cache. */
export interface CachedInstrumented extends Instrumented {
  cached: boolean;
}

function versionTag(): string {
  return createHash("sha256").update(INSTRUMENTER_VERSION).digest("hex").slice(0, 12);
}

/**
 * Returns the instrumented form of `wasm`, from the cache when present and
 * intact, else instrumenting it and storing the result (atomically, so two
 * processes starting the same program never see a half-written entry).
 */
export async function loadInstrumented(wasm: Uint8Array, options: CacheOptions = {}): Promise<CachedInstrumented> {
  const dir = options.cache_dir === undefined ? defaultCacheDir() : options.cache_dir;
  if (dir === null) {
    const made = await instrument(wasm, options);
    return { ...made, wasm: inSharedMemory(made.wasm), cached: false };
  }
  const hash = moduleHash(wasm);
  const base = path.join(dir, `${hash}.${versionTag()}`);
  const cached = recentEntry(base) ?? readEntry(base, hash);
  if (cached !== undefined) return { ...cached, cached: true };
  // Being instrumented for another caller already (two starts of a new module at once): that one's result, as if cached.
  const running = inflight.get(base);
  if (running !== undefined) {
    const done = await running;
    return { ...done, info: { ...done.info, instrument_ms: 0 }, cached: true };
  }
  const instrumenting = instrument(wasm, options).then((made) => {
    const fresh = { ...made, wasm: inSharedMemory(made.wasm) };
    writeEntry(base, fresh);
    return fresh;
  });
  inflight.set(base, instrumenting);
  try {
    return { ...(await instrumenting), cached: false };
  } finally {
    inflight.delete(base);
  }
}

/**
 * Instrumentations under way in this process, by cache entry: a second
 * start of a module being instrumented waits for that one instead of
 * instrumenting it again (half a second to minutes of a thread).
 */
const inflight = new Map<string, Promise<Instrumented>>();

interface EntryMeta {
  info: InstrumentInfo;
  wasm_sha256: string;
}

function readEntry(base: string, hash: string): Instrumented | undefined {
  let meta: EntryMeta;
  let bytes: Uint8Array;
  try {
    meta = JSON.parse(fs.readFileSync(`${base}.json`, "utf8")) as EntryMeta;
    bytes = readShared(`${base}.wasm`);
  } catch {
    // Not cached (or half written by a writer that died): instrumented again, and written anew.
    return undefined;
  }
  // A damaged entry is treated as absent and rewritten, never trusted.
  if (meta.info?.module_sha256 !== hash || meta.info.instrumenter !== INSTRUMENTER_VERSION) return undefined;
  if (moduleHash(bytes) !== meta.wasm_sha256) return undefined;
  const entry = { wasm: bytes, info: { ...meta.info, instrument_ms: 0 } };
  remember(base, entry);
  return entry;
}

/**
 * Cache entries this process read or wrote, newest last: the next start of
 * the same module takes its bytes from here instead of reading the file and
 * hashing it again (flite's 22 MB: about 20 ms of every start on a node). An entry
 * is used only while its two files have the size and modification time they
 * had when it was read or written, so one rewritten or removed since (by
 * another process, or by hand) is read anew. The bytes are shared by every
 * process started from them and never written to (the compiled modules of
 * `_compiled.ts` keep the same ones).
 */
const recent = new Map<string, { stamp: string; entry: Instrumented }>();

/** Entries kept in {@link recent}: as many as the compiled modules kept (`COMPILED_MODULES_MAX`). */
const RECENT_MAX = 8;

function stampOf(base: string): string | undefined {
  try {
    const [w, j] = [fs.statSync(`${base}.wasm`), fs.statSync(`${base}.json`)];
    return `${w.size}:${w.mtimeMs}:${w.ino}/${j.size}:${j.mtimeMs}:${j.ino}`;
  } catch {
    // A file gone (removed, or mid-rewrite by another process): nothing kept is used; the entry is read anew or instrumented again.
    return undefined;
  }
}

function remember(base: string, entry: Instrumented): void {
  const stamp = stampOf(base);
  if (stamp === undefined) return;
  recent.delete(base);
  recent.set(base, { stamp, entry: { wasm: entry.wasm, info: { ...entry.info, instrument_ms: 0 } } });
  for (const old of recent.keys()) {
    if (recent.size <= RECENT_MAX) break;
    recent.delete(old);
  }
}

function recentEntry(base: string): Instrumented | undefined {
  const kept = recent.get(base);
  if (kept === undefined) return undefined;
  if (stampOf(base) !== kept.stamp) {
    recent.delete(base);
    return undefined;
  }
  recent.delete(base);
  recent.set(base, kept);
  return { wasm: kept.entry.wasm, info: { ...kept.entry.info } };
}

function writeEntry(base: string, entry: Instrumented): void {
  try {
    fs.mkdirSync(path.dirname(base), { recursive: true });
    const tmp = `.${randomBytes(6).toString("hex")}.tmp`;
    fs.writeFileSync(`${base}.wasm${tmp}`, entry.wasm);
    fs.renameSync(`${base}.wasm${tmp}`, `${base}.wasm`);
    const meta: EntryMeta = { info: entry.info, wasm_sha256: moduleHash(entry.wasm) };
    fs.writeFileSync(`${base}.json${tmp}`, JSON.stringify(meta));
    fs.renameSync(`${base}.json${tmp}`, `${base}.json`);
    remember(base, entry);
  } catch {
    // A read-only or full cache folder costs time, not correctness.
  }
}

/**
 * An instrumented module's bytes live in shared memory: the workers that run
 * it read its data segments from there (`src/runtime/_compiled.ts`), with
 * no copy of them made per process or per worker.
 */
function readShared(file: string): Uint8Array {
  const fd = fs.openSync(file, "r");
  try {
    const size = fs.fstatSync(fd).size;
    const bytes = new Uint8Array(new SharedArrayBuffer(size));
    let at = 0;
    while (at < size) {
      const n = fs.readSync(fd, bytes, at, size - at, at);
      if (n === 0) throw new Error(`${file} ended at ${at} of ${size} bytes`);
      at += n;
    }
    return bytes;
  } finally {
    fs.closeSync(fd);
  }
}

/** `bytes` if they are in shared memory already, else a copy there. */
export function inSharedMemory(bytes: Uint8Array): Uint8Array {
  if (bytes.buffer instanceof SharedArrayBuffer) return bytes;
  const copy = new Uint8Array(new SharedArrayBuffer(bytes.length));
  copy.set(bytes);
  return copy;
}
