/**
 * Instrumenting in a child process of its own, for an instrumentation that is
 * the only one its process will do (`ferry exec`, `ferry resume`).
 *
 * V8 compiles binaryen.js's wasm with its baseline compiler (Liftoff) first
 * and recompiles the hot functions with its optimizing one (TurboFan) as they
 * warm up. For one module, that recompiling costs more CPU than it saves:
 * about 2.5 s of the 3.9 s the first Asyncify of a 32 KiB module takes, where
 * Binaryen kept on Liftoff alone takes 1.4 s (docs/runtime.md,
 * "Instrumentation"). V8's flags hold for a whole process, and the guest that
 * runs next must get the optimizing compiler, so the instrumenter runs in a
 * process started with `--liftoff-only`, which exits when done, giving all of
 * Binaryen's memory back as the worker of `_thread.ts` does.
 */
import { fork } from "node:child_process";
import v8 from "node:v8";
import { InstrumentError } from "../errors.js";
import type { InstrumentOptions, Instrumented } from "./instrument.js";
import type { FromInstrumentJob } from "./_job.js";
import { instrumentCode, jobOf } from "./_thread.js";

/** V8 flags of the instrumenting process: baseline code only (see above). */
export const INSTRUMENT_PROCESS_FLAGS: readonly string[] = ["--liftoff-only"];

/**
 * Modules below this size are instrumented here with V8's optimizing
 * compiler for JavaScript off ({@link withoutOptimizingCompiler}); from it
 * on, the passes run long enough for TurboFan's code to pay back its
 * compiling (a generated module of 890 KB took as long either way).
 */
export const BASELINE_ONLY_BYTES_MAX = 512 * 1024;

/**
 * Runs `work`, this process's only instrumentation of a small module, with
 * V8's optimizing compiler for JavaScript (TurboFan) off, and turns it back
 * on after, before the guest's runtime code runs.
 *
 * The passes are JavaScript that V8 first runs in its interpreter and its
 * baseline compiler (Sparkplug), and recompiles with TurboFan as they warm
 * up: once, that recompiling costs more than it saves. The instrumentation
 * alone, one fresh process each (a scratch harness, wall and user+sys
 * CPU): compute.wasm (33 KB) 166–231 → 100–111 ms and 0.62–0.70 →
 * 0.27–0.34 s; a Rust test of the WASI suite (131 KB) 452–519 → 278–296
 * ms; a generated module of 550 KB 227–246 → 219–223 ms and 0.67–0.72 →
 * 0.41 s. The CPU matters as much: in `ferry exec` the guest's worker boots
 * meanwhile, on the other core of a small machine.
 *
 * V8's flags hold for the whole process; changing one after start is
 * allowed by `v8.setFlagsFromString` (this one is read when V8 decides to
 * optimize a function). A process started with flags of its own about
 * V8's tiers keeps them untouched.
 */
export function withoutOptimizingCompiler<T>(work: () => T): T {
  if (process.execArgv.some((a) => /^--(no-)?(opt|turbofan|maglev|jitless|max-opt|sparkplug|always-sparkplug)\b/.test(a))) return work();
  v8.setFlagsFromString("--no-turbofan");
  try {
    return work();
  } finally {
    v8.setFlagsFromString("--turbofan");
  }
}

/** Bytes of the child's standard error kept for the message when it dies without an answer. */
const STDERR_TAIL_BYTES = 4096;

/** As `instrumentModule`, in a child process (V8 flags {@link INSTRUMENT_PROCESS_FLAGS}) that ends with the job. */
export function instrumentInProcess(wasm: Uint8Array, options: InstrumentOptions = {}): Promise<Instrumented> {
  const job = jobOf(wasm, options);
  const label = options.name ?? "the module";
  return new Promise<Instrumented>((resolve, reject) => {
    const child = fork(new URL("./_process_child.js", import.meta.url), [], {
      execArgv: [...INSTRUMENT_PROCESS_FLAGS],
      serialization: "advanced",
      stdio: ["ignore", "ignore", "pipe", "ipc"],
    });
    let stderr = Buffer.alloc(0);
    child.stderr?.on("data", (chunk: Buffer) => {
      stderr = Buffer.concat([stderr, chunk]);
      if (stderr.length > STDERR_TAIL_BYTES) stderr = stderr.subarray(stderr.length - STDERR_TAIL_BYTES);
    });
    let settled = false;
    const settle = (finish: () => void): void => {
      if (settled) return;
      settled = true;
      finish();
      // The answer is in: the process (and Binaryen's memory) can go.
      if (child.exitCode === null && child.signalCode === null) child.kill();
    };
    child.on("message", (msg: FromInstrumentJob) => {
      if (msg.kind === "stage") options.on_stage?.(msg.stage);
      else if (msg.kind === "done") settle(() => resolve({ wasm: msg.wasm, info: msg.info }));
      else settle(() => reject(new InstrumentError(instrumentCode(msg.code), msg.message)));
    });
    child.on("error", (err: Error) => {
      settle(() => reject(new InstrumentError("ERR_INSTRUMENT_FAILED", `cannot instrument ${label}: the instrumenting process failed: ${err.message}`, { cause: err })));
    });
    child.on("exit", (code, signal) => {
      const said = stderr.toString("utf8").trim();
      const why = signal !== null ? `was killed by ${signal}` : `exited (status ${code})`;
      settle(() => reject(new InstrumentError("ERR_INSTRUMENT_FAILED", `cannot instrument ${label}: the instrumenting process ${why} without an answer${said === "" ? "" : `: ${said}`}`)));
    });
    child.send(job, (err) => {
      if (err !== null) settle(() => reject(new InstrumentError("ERR_INSTRUMENT_FAILED", `cannot instrument ${label}: the module could not be sent to the instrumenting process: ${err.message}`, { cause: err })));
    });
  });
}
