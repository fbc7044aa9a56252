import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import binaryen from "binaryen";
import { wat } from "./_wat.js";
import { FerryError } from "../errors.js";
import { recursiveFunctions } from "./_callgraph.js";
import { GLOBAL_EXPORT_PREFIX, instrumentModule, loadInstrumented, moduleHash, type CachedInstrumented } from "./mod.js";


const SAMPLE = wat(`(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory 1)
  (global $counter (mut i32) (i32.const 0))
  (global $limit i32 (i32.const 100000))
  (func $leaf (param i32) (result i32) (i32.add (local.get 0) (i32.const 1)))
  (func $fact (param i32) (result i32)
    (if (result i32) (i32.eqz (local.get 0)) (then (i32.const 1))
      (else (i32.mul (local.get 0) (call $fact (i32.sub (local.get 0) (i32.const 1)))))))
  (func $ping (param i32) (if (local.get 0) (then (call $pong (i32.sub (local.get 0) (i32.const 1))))))
  (func $pong (param i32) (if (local.get 0) (then (call $ping (i32.sub (local.get 0) (i32.const 1))))))
  (func (export "_start")
    (loop $l
      (global.set $counter (call $leaf (global.get $counter)))
      (br_if $l (i32.lt_u (global.get $counter) (global.get $limit))))
    (call $ping (call $fact (i32.const 5)))))`);

describe("instrument", () => {
  it("finds the functions on call-graph cycles", () => {
    const m = binaryen.parseText(`(module
      (func $leaf)
      (func $self (call $self))
      (func $a (call $b)) (func $b (call $c)) (func $c (call $a))
      (func $caller (call $leaf) (call $a)))`);
    try {
      assert.deepEqual([...recursiveFunctions(binaryen, m)].sort(), ["a", "b", "c", "self"]);
    } finally {
      m.dispose();
    }
  });

  it("treats an indirect call as a call to any function of its type the table holds", () => {
    const m = binaryen.parseText(`(module (type $t (func)) (table 2 funcref) (elem (i32.const 0) $dyn $leaf)
      (func $leaf) (func $dyn (call_indirect (type $t) (i32.const 0))) (func $apart (param i32) (call_indirect (type $t) (i32.const 1))))`);
    try {
      assert.deepEqual([...recursiveFunctions(binaryen, m)], ["dyn"]);
    } finally {
      m.dispose();
    }
  });

  it("makes a module suspendable: poll import, Asyncify exports, exported globals, shared memory", async () => {
    const { wasm, info } = await instrumentModule(SAMPLE);
    const module = new WebAssembly.Module(wasm);
    const imports = WebAssembly.Module.imports(module).map((i) => `${i.module}.${i.name}`);
    assert.ok(imports.includes("ferry.poll"));
    const exports = WebAssembly.Module.exports(module).map((e) => e.name);
    for (const name of ["asyncify_start_unwind", "asyncify_stop_unwind", "asyncify_start_rewind", "asyncify_stop_rewind", "asyncify_get_state", "memory", "_start"]) {
      assert.ok(exports.includes(name), `missing export ${name}`);
    }
    // The program's one mutable global, and a depth counter for each function that can recurse ($fact, $ping, $pong).
    assert.equal(info.globals.length, 4, "only mutable globals are exported");
    assert.ok(info.globals.every((g) => g.export_name.startsWith(GLOBAL_EXPORT_PREFIX)));
    assert.equal(info.unwind.depth.length, 3);
    assert.equal(info.module_sha256, moduleHash(SAMPLE));
    // Both passes ran over the binary: Binaryen was not needed.
    assert.equal(info.polls, "ferry");
    assert.equal(info.unwinder, "ferry");
    // It runs, and polls the host from its loop.
    let polls = 0;
    const instance = new WebAssembly.Instance(module, {
      wasi_snapshot_preview1: { proc_exit: () => undefined },
      ferry: { poll: () => ((polls += 1), 0) },
    });
    (instance.exports["_start"] as () => void)();
    assert.ok(polls > 0, "the injected poll never reached the host");
    const memory = instance.exports["memory"] as WebAssembly.Memory;
    assert.ok(memory.buffer instanceof SharedArrayBuffer, "memory is not shared");
  });

  it("reaches the host from a loop that calls nothing, within the budget, however its loops nest", async () => {
    // A leaf with a loop nest: 3 inner iterations per outer one, counted in
    // $n (the inner bound a global, so the loop is not provably short and
    // keeps its poll: see _bounded_test.ts for those that need none).
    const { wasm, info } = await instrumentModule(wat(`(module (memory 1)
      (global $n (mut i32) (i32.const 0))
      (global $three i32 (i32.const 3))
      (func $leaf (local $i i32) (local $j i32)
        (loop $outer
          (local.set $j (i32.const 0))
          (loop $inner
            (global.set $n (i32.add (global.get $n) (i32.const 1)))
            (br_if $inner (i32.lt_u (local.tee $j (i32.add (local.get $j) (i32.const 1))) (global.get $three))))
          (br_if $outer (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (i32.const 200000)))))
      (func (export "_start") (call $leaf)))`));
    const budget = 1000;
    const counter = info.globals[0]?.export_name ?? "";
    let last = 0;
    let widest = 0;
    let polls = 0;
    const instance = new WebAssembly.Instance(new WebAssembly.Module(wasm), {
      ferry: {
        poll: () => {
          const n = (instance.exports[counter] as WebAssembly.Global).value as number;
          // The first stretch runs on the instrumenter's initial budget.
          if (polls > 0) widest = Math.max(widest, n - last);
          last = n;
          polls += 1;
          return budget;
        },
      },
    });
    (instance.exports["_start"] as () => void)();
    assert.equal((instance.exports[counter] as WebAssembly.Global).value, 600_000);
    // Every back-edge and every visit of the countdown takes one off the budget.
    assert.ok(widest <= budget, `${widest} iterations between two polls`);
    assert.ok(polls >= 600_000 / budget, `only ${polls} polls`);
  });

  for (const unwinder of ["ferry", "binaryen"] as const) {
    it(`unwinds and rewinds through a function reached only through the table (it writes nothing: its fast copy leaves, and its instrumented copy runs again and unwinds), with ${unwinder === "ferry" ? "Ferry's unwinding pass" : "Binaryen's Asyncify (FERRY_UNWINDER=binaryen, and the fallback)"}`, async () => {
      const text = `(module (memory 1) (type $t (func (param i32) (result i32))) (table 1 funcref) (elem (i32.const 0) $sum)
        (global $out (mut i32) (i32.const 0))
        (func $sum (param $n i32) (result i32) (local $acc i32)
          (loop $l
            (local.set $acc (i32.add (local.get $acc) (i32.mul (local.get $n) (local.get $n))))
            (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))
          (local.get $acc))
        (func (export "_start") (global.set $out (call_indirect (type $t) (i32.const 100000) (i32.const 0)))))`;
      const saved = process.env["FERRY_UNWINDER"];
      if (unwinder === "binaryen") process.env["FERRY_UNWINDER"] = "binaryen";
      else delete process.env["FERRY_UNWINDER"];
      let instrumented: Awaited<ReturnType<typeof instrumentModule>>;
      try {
        instrumented = await instrumentModule(wat(text));
      } finally {
        if (saved === undefined) delete process.env["FERRY_UNWINDER"];
        else process.env["FERRY_UNWINDER"] = saved;
      }
      const { wasm, info } = instrumented;
      assert.equal(info.unwinder, unwinder === "ferry" ? "ferry" : "asyncify (FERRY_UNWINDER=binaryen)");
      const DATA = 1024;
      let phase: "run" | "unwinding" | "rewinding" = "run";
      let polls = 0;
      let left = 0;
      let unwound = false;
      const instance: WebAssembly.Instance = new WebAssembly.Instance(new WebAssembly.Module(wasm), {
        ferry: {
          // $sum's fast copy: a safe point is wanted from the third poll on.
          poll_restartable: () => {
            polls += 1;
            if (polls < 3) return 7;
            left += 1;
            return 0;
          },
          poll: () => {
            const ex = instance.exports as Record<string, (p?: number) => number>;
            if (phase === "rewinding") {
              (ex["asyncify_stop_rewind"] as () => void)();
              phase = "run";
              return 7;
            }
            polls += 1;
            if (polls >= 3 && !unwound) {
              unwound = true;
              const words = new Int32Array((instance.exports["memory"] as WebAssembly.Memory).buffer, DATA, 2);
              words[0] = DATA + 8;
              words[1] = DATA + 4096;
              (ex["asyncify_start_unwind"] as (p: number) => void)(DATA);
              phase = "unwinding";
            }
            return 7;
          },
        },
      });
      const ex = instance.exports as Record<string, () => number>;
      const start = ex["_start"] as () => void;
      start();
      assert.equal(phase, "unwinding");
      assert.equal(left, 1, "the fast copy did not leave when a safe point was wanted");
      assert.equal((ex["asyncify_get_state"] as () => number)(), 1, "the stack did not unwind through the indirect call");
      (ex["asyncify_stop_unwind"] as () => void)();
      (instance.exports["asyncify_start_rewind"] as (p: number) => void)(DATA);
      phase = "rewinding";
      start();
      let expected = 0;
      for (let n = 100_000; n > 0; n -= 1) expected = (expected + n * n) | 0;
      assert.equal((instance.exports[info.globals[0]?.export_name ?? ""] as WebAssembly.Global).value, expected);
    });
  }

  it("fails with Binaryen's words when neither pass can save what a frame holds (a reference live across a call that can unwind)", async () => {
    const text = `(module
      (import "wasi_snapshot_preview1" "sched_yield" (func $y (result i32)))
      (memory 1) (table 1 funcref) (global $out (mut i32) (i32.const 0))
      (func (export "_start") (local $r funcref)
        (local.set $r (table.get 0 (i32.const 0)))
        (global.set $out (i32.add (call $y) (ref.is_null (local.get $r))))))`;
    await assert.rejects(instrumentModule(wat(text), { name: "refs.wasm" }), (err: unknown) => {
      assert.ok(err instanceof FerryError);
      assert.equal(err.code, "ERR_INSTRUMENT_FAILED");
      assert.match(err.message, /refs\.wasm.*making the stack unwindable.*references/);
      return true;
    });
  });

  it("leaves uninstrumented an indirect caller whose table functions of that type never reach a safe point", async () => {
    const { wasm } = await instrumentModule(wat(`(module (memory 1)
      (type $cmp (func (param i32 i32) (result i32))) (type $op (func (param i32) (result i32)))
      (table 4 funcref) (elem (i32.const 0) $less $more $spin $id)
      (global $out (mut i32) (i32.const 0))
      (func $less (param i32 i32) (result i32) (i32.lt_s (local.get 0) (local.get 1)))
      (func $more (param i32 i32) (result i32) (i32.gt_s (local.get 0) (local.get 1)))
      (func $spin (param i32) (result i32) (loop $l (br_if $l (local.tee 0 (i32.sub (local.get 0) (i32.const 1))))) (i32.const 5))
      (func $id (param i32) (result i32) (local.get 0))
      (func $compare (param i32) (result i32) (call_indirect (type $cmp) (i32.const 1) (i32.const 2) (local.get 0)))
      (func $dispatch (param i32) (result i32) (call_indirect (type $op) (i32.const 100) (local.get 0)))
      (func (export "_start") (global.set $out (i32.add (call $compare (i32.const 1)) (call $dispatch (i32.const 2))))))`));
    const m = binaryen.readBinary(wasm);
    try {
      const text = (i: number): string => binaryen.emitText(binaryen.getFunctionInfo(m.getFunctionByIndex(i)).body);
      const exports = new Map<string, string>();
      for (let i = 0; i < m.getNumExports(); i += 1) {
        const e = binaryen.getExportInfo(m.getExportByIndex(i));
        exports.set(e.name, e.value);
      }
      const state = /global\.get \$(\S+?)\)/.exec(binaryen.emitText(binaryen.getFunctionInfo(m.getFunction(exports.get("asyncify_get_state") ?? "")).body))?.[1];
      assert.ok(state !== undefined);
      // The imports come first (the poll, and the countdown of $spin's fast copy); then the module's functions in order: $compare is the fifth, $dispatch the sixth.
      let imports = 0;
      while (binaryen.getFunctionInfo(m.getFunctionByIndex(imports)).module) imports += 1;
      assert.equal(imports, 2);
      assert.ok(!text(imports + 4).includes(`$${state}`), "$compare was instrumented");
      assert.ok(text(imports + 5).includes(`$${state}`), "$dispatch was not instrumented");
    } finally {
      m.dispose();
    }
    const instance = new WebAssembly.Instance(new WebAssembly.Module(wasm), { ferry: { poll: () => 1, poll_restartable: () => 1 } });
    (instance.exports["_start"] as () => void)();
  });

  it("counts the live frames of a recursive function, so an unwind is sized without a stack walk", async () => {
    const { wasm, info } = await instrumentModule(wat(`(module (memory 1)
      (func $down (param $n i32) (if (local.get $n) (then (call $down (i32.sub (local.get $n) (i32.const 1))))))
      (func (export "_start") (local $i i32)
        (loop $again
          (call $down (i32.const 49))
          (br_if $again (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (i32.const 1000))))))`));
    assert.equal(info.unwind.depth.length, 1);
    const depth = info.unwind.depth[0];
    assert.ok(depth !== undefined && depth.frame_bytes > 0 && info.unwind.fixed_bytes > 0);
    let deepest = 0;
    const instance = new WebAssembly.Instance(new WebAssembly.Module(wasm), {
      ferry: {
        poll: () => {
          deepest = Math.max(deepest, (instance.exports[depth.export_name] as WebAssembly.Global).value as number);
          return 1; // every entry reaches the host
        },
      },
    });
    (instance.exports["_start"] as () => void)();
    assert.equal(deepest, 50, "one count per live frame of $down");
    assert.equal((instance.exports[depth.export_name] as WebAssembly.Global).value, 0, "every frame counted back on return");
  });

  it("polls on the way back up a recursion as well as on the way down, with the frame still counted", async () => {
    const { wasm, info } = await instrumentModule(wat(`(module (memory 1)
      (func $down (param $n i32) (if (local.get $n) (then (call $down (i32.sub (local.get $n) (i32.const 1))))))
      (func (export "_start") (call $down (i32.const 49))))`));
    const depth = info.unwind.depth[0];
    assert.ok(depth !== undefined);
    let seen: number[] = [];
    const instance = new WebAssembly.Instance(new WebAssembly.Module(wasm), {
      ferry: {
        poll: () => {
          seen.push((instance.exports[depth.export_name] as WebAssembly.Global).value as number);
          return 1; // every entry and every return reaches the host
        },
      },
    });
    // Past the first budget (10,000 units), every unit reaches the host.
    for (let i = 0; i < 200; i += 1) (instance.exports["_start"] as () => void)();
    seen = [];
    (instance.exports["_start"] as () => void)();
    const down = Array.from({ length: 50 }, (_, i) => i + 1);
    assert.deepEqual(seen, [...down, ...down.reverse()]);
  });

  it("counts a frame back on every return of a recursive function, with no second frame per level", async () => {
    // $walk returns from three places (one inside a call's argument, one
    // whose value is itself a return) and falls off its end on the fourth.
    const { wasm, info } = await instrumentModule(wat(`(module (memory 1)
      (func $walk (param $n i32) (result i32)
        (if (i32.eqz (local.get $n)) (then (return (i32.const 7))))
        (if (i32.eq (local.get $n) (i32.const 5))
          (then (drop (call $walk (return (i32.add (call $walk (i32.const 4)) (i32.const 100)))))))
        (if (i32.eq (local.get $n) (i32.const 9))
          (then (return (return (i32.add (call $walk (i32.const 8)) (i32.const 1000))))))
        (i32.add (call $walk (i32.sub (local.get $n) (i32.const 1))) (i32.const 1)))
      (global $out (mut i32) (i32.const 0))
      (func (export "_start") (global.set $out (call $walk (i32.const 12)))))`));
    assert.equal(info.unwind.depth.length, 1);
    const depth = info.unwind.depth[0];
    assert.ok(depth !== undefined);
    const m = binaryen.readBinary(wasm);
    const names: string[] = [];
    for (let i = 0; i < m.getNumFunctions(); i += 1) names.push(binaryen.getFunctionInfo(m.getFunctionByIndex(i)).name);
    m.dispose();
    assert.ok(!names.some((n) => n.endsWith("$ferry_body")), names.join(" "));
    let deepest = 0;
    const instance = new WebAssembly.Instance(new WebAssembly.Module(wasm), {
      ferry: {
        poll: () => {
          deepest = Math.max(deepest, (instance.exports[depth.export_name] as WebAssembly.Global).value as number);
          return 1;
        },
      },
    });
    // Past the first budget (10,000 entries), every entry reaches the host.
    for (let i = 0; i < 1000; i += 1) (instance.exports["_start"] as () => void)();
    // walk(4) = 7 + 4; walk(5) = 11 + 100; walk(8) = 111 + 3; walk(9) = 114 + 1000; walk(12) = 1114 + 3.
    const out = info.globals.find((g) => g.type === "i32" && (instance.exports[g.export_name] as WebAssembly.Global).value === 1117);
    assert.ok(out !== undefined, "the program computed what it computes uninstrumented");
    assert.equal(deepest, 13, "one count per live frame");
    assert.equal((instance.exports[depth.export_name] as WebAssembly.Global).value, 0, "every return counted back");
  });

  it("refuses bytes that are not a module with ERR_INSTRUMENT_INVALID", async () => {
    await assert.rejects(instrumentModule(new TextEncoder().encode("nope")), (err: unknown) => err instanceof FerryError && err.code === "ERR_INSTRUMENT_INVALID");
  });

  describe("cache", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-cache-test-"));
    after(() => fs.rmSync(dir, { recursive: true, force: true }));

    it("instruments once: the second load comes from disk, byte for byte", async () => {
      const first = await loadInstrumented(SAMPLE, { cache_dir: dir });
      assert.equal(first.cached, false);
      const second = await loadInstrumented(SAMPLE, { cache_dir: dir });
      assert.equal(second.cached, true);
      assert.deepEqual(Buffer.from(second.wasm), Buffer.from(first.wasm));
      assert.deepEqual(second.info.globals, first.info.globals);
    });

    it("keeps the entries it read: the next load shares their bytes until the files change", async () => {
      await loadInstrumented(SAMPLE, { cache_dir: dir });
      const read = await loadInstrumented(SAMPLE, { cache_dir: dir });
      const again = await loadInstrumented(SAMPLE, { cache_dir: dir });
      assert.equal(again.cached, true);
      assert.equal(again.wasm, read.wasm, "the same bytes, not read and hashed again");
      assert.equal(again.info.instrument_ms, 0);
      assert.ok(read.wasm.buffer instanceof SharedArrayBuffer, "a cache entry's bytes are not in shared memory");
      // Rewritten by someone else (the same bytes here): read and checked anew.
      const entry = fs.readdirSync(dir).find((f) => f.endsWith(".wasm"));
      assert.ok(entry !== undefined);
      const file = path.join(dir, entry);
      const copy = `${file}.copy`;
      fs.copyFileSync(file, copy);
      fs.renameSync(copy, file);
      const after_rewrite = await loadInstrumented(SAMPLE, { cache_dir: dir });
      assert.equal(after_rewrite.cached, true);
      assert.notEqual(after_rewrite.wasm, read.wasm);
      assert.deepEqual(Buffer.from(after_rewrite.wasm), Buffer.from(read.wasm));
      // Removed: instrumented again.
      fs.rmSync(file);
      assert.equal((await loadInstrumented(SAMPLE, { cache_dir: dir })).cached, false);
    });

    it("never trusts a damaged entry: it instruments again", async () => {
      await loadInstrumented(SAMPLE, { cache_dir: dir });
      const entry = fs.readdirSync(dir).find((f) => f.endsWith(".wasm"));
      assert.ok(entry !== undefined);
      const file = path.join(dir, entry);
      const bytes = fs.readFileSync(file);
      bytes[bytes.length - 1] = (bytes[bytes.length - 1] as number) ^ 1;
      fs.writeFileSync(file, bytes);
      const again = await loadInstrumented(SAMPLE, { cache_dir: dir });
      assert.equal(again.cached, false);
      assert.equal((await loadInstrumented(SAMPLE, { cache_dir: dir })).cached, true);
    });

    it("instruments a module once for two loads at the same time: the second waits for the first", async () => {
      const fresh = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-cache-test-"));
      try {
        const stages: string[][] = [[], []];
        const both = await Promise.all([0, 1].map((i) => loadInstrumented(SAMPLE, { cache_dir: fresh, on_stage: (stage) => stages[i]?.push(stage) })));
        assert.deepEqual(both.map((r) => r.cached).sort(), [false, true]);
        // Only the one that instrumented went through the steps.
        assert.deepEqual(stages.map((s) => s.length > 0).sort(), [false, true]);
        const [a, b] = both as [CachedInstrumented, CachedInstrumented];
        assert.deepEqual(Buffer.from(a.wasm), Buffer.from(b.wasm));
        assert.equal((a.cached ? a : b).info.instrument_ms, 0);
        // And it was kept: the next load comes from disk.
        assert.equal((await loadInstrumented(SAMPLE, { cache_dir: fresh })).cached, true);
      } finally {
        fs.rmSync(fresh, { recursive: true, force: true });
      }
    });

    it("tells both loads of a module that cannot be instrumented why, and keeps nothing", async () => {
      const fresh = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-cache-test-"));
      try {
        const bad = new TextEncoder().encode("not a module");
        const both = await Promise.allSettled([0, 1].map(() => loadInstrumented(bad, { cache_dir: fresh })));
        for (const r of both) assert.ok(r.status === "rejected" && r.reason instanceof FerryError && r.reason.code === "ERR_INSTRUMENT_INVALID", JSON.stringify(r));
        assert.deepEqual(fs.readdirSync(fresh), []);
      } finally {
        fs.rmSync(fresh, { recursive: true, force: true });
      }
    });
  });
});
