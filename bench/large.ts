/**
 * Instrumenting large modules (issue 14): a generated one of 52 MB and
 * 205,000 functions (the test's), and the npm WASI modules of the test
 * fixtures (flite, yosys, pandoc, the largest): wall time, each step's
 * start, which pass made the stack unwindable, and the process's peak resident
 * memory, instrumented in a fresh worker as `ferry exec` does for a large
 * module (no cache). Peak RSS is the process's high-water mark, so the second
 * row's is at least the first's.
 */
import { loadInstrumented } from "../src/instrument/mod.js";
import { bigModule } from "../test/_big_module.js";
import { fetchNpmModule, NPM_MODULES } from "../test/_npm_modules.js";
import fs from "node:fs";

async function instrumentTimed(name: string, wasm: Uint8Array, detail: string): Promise<void> {
  const stages: string[] = [];
  const t0 = performance.now();
  const out = await loadInstrumented(wasm, {
    cache_dir: null,
    thread: "worker",
    name,
    on_stage: (stage) => {
      stages.push(`${stage}@${((performance.now() - t0) / 1000).toFixed(1)}s`);
    },
  });
  const total_s = (performance.now() - t0) / 1000;
  const peak_mb = process.resourceUsage().maxRSS / 1024;
  console.log(
    `large: instrument ${name} (${(wasm.byteLength / 1e6).toFixed(1)} MB, ${detail} -> ${(out.wasm.byteLength / 1e6).toFixed(1)} MB): ${total_s.toFixed(1)} s, peak RSS ${peak_mb.toFixed(0)} MB; steps ${stages.join(" ")}; polls by ${out.info.polls ?? "binaryen"}, unwinding by ${out.info.unwinder ?? "?"}`,
  );
}

/** Runs the benchmark; prints one line per module (or why it cannot). */
export async function largeBench(): Promise<void> {
  const generated = bigModule(205_000);
  await instrumentTimed("generated", generated.wasm, `${generated.functions} functions`);
  // flite (21.5 MB), yosys (30.8 MB, 34k functions), pandoc (58.6 MB, 620k functions, the largest).
  for (const fixture of NPM_MODULES) {
    const fetched = fetchNpmModule(fixture);
    if (fetched.kind === "unavailable") {
      console.log(`large: ${fixture.name} skipped: ${fetched.reason}`);
      continue;
    }
    await instrumentTimed(fixture.name, new Uint8Array(fs.readFileSync(fetched.file)), fixture.name);
  }
}
