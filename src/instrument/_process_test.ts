import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { describe, it } from "node:test";
import { FerryError } from "../errors.js";
import { wat } from "./_wat.js";
import { instrumentModule, loadInstrumented } from "./mod.js";
import { WORKER_MODULE_BYTES_MIN } from "./_thread.js";

const SAMPLE = wat(`(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory 1)
  (global $n (mut i32) (i32.const 0))
  (func $down (param i32) (result i32)
    (if (result i32) (i32.eqz (local.get 0)) (then (call $write (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 0)))
      (else (call $down (i32.sub (local.get 0) (i32.const 1))))))
  (func (export "_start")
    (loop $l (global.set $n (i32.add (global.get $n) (i32.const 1))) (br_if $l (i32.lt_u (global.get $n) (i32.const 1000))))
    (drop (call $down (i32.const 10)))))`);

/** A module like SAMPLE with a data segment of `bytes`: from WORKER_MODULE_BYTES_MIN on, a module goes to the child process. */
function large(bytes: number): Uint8Array {
  return wat(`(module
    (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
    (memory ${Math.ceil(bytes / 65536) + 1})
    (data (i32.const 0) "${"\\01".repeat(bytes)}")
    (global $n (mut i32) (i32.const 0))
    (func (export "_start")
      (loop $l (global.set $n (i32.add (global.get $n) (i32.const 1))) (br_if $l (i32.lt_u (global.get $n) (i32.const 1000))))
      (drop (call $write (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 0)))))`);
}

describe("instrumenting in a child process", () => {
  it("gives what instrumenting in this thread gives, byte for byte, with every step reported", async () => {
    // A small module that needs no Binaryen is done in this thread; a large one in the child.
    for (const wasm of [SAMPLE, large(WORKER_MODULE_BYTES_MIN)]) {
      const stages: string[] = [];
      const there = await loadInstrumented(wasm, { cache_dir: null, thread: "process", on_stage: (s) => stages.push(s) });
      const here = await instrumentModule(wasm);
      assert.equal(there.cached, false);
      assert.deepEqual(there.wasm, here.wasm);
      assert.deepEqual({ ...there.info, instrument_ms: 0 }, { ...here.info, instrument_ms: 0 });
      assert.deepEqual(stages, ["read", "call-graph", "polls", "asyncify", "write"]);
    }
  });

  it("reports the instrumenter's error with its code and the module's name", async () => {
    await assert.rejects(loadInstrumented(new TextEncoder().encode("nope"), { cache_dir: null, thread: "process", name: "nope.wasm" }), (err: unknown) => {
      assert.ok(err instanceof FerryError);
      assert.equal(err.code, "ERR_INSTRUMENT_INVALID");
      assert.match(err.message, /nope\.wasm/);
      return true;
    });
  });
});

describe("a small module's one instrumentation", () => {
  it("runs with V8's optimizing compiler off, and turns it back on after, also when the work throws", () => {
    // V8 tells a function's tier only with --allow-natives-syntax: a child of its own.
    const url = new URL("./_process.js", import.meta.url).href;
    const script = `
      const { withoutOptimizingCompiler } = await import(${JSON.stringify(url)});
      const TURBOFANNED = 1 << 6;
      // Called until TurboFan's code is in (it compiles on another thread), in rounds of 20,000 calls.
      const hot = (f, rounds) => { let status = 0; for (let k = 0; k < rounds && (status & TURBOFANNED) === 0; k += 1) { for (let i = 0; i < 20000; i += 1) f(300); status = %GetOptimizationStatus(f); } return status; };
      const make = () => (n) => { let s = 0; for (let i = 0; i < n; i += 1) s = (s + i * 7) | 0; return s; };
      // Two rounds: with TurboFan on, its code is in after one here (the second test shows it on); without, never.
      const during = withoutOptimizingCompiler(() => hot(make(), 2));
      let thrown = false;
      try { withoutOptimizingCompiler(() => { throw new Error("no"); }); } catch { thrown = true; }
      const after = hot(make(), 200);
      console.log(JSON.stringify({ during: (during & TURBOFANNED) !== 0, thrown, after: (after & TURBOFANNED) !== 0 }));`;
    const r = spawnSync(process.execPath, ["--allow-natives-syntax", "--input-type=module", "-e", script], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { during: false, thrown: true, after: true });
  });

  it("leaves V8's tiers alone in a process started with flags about them", () => {
    const url = new URL("./_process.js", import.meta.url).href;
    const script = `
      const { withoutOptimizingCompiler } = await import(${JSON.stringify(url)});
      const f = (n) => { let s = 0; for (let i = 0; i < n; i += 1) s = (s + i * 7) | 0; return s; };
      const TURBOFANNED = 1 << 6;
      const status = withoutOptimizingCompiler(() => {
        let status = 0;
        for (let k = 0; k < 200 && (status & TURBOFANNED) === 0; k += 1) { for (let i = 0; i < 20000; i += 1) f(300); status = %GetOptimizationStatus(f); }
        return status;
      });
      console.log(JSON.stringify({ turbofanned: (status & TURBOFANNED) !== 0 }));`;
    // --turbofan is V8's default: said on the command line, it is the process's to keep.
    const r = spawnSync(process.execPath, ["--allow-natives-syntax", "--turbofan", "--input-type=module", "-e", script], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { turbofanned: true });
  });
});
