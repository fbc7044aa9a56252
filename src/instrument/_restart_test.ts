/**
 * Functions that can run again from their start (`_restart.ts`): their fast
 * copies compute what the originals compute, leave at once when the host
 * wants a safe point (through any depth of fast callers), and the run again
 * in the instrumented copy unwinds, rewinds and ends with the same results,
 * whatever poll the safe point was wanted at.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { instrumentModule } from "./instrument.js";
import { wat } from "./_wat.js";

/**
 * Strings at 0..; `$find` looks a key up among them with `$cmp` and `$len`;
 * `$sum`, `$mean`, `$scale` and `$spin` loop over numbers (i64, f64, f32,
 * none); `$fill` stores (so it is not given a fast copy). `_start` runs them
 * all a few times and keeps the results in exported globals.
 */
const MODULE = `(module
  (memory 1)
  (data (i32.const 0) "alpha\\00beta\\00gamma\\00delta\\00epsilon\\00zeta\\00eta\\00theta\\00")
  (global $found (export "found") (mut i32) (i32.const 0))
  (global $total (export "total") (mut i64) (i64.const 0))
  (global $avg (export "avg") (mut f64) (f64.const 0))
  (global $scaled (export "scaled") (mut f32) (f32.const 0))
  (global $filled (export "filled") (mut i32) (i32.const 0))
  (func $len (param $p i32) (result i32) (local $n i32)
    (block $done (loop $l
      (br_if $done (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $n)))))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br $l)))
    (local.get $n))
  (func $cmp (param $a i32) (param $b i32) (result i32) (local $x i32) (local $y i32)
    (block $done (loop $l
      (local.set $x (i32.load8_u (local.get $a)))
      (local.set $y (i32.load8_u (local.get $b)))
      (br_if $done (i32.ne (local.get $x) (local.get $y)))
      (br_if $done (i32.eqz (local.get $x)))
      (local.set $a (i32.add (local.get $a) (i32.const 1)))
      (local.set $b (i32.add (local.get $b) (i32.const 1)))
      (br $l)))
    (i32.sub (local.get $x) (local.get $y)))
  (func $find (param $key i32) (result i32) (local $at i32) (local $i i32)
    (block $none (loop $l
      (br_if $none (i32.ge_u (local.get $at) (i32.const 52)))
      (if (i32.eqz (call $cmp (local.get $at) (local.get $key))) (then (return (local.get $i))))
      (local.set $at (i32.add (local.get $at) (i32.add (call $len (local.get $at)) (i32.const 1))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (i32.const -1))
  (func $sum (param $n i32) (result i64) (local $s i64)
    (loop $l
      (local.set $s (i64.add (i64.mul (local.get $s) (i64.const 6364136223846793005)) (i64.extend_i32_u (local.get $n))))
      (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))
    (local.get $s))
  (func $mean (param $n i32) (result f64) (local $s f64) (local $i i32)
    (loop $l
      (local.set $s (f64.add (local.get $s) (f64.sqrt (f64.convert_i32_u (local.get $i)))))
      (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (local.get $n))))
    (f64.div (local.get $s) (f64.convert_i32_u (local.get $n))))
  (func $scale (param $n i32) (result f32) (local $s f32)
    (loop $l
      (local.set $s (f32.add (f32.mul (local.get $s) (f32.const 0.5)) (f32.convert_i32_u (local.get $n))))
      (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))
    (local.get $s))
  (func $spin (param $n i32)
    (loop $l (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1))))))
  (func $fill (param $n i32)
    (loop $l
      (i32.store8 (i32.add (i32.const 1024) (local.get $n)) (local.get $n))
      (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1))))))
  (func (export "_start") (local $k i32)
    (loop $again
      (global.set $found (i32.add (i32.mul (global.get $found) (i32.const 31))
        (i32.add (call $find (i32.add (i32.const 0) (i32.rem_u (i32.mul (local.get $k) (i32.const 6)) (i32.const 30))))
          (call $find (i32.const 42)))))
      (global.set $total (i64.add (global.get $total) (call $sum (i32.add (i32.const 3000) (local.get $k)))))
      (global.set $avg (f64.add (global.get $avg) (call $mean (i32.add (i32.const 2000) (local.get $k)))))
      (global.set $scaled (f32.add (global.get $scaled) (call $scale (i32.add (i32.const 1000) (local.get $k)))))
      (call $spin (i32.const 5000))
      (call $fill (i32.const 700))
      (global.set $filled (i32.add (global.get $filled) (i32.load8_u (i32.const 1124))))
      (br_if $again (i32.lt_u (local.tee $k (i32.add (local.get $k) (i32.const 1))) (i32.const 12))))))`;

type Results = [number, bigint, number, number, number];

function results(exports: WebAssembly.Exports): Results {
  const g = (name: string): WebAssembly.Global => exports[name] as WebAssembly.Global;
  return [g("found").value as number, g("total").value as bigint, g("avg").value as number, g("scaled").value as number, g("filled").value as number];
}

/** Where Asyncify keeps the unwound stack: above the strings and `$fill`'s bytes. */
const DATA = 8192;

/**
 * Runs the instrumented module with the host wanting a safe point at the
 * `at`-th countdown of a fast copy (never, if `at` is 0): the copy leaves,
 * the run again unwinds at its first poll, and is rewound at once.
 */
function runInstrumented(wasm: Uint8Array, at: number): { results: Results; left: number; unwinds: number } {
  let restart_polls = 0;
  let wanted = false;
  let rewinding = false;
  let left = 0;
  let unwinds = 0;
  const instance: WebAssembly.Instance = new WebAssembly.Instance(new WebAssembly.Module(wasm), {
    ferry: {
      poll_restartable: () => {
        restart_polls += 1;
        if (restart_polls !== at) return 7;
        wanted = true;
        left += 1;
        return 0;
      },
      poll: () => {
        const ex = instance.exports as Record<string, (p?: number) => void>;
        if (rewinding) {
          (ex["asyncify_stop_rewind"] as () => void)();
          rewinding = false;
        } else if (wanted) {
          wanted = false;
          unwinds += 1;
          const words = new Int32Array((instance.exports["memory"] as WebAssembly.Memory).buffer, DATA, 2);
          words[0] = DATA + 8;
          words[1] = DATA + 4096;
          (ex["asyncify_start_unwind"] as (p: number) => void)(DATA);
        }
        return 7;
      },
    },
  });
  const ex = instance.exports as Record<string, (p?: number) => number>;
  const start = ex["_start"] as () => void;
  start();
  while ((ex["asyncify_get_state"] as () => number)() === 1) {
    (ex["asyncify_stop_unwind"] as () => void)();
    (ex["asyncify_start_rewind"] as (p: number) => void)(DATA);
    rewinding = true;
    start();
  }
  return { results: results(instance.exports), left, unwinds };
}

describe("functions that can run again from their start", () => {
  it("get a fast copy when they write nothing outside their frame, whatever number type they return", async () => {
    const { info } = await instrumentModule(wat(MODULE));
    // $len, $cmp, $find, $sum, $mean, $scale, $spin; not $fill (it stores), not _start (it sets globals).
    assert.equal(info.restartable, 7);
  });

  it("give the original's results, and when left anywhere for a safe point, the same after the unwind and the rewind", async () => {
    const plain = new WebAssembly.Instance(new WebAssembly.Module(wat(MODULE)));
    (plain.exports["_start"] as () => void)();
    const want = results(plain.exports);
    const { wasm } = await instrumentModule(wat(MODULE));
    const undisturbed = runInstrumented(wasm, 0);
    assert.deepEqual(undisturbed.results, want);
    assert.equal(undisturbed.unwinds, 0);
    // Left at the first countdowns, inside nested fast copies ($find → $cmp, $len), and late in the run.
    for (const at of [1, 2, 3, 5, 8, 13, 21, 34, 55, 89]) {
      const run = runInstrumented(wasm, at);
      assert.equal(run.left, 1, `countdown ${at}: the fast copy did not leave`);
      assert.equal(run.unwinds, 1, `countdown ${at}: the run again did not unwind`);
      assert.deepEqual(run.results, want, `countdown ${at}`);
    }
  });
});
