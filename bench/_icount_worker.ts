/**
 * Child of the instruction-count benchmark (`icount.ts`), run under
 * callgrind: runs one module under node:wasi in a worker thread, as Ferry
 * runs its guests. An instrumented module's `ferry.poll` gets a stub that
 * answers a fixed budget: the guest's own code is measured, not the host's.
 *
 *   node _icount_worker.js MODULE ARGS...
 *
 * FERRY_ICOUNT_RUNS=N runs the module N times, one instance after another
 * (compiled once, as Ferry shares its compiled modules), so that runs N and 1
 * differ by the guest's work alone; FERRY_ICOUNT_DIR=HOST:GUEST gives it a
 * directory.
 */
import fs from "node:fs";
import path from "node:path";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { ferryStub } from "./_ferry_stub.js";

interface Job {
  wasm: Uint8Array;
  args: string[];
}

process.removeAllListeners("warning");
process.on("warning", () => undefined);
// Loaded only now: node:wasi warns once loaded, on the next tick, and the listeners above are gone by then.
const { WASI } = await import("node:wasi");

if (isMainThread) {
  const [file, ...args] = process.argv.slice(2);
  if (file === undefined) throw new Error("usage: _icount_worker.js MODULE ARGS...");
  const job: Job = { wasm: fs.readFileSync(file), args: [path.basename(file), ...args] };
  const w = new Worker(new URL(import.meta.url), { workerData: job, resourceLimits: { stackSizeMb: 256 } });
  const code = await new Promise<number>((resolve, reject) => {
    w.once("message", (m: number) => resolve(m));
    w.once("error", reject);
  });
  await w.terminate();
  process.exitCode = code;
} else {
  const job = workerData as Job;
  const devnull = fs.openSync("/dev/null", "w");
  const runs = Number(process.env["FERRY_ICOUNT_RUNS"] ?? "1");
  const dir = process.env["FERRY_ICOUNT_DIR"];
  const at = dir?.lastIndexOf(":") ?? -1;
  const preopens: Record<string, string> = dir === undefined || at < 0 ? {} : { [dir.slice(at + 1)]: dir.slice(0, at) };
  const module = new WebAssembly.Module(job.wasm);
  const ferry = WebAssembly.Module.imports(module).some((i) => i.module === "ferry");
  let code = 0;
  for (let run = 0; run < runs; run += 1) {
    const wasi = new WASI({ version: "preview1", args: job.args, env: {}, preopens, returnOnExit: true, stdout: devnull, stderr: devnull });
    const imports = wasi.getImportObject() as WebAssembly.Imports;
    if (ferry) imports["ferry"] = ferryStub();
    code = wasi.start(new WebAssembly.Instance(module, imports));
  }
  parentPort?.postMessage(code);
}
