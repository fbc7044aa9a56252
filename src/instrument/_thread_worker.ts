/**
 * Entry of an instrumenting worker: instruments the one module it is given
 * and answers with the result or the error. See `_thread.ts`.
 */
import { parentPort, workerData } from "node:worker_threads";
import { runJob, type InstrumentJob } from "./_job.js";

const port = parentPort;
if (port === null) throw new Error("instrument worker started outside a worker thread");
await runJob(workerData as InstrumentJob, (msg) => {
  // The result is handed over, not copied: it is tens of megabytes for a large module.
  port.postMessage(msg, msg.kind === "done" ? [msg.wasm.buffer as ArrayBuffer] : []);
});
