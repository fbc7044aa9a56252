/**
 * Pre-copy round cost with each page tracker, side by side on the same live
 * process: the memory-heavy example writing at a given rate, looked at every
 * 200 ms as pre-copy rounds would.
 */
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { KernelTracker, ShadowTracker, kernelTrackerAvailability, type PageTracker } from "../src/memory/mod.js";
import { GuestProcess } from "../src/runtime/mod.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const ROUNDS = 5;

function drain(tracker: PageTracker, memory: Uint8Array): { ms: number; pages: number } {
  const t0 = performance.now();
  let pages = 0;
  for (const _ of tracker.changed(memory)) pages += 1;
  return { ms: performance.now() - t0, pages };
}

/** Runs the tracker benchmark and prints its table. */
export async function trackerBench(quick: boolean): Promise<void> {
  const kernel = kernelTrackerAvailability();
  console.log("\n(g) pre-copy round cost by page tracker, on one live memhog (ms per look, pages found; median of %d rounds)", ROUNDS);
  if (!kernel.available) {
    console.log(`userfaultfd tracker unavailable here: ${kernel.reason}`);
    return;
  }
  console.log("| memory | writes MB/s | portable first | userfaultfd first | portable round | userfaultfd round | ratio | pages/round (portable, userfaultfd) |\n|---|---|---|---|---|---|---|---|");
  const devnull = fs.openSync("/dev/null", "w");
  const file = path.join(ROOT, "examples", "c", "memhog.wasm");
  const wasm = fs.readFileSync(file);
  for (const mib of quick ? [64] : [256, 1024]) {
    for (const rate of [0, 10, 100]) {
      const proc = await GuestProcess.start(
        { wasm, module_path: file, args: ["memhog", String(mib), String(rate), "600"], env: [], preopens: [] },
        { stdin: null, stdout: { kind: "fd", fd: devnull }, stderr: { kind: "fd", fd: devnull } },
      );
      while (proc.memory.buffer.byteLength < mib * 1048576) await new Promise((r) => setTimeout(r, 20));
      await new Promise((r) => setTimeout(r, 500 + mib));
      const memory = (): Uint8Array => new Uint8Array(proc.memory.buffer);
      const portable = new ShadowTracker();
      const uffd = new KernelTracker();
      const first = [drain(portable, memory()), drain(uffd, memory())];
      const rounds: { p: { ms: number; pages: number }; k: { ms: number; pages: number } }[] = [];
      for (let i = 0; i < ROUNDS; i += 1) {
        await new Promise((r) => setTimeout(r, 200));
        // Alternate which goes first so neither always sees the other's cache warmth.
        if (i % 2 === 0) rounds.push({ p: drain(portable, memory()), k: drain(uffd, memory()) });
        else {
          const k = drain(uffd, memory());
          rounds.push({ p: drain(portable, memory()), k });
        }
      }
      portable.close();
      uffd.close();
      await proc.terminate();
      const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
      const p = med(rounds.map((r) => r.p.ms));
      const k = med(rounds.map((r) => r.k.ms));
      console.log(
        `| ${mib} MiB | ${rate} | ${first[0]!.ms.toFixed(1)} | ${first[1]!.ms.toFixed(1)} | ${p.toFixed(1)} | ${k.toFixed(1)} | ${(p / Math.max(k, 0.001)).toFixed(0)}x | ${med(rounds.map((r) => r.p.pages))}, ${med(rounds.map((r) => r.k.pages))} |`,
      );
    }
  }
}
