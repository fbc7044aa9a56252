/**
 * Child-process half of missing_test: a guest-like worker reads a memory
 * whose pages were all dropped, while this thread serves every fault. Runs
 * in its own process so that a hang can be killed from outside.
 */
import { Worker } from "node:worker_threads";
import { MissingPages } from "./missing.js";

const PAGES = 512;
const memory = new WebAssembly.Memory({ initial: PAGES / 16, maximum: 65536, shared: true });
const view = new Uint8Array(memory.buffer);
for (let i = 0; i < view.length; i += 1) view[i] = (i * 31 + (i >> 12)) & 0xff;
const saved = Buffer.from(view);
let expected = 0;
for (const b of saved) expected += b;
const latencies: number[] = [];
const pages = new MissingPages(view, (page) => {
  const t = performance.now();
  pages.place(page * 4096, saved.subarray(page * 4096, (page + 1) * 4096));
  latencies.push(performance.now() - t);
});
pages.drop(view.length);
const worker = new Worker(
  `const { parentPort, workerData } = require("node:worker_threads");
   const v = new Uint8Array(workerData);
   let s = 0;
   for (let i = 0; i < v.length; i++) s += v[i];
   parentPort.postMessage(s);`,
  { eval: true, workerData: memory.buffer },
);
worker.on("message", (sum: number) => {
  const leftover = pages.place(0, saved.subarray(0, view.length));
  const stats = pages.stats;
  pages.close();
  void worker.terminate();
  latencies.sort((a, b) => a - b);
  process.stdout.write(`${JSON.stringify({ sum, expected, faults: stats.faults, leftover, place_p50_ms: latencies[latencies.length >> 1] ?? 0 })}\n`);
});
