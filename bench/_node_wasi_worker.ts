/**
 * Baseline runner for the benchmark: runs a module (compiled once by the
 * benchmark and shared, as Ferry shares its compiled modules) under Node's
 * own node:wasi in a worker thread (as Ferry runs its guests): says when it
 * is instantiated, runs `start` when told, and says when it ended. The
 * module is the uninstrumented one, or Ferry's instrumented one, whose poll
 * gets a stub (the instrumented code's own cost, without Ferry's host).
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
/** Units between two polls an instrumented module's stub poll answers: about a quarter of a millisecond of a tight loop, as Ferry's host settles on. */
const STUB_BUDGET = 50_000;
const ferry = {
  pid: (): number => 0,
  send: (): number => ENOSYS,
  recv: (): number => ENOSYS,
  migrate: (): number => ENOSYS,
  poll: (): number => STUB_BUDGET,
  poll_restartable: (): number => STUB_BUDGET,
};
const instance = new WebAssembly.Instance(job.module, { ...(wasi.getImportObject() as WebAssembly.Imports), ferry });
// Instantiated, as a Ferry process is when its start resolves: the benchmark
// times the run from its "go" to the result here, as it times Ferry's from its
// "run" to the exit (both include the two messages between the threads).
parentPort?.once("message", () => {
  const code = wasi.start(instance);
  parentPort?.postMessage({ code });
});
parentPort?.postMessage({ ready: true });
