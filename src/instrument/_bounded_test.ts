import assert from "node:assert/strict";
import { describe, it } from "node:test";
import binaryen from "binaryen";
import { isBoundedLoop } from "./_bounded.js";
import { instrumentModule } from "./mod.js";
import { wat } from "./_wat.js";

const LIMIT = 256;

/** isBoundedLoop on the one loop of `$f`, whose body is `(local.set ...) (loop ...)`. */
function bounded(body: string, params = ""): boolean {
  const m = binaryen.parseText(`(module (memory 1) (func $g) (func $f ${params} (local $i i32) (local $k i64) (local $x i32) ${body}))`);
  try {
    const root = binaryen.getFunctionInfo(m.getFunction("f")).body;
    const children = (binaryen.getExpressionInfo(root) as unknown as { children: number[] }).children;
    const at = children.findIndex((c) => binaryen.getExpressionId(c) === binaryen.LoopId);
    assert.ok(at >= 0, "no loop at the top of the body");
    return isBoundedLoop(binaryen, children[at] as number, at > 0 ? (children[at - 1] as number) : 0, LIMIT);
  } finally {
    m.dispose();
  }
}

const loop = (cmp: string, start: string, extra = ""): string =>
  `(local.set $i (i32.const ${start})) (loop $l (local.set $x (i32.add (local.get $x) (local.get $i))) ${extra} (br_if $l ${cmp}))`;

describe("bounded loops", () => {
  it("recognises counted loops of at most the limit, with the comparison's exact semantics", () => {
    assert.equal(bounded(loop("(i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (i32.const 24))", "0")), true);
    assert.equal(bounded(loop("(i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (i32.const 256))", "0")), true);
    assert.equal(bounded(loop("(i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (i32.const 257))", "0")), false);
    assert.equal(bounded(loop("(i32.ne (local.tee $i (i32.add (local.get $i) (i32.const 2))) (i32.const 49))", "1")), true);
    // An odd distance by steps of 2 never meets `!=`'s bound before wrapping around.
    assert.equal(bounded(loop("(i32.ne (local.tee $i (i32.add (local.get $i) (i32.const 2))) (i32.const 49))", "0")), false);
    // Counting down, the constant first; a signed bound crossed by a negative start.
    assert.equal(bounded(loop("(i32.gt_s (local.tee $i (i32.sub (local.get $i) (i32.const 1))) (i32.const 0))", "100")), true);
    assert.equal(bounded(loop("(i32.lt_s (i32.const 0) (local.tee $i (i32.sub (local.get $i) (i32.const 1))))", "100")), true);
    assert.equal(bounded(loop("(i32.ne (local.tee $i (i32.add (local.get $i) (i32.const 1))) (i32.const 10))", "20")), false);
    assert.equal(bounded(loop("(i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (i32.const 10))", "-5")), true);
    assert.equal(bounded(loop("(i32.lt_s (local.tee $i (i32.add (local.get $i) (i32.const 1))) (i32.const 10))", "-5")), true);
    assert.equal(bounded(`(local.set $k (i64.const 1)) (loop $l (br_if $l (i64.ne (local.tee $k (i64.add (local.get $k) (i64.const 2))) (i64.const 49))))`), true);
  });

  it("refuses loops it cannot bound: no constant start, a call, another write or branch, a non-constant bound", () => {
    const cond = "(i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (i32.const 24))";
    assert.equal(bounded(`(nop) (loop $l (br_if $l ${cond}))`), false);
    assert.equal(bounded(`(local.set $i (local.get $x)) (loop $l (br_if $l ${cond}))`), false);
    assert.equal(bounded(`(local.set $x (i32.const 0)) (loop $l (br_if $l ${cond}))`), false);
    assert.equal(bounded(loop(cond, "0", "(call $g)")), false);
    assert.equal(bounded(loop(cond, "0", "(local.set $i (i32.const 0))")), false);
    assert.equal(bounded(loop(cond, "0", "(br_if $l (local.get $x))")), false);
    assert.equal(bounded(loop(cond, "0", "(block $b (br_table $b $l (local.get $x)))")), false);
    assert.equal(bounded(loop(cond, "0", "(loop $m (br_if $m (local.get $x)))")), false);
    assert.equal(bounded(loop("(i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (local.get $p))", "0"), "(param $p i32)"), false);
    assert.equal(bounded(loop("(i32.lt_u (local.tee $i (i32.add (local.get $i) (local.get $x))) (i32.const 24))", "0")), false);
  });

  it("leaves a short counted loop without a poll, and its function out of Asyncify", async () => {
    const module = (bound: number): Uint8Array => wat(`(module (memory 1) (global $n (mut i32) (i32.const 0))
      (func $leaf (local $i i32)
        (local.set $i (i32.const 0))
        (loop $l (global.set $n (i32.add (global.get $n) (local.get $i)))
          (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (i32.const ${bound})))))
      (func (export "_start") (call $leaf)))`);
    const loops = async (bound: number): Promise<number> => {
      const m = binaryen.readBinary((await instrumentModule(module(bound))).wasm);
      try {
        return (m.emitText().match(/\(loop /g) ?? []).length;
      } finally {
        m.dispose();
      }
    };
    // Polled, a loop is cut in two (`_polls.ts`), in both versions of its function, running and rewinding (`_unwind.ts`); bounded, it stays one, in a function that cannot unwind.
    assert.equal(await loops(LIMIT), 1);
    assert.equal(await loops(LIMIT + 1), 4);
  });
});
