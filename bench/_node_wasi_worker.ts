/**
 * Baseline runner for the benchmark: runs an UNinstrumented module (compiled
 * once by the benchmark and shared, as Ferry shares its compiled modules) under
 * Node's own node:wasi in a worker thread (as Ferry runs its guests) and
 * reports how long `start` took, in wall and CPU time.
 */
import fs from "node:fs";
import { parentPort, workerData } from "node:worker_threads";
import { WASI } from "node:wasi";

interface Job {
  /** Compiled by the benchmark once for all runs, as Ferry compiles its modules once. */
  module: WebAssembly.Module;
  args: string[];
  preopens: Record<string, string>;
}

// node:wasi warns that it is experimental; keep the benchmark's tables clean.
process.removeAllListeners("warning");
process.on("warning", () => undefined);

const job = workerData as Job;
const devnull = fs.openSync("/dev/null", "w");
const wasi = new WASI({ version: "preview1", args: job.args, env: {}, preopens: job.preopens, returnOnExit: true, stdout: devnull, stderr: devnull });
// Ferry's own imports (docs/links.md), as `ferry exec` answers them outside a cluster: examples that a test can hold
// (examples/c/hold.h) import them, and find nothing to wait for.
const ENOSYS = 52;
const ferry = { pid: (): number => 0, send: (): number => ENOSYS, recv: (): number => ENOSYS, migrate: (): number => ENOSYS };
const instance = new WebAssembly.Instance(job.module, { ...(wasi.getImportObject() as WebAssembly.Imports), ferry });
const t0 = performance.now();
// CPU of the whole process (every thread, V8's compilers included): on a
// loaded machine the run's wall time is mostly waiting for a core.
const c0 = process.cpuUsage();
const code = wasi.start(instance);
const cpu = process.cpuUsage(c0);
parentPort?.postMessage({ ms: performance.now() - t0, cpu_ms: (cpu.user + cpu.system) / 1000, code });
