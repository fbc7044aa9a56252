/**
 * Instrumenting in a worker thread.
 *
 * binaryen.js is a WebAssembly program whose memory only grows: instrumenting
 * a 50 MB module leaves gigabytes reserved in the process for good, and the
 * thread that runs it does nothing else for a minute. A node must keep
 * answering (leases, migrations) meanwhile, and a CLI wants to show progress.
 * So large modules are instrumented in a worker of their own that exits when
 * done, giving all of Binaryen's memory back.
 */
import { Worker } from "node:worker_threads";
import { InstrumentError, isErrorCode, type InstrumentErrorCode } from "../errors.js";
import type { InstrumentOptions, Instrumented } from "./instrument.js";
import type { FromInstrumentJob, InstrumentJob } from "./_job.js";

/**
 * Modules from this size on are instrumented in a worker of their own.
 * Below it, loading Binaryen again for each module (about a second) would
 * cost more than the work, and the memory it keeps is small: they share the
 * kept worker ({@link instrumentInKeptWorker}).
 */
export const WORKER_MODULE_BYTES_MIN = 1024 * 1024;

const INSTRUMENT_CODES: readonly InstrumentErrorCode[] = ["ERR_INSTRUMENT_INVALID", "ERR_INSTRUMENT_UNSUPPORTED", "ERR_INSTRUMENT_FAILED", "ERR_INSTRUMENT_LIMIT"];

/** The code of an error a job reported; one that is not an instrumentation code is a failure of the instrumenter. */
export function instrumentCode(code: string): InstrumentErrorCode {
  return isErrorCode(code) && (INSTRUMENT_CODES as readonly string[]).includes(code) ? (code as InstrumentErrorCode) : "ERR_INSTRUMENT_FAILED";
}

/** The job of instrumenting `wasm` with `options` (less the listener, which stays here). */
export function jobOf(wasm: Uint8Array, options: InstrumentOptions): InstrumentJob {
  return {
    wasm,
    ...(options.blocking_imports !== undefined ? { blocking_imports: options.blocking_imports } : {}),
    ...(options.name !== undefined ? { name: options.name } : {}),
  };
}

/** As `instrumentModule`, in a worker thread that ends with the job. */
export function instrumentInWorker(wasm: Uint8Array, options: InstrumentOptions = {}): Promise<Instrumented> {
  const job = jobOf(wasm, options);
  return new Promise<Instrumented>((resolve, reject) => {
    const worker = new Worker(new URL("./_thread_worker.js", import.meta.url), { workerData: job, stdout: false, stderr: false });
    let settled = false;
    const settle = (finish: () => void): void => {
      if (settled) return;
      settled = true;
      finish();
      // The answer is in: the worker (and Binaryen's memory) can go.
      void worker.terminate();
    };
    worker.on("message", (msg: FromInstrumentJob) => {
      if (msg.kind === "stage") options.on_stage?.(msg.stage);
      else if (msg.kind === "done") settle(() => resolve({ wasm: msg.wasm, info: msg.info }));
      else settle(() => reject(new InstrumentError(instrumentCode(msg.code), msg.message)));
    });
    worker.on("error", (err: Error) => {
      const label = options.name ?? "the module";
      settle(() => reject(new InstrumentError("ERR_INSTRUMENT_FAILED", `cannot instrument ${label}: the instrumenting worker failed: ${err.message}`, { cause: err })));
    });
    worker.on("exit", (code) => {
      const label = options.name ?? "the module";
      settle(() => reject(new InstrumentError("ERR_INSTRUMENT_FAILED", `cannot instrument ${label}: the instrumenting worker exited (status ${code}) without an answer`)));
    });
  });
}

/**
 * How long the kept instrumenting worker waits idle before it ends, giving
 * Binaryen's memory back. A node instruments modules in bursts (a job's
 * processes arriving, a deploy); within one, the worker stays warm.
 */
export const KEPT_WORKER_IDLE_MS = 30_000;

/** A job given to the kept worker and not answered yet. */
interface Pending {
  resolve(done: Instrumented): void;
  reject(err: Error): void;
  options: InstrumentOptions;
}

/** The kept worker (see {@link instrumentInKeptWorker}): its jobs not answered yet, and its idle timer. */
interface KeptWorker {
  worker: Worker;
  pending: Map<number, Pending>;
  idle: NodeJS.Timeout | null;
}

/** The kept worker, while there is one. */
let kept: KeptWorker | null = null;
let next_job = 1;

/** The kept worker, started when there is none. */
function keptWorker(): KeptWorker {
  if (kept !== null) return kept;
  const worker = new Worker(new URL("./_thread_worker.js", import.meta.url), { workerData: null, stdout: false, stderr: false });
  const k: KeptWorker = { worker, pending: new Map(), idle: null };
  const fail = (why: string): void => {
    if (kept === k) kept = null;
    if (k.idle !== null) clearTimeout(k.idle);
    for (const p of k.pending.values()) p.reject(new InstrumentError("ERR_INSTRUMENT_FAILED", `cannot instrument ${p.options.name ?? "the module"}: ${why}`));
    k.pending.clear();
  };
  worker.on("message", (msg: FromInstrumentJob & { id: number }) => {
    const p = k.pending.get(msg.id);
    if (p === undefined) return;
    if (msg.kind === "stage") {
      p.options.on_stage?.(msg.stage);
      return;
    }
    k.pending.delete(msg.id);
    if (msg.kind === "done") p.resolve({ wasm: msg.wasm, info: msg.info });
    else p.reject(new InstrumentError(instrumentCode(msg.code), msg.message));
    if (k.pending.size === 0) idle(k);
  });
  worker.on("error", (err: Error) => fail(`the instrumenting worker failed: ${err.message}`));
  worker.on("exit", (code) => fail(`the instrumenting worker exited (status ${code}) without an answer`));
  kept = k;
  return k;
}

/** Nothing pending: the worker no longer keeps the process alive, and ends after {@link KEPT_WORKER_IDLE_MS}. */
function idle(k: KeptWorker): void {
  k.worker.unref();
  k.idle = setTimeout(() => {
    if (kept === k) kept = null;
    void k.worker.terminate();
  }, KEPT_WORKER_IDLE_MS);
  k.idle.unref();
}

/**
 * As `instrumentModule`, in one worker thread kept for the small modules a
 * node instruments: the node's event loop never waits for Binaryen (the
 * first module of a node took it 1-2.5 s there, more on a loaded machine,
 * and a peer's connection could time out meanwhile), and Binaryen, loaded
 * once, stays warm for the next. Jobs run one after another.
 */
export function instrumentInKeptWorker(wasm: Uint8Array, options: InstrumentOptions = {}): Promise<Instrumented> {
  const k = keptWorker();
  if (k.idle !== null) {
    clearTimeout(k.idle);
    k.idle = null;
  }
  k.worker.ref();
  const id = next_job;
  next_job += 1;
  return new Promise<Instrumented>((resolve, reject) => {
    k.pending.set(id, { resolve, reject, options });
    k.worker.postMessage({ id, job: jobOf(wasm, options) });
  });
}

/** Ends the kept worker now, if there is one (a node that stops). */
export async function stopKeptWorker(): Promise<void> {
  const k = kept;
  if (k === null) return;
  kept = null;
  if (k.idle !== null) clearTimeout(k.idle);
  await k.worker.terminate();
}
