import assert from "node:assert/strict";
import { describe, it } from "node:test";
import binaryen from "binaryen";
import { UNROLL_COPIES } from "./_unroll.js";
import { instrumentModule } from "./mod.js";
import { wat } from "./_wat.js";

/**
 * A loop that leaves and goes round in every way a body can: a br_table
 * whose targets are the loop, a label of its own and the block around it;
 * a br_if back; a return from inside; falling off its end. The bound comes
 * from a global, so the loop keeps its poll (and is the kind unrolled: its
 * one call is to a function that reaches no safe point).
 */
const TANGLED = `(module (memory 1)
  (global $limit (mut i32) (i32.const 0))
  (func $mix (param i32) (result i32) (i32.xor (local.get 0) (i32.shr_u (local.get 0) (i32.const 3))))
  (func $tangled (export "tangled") (param $seed i32) (result i32) (local $i i32) (local $acc i32)
    (block $out
      (loop $l
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (local.set $acc (i32.add (i32.mul (local.get $acc) (i32.const 31)) (call $mix (local.get $seed))))
        (block $skip
          (br_table $l $skip $out (i32.rem_u (i32.xor (local.get $acc) (local.get $i)) (i32.const 4))))
        (if (i32.eq (local.get $i) (i32.const 977)) (then (return (i32.const -1))))
        (local.set $seed (i32.add (local.get $seed) (i32.const 7)))
        (br_if $l (i32.lt_u (local.get $i) (global.get $limit)))))
    (i32.add (local.get $acc) (local.get $i)))
  (func (export "set") (param i32) (global.set $limit (local.get 0))))`;

function run(wasm: Uint8Array, limit: number, seed: number): number {
  const instance = new WebAssembly.Instance(new WebAssembly.Module(wasm), { ferry: { poll: () => 3, poll_restartable: () => 3 } });
  (instance.exports["set"] as (n: number) => void)(limit);
  return (instance.exports["tangled"] as (n: number) => number)(seed);
}

describe("unrolled loops", () => {
  it("compute what the loop computed, however it leaves or goes round", async () => {
    const original = wat(TANGLED);
    const { wasm } = await instrumentModule(original);
    for (const limit of [0, 1, 2, 3, 5, 63, 64, 65, 300, 5000]) {
      for (const seed of [0, 1, 2, 17, 12345, -9]) {
        assert.equal(run(wasm, limit, seed), run(original, limit, seed), `limit ${limit}, seed ${seed}`);
      }
    }
  });

  it("copy a small loop that calls nothing that can reach a safe point, and only such a loop", async () => {
    const { wasm } = await instrumentModule(wat(`(module
      (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
      (memory 1)
      (global $n (mut i32) (i32.const 1000))
      (type $leaf_t (func (param i32) (result i32)))
      (table 1 funcref) (elem (i32.const 0) $leaf)
      (func $leaf (param i32) (result i32) (i32.add (local.get 0) (i32.const 1)))
      (func $looping (param i32) (result i32) (loop $l (br_if $l (local.tee 0 (i32.sub (local.get 0) (global.get $n))))) (local.get 0))
      (func $small (export "small") (local $i i32)
        (loop $l (i32.store (i32.const 4000) (local.get $i))
          (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (global.get $n)))))
      (func $calls_leaf (export "calls_leaf") (local $i i32)
        (loop $l (i32.store (i32.const 4004) (call $leaf (local.get $i)))
          (drop (call $random (i32.const 64) (i32.const 4)))
          (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (global.get $n)))))
      (func $calls_looping (export "calls_looping") (local $i i32)
        (loop $l (i32.store (i32.const 4008) (call $looping (local.get $i)))
          (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (global.get $n)))))
      (func $calls_blocking (export "calls_blocking") (local $i i32)
        (loop $l (i32.store (i32.const 4012) (call $write (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 0)))
          (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (global.get $n)))))
      (func $calls_indirect (export "calls_indirect") (local $i i32)
        (loop $l (i32.store (i32.const 4016) (call_indirect (type $leaf_t) (local.get $i) (i32.const 0)))
          (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (global.get $n))))))`));
    // Counted over the whole module: a loop may have moved to a function of its own (`_outline.ts`).
    const text = binaryen.readBinary(wasm);
    try {
      const all = text.emitText();
      const stores = (address: number): number => all.split(`(i32.const ${address})`).length - 1;
      // Every function here can unwind: each is written twice, running and rewinding (`_unwind.ts`).
      const versions = 2;
      assert.equal(stores(4000), versions * UNROLL_COPIES);
      // A function with no loop, no recursion and no blocking import below
      // it returns in bounded time, and so does an import that does not block.
      assert.equal(stores(4004), versions * UNROLL_COPIES);
      assert.equal(stores(4008), versions);
      assert.equal(stores(4012), versions);
      assert.equal(stores(4016), versions);
    } finally {
      text.dispose();
    }
  });
});
