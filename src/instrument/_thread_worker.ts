/**
 * Entry of an instrumenting worker: instruments the one module it is given
 * and answers with the result or the error; or, started with no module (the
 * kept worker), every module it is sent, one after another, each answer
 * carrying its job's id. See `_thread.ts`.
 */
import { parentPort, workerData } from "node:worker_threads";
import { runJob, type FromInstrumentJob, type InstrumentJob } from "./_job.js";

const port = parentPort;
if (port === null) throw new Error("instrument worker started outside a worker thread");
// The result is handed over, not copied: it is tens of megabytes for a large module.
const transfer = (msg: FromInstrumentJob): ArrayBuffer[] => (msg.kind === "done" ? [msg.wasm.buffer as ArrayBuffer] : []);
if (workerData !== null) {
  await runJob(workerData as InstrumentJob, (msg) => port.postMessage(msg, transfer(msg)));
} else {
  // Serially: a job's Binaryen work is synchronous once Binaryen is loaded, so jobs never interleave.
  let queue = Promise.resolve();
  port.on("message", ({ id, job }: { id: number; job: InstrumentJob }) => {
    queue = queue.then(() => runJob(job, (msg) => port.postMessage({ ...msg, id }, transfer(msg))));
  });
}
