/**
 * Issue 14 part 3: a module of at least 50 MB and 200,000 functions,
 * generated here (`_big_module.ts`), is instrumented (in a worker, as
 * `ferry exec` does for a large module) and then run by `ferry exec` from the
 * cache, printing what node:wasi prints for the original. The time and the
 * peak resident memory are reported, not asserted: `npm run bench -- --only=large`
 * is where they are measured.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import { loadInstrumented } from "../src/instrument/mod.js";
import { bigModule } from "./_big_module.js";
import { ferry, nodeWasi, tempDir } from "./_helpers.js";

/** 205,000 functions make about 52 MB of code. */
const FUNCTIONS = 205_000;
const MODULE_BYTES_MIN = 50_000_000;

/** A generous bound for a loaded two-core machine; an unbounded step would blow it. */
const TIMEOUT_MS = 10 * 60_000;


describe("a generated module of 50 MB and 200k functions", { timeout: TIMEOUT_MS }, () => {
  it("is instrumented and runs under ferry exec as under node:wasi", { timeout: TIMEOUT_MS }, async (t) => {
    const dir = tempDir("big-module");
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const cache = path.join(dir, "cache");
    const file = path.join(dir, "big.wasm");
    const { wasm, functions } = bigModule(FUNCTIONS);
    assert.ok(wasm.byteLength >= MODULE_BYTES_MIN && functions >= 200_000, `${wasm.byteLength} bytes, ${functions} functions`);
    fs.writeFileSync(file, wasm);

    const stages: string[] = [];
    const t0 = performance.now();
    const out = await loadInstrumented(wasm, {
      cache_dir: cache,
      thread: "worker",
      name: "big.wasm",
      on_stage: (stage) => stages.push(`${stage} ${((performance.now() - t0) / 1000).toFixed(1)} s`),
    });
    const seconds = (performance.now() - t0) / 1000;
    const peak_mb = process.resourceUsage().maxRSS / 1024;
    t.diagnostic(`${(wasm.byteLength / 1e6).toFixed(1)} MB, ${functions} functions: instrumented in ${seconds.toFixed(1)} s (${stages.join(", ")}), peak RSS of the test process ${peak_mb.toFixed(0)} MB, ${(out.wasm.byteLength / 1e6).toFixed(1)} MB out`);
    assert.equal(out.cached, false);

    const want = await nodeWasi([file]);
    assert.equal(want.status, 0, want.stderr.toString());
    const got = await ferry(["exec", file], { env: { FERRY_CACHE_DIR: cache }, timeout_ms: TIMEOUT_MS });
    assert.equal(got.status, 0, got.stderr.toString());
    assert.match(want.stdout.toString(), /^[0-9a-f]{8}\n$/);
    assert.equal(got.stdout.toString(), want.stdout.toString());
  });
});
