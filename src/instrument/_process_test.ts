import assert from "node:assert/strict";
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
