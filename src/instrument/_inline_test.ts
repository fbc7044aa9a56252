/**
 * Leaves written in place of their calls (`_inline.ts`): which functions are
 * leaves, and programs that call them from loops, run as written and
 * instrumented (unwound and rewound at every poll and blocking call), must
 * agree, with no call to a leaf left in the instrumented caller.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import binaryen from "binaryen";
import { Prng } from "../_prng.js";
import { LEAF_INSTRUCTIONS_MAX, leafOf } from "./_inline.js";
import { HEADER, plainRun, unwoundRun } from "./_programs.js";
import { addSafePoints } from "./_safepoints.js";
import { Reader } from "./_reader.js";
import { addUnwinding, readModule, readSections, type FuncType } from "./_unwind.js";

const BLOCKING = ["env.block", "ferry.poll"];

/** The module written in `text`, with its names (which the pass keeps, renumbered). */
function wat(text: string): Uint8Array {
  const m = binaryen.parseText(text);
  const debug = binaryen.getDebugInfo();
  try {
    binaryen.setDebugInfo(true);
    return m.emitBinary();
  } finally {
    binaryen.setDebugInfo(debug);
    m.dispose();
  }
}

function instrument(bytes: Uint8Array): Uint8Array {
  const points = addSafePoints(bytes, { blocking: BLOCKING, budget: 3, poll: { module: "ferry", name: "poll" }, restart_poll: { module: "ferry", name: "poll_restartable" }, global_prefix: "__g_" });
  assert.ok(WebAssembly.validate(points.wasm), "the module with safe points validates");
  const unwound = addUnwinding(points.wasm, BLOCKING);
  assert.ok(WebAssembly.validate(unwound.wasm), "the unwindable module validates");
  return unwound.wasm;
}

/** `bytes` run as written and instrumented (and moved to a new instance at every unwind) with each of `args`: the same results and blocking calls. */
function agree(bytes: Uint8Array, args: unknown[][]): Uint8Array {
  const instrumented = instrument(bytes);
  for (const a of args) {
    const want = plainRun(bytes, a);
    for (const moved of [false, true]) {
      const got = unwoundRun(instrumented, a, 3, moved);
      assert.deepEqual(got.result, want.result, `result for ${a.join(",")}${moved ? ", moved at every unwind" : ""}`);
      assert.deepEqual(got.calls, want.calls, `blocking calls for ${a.join(",")}`);
    }
  }
  return instrumented;
}

/** The functions (by name) that the function named `caller` calls in `bytes`. */
function callees(bytes: Uint8Array, caller: string): string[] {
  const m = binaryen.readBinary(bytes);
  try {
    m.setFeatures(binaryen.Features.All);
    const text = m.emitText();
    const start = text.indexOf(`(func $${caller} `);
    assert.ok(start >= 0, `${caller} is in the module`);
    const next = text.indexOf("\n (func ", start + 1);
    const body = text.slice(start, next < 0 ? undefined : next);
    return [...body.matchAll(/\(call \$([\w$]+)/g)].map((x) => x[1] as string);
  } finally {
    m.dispose();
  }
}

/** The leaf, if any, that the function exported as `name` from `bytes` is. */
function leafNamed(bytes: Uint8Array, name: string): ReturnType<typeof leafOf> {
  const info = readModule(bytes);
  const section = (id: number): Reader => new Reader(readSections(bytes).find((s) => s.id === id)?.payload as Uint8Array, 0);
  const exports = section(7);
  let f = -1;
  for (let n = exports.u32(); n > 0; n -= 1) {
    const text = exports.text();
    const kind = exports.byte();
    const index = exports.u32();
    if (kind === 0 && text === name) f = index;
  }
  assert.ok(f >= info.imported, `${name} is an exported function`);
  const code = section(10);
  for (let n = code.u32(), k = 0; k < n; k += 1) {
    const size = code.u32();
    if (k === f - info.imported) return leafOf(code.bytes.subarray(code.pos, code.pos + size), info.types[info.func_types[f] as number] as FuncType);
    code.skip(size);
  }
  throw new Error(`no body for ${name}`);
}


/**
 * A random program whose loop calls up to three small functions that can be
 * leaves: straight-line i32 code over two parameters and a local read before
 * it is written (zero at each call), with ifs, blocks left by branches
 * carrying values, `br_table`, `select`, tees, an early `return` from inside
 * a block, and a global the leaf may add to; the loop also makes blocking
 * calls, so the guest is unwound and rewound around the leaves' sites.
 */
function leafProgram(rng: Prng): { text: string; leaves: number } {
  const expr = (depth: number): string => {
    if (depth <= 0 || rng.chance(0.3)) return rng.chance(0.4) ? `(i32.const ${rng.int(100) - 20})` : `(local.get ${rng.pick(["$a", "$b", "$t"])})`;
    const e = (): string => expr(depth - 1);
    switch (rng.int(7)) {
      case 0:
      case 1:
        return `(${rng.pick(["i32.add", "i32.sub", "i32.xor", "i32.mul", "i32.shr_u", "i32.rotl"])} ${e()} ${e()})`;
      case 2:
        return `(if (result i32) (i32.and ${e()} (i32.const 1)) (then ${e()}) (else ${e()}))`;
      case 3:
        return `(block $v${depth} (result i32) (drop (br_if $v${depth} ${e()} (i32.and ${e()} (i32.const 2)))) ${e()})`;
      case 4:
        return `(local.tee $t ${e()})`;
      case 5:
        return `(block $p${depth} (result i32) (i32.add (block $q${depth} (result i32) (br_table $q${depth} $p${depth} ${e()} (i32.and ${e()} (i32.const 1)))) (i32.const 3)))`;
      default:
        return `(select ${e()} ${e()} (i32.and ${e()} (i32.const 1)))`;
    }
  };
  const leaves = 1 + rng.int(3);
  const funcs: string[] = [];
  for (let k = 0; k < leaves; k += 1) {
    const parts = [`(local.set $t (i32.add (local.get $t) ${expr(2)}))`];
    if (rng.chance(0.6)) parts.push(`(block $r (if (i32.and ${expr(1)} (i32.const 4)) (then (return ${expr(1)}))))`);
    if (rng.chance(0.5)) parts.push(`(global.set $g (i32.add (global.get $g) (local.get $t)))`);
    funcs.push(`(func $f${k} (param $a i32) (param $b i32) (result i32) (local $t i32) ${parts.join(" ")} ${expr(2)})`);
  }
  const calls = Array.from({ length: leaves }, (_, k) => `(call $f${k} (i32.add (local.get $i) (local.get $s)) (i32.const ${rng.int(30)}))`);
  const sum = calls.reduce((acc, c) => `(i32.xor ${acc} ${c})`);
  const text = `(module ${HEADER}
    (global $g (mut i32) (i32.const 0))
    ${funcs.join("\n    ")}
    (func $main (export "main") (param $n i32) (result i32) (local $i i32) (local $s i32)
      (loop $l
        (local.set $s (i32.add (local.get $s) ${sum}))
        (if (i32.eqz (i32.and (local.get $i) (i32.const 7))) (then (local.set $s (i32.xor (local.get $s) (call $block (local.get $s))))))
        (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (local.get $n))))
      (i32.add (local.get $s) (global.get $g))))`;
  return { text, leaves };
}

describe("leaves written in place", () => {
  it("a hash called from a copied loop: no call left, the same results", () => {
    const bytes = wat(`(module ${HEADER}
      (func $mix (param $x i64) (result i64) (local $t i64)
        (local.set $t (i64.mul (i64.xor (local.get $x) (i64.shr_u (local.get $x) (i64.const 33))) (i64.const 0xff51afd7ed558ccd)))
        (i64.xor (local.get $t) (i64.shr_u (local.get $t) (i64.const 29))))
      (func $main (export "main") (param $n i32) (result i64) (local $i i32) (local $h i64)
        (loop $l
          (if (i32.eqz (i32.and (local.get $i) (i32.const 3)))
            (then (local.set $h (call $mix (i64.xor (local.get $h) (i64.extend_i32_u (local.get $i)))))))
          (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (local.get $n))))
        (drop (call $block (i32.wrap_i64 (local.get $h))))
        (local.get $h)))`);
    assert.deepEqual(callees(bytes, "main"), ["mix", "block"]);
    const out = agree(bytes, [[1], [7], [1000], [5000]]);
    assert.ok(!callees(out, "main").includes("mix"), "the hash is written in place");
  });

  it("parameters in order, locals zero at every call, returns from inside blocks, a result left on the stack", () => {
    // $f reads $acc before writing it: it must be zero at each call, as in a call.
    const bytes = wat(`(module ${HEADER}
      (global $g (mut i32) (i32.const 0))
      (func $f (export "f") (param $a i32) (param $b i32) (result i32) (local $acc i32)
        (local.set $acc (i32.add (local.get $acc) (i32.sub (local.get $a) (local.get $b))))
        (block $out
          (if (i32.gt_u (local.get $b) (i32.const 10))
            (then (if (i32.and (local.get $a) (i32.const 1)) (then (return (i32.mul (local.get $acc) (i32.const 3)))))
              (br $out))))
        (i32.add (local.get $acc) (local.get $b)))
      (func $bump (export "bump") (param $x i32)
        (global.set $g (i32.add (global.get $g) (local.get $x))))
      (func $main (export "main") (param $n i32) (result i32) (local $i i32) (local $s i32)
        (loop $l
          (local.set $s (i32.add (local.get $s) (call $f (local.get $i) (i32.rem_u (local.get $i) (i32.const 23)))))
          (call $bump (local.get $s))
          (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (local.get $n))))
        (i32.add (local.get $s) (call $block (global.get $g)))))`);
    assert.ok(leafNamed(bytes, "f") !== undefined && leafNamed(bytes, "bump") !== undefined);
    const out = agree(bytes, [[1], [2], [50], [3000]]);
    assert.deepEqual(callees(out, "main").filter((c) => c === "f" || c === "bump"), []);
  });

  it("keeps the calls of functions that are not leaves", () => {
    const big = Array.from({ length: LEAF_INSTRUCTIONS_MAX }, () => "(local.set $x (i32.add (local.get $x) (i32.const 1)))").join(" ");
    const bytes = wat(`(module ${HEADER}
      (func $looping (export "looping") (param $x i32) (result i32) (local $k i32)
        (loop $l (local.set $x (i32.add (local.get $x) (local.get $k))) (br_if $l (i32.lt_u (local.tee $k (i32.add (local.get $k) (i32.const 1))) (i32.const 3))))
        (local.get $x))
      (func $calling (export "calling") (param $x i32) (result i32) (call $other (local.get $x)))
      (func $blocking (export "blocking") (param $x i32) (result i32) (call $block (local.get $x)))
      (func $long (export "long") (param $x i32) (result i32) ${big} (local.get $x))
      (func $main (export "main") (param $n i32) (result i32) (local $i i32) (local $s i32)
        (loop $l
          (local.set $s (i32.add (local.get $s) (i32.add (i32.add (call $looping (local.get $i)) (call $calling (local.get $i))) (call $long (local.get $i)))))
          (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (local.get $n))))
        (i32.add (local.get $s) (call $blocking (local.get $s)))))`);
    for (const name of ["looping", "calling", "blocking", "long"]) assert.equal(leafNamed(bytes, name), undefined, `${name} is no leaf`);
    const out = agree(bytes, [[1], [40]]);
    const left = callees(out, "main");
    // A restartable one (looping) is called through its fast copy, written in place of its wrapper.
    for (const name of ["looping", "calling", "blocking", "long"]) assert.ok(left.some((c) => c === name || c.startsWith(`${name}$ferry_`)), `the call of ${name} is kept: ${left.join(" ")}`);
  });
  it("keeps a leaf's call in a function on a cycle, whose every frame would carry the leaf's locals", () => {
    const bytes = wat(`(module ${HEADER}
      (func $sq (param $x i32) (result i32) (local $t i32) (local.set $t (i32.mul (local.get $x) (local.get $x))) (i32.add (local.get $t) (i32.const 1)))
      (func $rec (param $n i32) (result i32) (local $i i32) (local $s i32)
        (if (i32.eqz (local.get $n)) (then (return (call $block (i32.const 1)))))
        (loop $l (local.set $s (i32.add (local.get $s) (call $sq (local.get $i))))
          (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (i32.const 4))))
        (i32.add (local.get $s) (call $rec (i32.sub (local.get $n) (i32.const 1)))))
      (func $main (export "main") (param $n i32) (result i32) (local $i i32) (local $s i32)
        (loop $l (local.set $s (i32.add (local.get $s) (call $sq (local.get $i))))
          (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (local.get $n))))
        (i32.add (local.get $s) (call $rec (local.get $n)))))`);
    const out = agree(bytes, [[1], [30]]);
    assert.ok(callees(out, "rec").includes("sq"), "the recursive function still calls the leaf");
    assert.ok(!callees(out, "main").includes("sq"), "main, on no cycle, has it in place");
  });

  it("writes in place no more leaves into one body than its bound of added locals allows", () => {
    // 40 leaves of 8 locals each (2 parameters, 6 of their own): 32 fit in the 256 locals a body may add.
    const leaves = Array.from({ length: 40 }, (_, k) => `(func $f${k} (param $a i32) (param $b i32) (result i32) (local $c i32) (local $d i32) (local $e i32) (local $g i32) (local $h i32) (local $i i32)
        (local.set $c (i32.add (local.get $a) (i32.const ${k}))) (i32.xor (local.get $c) (local.get $b)))`);
    const calls = Array.from({ length: 40 }, (_, k) => `(local.set $s (i32.add (local.get $s) (call $f${k} (local.get $i) (local.get $s))))`).join(" ");
    const bytes = wat(`(module ${HEADER} ${leaves.join(" ")}
      (func $main (export "main") (param $n i32) (result i32) (local $i i32) (local $s i32)
        (loop $l ${calls} (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (local.get $n))))
        (i32.add (local.get $s) (call $block (local.get $s)))))`);
    const out = agree(bytes, [[1], [25]]);
    assert.equal(callees(out, "main").filter((c) => /^f\d+$/.test(c)).length, 8, "the last 8 leaves stay calls");
  });

  it("gives generated programs calling leaves from a loop the same results and calls, unwound at every poll and blocking call", () => {
    let programs_inlined = 0;
    const programs = 150;
    for (let seed = 1; seed <= programs; seed += 1) {
      const program = leafProgram(new Prng(seed));
      try {
        const bytes = wat(program.text);
        const out = agree(bytes, [[1], [9], [40 + seed]]);
        const left = callees(out, "main").filter((c) => /^f\d$/.test(c)).length;
        if (left < program.leaves) programs_inlined += 1;
      } catch (err) {
        throw new Error(`seed ${seed}:\n${program.text}`, { cause: err });
      }
    }
    // Most are small enough to be leaves (a long random expression is not, and keeps its call).
    assert.ok(programs_inlined >= programs / 2, `${programs_inlined} of ${programs} programs had a leaf written in place`);
  });
});
