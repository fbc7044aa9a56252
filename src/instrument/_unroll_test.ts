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
 * from a global, so the loop keeps its poll (and is the kind unrolled).
 */
const TANGLED = `(module (memory 1)
  (global $limit (mut i32) (i32.const 0))
  (func $tangled (export "tangled") (param $seed i32) (result i32) (local $i i32) (local $acc i32)
    (block $out
      (loop $l
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (local.set $acc (i32.add (i32.mul (local.get $acc) (i32.const 31)) (local.get $seed)))
        (block $skip
          (br_table $l $skip $out (i32.rem_u (i32.xor (local.get $acc) (local.get $i)) (i32.const 4))))
        (if (i32.eq (local.get $i) (i32.const 977)) (then (return (i32.const -1))))
        (local.set $seed (i32.add (local.get $seed) (i32.const 7)))
        (br_if $l (i32.lt_u (local.get $i) (global.get $limit)))))
    (i32.add (local.get $acc) (local.get $i)))
  (func (export "set") (param i32) (global.set $limit (local.get 0))))`;

function run(wasm: Uint8Array, limit: number, seed: number): number {
  const instance = new WebAssembly.Instance(new WebAssembly.Module(wasm), { ferry: { poll: () => 3 } });
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

  it("copy a small loop that calls nothing, and only such a loop", async () => {
    const { wasm } = await instrumentModule(wat(`(module (memory 1)
      (global $n (mut i32) (i32.const 1000))
      (func $leaf (param i32) (result i32) (i32.add (local.get 0) (i32.const 1)))
      (func $small (export "small") (local $i i32)
        (loop $l (i32.store (i32.const 4000) (local.get $i))
          (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (global.get $n)))))
      (func $calls (export "calls") (local $i i32)
        (loop $l (i32.store (i32.const 4004) (call $leaf (local.get $i)))
          (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (global.get $n))))))`));
    const m = binaryen.readBinary(wasm);
    try {
      const stores = (name: string, address: number): number => {
        let id = "";
        for (let i = 0; i < m.getNumExports(); i += 1) {
          const e = binaryen.getExportInfo(m.getExportByIndex(i));
          if (e.name === name) id = e.value;
        }
        const text = binaryen.emitText(binaryen.getFunctionInfo(m.getFunction(id)).body);
        return text.split(`(i32.const ${address})`).length - 1;
      };
      assert.equal(stores("small", 4000), UNROLL_COPIES);
      assert.equal(stores("calls", 4004), 1);
    } finally {
      m.dispose();
    }
  });
});
