/**
 * The call graph with indirect calls narrowed by signature and table
 * contents: what can recurse, and what can reach no safe point.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import binaryen from "binaryen";
import { readCallGraph } from "./_callgraph.js";

const BLOCKING = ["env.block", "ferry.poll"];

function graph(text: string): ReturnType<typeof readCallGraph> {
  const m = binaryen.parseText(text);
  try {
    m.setFeatures(binaryen.Features.ReferenceTypes | binaryen.Features.BulkMemory | binaryen.Features.MutableGlobals);
    return readCallGraph(binaryen, m, undefined, BLOCKING);
  } finally {
    m.dispose();
  }
}

describe("readCallGraph", () => {
  it("lets an indirect call reach only the table's functions of its signature", () => {
    const g = graph(`(module
      (type $v (func)) (type $i (func (param i32)))
      (table 3 funcref) (elem (i32.const 0) $self $other)
      (func $self (call_indirect (type $v) (i32.const 0)))
      (func $other (param i32) (call_indirect (type $v) (i32.const 0)))
      (func $outside (call_indirect (type $i) (i32.const 1) (i32.const 1))))`);
    assert.equal(g.unnarrowed, undefined);
    // $self can call itself through the table; $other is not of type $v; $outside's calls reach $other only.
    assert.deepEqual([...g.recursive].sort(), ["self"]);
  });

  it("finds the indirect callers that can reach no safe point, whatever shares their signature elsewhere", () => {
    const g = graph(`(module
      (import "env" "block" (func $block))
      (type $cmp (func (param i32 i32) (result i32))) (type $op (func (param i32) (result i32)))
      (table 5 funcref) (elem (i32.const 0) $less $more $spin $wait $id)
      (func $less (param i32 i32) (result i32) (i32.lt_s (local.get 0) (local.get 1)))
      (func $more (param i32 i32) (result i32) (i32.gt_s (local.get 0) (local.get 1)))
      (func $spin (param i32) (result i32) (loop $l (br_if $l (local.tee 0 (i32.sub (local.get 0) (i32.const 1))))) (local.get 0))
      (func $wait (param i32) (result i32) (call $block) (local.get 0))
      (func $id (param i32) (result i32) (local.get 0))
      (func $compare (param i32) (result i32) (call_indirect (type $cmp) (i32.const 1) (i32.const 2) (local.get 0)))
      (func $dispatch (param i32) (result i32) (call_indirect (type $op) (i32.const 7) (local.get 0)))
      (func $calls_compare (result i32) (call $compare (i32.const 0)))
      (func $calls_dispatch (result i32) (call $dispatch (i32.const 2))))`);
    assert.deepEqual(g.unreaching_indirect, ["compare"]);
    // $spin, $wait, $dispatch, $calls_dispatch; not $calls_compare, $compare, $less, $more, $id.
    assert.equal(g.reaching, 4);
  });

  it("tells which callees can reach a safe point: not a leaf, a caller of leaves, or an import that does not block", () => {
    // Names are read from the module when first asked: ask while it lives.
    const m = binaryen.parseText(`(module
      (import "env" "block" (func $block))
      (import "env" "clock" (func $clock (result i32)))
      (func $leaf (result i32) (i32.const 1))
      (func $calls_leaf (result i32) (i32.add (call $leaf) (call $clock)))
      (func $loops (loop $l (br_if $l (call $leaf))))
      (func $calls_loops (call $loops))
      (func $waits (call $block))
      (func $self (call $self)))`);
    try {
      const g = readCallGraph(binaryen, m, undefined, BLOCKING);
      for (const name of ["leaf", "calls_leaf", "clock"]) assert.equal(g.reaches(name), false, name);
      for (const name of ["block", "loops", "calls_loops", "waits", "self", "no_such_function"]) assert.equal(g.reaches(name), true, name);
      assert.equal(readCallGraph(binaryen, m).reaches("leaf"), true, "without the blocking imports, anything may");
    } finally {
      m.dispose();
    }
  });

  it("lets a blocking import in a table make its signature's indirect calls reach a safe point", () => {
    const g = graph(`(module
      (import "env" "block" (func $block (param i32)))
      (import "env" "other" (func $other (param i32)))
      (type $t (func (param i32)))
      (table 1 funcref) (elem (i32.const 0) $block)
      (func $caller (call_indirect (type $t) (i32.const 0) (i32.const 0))))`);
    assert.deepEqual(g.unreaching_indirect, []);
    assert.equal(g.reaching, 1);
  });

  it("treats every indirect call as reaching anything when the tables cannot be read", () => {
    const g = graph(`(module
      (import "env" "t" (table 1 funcref))
      (type $t (func))
      (func $leaf)
      (func $dyn (call_indirect (type $t) (i32.const 0))))`);
    assert.match(g.unnarrowed ?? "", /imports a table/);
    assert.deepEqual([...g.recursive], ["dyn"]);
  });

  it("does not narrow when a body cannot be read to its end (it may take references unseen)", () => {
    const g = graph(`(module
      (type $t (func))
      (table 1 funcref)
      (func $leaf)
      (func $dyn (call_indirect (type $t) (i32.const 0)))
      (func $ref (call_ref $t (ref.func $dyn))))`);
    assert.match(g.unnarrowed ?? "", /call_ref/);
    assert.ok(g.recursive.has("dyn"));
  });
});
