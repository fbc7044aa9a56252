/**
 * Instrumenting the largest npm WASI module of the test fixtures (issue 14):
 * wall time and the process's peak resident memory, instrumented in a fresh
 * worker as `ferry exec` does for a large module (no cache).
 */
import { loadInstrumented } from "../src/instrument/mod.js";
import { fetchNpmModule, NPM_MODULES } from "../test/_npm_modules.js";
import fs from "node:fs";

/** Runs the benchmark; prints one line (or why it cannot). */
export async function largeBench(): Promise<void> {
  // pandoc: 58.6 MB, 620k functions, the largest.
  const fixture = NPM_MODULES.find((f) => f.name === "pandoc");
  if (fixture === undefined) return;
  const fetched = fetchNpmModule(fixture);
  if (fetched.kind === "unavailable") {
    console.log(`large: skipped: ${fetched.reason}`);
    return;
  }
  const wasm = new Uint8Array(fs.readFileSync(fetched.file));
  const stages: string[] = [];
  const t0 = performance.now();
  const out = await loadInstrumented(wasm, {
    cache_dir: null,
    thread: "worker",
    name: fixture.name,
    on_stage: (stage) => {
      stages.push(`${stage}@${((performance.now() - t0) / 1000).toFixed(1)}s`);
    },
  });
  const total_s = (performance.now() - t0) / 1000;
  const peak_mb = process.resourceUsage().maxRSS / 1024;
  console.log(
    `large: instrument ${fixture.name} (${(wasm.byteLength / 1e6).toFixed(1)} MB -> ${(out.wasm.byteLength / 1e6).toFixed(1)} MB): ${total_s.toFixed(1)} s, peak RSS ${peak_mb.toFixed(0)} MB; steps ${stages.join(" ")}`,
  );
}
