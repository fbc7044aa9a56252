/**
 * One instrumentation job as run by a thread or a child process of its own
 * (`_thread.ts`, `_process.ts`): the module in, each step as it starts, and the
 * result or the error out, as messages.
 */
import { FerryError } from "../errors.js";
import { instrumentModule, type InstrumentInfo } from "./instrument.js";
import type { InstrumentStage } from "./stages.js";

/** What the thread or process is given. */
export interface InstrumentJob {
  wasm: Uint8Array;
  blocking_imports?: readonly string[];
  name?: string;
}

/** What the thread or process says. */
export type FromInstrumentJob =
  | { kind: "stage"; stage: InstrumentStage }
  | { kind: "done"; wasm: Uint8Array; info: InstrumentInfo }
  | { kind: "failed"; code: string; message: string };

/** Runs `job`, telling `post` of each step and of the end; the result's buffer is whole, so it can be transferred. */
export async function runJob(job: InstrumentJob, post: (msg: FromInstrumentJob) => void): Promise<void> {
  try {
    const done = await instrumentModule(job.wasm, {
      ...(job.blocking_imports !== undefined ? { blocking_imports: job.blocking_imports } : {}),
      ...(job.name !== undefined ? { name: job.name } : {}),
      on_stage: (stage) => post({ kind: "stage", stage }),
    });
    const wasm = done.wasm.byteOffset === 0 && done.wasm.byteLength === done.wasm.buffer.byteLength ? done.wasm : done.wasm.slice();
    post({ kind: "done", wasm, info: done.info });
  } catch (err: unknown) {
    // instrumentModule raises only FerryErrors; anything else is a fault of ours, reported as such.
    if (err instanceof FerryError) post({ kind: "failed", code: err.code, message: err.message });
    else post({ kind: "failed", code: "ERR_INSTRUMENT_FAILED", message: `instrumenter fault: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}` });
  }
}
