/**
 * Entry of an instrumenting worker: instruments the one module it is given,
 * reports each step as it starts, and answers with the result or the error.
 * See `_thread.ts`.
 */
import { parentPort, workerData } from "node:worker_threads";
import { FerryError } from "../errors.js";
import { instrumentModule } from "./instrument.js";
import type { FromInstrumentWorker, InstrumentJob } from "./_thread.js";

const port = parentPort;
if (port === null) throw new Error("instrument worker started outside a worker thread");
const job = workerData as InstrumentJob;
const post = (msg: FromInstrumentWorker, transfer: ArrayBuffer[] = []): void => port.postMessage(msg, transfer);

try {
  const done = await instrumentModule(job.wasm, {
    ...(job.blocking_imports !== undefined ? { blocking_imports: job.blocking_imports } : {}),
    ...(job.name !== undefined ? { name: job.name } : {}),
    on_stage: (stage) => post({ kind: "stage", stage }),
  });
  // The result is handed over, not copied: it is tens of megabytes for a large module.
  const wasm = done.wasm.byteOffset === 0 && done.wasm.byteLength === done.wasm.buffer.byteLength ? done.wasm : done.wasm.slice();
  post({ kind: "done", wasm, info: done.info }, [wasm.buffer as ArrayBuffer]);
} catch (err: unknown) {
  // instrumentModule raises only FerryErrors; anything else is a fault of ours, reported as such.
  if (err instanceof FerryError) post({ kind: "failed", code: err.code, message: err.message });
  else post({ kind: "failed", code: "ERR_INSTRUMENT_FAILED", message: `instrumenter fault: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}` });
}
