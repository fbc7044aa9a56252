/**
 * The binary call scanner: it must step over every instruction's immediates
 * exactly, or it would read a call where there is none, or miss one.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import binaryen from "binaryen";
import { scanCalls } from "./_calls.js";

function binary(text: string): Uint8Array {
  const m = binaryen.parseText(text);
  try {
    m.setFeatures(binaryen.Features.All);
    return m.emitBinary();
  } finally {
    m.dispose();
  }
}

describe("scanCalls", () => {
  it("finds direct calls past instructions with every kind of immediate", () => {
    const wasm = binary(`(module
      (import "env" "f" (func $imp (param i32)))
      (memory 1 1 shared)
      (table 2 funcref)
      (data "abc")
      (global $g (mut i64) (i64.const 0))
      (func $a (param i32) (result i32)
        (local i64 f64 v128)
        (local.set 1 (i64.const -9223372036854775808))
        (local.set 2 (f64.const 1.5e300))
        (global.set $g (i64.load offset=123456 align=4 (i32.const 8)))
        (local.set 3 (v128.const i32x4 0x10101010 0x10101010 0x10101010 0x10101010))
        (local.set 3 (i8x16.shuffle 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 (local.get 3) (local.get 3)))
        (local.set 3 (v128.load32_lane 2 (i32.const 0) (local.get 3)))
        (drop (i32x4.extract_lane 3 (local.get 3)))
        (memory.copy (i32.const 0) (i32.const 16) (i32.const 4))
        (memory.init 0 (i32.const 0) (i32.const 0) (i32.const 1))
        (drop (i32.atomic.rmw.add offset=4 (i32.const 0) (i32.const 1)))
        (atomic.fence)
        (drop (i32.trunc_sat_f64_s (local.get 2)))
        (block $b0 (block $b1 (br_table $b0 $b1 $b0 (local.get 0))))
        (drop (select (result i64) (local.get 1) (local.get 1) (local.get 0)))
        (call $imp (i32.const 1))
        (call $b (i32.const 2)))
      (func $b (param i32) (result i32)
        (loop $l (br_if $l (i32.eqz (local.get 0))))
        (return_call $a (local.get 0)))
      (func $c (call_indirect (type 0) (i32.const 3) (i32.const 0)) (call $b (i32.const 0)) (drop))
      (func $d))`);
    const scanned = scanCalls(wasm);
    assert.equal(scanned.imported, 1);
    assert.deepEqual(scanned.bodies, [
      { calls: [0, 2], indirect: [], refs: [], opaque: false, loops: false, writes: true },
      { calls: [1], indirect: [], refs: [], opaque: false, loops: true, writes: true },
      { calls: [2], indirect: [0], refs: [], opaque: false, loops: false, writes: false },
      { calls: [], indirect: [], refs: [], opaque: false, loops: false, writes: false },
    ]);
  });

  it("gives up on an instruction it does not know by calling the function opaque", () => {
    // A body holding only the bytes 0xfb 0x00 ... (a GC instruction) after its locals.
    const wasm = binary(`(module (func $f) (func $g (call $f)))`);
    const scanned = scanCalls(wasm);
    assert.deepEqual(scanned.bodies[1], { calls: [0], indirect: [], refs: [], opaque: false, loops: false, writes: false });
    const code = wasm.lastIndexOf(0x10); // the call in $g: patch its opcode to an unknown one
    const patched = wasm.slice();
    patched[code] = 0xfb;
    assert.deepEqual(scanCalls(patched).bodies[1]?.opaque, true);
    assert.equal(scanCalls(patched).bodies[1]?.loops, true, "an unread rest may hold a loop: it is walked");
    assert.equal(scanCalls(patched).bodies[1]?.writes, true, "an unread rest may write");
  });

  it("tells a body that writes outside its frame (or leaves other than by a return) from one that only reads", () => {
    const body = (code: string): boolean | undefined => {
      const wasm = binary(`(module (memory 1 1 shared) (table 1 funcref) (data $d "x") (tag $e)
        (global $g (mut i32) (i32.const 0)) (func $f (param i32) (result i32) (local v128) ${code} (i32.const 0)))`);
      return scanCalls(wasm).bodies[0]?.writes;
    };
    const writes = [
      "(i32.store (i32.const 0) (i32.const 1))",
      "(i64.store8 (i32.const 0) (i64.const 1))",
      "(f64.store (i32.const 0) (f64.const 1))",
      "(global.set $g (i32.const 1))",
      "(table.set (i32.const 0) (ref.null func))",
      "(drop (table.grow (ref.null func) (i32.const 1)))",
      "(drop (memory.grow (i32.const 1)))",
      "(memory.fill (i32.const 0) (i32.const 0) (i32.const 1))",
      "(memory.copy (i32.const 0) (i32.const 1) (i32.const 1))",
      "(memory.init $d (i32.const 0) (i32.const 0) (i32.const 1))",
      "(data.drop $d)",
      "(v128.store (i32.const 0) (local.get 1))",
      "(v128.store8_lane 0 (i32.const 0) (local.get 1))",
      "(i32.atomic.store (i32.const 0) (i32.const 1))",
      "(drop (i32.atomic.rmw.add (i32.const 0) (i32.const 1)))",
      "(drop (i32.atomic.rmw.cmpxchg (i32.const 0) (i32.const 0) (i32.const 1)))",
      "(drop (memory.atomic.notify (i32.const 0) (i32.const 1)))",
      "(throw $e)",
      "(return_call $f (i32.const 0))",
    ];
    for (const code of writes) assert.equal(body(code), true, code);
    const reads = [
      "(drop (i32.load (i32.const 0)))",
      "(drop (global.get $g))",
      "(drop (memory.size))",
      "(drop (table.get (i32.const 0)))",
      "(drop (table.size))",
      "(local.set 1 (v128.load (i32.const 0)))",
      "(drop (i32.atomic.load (i32.const 0)))",
      "(atomic.fence)",
      "(drop (call $f (i32.const 1)))",
      "(local.set 0 (i32.add (local.get 0) (i32.const 1)))",
    ];
    for (const code of reads) assert.equal(body(code), false, code);
  });
});
