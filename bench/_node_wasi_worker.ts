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
import { ferryStub } from "./_ferry_stub.js";

interface Job {
  /** Compiled by the benchmark once for all runs, as Ferry compiles its modules once. */
  module: WebAssembly.Module;
  args: string[];
  preopens: Record<string, string>;
}

// node:wasi warns that it is experimental; keep the benchmark's tables clean.
process.removeAllListeners("warning");
process.on("warning", () => undefined);
// Loaded only now: node:wasi warns once loaded, on the next tick, and the listeners above are gone by then.
const { WASI } = await import("node:wasi");

const job = workerData as Job;
const devnull = fs.openSync("/dev/null", "w");
const wasi = new WASI({ version: "preview1", args: job.args, env: {}, preopens: job.preopens, returnOnExit: true, stdout: devnull, stderr: devnull });
const instance = new WebAssembly.Instance(job.module, { ...(wasi.getImportObject() as WebAssembly.Imports), ferry: ferryStub() });
// Instantiated, as a Ferry process is when its start resolves: the benchmark
// times the run from its "go" to the result here, as it times Ferry's from its
// "run" to the exit (both include the two messages between the threads).
parentPort?.once("message", () => {
  const code = wasi.start(instance);
  parentPort?.postMessage({ code });
});
parentPort?.postMessage({ ready: true });
