/**
 * Entry of an instrumenting child process: instruments the one module it is
 * sent and answers with the result or the error. See `_process.ts`.
 */
import { runJob, type InstrumentJob } from "./_job.js";

const send = process.send?.bind(process);
if (send === undefined) throw new Error("instrument process started without an IPC channel");
// The answer was written, or the parent has gone (then nobody wants the result): either way, nothing is left to do.
process.once("disconnect", () => process.exit());
process.once("message", (job: InstrumentJob) => {
  void runJob(job, (msg) => {
    send(msg, undefined, undefined, (err: Error | null) => {
      if (err !== null) process.exitCode = 1;
      if (msg.kind !== "stage" && process.connected) process.disconnect();
    });
  });
});
