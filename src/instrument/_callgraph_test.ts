/**
 * The call graph with indirect calls narrowed by signature and table
 * contents: what can recurse, and what can reach no safe point.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import binaryen from "binaryen";
import * as fc from "fast-check";
import { cycles, readCallGraph, type Graph } from "./_callgraph.js";

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

/** Adjacency lists packed as the call graph packs them. */
function packed(n: number, out: number[][]): Graph {
  const start = new Int32Array(out.length + 1);
  out.forEach((list, v) => (start[v + 1] = (start[v] as number) + list.length));
  return { n, start, edges: Int32Array.from(out.flat()) };
}

/** Whether node `v` is on a cycle among the nodes `live` says are there. */
function onCycle(out: number[][], live: (v: number) => boolean, v: number): boolean {
  const seen = new Set<number>();
  const todo = (out[v] ?? []).filter((w) => w >= 0 && live(w));
  while (todo.length > 0) {
    const w = todo.pop() as number;
    if (w === v) return true;
    if (seen.has(w)) continue;
    seen.add(w);
    for (const x of out[w] ?? []) if (x >= 0 && live(x)) todo.push(x);
  }
  return false;
}

describe("cycles", () => {
  it("finds the functions on cycles, and counts enough of them that none is left once those are taken out", () => {
    // Functions 0..n-1, then nodes that only lead to functions (a signature's, "anything"); -2 is an import.
    const graphs = fc
      .record({ n: fc.integer({ min: 1, max: 40 }), others: fc.integer({ min: 0, max: 4 }), seed: fc.array(fc.tuple(fc.nat(), fc.nat()), { maxLength: 160 }) })
      .map(({ n, others, seed }) => {
        const out: number[][] = Array.from({ length: n + others }, () => []);
        for (const [a, b] of seed) {
          const from = a % (n + others);
          const to = from >= n ? b % n : b % (n + others + 1) === n + others ? -2 : b % (n + others);
          out[from]?.push(to);
        }
        return { n, out };
      });
    fc.assert(
      fc.property(graphs, ({ n, out }) => {
        const cyclic = Array.from({ length: n }, (_, v) => v).filter((v) => onCycle(out, () => true, v));
        const found = cycles(packed(n, out));
        assert.deepEqual([...found.cyclic].sort((x, y) => x - y), cyclic);
        const chosen = found.entry_counted;
        for (let v = 0; v < n; v += 1) {
          if (chosen[v] === 1) assert.ok(cyclic.includes(v), `function ${v} is on no cycle`);
          assert.ok(!onCycle(out, (w) => w >= n || chosen[w] !== 1, v), `function ${v} is still on a cycle`);
        }
        for (let v = n; v < out.length; v += 1) assert.ok(!onCycle(out, (w) => w >= n || chosen[w] !== 1, v), `node ${v} is still on a cycle`);
      }),
      { numRuns: 500 },
    );
  });

  it("counts a function calling itself, and one function of a cycle through a table, not all of it", () => {
    const g = graph(`(module
      (import "env" "block" (func $block))
      (memory 1)
      (type $t (func (param i32) (result i32)))
      (table 2 funcref) (elem (i32.const 0) $hub $other)
      (func $self (param i32) (result i32) (if (local.get 0) (then (drop (call $self (i32.sub (local.get 0) (i32.const 1)))))) (local.get 0))
      (func $hub (param i32) (result i32) (call_indirect (type $t) (local.get 0) (local.get 0)))
      (func $other (param i32) (result i32) (call $leaf (call $middle (local.get 0))))
      (func $middle (param i32) (result i32) (call $hub (local.get 0)))
      (func $leaf (param i32) (result i32) (local.get 0))
      (func (export "main") (param i32) (result i32) (i32.add (call $self (local.get 0)) (call $other (local.get 0)))))`);
    assert.deepEqual([...g.recursive].sort(), ["hub", "middle", "other", "self"]);
    assert.ok(g.entry_counted.includes("self"), `counted: ${g.entry_counted.join(", ")}`);
    assert.equal(g.entry_counted.length, 2, `counted: ${g.entry_counted.join(", ")}`);
  });
});
