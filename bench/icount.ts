/**
 * Guest overhead in machine instructions, which the load of a shared machine
 * does not change (unlike times): each program runs under callgrind twice,
 * with a small and a larger argument, once uninstrumented under node:wasi
 * and once instrumented; the difference between the two runs is the cost of
 * the extra work alone (start-up and most compilation cancel out; not a
 * TurboFan compile that only the larger run triggers, as of the instrumented
 * printf_core in compute and recurse: docs/runtime.md). Both of V8's
 * tiers are measured: by default a function that is called once (a `main`
 * whose loops the compiler inlined, AssemblyScript's top-level code) runs in
 * Liftoff from start to end, since V8 has no on-stack replacement for wasm;
 * `--no-liftoff` shows the optimized code that a function called again gets.
 * Needs valgrind; minutes per program.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { loadInstrumented } from "../src/instrument/mod.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const EXAMPLES = path.join(ROOT, "examples");
const CHILD = fileURLToPath(new URL("./_icount_worker.js", import.meta.url));

/** Instructions callgrind counted for one run of `module` with `args` under `flags`. */
function instructions(flags: string[], module: string, args: string[]): number {
  const out = path.join(os.tmpdir(), `ferry-icount-${process.pid}.out`);
  const r = spawnSync("valgrind", ["--tool=callgrind", "--trace-children=no", `--callgrind-out-file=${out}`, process.execPath, ...flags, CHILD, module, ...args], { encoding: "utf8" });
  fs.rmSync(out, { force: true });
  const m = /Collected : (\d+)/.exec(r.stderr);
  if (r.status !== 0 || m?.[1] === undefined) throw new Error(`callgrind run of ${path.basename(module)} ${args.join(" ")} failed (status ${r.status}): ${r.stderr.slice(-400)}`);
  return Number(m[1]);
}

export async function icountBench(quick: boolean): Promise<void> {
  if (spawnSync("valgrind", ["--version"]).status !== 0) {
    console.log("\n(icount) left out: valgrind is not installed");
    return;
  }
  const programs: [string, string, string[], string[]][] = [
    ["compute", "c/compute.wasm", ["0"], ["2"]],
    ["sieve (AS)", "as/sieve.wasm", ["1"], ["3"]],
    ["recurse", "c/recurse.wasm", ["20000", "1"], ["20000", "11"]],
    ["mandel (AS)", "as/mandel.wasm", ["1"], ["3"]],
  ];
  const tiers: [string, string[]][] = quick ? [["default (Liftoff first)", []]] : [["default (Liftoff first)", []], ["--no-liftoff", ["--no-liftoff"]]];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-icount-"));
  console.log("\n(icount) guest overhead in instructions: callgrind, larger run minus smaller run (millions)");
  console.log("| program | V8 tier | node:wasi | ferry (instrumented) | ratio |\n|---|---|---|---|---|");
  try {
    for (const [name, file, lo, hi] of programs) {
      const original = path.join(EXAMPLES, file);
      const instrumented = path.join(dir, path.basename(file));
      fs.writeFileSync(instrumented, (await loadInstrumented(fs.readFileSync(original), { cache_dir: dir })).wasm);
      for (const [tier, flags] of tiers) {
        const base = instructions(flags, original, hi) - instructions(flags, original, lo);
        const ours = instructions(flags, instrumented, hi) - instructions(flags, instrumented, lo);
        console.log(`| ${name} ${hi.join(" ")} − ${lo.join(" ")} | ${tier} | ${(base / 1e6).toFixed(0)} | ${(ours / 1e6).toFixed(0)} | ${(ours / base).toFixed(2)}x |`);
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
