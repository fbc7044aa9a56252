/**
 * The safe points written into the binary (`_safepoints.ts`), with Ferry's
 * unwinding pass after them, against the module as written: every program
 * runs once as written and once instrumented, unwound and rewound at every
 * poll and every blocking call, and must return the same values and make the
 * same blocking calls. Other cases check what the polls must guarantee (the
 * host is crossed within the budget, frames are counted back) and what the
 * renumbering must keep (tables, the start function, references, names).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import binaryen from "binaryen";
import { Prng } from "../_prng.js";
import { LOOP_SLICE } from "./_polls.js";
import { addSafePoints, type SafePoints } from "./_safepoints.js";
import { generate, HEADER, plainRun, unwoundRun, type Unwound } from "./_programs.js";
import { addUnwinding } from "./_unwind.js";
import { wat } from "./_wat.js";

const BLOCKING = ["env.block", "ferry.poll"];
const PREFIX = "__g_";

function safePoints(bytes: Uint8Array, budget = 10_000): SafePoints {
  return addSafePoints(bytes, { blocking: BLOCKING, budget, poll: { module: "ferry", name: "poll" }, restart_poll: { module: "ferry", name: "poll_restartable" }, global_prefix: PREFIX });
}

/** `text` with the features the cases use (tail calls, exceptions, multi-value), as a binary with its names. */
function module(text: string): Uint8Array {
  const m = binaryen.parseText(text);
  const debug = binaryen.getDebugInfo();
  try {
    const f = binaryen.Features;
    m.setFeatures(f.MVP | f.MutableGlobals | f.Multivalue | f.TailCall | f.ExceptionHandling | f.ReferenceTypes | f.BulkMemory | f.SignExt);
    binaryen.setDebugInfo(true);
    return m.emitBinary();
  } finally {
    binaryen.setDebugInfo(debug);
    m.dispose();
  }
}


/** Runs `bytes` as written and instrumented, with each of `args`; returns the instrumented runs. */
function check(bytes: Uint8Array, args: unknown[][], budget = 3): (Unwound & { points: SafePoints })[] {
  assert.ok(WebAssembly.validate(bytes), "the program validates");
  const points = safePoints(bytes, budget);
  assert.ok(WebAssembly.validate(points.wasm), "the module with safe points validates");
  const unwound = addUnwinding(points.wasm, BLOCKING);
  assert.ok(WebAssembly.validate(unwound.wasm), "the unwindable module validates");
  return args.map((a) => {
    const want = plainRun(bytes, a);
    const got = unwoundRun(unwound.wasm, a, budget);
    assert.deepEqual(got.calls, want.calls, `blocking calls for ${a.join(",")}`);
    assert.deepEqual(got.result, want.result, `result for ${a.join(",")}`);
    // And moved to a new instance at every unwind, as a restore does.
    const moved = unwoundRun(unwound.wasm, a, budget, true);
    assert.deepEqual(moved.calls, want.calls, `blocking calls for ${a.join(",")}, moved at every unwind`);
    assert.deepEqual(moved.result, want.result, `result for ${a.join(",")}, moved at every unwind`);
    // Every frame counted on the way in is counted back on the way out.
    for (const d of points.depth) assert.equal((got.instance.exports[d.export_name] as WebAssembly.Global).value, 0, `${d.export_name} back to 0`);
    return { ...got, points };
  });
}

/**
 * `main($n)`: an outer loop of `$n` iterations (tested with `outer`) around
 * a short loop that adds its counter to global 0 while it is below `bound`;
 * `global` is the value of a global `$bound` a bound can read, which the
 * pass cannot see into.
 */
function nestedLoops(bound: string, global = 0, outer = "i32.lt_u"): Uint8Array {
  return wat(`(module (memory 1)
    (global $s (mut i32) (i32.const 0)) (global $bound (mut i32) (i32.const ${global}))
    (func (export "main") (param $n i32) (local $i i32) (local $k i32)
      (loop $outer
        (local.set $k (i32.const 0))
        (loop $short
          (global.set $s (i32.add (global.get $s) (local.get $k)))
          (br_if $short (i32.lt_u (local.tee $k (i32.add (local.get $k) (i32.const 1))) ${bound})))
        (br_if $outer (${outer} (local.tee $i (i32.add (local.get $i) (i32.const 1))) (local.get $n))))))`);
}

describe("safe points written into the binary", () => {
  it("slices loops (nested, left early, branched back to from inside blocks) and unwinds from every poll", () => {
    const [run] = check(wat(`(module ${HEADER}
      (func (export "main") (param $n i32) (result i32) (local $i i32) (local $j i32) (local $s i32)
        (block $done
          (loop $outer
            (local.set $j (i32.const 0))
            (block $inner_done
              (loop $inner
                (local.set $s (i32.add (local.get $s) (i32.mul (local.get $i) (local.get $j))))
                (br_if $inner_done (i32.eq (local.get $s) (i32.const 777)))
                (block $skip
                  (br_if $skip (i32.and (local.get $j) (i32.const 1)))
                  (local.set $s (i32.xor (local.get $s) (i32.const 5))))
                (local.set $j (i32.add (local.get $j) (i32.const 1)))
                (br_if $inner (i32.lt_u (local.get $j) (local.get $i)))))
            (local.set $s (i32.add (local.get $s) (call $block (local.get $i))))
            (br_if $done (i32.gt_u (local.get $i) (i32.const 900)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br_if $outer (i32.lt_u (local.get $i) (local.get $n)))))
        (local.get $s)))`), [[0], [10], [40]]);
    assert.ok(run !== undefined);
  });

  it("copies small loops, whose copies branch to the next one, leave early and fall off the end", () => {
    const runs = check(wat(`(module ${HEADER}
      (func (export "main") (param $n i32) (result i32) (local $i i32) (local $s i32)
        (loop $l
          (block $odd
            (br_if $odd (i32.and (local.get $i) (i32.const 1)))
            (local.set $s (i32.add (local.get $s) (local.get $i)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $l))
          (local.set $s (i32.sub (local.get $s) (i32.const 3)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
        (i32.add (local.get $s) (call $block (local.get $s)))))`), [[1], [2], [9], [1000]]);
    // 1000 iterations: the budget (3) runs out at every visit of the slice's countdown.
    assert.ok((runs[3]?.polls ?? 0) >= Math.floor(1000 / LOOP_SLICE), `${runs[3]?.polls} polls`);
  });

  it("counts the frames of recursive functions, returning from anywhere, with loops, two results and tail calls", () => {
    check(module(`(module ${HEADER}
      (func $walk (param $n i32) (result i32) (local $i i32) (local $s i32)
        (if (i32.eqz (local.get $n)) (then (return (call $block (i32.const 7)))))
        (loop $l
          (local.set $s (i32.add (local.get $s) (local.get $i)))
          (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (local.get $n))))
        (if (i32.eq (local.get $n) (i32.const 5)) (then (return (i32.add (call $walk (i32.const 3)) (local.get $s)))))
        (i32.add (call $walk (i32.sub (local.get $n) (i32.const 1))) (local.get $s)))
      (func $pair (param $n i32) (result i32 i64)
        (if (result i32 i64) (i32.eqz (local.get $n))
          (then (tuple.make 2 (call $block (i32.const 1)) (i64.const 2)))
          (else (tuple.make 2
            (i32.add (tuple.extract 2 0 (call $pair (i32.sub (local.get $n) (i32.const 1)))) (local.get $n))
            (i64.const 9)))))
      (func (export "main") (param $n i32) (result i32)
        (i32.add (call $walk (local.get $n)) (tuple.extract 2 0 (call $pair (local.get $n))))))`), [[0], [6], [30]]);
    // Two functions calling each other: both count their frames, one of them counts itself on entry (every turn crosses it).
    const [mutual] = check(module(`(module ${HEADER}
      (func $even (param $n i32) (result i32)
        (if (result i32) (i32.eqz (local.get $n)) (then (call $block (i32.const 1))) (else (call $odd (i32.sub (local.get $n) (i32.const 1))))))
      (func $odd (param $n i32) (result i32)
        (if (result i32) (i32.eqz (local.get $n)) (then (i32.const 0)) (else (call $even (i32.sub (local.get $n) (i32.const 1))))))
      (func (export "main") (param $n i32) (result i32) (call $even (local.get $n))))`), [[0], [7], [40]]);
    assert.equal(mutual?.points.depth.length, 2);
    // A tail call counts its frame out before it leaves, as the callee
    // counts its own in: the count stays at one. (The unwinding pass refuses
    // tail calls to what can unwind: this runs with polls only.)
    const tail = module(`(module (memory 1)
      (func $tail (param $n i32) (param $acc i32) (result i32)
        (if (i32.eqz (local.get $n)) (then (return (local.get $acc))))
        (return_call $tail (i32.sub (local.get $n) (i32.const 1)) (i32.add (local.get $acc) (local.get $n))))
      (func $main (export "main") (param $n i32) (result i32) (call $tail (local.get $n) (i32.const 0))))`);
    const points = safePoints(tail, 5);
    let polls = 0;
    let deepest = 0;
    const depth = points.depth[0];
    assert.ok(depth !== undefined && points.depth.length === 1);
    const instance: WebAssembly.Instance = new WebAssembly.Instance(new WebAssembly.Module(points.wasm), {
      ferry: {
        poll: () => {
          polls += 1;
          deepest = Math.max(deepest, (instance.exports[depth.export_name] as WebAssembly.Global).value as number);
          return 5;
        },
      },
    });
    assert.equal((instance.exports["main"] as (n: number) => number)(100_000), 5_000_050_000 % 2 ** 32 | 0);
    assert.equal((instance.exports[depth.export_name] as WebAssembly.Global).value, 0);
    assert.ok(polls >= 100_000 / 5, `${polls} polls`);
    assert.equal(deepest, 1, "one frame counted at a time");
  });

  it("gives a restartable function a fast copy that leaves when a safe point is wanted, and a slow one that unwinds", () => {
    const runs = check(wat(`(module ${HEADER}
      (func $sum (param $n i32) (result i32) (local $s i32)
        (loop $l
          (local.set $s (i32.add (local.get $s) (i32.mul (local.get $n) (local.get $n))))
          (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))
        (local.get $s))
      (func $twice (param $n i32) (result i32) (i32.add (call $sum (local.get $n)) (call $sum (i32.const 3))))
      (func (export "main") (param $n i32) (result i32) (local $i i32) (local $t i32)
        (loop $again
          (local.set $t (i32.add (local.get $t) (call $twice (i32.add (local.get $n) (local.get $i)))))
          (br_if $again (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (i32.const 20))))
        (i32.add (local.get $t) (call $block (local.get $t)))))`), [[1], [300]]);
    const run = runs[1];
    assert.ok(run !== undefined);
    assert.equal(run.points.restartable, 2, "$sum and $twice");
    assert.ok(run.left > 0, "no fast copy was told to leave");
  });

  it("renumbers loops around exceptions: try, catch, rethrow and delegate", () => {
    const thrower = `(tag $e (param i32))
      (func $thrower (param $x i32) (if (i32.and (local.get $x) (i32.const 1)) (then (throw $e (local.get $x)))))`;
    check(module(`(module ${HEADER} ${thrower}
      (func (export "main") (param $n i32) (result i32) (local $i i32) (local $s i32) (local $x i32)
        ;; A handler inside the loop.
        (loop $l
          (try
            (do
              (call $thrower (local.get $i))
              (local.set $s (i32.add (local.get $s) (call $block (local.get $i)))))
            (catch $e
              (local.set $x (pop i32))
              (local.set $s (i32.add (local.get $s) (local.get $x)))))
          (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (local.get $n))))
        ;; A delegate out of the loop, to a handler around it.
        (local.set $i (i32.const 0))
        (try $t
          (do
            (loop $m
              (try (do (call $thrower (i32.add (local.get $i) (local.get $n)))) (delegate $t))
              (local.set $s (i32.add (local.get $s) (call $block (local.get $i))))
              (br_if $m (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (i32.const 5)))))
          (catch $e
            (local.set $x (pop i32))
            (local.set $s (i32.add (local.get $s) (i32.mul (local.get $x) (i32.const 1000))))))
        (local.get $s)))`), [[0], [4], [9]]);
    // A loop in a handler, rethrowing from inside it: the unwinding pass
    // does not take a safe point in a handler, so this runs with polls only.
    const bytes = module(`(module (memory 1) ${thrower}
      (func (export "main") (param $n i32) (result i32) (local $i i32) (local $s i32) (local $x i32)
        (try (result i32)
          (do
            (try
              (do (call $thrower (i32.const 3)))
              (catch_all
                (loop $x
                  (local.set $s (i32.add (local.get $s) (local.get $i)))
                  (if (i32.ge_u (local.get $i) (local.get $n)) (then (rethrow 2)))
                  (local.set $i (i32.add (local.get $i) (i32.const 1)))
                  (br $x))))
            (i32.const -1))
          (catch $e (local.set $x (pop i32)) (i32.add (local.get $s) (local.get $x))))))`);
    const plain = new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports["main"] as (n: number) => number;
    let polls = 0;
    const polled = new WebAssembly.Instance(new WebAssembly.Module(safePoints(bytes, 5).wasm), { ferry: { poll: () => ((polls += 1), 5) } }).exports["main"] as (n: number) => number;
    for (const n of [0, 3, 2000]) assert.equal(polled(n), plain(n));
    assert.ok(polls >= Math.floor(2000 / LOOP_SLICE), `${polls} polls`);
  });

  it("carries a loop's invariants across its slice's poll in exported globals, so a guest moved at the poll finds them", () => {
    // The sieve's marking loop: a start, a step and a base read in the loop, and written only outside it.
    const text = `(module ${HEADER}
      (func (export "main") (param $n i32) (result i32) (local $lo i32) (local $p i32) (local $m i32) (local $hi i32) (local $k i32) (local $s i32)
        (local.set $hi (i32.add (i32.and (call $block (local.get $n)) (i32.const 4095)) (i32.const 3000)))
        (local.set $lo (i32.const 64))
        (local.set $k (i32.const 2))
        (block $done
          (loop $primes
            (local.set $p (local.get $k))
            (local.set $m (i32.add (local.get $lo) (local.get $p)))
            ;; counted by its own bound (a local step), and by a counter: both carry
            (block $out
              (loop $mark
                (i32.store8 (i32.sub (local.get $m) (local.get $lo)) (i32.const 1))
                (br_if $out (i32.ge_u (local.get $m) (local.get $hi)))
                (local.set $m (i32.add (local.get $m) (local.get $p)))
                (br $mark)))
            (local.set $s (i32.add (local.get $s) (local.get $m)))
            (local.set $k (i32.add (local.get $k) (i32.const 1)))
            (br_if $primes (i32.lt_u (local.get $k) (i32.const 40)))))
        (i32.add (local.get $s) (i32.load (i32.const 700)))))`;
    const bytes = module(text);
    const runs = check(bytes, [[0], [5000]]);
    assert.ok((runs[1]?.polls ?? 0) >= 40, `${runs[1]?.polls} polls`);
    const points = safePoints(bytes);
    assert.ok(points.globals.some((g) => g.export_name.includes("__ferry_carry_")), "the invariants' globals are captured");
  });

  it("gives generated programs the same calls and results when unwound at every poll and every call", () => {
    for (let seed = 1; seed <= 100; seed += 1) {
      const program = generate(new Prng(seed));
      try {
        check(wat(program), [[0], [1], [seed]]);
      } catch (err) {
        throw new Error(`seed ${seed}:\n${program}`, { cause: err });
      }
    }
  });

  it("slices a counted loop by its own bound: the same results, a poll every slice, whatever the shape, bound and start", () => {
    let counted = 0;
    const programs = 400;
    for (let seed = 1; seed <= programs; seed += 1) {
      const loop = countedLoop(new Prng(seed));
      try {
        const bytes = wat(loop.text);
        const runs = check(bytes, loop.args);
        counted += runs[0]?.points.counted ?? 0;
        // A budget of 1: every slice's countdown polls. No more than a slice's iterations between two polls.
        const points = safePoints(bytes, 1);
        for (const args of loop.args) {
          let last = 0;
          let widest = 0;
          let iterations: WebAssembly.Global | undefined;
          const instance = new WebAssembly.Instance(new WebAssembly.Module(points.wasm), {
            env: { block: (x: number) => x, other: (x: number) => x },
            ferry: {
              poll: () => {
                const n = (iterations as WebAssembly.Global).value as number;
                widest = Math.max(widest, n - last);
                last = n;
                return 1;
              },
            },
          });
          iterations = instance.exports[`${PREFIX}0`] as WebAssembly.Global;
          (instance.exports["main"] as (...a: unknown[]) => unknown)(...args);
          widest = Math.max(widest, (iterations.value as number) - last);
          assert.ok(widest <= LOOP_SLICE + 1, `${widest} iterations between two polls (args ${args.join(",")})`);
        }
      } catch (err) {
        throw new Error(`seed ${seed}:\n${loop.text}`, { cause: err });
      }
    }
    // The shapes are drawn mostly foldable, with near misses (a bound that may wrap, a step the wrong way) among them.
    assert.ok(counted >= programs / 3, `${counted} of ${programs} loops sliced by their bound`);
  });

  it("slices by their bound the loops compilers write: LLVM's `!=` and `<` tested at the bottom, AssemblyScript's tested at the top", () => {
    const shapes = [
      // LLVM: for (i = 0; i != n; i++), rotated.
      `(local.set $i (i32.const 0))
       (loop $l
         (local.set $s (i32.add (i32.mul (local.get $s) (i32.const 3)) (local.get $i)))
         (br_if $l (i32.ne (local.tee $i (i32.add (local.get $i) (i32.const 1))) (local.get $n))))`,
      // LLVM: a count down to 0, the bound first.
      `(local.set $i (local.get $n))
       (loop $l
         (local.set $s (i32.add (local.get $s) (local.get $i)))
         (br_if $l (i32.gt_s (local.tee $i (i32.add (local.get $i) (i32.const -1))) (i32.const 0))))`,
      // AssemblyScript: for (let i = 0; i < n; i++) { ... }.
      `(local.set $i (i32.const 0))
       (loop $l
         (if (i32.lt_s (local.get $i) (local.get $n))
           (then
             (local.set $s (i32.xor (local.get $s) (local.get $i)))
             (local.set $i (i32.add (local.get $i) (i32.const 1)))
             (local.set $s (i32.add (local.get $s) (i32.const 3)))
             (br $l))))`,
      // AssemblyScript's sieve: for (m = start; m < hi; m += p), the step a local.
      `(local.set $p (i32.add (i32.and (local.get $n) (i32.const 7)) (i32.const 1)))
       (local.set $i (i32.const 0))
       (loop $l
         (if (i32.lt_u (local.get $i) (local.get $n))
           (then
             (local.set $s (i32.add (local.get $s) (local.get $i)))
             (local.set $i (i32.add (local.get $i) (local.get $p)))
             (br $l))))`,
      // LLVM: a pointer stepped by 4 up to 0 (\`br_if\` on the value itself).
      `(local.set $i (i32.mul (local.get $n) (i32.const -4)))
       (loop $l
         (local.set $s (i32.xor (i32.mul (local.get $s) (i32.const 5)) (local.get $i)))
         (br_if $l (local.tee $i (i32.add (local.get $i) (i32.const 4)))))`,
    ];
    for (const shape of shapes) {
      const bytes = wat(`(module ${HEADER}
        (func (export "main") (param $n i32) (result i32) (local $i i32) (local $s i32) (local $p i32)
          ${shape}
          (i32.add (local.get $s) (call $block (local.get $i)))))`);
      const runs = check(bytes, [[1], [2], [300], [5000]]);
      assert.equal(runs[0]?.points.counted, 1, shape);
      // 5,000 iterations, a poll at least every slice.
      assert.ok((runs[3]?.polls ?? 0) >= Math.floor(5000 / (LOOP_SLICE + 1)), `${runs[3]?.polls} polls`);
    }
    // `!=` with a step of 3 may never meet its bound: counted instead.
    const thirds = wat(`(module ${HEADER}
      (func (export "main") (param $n i32) (result i32) (local $i i32)
        (loop $l (br_if $l (i32.ne (local.tee $i (i32.add (local.get $i) (i32.const 3))) (local.get $n))))
        (local.get $i)))`);
    assert.equal(check(thirds, [[3], [3000]])[0]?.points.counted, 0);
  });

  it("needs no poll in a loop that provably runs a few iterations, and takes no budget for it", () => {
    const bytes = nestedLoops("(i32.const 16)");
    // A budget of 10,000 a poll: a visit takes off at most a slice's worth (257) past what is left, so the polls count the units charged within 3%.
    const polls = (text: Uint8Array): number => {
      let count = 0;
      const instance = new WebAssembly.Instance(new WebAssembly.Module(safePoints(text, 10_000).wasm), { ferry: { poll: () => ((count += 1), 10_000) } });
      (instance.exports["main"] as (n: number) => void)(100_000);
      assert.equal((instance.exports[`${PREFIX}0`] as WebAssembly.Global).value, 100_000 * 120);
      return count;
    };
    // One unit an outer iteration (257 a slice of 256): 100,000 / 10,000.
    assert.ok(polls(bytes) <= 11, `${polls(bytes)} polls`);
    // The same loop with a bound that is not a constant is polled.
    const unbounded = nestedLoops("(global.get $bound)", 16);
    // Its back-edges charged: 15 an outer iteration at least, 100,000 * 15 / (10,000 + 257).
    assert.ok(polls(unbounded) >= 146, `${polls(unbounded)} polls`);
  });

  it("visits no countdown where a loop inside another loop of its frame starts, only once the frame has counted a slice", () => {
    const bytes = nestedLoops("(global.get $bound)", 3, "i32.ne");
    // A budget of 1: every visit polls.
    let visits = 0;
    const instance = new WebAssembly.Instance(new WebAssembly.Module(safePoints(bytes, 1).wasm), { ferry: { poll: () => ((visits += 1), 1) } });
    (instance.exports["main"] as (n: number) => void)(10_000);
    assert.equal((instance.exports[`${PREFIX}0`] as WebAssembly.Global).value, 10_000 * 3);
    // A visit each 256 of the short loop's iterations (counted 8 a round of its copies), and the outer loop's slices: not one an entry.
    assert.ok(visits > (10_000 * 3) / 256 && visits < 1_000, `${visits} visits`);
  });

  it("visits no countdown where the loop of a function that calls nothing starts, only once that call has counted a slice", () => {
    // $leaf loops `$k` times, a bound the pass cannot see; main calls it from a loop, $n times.
    const leafLoops = (k: number): Uint8Array =>
      wat(`(module (memory 1)
        (global $s (mut i32) (i32.const 0)) (global $bound (mut i32) (i32.const ${k}))
        (func $leaf (local $k i32)
          (loop $short
            (global.set $s (i32.add (global.get $s) (local.get $k)))
            (br_if $short (i32.lt_u (local.tee $k (i32.add (local.get $k) (i32.const 1))) (global.get $bound)))))
        (func (export "main") (param $n i32) (local $i i32)
          (loop $outer
            (call $leaf)
            (br_if $outer (i32.ne (local.tee $i (i32.add (local.get $i) (i32.const 1))) (local.get $n))))))`);
    // A budget of 1: every visit polls.
    const visits = (bytes: Uint8Array, n: number): number => {
      let count = 0;
      const instance = new WebAssembly.Instance(new WebAssembly.Module(safePoints(bytes, 1).wasm), { ferry: { poll: () => ((count += 1), 1) } });
      (instance.exports["main"] as (n: number) => void)(n);
      return count;
    };
    // Three iterations a call: main's slices (a call an iteration) and no visit a call (the build before visited 10,000 times and more).
    const few = visits(leafLoops(3), 10_000);
    assert.ok(few > 10_000 / 256 && few < 1_000, `${few} visits`);
    // A leaf that loops longer still visits once a slice of its own: 10 calls of 100,000 iterations.
    assert.ok(visits(leafLoops(100_000), 10) >= (10 * 100_000) / 257, "the leaf's slices visit");
    // Unwound at every poll and every blocking call, and moved at every unwind, it computes what it did.
    check(
      wat(`(module ${HEADER}
        (data (i32.const 0) "the quick brown fox\\00jumps over the lazy dog\\00")
        ;; Counted by its bound (it reads below 1,024, where the harness's unwind buffer starts).
        (func $sum (param $p i32) (param $k i32) (result i32) (local $s i32)
          (loop $l
            (local.set $s (i32.add (local.get $s) (i32.xor (local.get $p) (i32.load8_u (local.get $p)))))
            (local.set $p (i32.add (local.get $p) (i32.const 1)))
            (br_if $l (local.tee $k (i32.sub (local.get $k) (i32.const 1)))))
          (local.get $s))
        ;; Counted by its back-edges: the length of the string at $p.
        (func $len (param $p i32) (result i32) (local $q i32)
          (local.set $q (local.get $p))
          (block $done (loop $l
            (br_if $done (i32.eqz (i32.load8_u (local.get $q))))
            (local.set $q (i32.add (local.get $q) (i32.const 1)))
            (br $l)))
          (i32.sub (local.get $q) (local.get $p)))
        (func (export "main") (param $n i32) (result i32) (local $i i32) (local $s i32)
          (loop $outer
            (local.set $s (i32.add (local.get $s) (call $sum (i32.and (local.get $i) (i32.const 255)) (i32.add (i32.and (local.get $i) (i32.const 7)) (i32.const 1)))))
            (local.set $s (i32.add (local.get $s) (call $len (i32.rem_u (local.get $i) (i32.const 45)))))
            (local.set $s (i32.add (local.get $s) (call $block (local.get $i))))
            (br_if $outer (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (local.get $n))))
          (local.get $s)))`),
      [[1], [300], [2_000]],
    );
  });

  it("writes a restartable callee's wrapper in place of a direct call from a plain function, and runs it again from there", () => {
    // $cmp loops and writes nothing: restartable. $main stores (plain), calls it with values of its own on the stack,
    // twice with the same signature (the locals are shared) and once in a loop.
    const bytes = module(`(module
      (import "env" "block" (func $block (param i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "abcdef\\00abcdxy\\00")
      (func $cmp (param $a i32) (param $b i32) (result i32) (local $x i32)
        (block $done (loop $l
          (local.set $x (i32.load8_u (local.get $a)))
          (br_if $done (i32.ne (local.get $x) (i32.load8_u (local.get $b))))
          (br_if $done (i32.eqz (local.get $x)))
          (local.set $a (i32.add (local.get $a) (i32.const 1)))
          (local.set $b (i32.add (local.get $b) (i32.const 1)))
          (br $l)))
        (i32.sub (local.get $x) (i32.load8_u (local.get $b))))
      (func $main (export "main") (param $n i32) (result i32) (local $s i32)
        (i32.store (i32.const 64) (local.get $n))
        (local.set $s (i32.add (call $block (local.get $n)) (call $cmp (i32.const 0) (i32.const 7))))
        (local.set $s (i32.mul (local.get $s) (i32.add (i32.const 3) (call $cmp (i32.const 2) (i32.const 2)))))
        (loop $l
          (local.set $s (i32.add (local.get $s) (call $cmp (local.get $n) (i32.const 0))))
          (br_if $l (i32.lt_u (local.tee $n (i32.add (local.get $n) (i32.const 1))) (i32.const 6))))
        (local.get $s)))`);
    check(bytes, [[0], [3], [5]], 2);
    const m = binaryen.readBinary(safePoints(bytes).wasm);
    try {
      const text = m.emitText();
      // The function, not its export's line.
      const main = text.slice(text.indexOf("(func $main ("), text.indexOf("(func $cmp$ferry_fast ("));
      assert.equal((main.match(/\(call \$cmp\$ferry_fast/g) ?? []).length, 3, "each call runs the fast copy itself");
      assert.equal((main.match(/\(call \$cmp\$ferry_slow/g) ?? []).length, 3, "and the slow copy when the fast one left");
      assert.doesNotMatch(main, /\(call \$cmp\n/, "never the wrapper");
    } finally {
      m.dispose();
    }
  });

  it("renumbers every reference to a function: calls, tables, the start function, ref.func, exports and names", () => {
    const bytes = module(`(module
      (import "env" "other" (func $other (param i32) (result i32)))
      (memory 1)
      (type $t (func (param i32) (result i32)))
      (table $tab 4 funcref)
      (elem (i32.const 0) $leaf $loopy)
      (elem (table $tab) (i32.const 2) funcref (ref.func $leaf))
      (global $started (mut i32) (i32.const 0))
      (global $ref funcref (ref.func $loopy))
      (func $leaf (param $x i32) (result i32) (i32.add (call $other (local.get $x)) (i32.const 10)))
      (func $loopy (param $x i32) (result i32) (local $s i32)
        (loop $l (local.set $s (i32.add (local.get $s) (local.get $x)))
          (br_if $l (local.tee $x (i32.sub (local.get $x) (i32.const 1)))))
        (local.get $s))
      (func $init (global.set $started (i32.const 42)))
      (start $init)
      (func $main (export "main") (param $x i32) (result i32)
        (table.set $tab (i32.const 3) (global.get $ref))
        (i32.add (i32.add (call_indirect (type $t) (local.get $x) (i32.const 0)) (call_indirect (type $t) (local.get $x) (i32.const 1)))
          (i32.add (call_indirect (type $t) (local.get $x) (i32.const 2)) (call_indirect (type $t) (local.get $x) (i32.const 3))))))`);
    const points = safePoints(bytes);
    const instance = new WebAssembly.Instance(new WebAssembly.Module(points.wasm), { env: { other: (x: number) => x * 2 }, ferry: { poll: () => 100, poll_restartable: () => 100 } });
    // leaf(5) = 20, loopy(5) = 15, twice each.
    assert.equal((instance.exports["main"] as (x: number) => number)(5), 70);
    assert.equal((instance.exports[`${PREFIX}0`] as WebAssembly.Global).value, 42, "the start function ran");
    assert.equal((instance.exports["memory"] as WebAssembly.Memory).buffer.byteLength, 65536, "the memory is exported");
    const m = binaryen.readBinary(points.wasm);
    try {
      const names: string[] = [];
      for (let i = 0; i < m.getNumFunctions(); i += 1) names.push(binaryen.getFunctionInfo(m.getFunctionByIndex(i)).name);
      // The new imports after the module's; then its functions, named as they were; then $loopy's two copies.
      assert.deepEqual(names.slice(3, 7), ["leaf", "loopy", "init", "main"]);
      assert.deepEqual(names.slice(7), ["loopy$ferry_fast", "loopy$ferry_slow"]);
    } finally {
      m.dispose();
    }
  });

  it("keeps a loop's parameters on the way to its slice, and a branch to a counted function's own label counted back", () => {
    // Written by hand: Binaryen has no block parameters, and no name for a function's label.
    //   (func $count (param i32) (result i32)   ;; recursive: counted
    //     local.get 0  i32.eqz  if  i32.const 1  br 1  end      ;; a branch to the function's label
    //     local.get 0  i32.const 1  i32.sub  call $count  i32.const 1  i32.add)
    //   (func $main (param i32) (result i32) (local i32)
    //     i32.const 0                                ;; the loop's parameter: a running sum
    //     loop (type 0)                              ;; (param i32) (result i32)
    //       local.get 0  i32.add
    //       local.get 0  i32.const 1  i32.sub  local.tee 0
    //       br_if 0                                ;; back with the sum as the parameter
    //     end
    //     local.get 0  i32.const 30  i32.add  call $count  i32.add)
    const types = [0x60, 1, 0x7f, 1, 0x7f];
    const count = [0, 0x20, 0, 0x45, 0x04, 0x40, 0x41, 1, 0x0c, 1, 0x0b, 0x20, 0, 0x41, 1, 0x6b, 0x10, 0, 0x41, 1, 0x6a, 0x0b];
    const main = [1, 1, 0x7f, 0x41, 0, 0x03, 0, 0x20, 0, 0x6a, 0x20, 0, 0x41, 1, 0x6b, 0x22, 0, 0x0d, 0, 0x0b, 0x20, 0, 0x41, 30, 0x6a, 0x10, 0, 0x6a, 0x0b];
    const section = (id: number, payload: number[]): number[] => [id, payload.length, ...payload];
    const bytes = Uint8Array.from([
      0, 0x61, 0x73, 0x6d, 1, 0, 0, 0,
      ...section(1, [1, ...types]),
      ...section(3, [2, 0, 0]),
      ...section(5, [1, 0, 1]),
      ...section(7, [1, 4, ...new TextEncoder().encode("main"), 0, 1]),
      ...section(10, [2, count.length, ...count, main.length, ...main]),
    ]);
    assert.ok(WebAssembly.validate(bytes), "the hand-written module validates");
    const plain = (new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports["main"] as (n: number) => number)(1000);
    assert.equal(plain, 500_500 + 31);
    const points = safePoints(bytes, 7);
    let polls = 0;
    const instance = new WebAssembly.Instance(new WebAssembly.Module(points.wasm), { ferry: { poll: () => ((polls += 1), 7) } });
    assert.equal((instance.exports["main"] as (n: number) => number)(1000), plain);
    assert.ok(polls >= Math.floor(1000 / LOOP_SLICE), `${polls} polls`);
    const depth = points.depth[0];
    assert.ok(depth !== undefined);
    assert.equal((instance.exports[depth.export_name] as WebAssembly.Global).value, 0, "the branch to the function's label counted its frame back");
  });
});

/** Most iterations a generated counted loop runs: it leaves by another branch then. */
const ESCAPE = 3000;

/**
 * A random loop stepping an induction toward a bound, in either shape
 * `#counted` folds (tested at the bottom on the stepped value, or at the top
 * in an `if`), either operand order, with a constant or local bound, and
 * starts and bounds at the edges of the type (where an induction could
 * wrap). Some are near misses the pass must leave counted. Each iteration
 * counts itself in global 0 and leaves after {@link ESCAPE}.
 */
function countedLoop(rng: Prng): { text: string; args: unknown[][] } {
  const bits = rng.chance(0.7) ? 32 : 64;
  const T = `i${bits}`;
  const max = (1n << BigInt(bits - 1)) - 1n;
  const min = -(1n << BigInt(bits - 1));
  const relation = rng.pick(["lt_s", "lt_u", "le_s", "le_u", "gt_s", "gt_u", "ge_s", "ge_u", "ne", "ne"]);
  const magnitude = BigInt(rng.pick([1, 1, 1, 1, 2, 3, 4, 7, 8, 1000, 1 << 22, 1 << 23]));
  const up = relation.startsWith("l") || (relation === "ne" && rng.chance(0.5));
  const step = (up ? magnitude : -magnitude) * (rng.chance(0.1) ? -1n : 1n);
  const edges = [0n, 1n, 5n, 300n, 1000n, -5n, max, max - 1n, max - magnitude, min, min + 1n, min + magnitude, -1n];
  const zero = relation === "ne" && bits === 32 && rng.chance(0.3);
  const k = zero ? 0n : rng.chance(0.2) ? BigInt(rng.int(1 << 20)) - (1n << 19n) : (rng.pick(edges) as bigint);
  const starts = [k - 3n * step, k - 300n * step, k - 5000n * step, k - 5001n * step, k + 2n, k, k - step, 0n, ...edges];
  const wrap = (v: bigint): bigint => BigInt.asIntN(bits, v);
  const start = wrap(rng.pick(starts) as bigint);
  const K = rng.chance(0.4) ? "(local.get $k)" : `(${T}.const ${wrap(k)})`;
  // The step: a constant, or the parameter $p (given the step, and other values).
  const local = rng.chance(0.3);
  const c = (value: bigint): string => (local ? "(local.get $p)" : `(${T}.const ${value})`);
  const sub = rng.chance(0.3);
  const stepped = sub ? `(${T}.sub (local.get $i) ${c(-step)})` : rng.chance(0.5) ? `(${T}.add (local.get $i) ${c(step)})` : `(${T}.add ${c(step)} (local.get $i))`;
  const p = sub ? -step : step;
  const extend = (e: string): string => (bits === 32 ? `(i64.extend_i32_u ${e})` : e);
  const count = `(global.set $n (i32.add (global.get $n) (i32.const 1)))
      (br_if $exit (i32.ge_u (global.get $n) (i32.const ${ESCAPE})))`;
  const add = `(local.set $sum (i64.add (i64.mul (local.get $sum) (i64.const 31)) ${extend("(local.get $i)")}))`;
  const flipped = rng.chance(0.3);
  const test = (x: string): string => (flipped ? `(${T}.${flipRelation(relation)} ${K} ${x})` : `(${T}.${relation} ${x} ${K})`);
  const loop = zero
    ? `(loop $l ${count} ${add} (br_if $l (local.tee $i ${stepped})))`
    : rng.chance(0.5)
      ? `(loop $l ${count} ${add} (br_if $l ${test(`(local.tee $i ${stepped})`)}))`
      : `(loop $l (if ${test("(local.get $i)")} (then ${count} ${rng.chance(0.5) ? `${add} (local.set $i ${stepped})` : `(local.set $i ${stepped}) ${add}`} (br $l))))`;
  const text = `(module ${HEADER}
    (global $n (mut i32) (i32.const 0))
    (func (export "main") (param $k ${T}) (param $p ${T}) (result i64) (local $i ${T}) (local $sum i64)
      (local.set $i (${T}.const ${start}))
      (block $exit ${loop})
      (i64.add (local.get $sum) (i64.add (i64.extend_i32_u (global.get $n)) (i64.shl ${extend("(local.get $i)")} (i64.const 20))))))`;
  const arg = (v: bigint): unknown => (bits === 32 ? Number(BigInt.asIntN(32, v)) : BigInt.asIntN(64, v));
  return { text, args: [[arg(k), arg(p)], [arg(k + 1n), arg(p)], [arg(start + 2n * step), arg(-p)], [arg(k), arg(0n)], [arg(max), arg(p * 2n)]] };
}

/** `K CMP x` written as `x CMP' K`, and back. */
function flipRelation(relation: string): string {
  const swapped: Record<string, string> = { lt_s: "gt_s", lt_u: "gt_u", gt_s: "lt_s", gt_u: "lt_u", le_s: "ge_s", le_u: "ge_u", ge_s: "le_s", ge_u: "le_u" };
  return swapped[relation] ?? relation;
}
