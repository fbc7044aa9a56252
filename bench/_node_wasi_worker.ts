/**
 * Baseline runner for the benchmark: runs an UNinstrumented module under
 * Node's own node:wasi in a worker thread (as Ferry runs its guests) and
 * reports how long `start` took.
 */
import fs from "node:fs";
import { parentPort, workerData } from "node:worker_threads";
import { WASI } from "node:wasi";

interface Job {
  wasm: Uint8Array;
  args: string[];
  preopens: Record<string, string>;
}

// node:wasi warns that it is experimental; keep the benchmark's tables clean.
process.removeAllListeners("warning");
process.on("warning", () => undefined);

const job = workerData as Job;
const devnull = fs.openSync("/dev/null", "w");
const wasi = new WASI({ version: "preview1", args: job.args, env: {}, preopens: job.preopens, returnOnExit: true, stdout: devnull, stderr: devnull });
const module = new WebAssembly.Module(job.wasm);
const instance = new WebAssembly.Instance(module, wasi.getImportObject() as WebAssembly.Imports);
const t0 = performance.now();
const code = wasi.start(instance);
parentPort?.postMessage({ ms: performance.now() - t0, code });
