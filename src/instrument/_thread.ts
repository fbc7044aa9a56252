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
 * Modules from this size on are instrumented in a worker. Below it, loading
 * Binaryen again for each module (about a second) would cost more than the
 * work, and the memory it keeps is small.
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
