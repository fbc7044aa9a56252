/**
 * Ferry's unwinding pass, against the module it rewrote: every program runs
 * once as written and once rewritten, unwound and rewound at *every* call of
 * the blocking import, and must return the same values and make the same
 * calls with the same arguments (a call made again after a rewind must get
 * back the arguments it had). Hand-written cases cover each shape the pass
 * treats apart; generated ones (fixed seeds) mix them.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import binaryen from "binaryen";
import { Prng } from "../_prng.js";
import { BUFFER, BUFFER_END, generate, HEADER, plainRun, unwoundRun, type Api } from "./_programs.js";
import { addUnwinding, UnwindUnsupported } from "./_unwind.js";
import { wat } from "./_wat.js";


function check(text: string, args: number[][]): void {
  const bytes = wat(text);
  assert.ok(WebAssembly.validate(bytes), "the program validates");
  const rewritten = addUnwinding(bytes, ["env.block"]);
  assert.ok(WebAssembly.validate(rewritten.wasm), "the rewritten module validates");
  for (const a of args) {
    const want = plainRun(bytes, a);
    const got = unwoundRun(rewritten.wasm, a);
    assert.deepEqual(got.calls, want.calls, `calls for ${a.join(",")}`);
    assert.deepEqual(got.result, want.result, `result for ${a.join(",")}`);
    assert.equal(got.unwinds, want.calls.length);
  }
}

describe("Ferry's unwinding pass", () => {
  it("keeps the values under a call on the operand stack, of every numeric type", () => {
    check(`(module ${HEADER}
      (func (export "main") (param $a i32) (param $b i64) (result i64)
        (local $f f64) (local $g f32)
        (local.set $f (f64.const 1.5))
        (local.set $g (f32.const 2.25))
        (i64.add
          (i64.mul (local.get $b) (i64.extend_i32_s (i32.add (local.get $a) (call $block (local.get $a)))))
          (i64.trunc_f64_s (f64.add (local.get $f)
            (f64.promote_f32 (f32.mul (local.get $g) (f32.convert_i32_s (call $block (i32.const 7))))))))))`, [[3, 5], [-4, 11]].map(([a, b]) => [a as number, BigInt(b as number) as unknown as number]));
  });

  it("keeps SIMD values under a call and in locals across one", () => {
    check(`(module ${HEADER}
      (func (export "main") (param $x i32) (result i32)
        (local $v v128)
        (local.set $v (i32x4.splat (local.get $x)))
        (i32.add
          (i32x4.extract_lane 2
            (i32x4.add (i32x4.mul (local.get $v) (local.get $v)) (i32x4.splat (call $block (local.get $x)))))
          (i32.add (call $block (i32.const 3)) (i32x4.extract_lane 1 (local.get $v))))))`, [[5], [-9]]);
  });

  it("rewinds a function with two results", () => {
    check(`(module ${HEADER}
      (func $pair (param $x i32) (result i32 i64)
        (tuple.make 2 (call $block (local.get $x)) (i64.extend_i32_u (call $block (i32.add (local.get $x) (i32.const 1))))))
      (func (export "main") (param $x i32) (result i32)
        (local $t (tuple i32 i64))
        (local.set $t (call $pair (local.get $x)))
        (i32.add (tuple.extract 2 0 (local.get $t)) (i32.wrap_i64 (tuple.extract 2 1 (local.get $t))))))`, [[4], [11]]);
  });

  it("rewinds into loops, both arms of an if, and blocks left by branches carrying values", () => {
    check(`(module ${HEADER}
      (func $step (param $x i32) (result i32)
        (if (result i32) (i32.and (local.get $x) (i32.const 1))
          (then (i32.add (call $block (local.get $x)) (i32.const 3)))
          (else (i32.sub (i32.const 100) (call $block (i32.shl (local.get $x) (i32.const 1)))))))
      (func (export "main") (param $n i32) (result i32)
        (local $i i32) (local $acc i32)
        (block $done
          (loop $next
            (br_if $done (i32.ge_s (local.get $i) (local.get $n)))
            (local.set $acc
              (i32.xor (local.get $acc)
                (block $out (result i32)
                  (drop (br_if $out (i32.const 77) (i32.eq (i32.rem_u (local.get $i) (i32.const 5)) (i32.const 4))))
                  (drop (call $other (local.get $i)))
                  (i32.add (call $step (local.get $i)) (local.get $acc)))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $next)))
        (local.get $acc)))`, [[0], [1], [12]]);
  });

  it("takes the arm an if took when its condition came from a call", () => {
    check(`(module ${HEADER}
      (func (export "main") (param $x i32) (result i32)
        (if (result i32) (i32.and (call $block (local.get $x)) (i32.const 1))
          (then (if (result i32) (i32.and (call $block (i32.add (local.get $x) (i32.const 1))) (i32.const 2))
            (then (call $block (i32.const 5)))
            (else (i32.const 6))))
          (else (i32.add (i32.const 9) (call $block (i32.const 8)))))))`, [[0], [1], [2], [3], [17], [40]]);
  });

  it("rewinds through br_table, recursion, and an indirect call", () => {
    check(`(module ${HEADER}
      (type $t (func (param i32) (result i32)))
      (table 2 funcref)
      (elem (i32.const 0) $fib $leaf)
      (func $leaf (param $x i32) (result i32) (call $block (local.get $x)))
      (func $fib (param $n i32) (result i32)
        (if (result i32) (i32.lt_s (local.get $n) (i32.const 2))
          (then (call_indirect (type $t) (local.get $n) (i32.const 1)))
          (else (i32.add
            (call $fib (i32.sub (local.get $n) (i32.const 1)))
            (call_indirect (type $t) (i32.sub (local.get $n) (i32.const 2)) (i32.const 0))))))
      (func (export "main") (param $n i32) (result i32)
        (block $c (block $b (block $a
          (br_table $a $b $c (i32.rem_u (local.get $n) (i32.const 3))))
          (return (i32.add (call $fib (local.get $n)) (i32.const 1000))))
          (return (i32.mul (call $fib (local.get $n)) (call $block (i32.const 3)))))
        (call $fib (i32.add (local.get $n) (i32.const 1)))))`, [[0], [4], [5], [7]]);
  });

  it("rewinds into a try's body, and lets exceptions pass through rewritten frames", () => {
    check(`(module ${HEADER}
      (tag $e (param i32))
      (func $thrower (param $x i32) (result i32)
        (if (i32.eq (i32.and (local.get $x) (i32.const 3)) (i32.const 1))
          (then (throw $e (i32.add (local.get $x) (i32.const 1000)))))
        (call $block (local.get $x)))
      (func (export "main") (param $n i32) (result i32)
        (local $i i32) (local $acc i32) (local $t i32)
        (block $done (loop $next
          (br_if $done (i32.ge_s (local.get $i) (local.get $n)))
          (local.set $acc (i32.add (local.get $acc)
            (try (result i32)
              (do (i32.mul (call $thrower (local.get $i)) (i32.const 3)))
              (catch $e (local.set $t (pop i32)) (i32.sub (i32.const 0) (call $other (local.get $t)))))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $next)))
        (local.get $acc)))`, [[0], [1], [9]]);
    // A rewind cannot enter a handler: only a throw can.
    const handler = wat(`(module ${HEADER}
      (tag $e (param i32))
      (func (export "main") (param $x i32) (result i32) (local $t i32)
        (try (result i32)
          (do (if (result i32) (local.get $x) (then (throw $e (i32.const 1))) (else (i32.const 2))))
          (catch $e (local.set $t (pop i32)) (call $block (local.get $t))))))`);
    assert.throws(() => addUnwinding(handler, ["env.block"]), UnwindUnsupported);
  });

  it("leaves alone a function that cannot reach the blocking import", () => {
    const text = `(module ${HEADER}
      (func $pure (param $x i32) (result i32) (i32.mul (call $other (local.get $x)) (i32.const 3)))
      (func (export "main") (param $x i32) (result i32) (i32.add (call $pure (local.get $x)) (call $block (local.get $x)))))`;
    const rewritten = addUnwinding(wat(text), ["env.block"]);
    // Imports 2, then $pure, main, the five exports, and main's rewinding version.
    assert.deepEqual(rewritten.frame_bytes.map((b) => b > 0), [false, false, false, true, false, false, false, false, false, true]);
    assert.equal(rewritten.instrumented, 1);
    assert.equal(rewritten.rewinding, 1);
    check(text, [[2]]);
  });

  it("writes a running version with no guard, which hands over to the rewinding version with a tail call", () => {
    const text = `(module ${HEADER}
      (func (export "main") (param $x i32) (result i32) (local $i i32) (local $s i32)
        (loop $l
          (if (i32.and (local.get $i) (i32.const 1))
            (then (local.set $s (i32.add (local.get $s) (call $block (local.get $i)))))
            (else (local.set $s (i32.xor (local.get $s) (local.get $i)))))
          (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (local.get $x))))
        (i32.add (local.get $s) (call $block (local.get $s)))))`;
    check(text, [[0], [1], [9]]);
    const rewritten = addUnwinding(wat(text), ["env.block"]);
    assert.equal(rewritten.rewinding, 1);
    const m = binaryen.readBinary(rewritten.wasm);
    try {
      m.setFeatures(binaryen.Features.All);
      const body = (index: number): string => {
        const f = m.getFunctionByIndex(index);
        return binaryen.emitText(binaryen.getFunctionInfo(f).body);
      };
      // Imports 2: main is function 2; the five exports follow (3 to 7), then main's rewinding version (8).
      const running = body(2);
      const rewinding = body(8);
      const state = /global\.get \$global\$0\b/g;
      // The running version reads the state at entry and after each of its two calls, and nowhere else.
      assert.equal(running.match(state)?.length, 3, running);
      const copy = binaryen.getFunctionInfo(m.getFunctionByIndex(8)).name;
      assert.ok(running.includes(`return_call $${copy}\n`), running);
      // The rewinding version guards its runs, calls and structures.
      assert.ok((rewinding.match(state)?.length ?? 0) > 3, rewinding);
      assert.doesNotMatch(rewinding, /return_call/);
    } finally {
      m.dispose();
    }
  });

  it("zeroes, on the running version's way to the save, a local the frame holds that is dead after the call it leaves from", () => {
    // $i is live after the call in the loop, so the frame holds it; after the loop it is dead.
    const text = `(module ${HEADER}
      (func (export "main") (param $n i32) (result i32)
        (local $i i32) (local $acc i32)
        (local.set $i (i32.const 0x5ec2e700))
        (loop $l
          (local.set $acc (i32.add (local.get $acc) (call $block (i32.const 1))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (i32.add (i32.const 0x5ec2e700) (local.get $n)))))
        (i32.add (local.get $acc) (call $block (i32.const 9)))))`;
    check(text, [[3], [1]]);
    const rewritten = addUnwinding(wat(text), ["env.block"]);
    let api!: Api;
    const instance = new WebAssembly.Instance(new WebAssembly.Module(rewritten.wasm), {
      env: {
        block: (x: number) => {
          if (x !== 9) return 5;
          new Int32Array(api.memory.buffer, BUFFER, 2).set([BUFFER + 8, BUFFER_END]);
          api.asyncify_start_unwind(BUFFER);
          return 0;
        },
        other: (x: number) => x + 1,
      },
    });
    api = instance.exports as unknown as Api;
    (instance.exports["main"] as (n: number) => number)(3);
    assert.equal(api.asyncify_get_state(), 1, "the call after the loop unwinds");
    api.asyncify_stop_unwind();
    const current = new Int32Array(api.memory.buffer, BUFFER, 1)[0] as number;
    const frame = new DataView(api.memory.buffer, BUFFER + 8, current - BUFFER - 8);
    const words: number[] = [];
    for (let at = 0; at + 4 <= frame.byteLength; at += 4) words.push(frame.getUint32(at, true));
    assert.ok(words.includes(15), `the frame holds $acc (15): ${words.join(",")}`);
    assert.ok(!words.includes(0x5ec2e703), `the frame holds the dead $i: ${words.join(",")}`);
  });

  it("refuses what it cannot save (a reference live across a call), so the caller can fall back", () => {
    const bytes = wat(`(module ${HEADER}
      (table 1 funcref)
      (func (export "main") (param $x i32) (result i32)
        (local $r funcref)
        (local.set $r (table.get 0 (i32.const 0)))
        (i32.add (call $block (local.get $x)) (ref.is_null (local.get $r)))))`);
    assert.throws(() => addUnwinding(bytes, ["env.block"]), UnwindUnsupported);
  });

  it("gives generated programs the same calls and results when unwound at every call", () => {
    for (let seed = 1; seed <= 200; seed += 1) {
      const program = generate(new Prng(seed));
      try {
        check(program, [[0], [1], [seed]]);
      } catch (err) {
        throw new Error(`seed ${seed}:\n${program}`, { cause: err });
      }
    }
  });
});
