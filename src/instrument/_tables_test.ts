/**
 * What an indirect call may reach: every way a function can get into a
 * table, and every way the reader has to give up narrowing.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import binaryen from "binaryen";
import { scanCalls } from "./_calls.js";
import { readTables } from "./_tables.js";

function binary(text: string): Uint8Array {
  const m = binaryen.parseText(text);
  try {
    m.setFeatures(binaryen.Features.ReferenceTypes | binaryen.Features.BulkMemory | binaryen.Features.MutableGlobals);
    return m.emitBinary();
  } finally {
    m.dispose();
  }
}

function tables(text: string): ReturnType<typeof readTables> {
  const wasm = binary(text);
  return readTables(wasm, scanCalls(wasm).bodies.flatMap((b) => b.refs));
}

describe("readTables", () => {
  it("finds the functions of active, passive and declared segments, and those taken by ref.func", () => {
    const t = tables(`(module
      (import "env" "imp" (func $imp (param i32)))
      (table 4 funcref)
      (elem (i32.const 0) $a $imp)
      (elem $p func $b)
      (elem declare func $c)
      (global $g funcref (ref.func $d))
      (func $a (param i32)) (func $b (param i32)) (func $c) (func $d) (func $e (drop (ref.func $f))) (func $f) (func $g (param i32))
      (export "g" (func $g)))`);
    assert.equal(t.unnarrowed, undefined);
    assert.deepEqual(t.imports, ["env.imp"]);
    // Function indices: imp 0, a 1, b 2, c 3 (declared, but Binaryen writes no segment
    // nothing uses), d 4, e 5, f 6, g 7 (exported, but no table or reference is).
    assert.deepEqual([...t.addressable], [1, 1, 1, 0, 1, 0, 1, 0]);
    // Same shape, same signature: imp, a, b, g take one i32; c, d, e, f take nothing.
    const sig = [...t.function_sig];
    assert.equal(new Set([sig[0], sig[1], sig[2], sig[7]]).size, 1);
    assert.equal(new Set([sig[3], sig[4], sig[5], sig[6]]).size, 1);
    assert.notEqual(sig[0], sig[3]);
  });

  it("counts the exported functions in when a table is exported (the host may put them in)", () => {
    const t = tables(`(module (table (export "t") 1 funcref) (func $a) (func $b (export "b")))`);
    assert.equal(t.unnarrowed, undefined);
    assert.deepEqual([...t.addressable], [0, 1]);
  });

  it("gives up on an imported table or a reference coming in through an import", () => {
    assert.match(tables(`(module (import "env" "t" (table 1 funcref)) (func $a))`).unnarrowed ?? "", /imports a table/);
    assert.match(tables(`(module (import "env" "f" (func (result funcref))) (func $a))`).unnarrowed ?? "", /no plain function type/);
    assert.match(tables(`(module (import "env" "g" (global funcref)) (func $a))`).unnarrowed ?? "", /reference global/);
  });
});
