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
import { fetchNpmModule, NPM_MODULES } from "../test/_npm_modules.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const EXAMPLES = path.join(ROOT, "examples");
const CHILD = fileURLToPath(new URL("./_icount_worker.js", import.meta.url));

/** Instructions callgrind counted for one run of `module` with `args` under `flags`. */
function instructions(flags: string[], module: string, args: string[], env: NodeJS.ProcessEnv = process.env): number {
  const out = path.join(os.tmpdir(), `ferry-icount-${process.pid}.out`);
  const r = spawnSync("valgrind", ["--tool=callgrind", "--trace-children=no", `--callgrind-out-file=${out}`, process.execPath, ...flags, CHILD, module, ...args], { encoding: "utf8", env });
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
  // Under --predictable (one thread: V8's compilers and collector run in it, in the same order each time), as flite's row
  // is: without it, background compilation moved the Liftoff-first rows by up to 4x from one run to the next (mandel's
  // 2.07x then 0.55x) and the optimized ones by several percent (the sieve's 1.07x then 1.01x).
  const tiers: [string, string[]][] = quick
    ? [["default (Liftoff first)", ["--predictable"]]]
    : [
        ["default (Liftoff first)", ["--predictable"]],
        ["--no-liftoff", ["--predictable", "--no-liftoff"]],
      ];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-icount-"));
  console.log("\n(icount) guest overhead in instructions: callgrind, larger run minus smaller run (millions), node --predictable");
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
    await fliteCount(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * flite (21.5 MB, from npm) speaking a paragraph into a file: a run of the
 * module compiled once, as three runs in one process less one, halved. Under
 * `--predictable` (one thread, V8's compilers and collector included) with
 * every function compiled optimized up front, the count repeats to about
 * 0.01%; flite's run times here move by 10% from one run to the next.
 */
async function fliteCount(dir: string): Promise<void> {
  const flite = NPM_MODULES.find((f) => f.name === "flite");
  const fetched = flite === undefined ? undefined : fetchNpmModule(flite);
  if (fetched?.kind !== "ok") {
    console.log(`(flite left out: ${fetched?.reason ?? "not among the npm fixtures"})`);
    return;
  }
  const data = fs.mkdtempSync(path.join(dir, "data-"));
  const instrumented = path.join(dir, "flite.wasm");
  fs.writeFileSync(instrumented, (await loadInstrumented(fs.readFileSync(fetched.file), { cache_dir: dir })).wasm);
  const args = ["-t", "Ferry moves a running program from one machine to another. ".repeat(8), "-o", "/data/speech.wav"];
  const flags = ["--predictable", "--no-liftoff"];
  const run = (module: string, runs: number): number => instructions(flags, module, args, { ...process.env, FERRY_ICOUNT_RUNS: String(runs), FERRY_ICOUNT_DIR: `${data}:/data` });
  const perRun = (module: string): number => (run(module, 3) - run(module, 1)) / 2;
  const base = perRun(fetched.file);
  const ours = perRun(instrumented);
  console.log(`| flite (21.5 MB, npm), a run: (3 runs − 1) / 2 | --predictable --no-liftoff | ${(base / 1e6).toFixed(1)} | ${(ours / 1e6).toFixed(1)} | ${(ours / base).toFixed(3)}x |`);
}
