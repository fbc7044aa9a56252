import assert from "node:assert/strict";
import { describe, it } from "node:test";
import binaryen from "binaryen";
import { readCallGraph } from "./_callgraph.js";
import { OUTLINE_FUNCTION_LOCALS_MIN } from "./_outline.js";
import { injectPolls } from "./_polls.js";
import { instrumentModule } from "./mod.js";
import { wat } from "./_wat.js";

/**
 * A polled loop that leaves in every way an outlined loop must give back to
 * its caller: a br_table to the loop, to a label of its own and to the block
 * around it; a br to a block further out; a br_if back; falling off its end.
 * It writes locals of each number type, reads some it never writes, and calls
 * a leaf. Its function has just enough locals for its loop to be outlined. The bound comes from a global, so the loop keeps its poll.
 */
const EXITS = `(module (memory 1)
  (global $limit (mut i32) (i32.const 0))
  (func $mix (param i64) (result i64) (i64.xor (local.get 0) (i64.shr_u (local.get 0) (i64.const 7))))
  (func $exits (export "exits") (param $seed i32) (result f64)
    (local $i i32) (local $acc i32) (local $wide i64) (local $x f64) (local $y f32) (local $unused i32) (local $k i32)
    (local.set $k (i32.add (local.get $seed) (i32.const 3)))
    (block $far
      (block $out
        (loop $l
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (local.set $acc (i32.add (i32.mul (local.get $acc) (i32.const 31)) (local.get $seed)))
          (local.set $wide (call $mix (i64.add (local.get $wide) (i64.extend_i32_u (local.get $acc)))))
          (local.set $x (f64.add (local.get $x) (f64.convert_i32_s (local.get $k))))
          (local.set $y (f32.mul (f32.add (local.get $y) (f32.const 0.5)) (f32.const 0.75)))
          (block $skip
            (br_table $l $skip $out $skip (i32.rem_u (i32.xor (local.get $acc) (local.get $i)) (i32.const 7))))
          (br_if $far (i32.eq (local.get $i) (i32.const 977)))
          (local.set $seed (i32.add (local.get $seed) (i32.const 7)))
          (br_if $l (i32.lt_u (local.get $i) (global.get $limit)))))
      (local.set $x (f64.neg (local.get $x))))
    (f64.add (f64.add (local.get $x) (f64.promote_f32 (local.get $y)))
      (f64.convert_i64_u (i64.add (local.get $wide) (i64.extend_i32_u (i32.add (local.get $acc) (i32.add (local.get $i) (local.get $unused))))))))
  (func (export "set") (param i32) (global.set $limit (local.get 0))))`;

function run(wasm: Uint8Array, limit: number, seed: number): number {
  const instance = new WebAssembly.Instance(new WebAssembly.Module(wasm), { ferry: { poll: () => 3, poll_restartable: () => 3 } });
  (instance.exports["set"] as (n: number) => void)(limit);
  return (instance.exports["exits"] as (n: number) => number)(seed);
}

/**
 * Names of the functions of `text` once its loops are polled (Binaryen writes
 * no names, so the step before Asyncify is looked at), checking the module
 * still validates there: every rewritten loop keeps the type the code around
 * it was typed by.
 */
function polledNames(text: string): string[] {
  const m = binaryen.parseText(text);
  try {
    m.setFeatures(binaryen.Features.MutableGlobals | binaryen.Features.BulkMemory);
    const { recursive, looping, reaches } = readCallGraph(binaryen, m, undefined, ["env.block", "ferry.poll"]);
    injectPolls(binaryen, m, recursive, { budget: "budget", initial: 100, import: { module: "ferry", name: "poll" }, looping, reaches });
    assert.equal(m.validate(), 1);
    const names: string[] = [];
    for (let i = 0; i < m.getNumFunctions(); i += 1) names.push(binaryen.getFunctionInfo(m.getFunctionByIndex(i)).name);
    return names;
  } finally {
    m.dispose();
  }
}

/** Locals enough for a function's loops to be outlined. */
const PAD = Array.from({ length: OUTLINE_FUNCTION_LOCALS_MIN }, (_, i) => `(local $pad${i} i32)`).join(" ");

describe("outlined loops", () => {
  it("compute what the loop computed, however it leaves, with every local it wrote given back", async () => {
    const original = wat(EXITS);
    assert.ok(polledNames(EXITS).includes("__ferry_loop_0"), "the loop is outlined");
    const { wasm } = await instrumentModule(original);
    for (const limit of [0, 1, 2, 3, 5, 63, 64, 65, 300, 5000]) {
      for (const seed of [0, 1, 2, 17, 12345, -9]) {
        assert.equal(run(wasm, limit, seed), run(original, limit, seed), `limit ${limit}, seed ${seed}`);
      }
    }
  });

  it("stay in place when they call what can reach a safe point, return, carry a value out, or their function has few locals", () => {
    const names = polledNames(`(module
      (import "env" "block" (func $block))
      (memory 1)
      (global $n (mut i32) (i32.const 1000))
      (func $looping (param i32) (result i32) (loop $l (br_if $l (local.tee 0 (i32.sub (local.get 0) (global.get $n))))) (local.get 0))
      (func (export "calls_looping") ${PAD} (local $i i32)
        (loop $l (i32.store (i32.const 8) (call $looping (local.get $i)))
          (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (global.get $n)))))
      (func (export "returns") (result i32) ${PAD} (local $i i32)
        (loop $l (if (i32.eq (local.get $i) (i32.const 77)) (then (return (local.get $i))))
          (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (global.get $n))))
        (i32.const 0))
      (func (export "carries") (result i32) ${PAD} (local $i i32)
        (block $found (result i32)
          (loop $l (drop (br_if $found (local.get $i) (i32.eq (local.get $i) (i32.const 77))))
            (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (global.get $n))))
          (i32.const 0)))
      (func (export "blocks") ${PAD} (local $i i32)
        (loop $l (call $block)
          (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (global.get $n)))))
      (func (export "plain") ${PAD} (local $i i32)
        (loop $l (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (global.get $n)))))
      (func (export "never_falls_off") (param $n i32) (result i32) (local $i i32)
        (loop $l
          (if (i32.ge_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (local.get $n)) (then (return (local.get $i))))
          (br $l)))
      (func (export "few_locals") (local $i i32)
        (loop $l (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (global.get $n))))))`);
    // Only the loop of "plain" moves out.
    assert.deepEqual(names.filter((n) => n.startsWith("__ferry_loop_")), ["__ferry_loop_0"]);
  });
});
