/** compiledModule: each module is compiled once per memory cap and kept (most recently used); one that does not compile is left to the worker. */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { InstrumentInfo } from "../instrument/mod.js";
import { wat } from "../instrument/_wat.js";
import { COMPILED_MODULES_MAX, compiledModule, HELD_DATA_BYTES_MIN, type CompiledModule } from "./_compiled.js";

const WASM = wat(`(module (memory (export "memory") 1 100) (func (export "_start")))`);

function instrumented(sha: string, wasm: Uint8Array = WASM): { wasm: Uint8Array; info: InstrumentInfo } {
  return { wasm, info: { module_sha256: sha, instrumenter: "test/1" } as InstrumentInfo };
}

const GIB = 1 << 30;
const NO_CAP = 2 ** 32;

test("a module is compiled once per memory cap; the cap is written into the module", async () => {
  const a = await compiledModule(instrumented("a".repeat(64)), GIB);
  assert.ok(a.module instanceof WebAssembly.Module);
  assert.equal(await compiledModule(instrumented("a".repeat(64)), GIB), a, "compiled again");
  const capped = await compiledModule(instrumented("a".repeat(64)), 65536 * 2);
  assert.notEqual(capped, a);
  const memory = new WebAssembly.Instance(capped.module as WebAssembly.Module).exports["memory"] as WebAssembly.Memory;
  assert.throws(() => memory.grow(2), RangeError, "the cap of 2 pages was not written in");
  const uncapped = await compiledModule(instrumented("a".repeat(64)), NO_CAP);
  assert.equal(uncapped.wasm, WASM, "a module without a cap is not rewritten");
});

test("a module that does not compile is left to the worker, and not kept", async () => {
  const bad = instrumented("b".repeat(64), new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 0xff]));
  const first = await compiledModule(bad, NO_CAP);
  assert.equal(first.module, null);
  assert.notEqual(await compiledModule(bad, NO_CAP), first, "a failed compile was kept");
});

test(`at most ${COMPILED_MODULES_MAX} modules are kept, the least recently used going first`, async () => {
  const sha = (name: string): string => name.padEnd(64, "0");
  const c = await compiledModule(instrumented(sha("c")), GIB);
  const d: CompiledModule[] = [];
  for (let i = 0; i < COMPILED_MODULES_MAX; i += 1) {
    d.push(await compiledModule(instrumented(sha(`d${i}`)), GIB));
    // Used again after each new one: never the least recently used.
    assert.equal(await compiledModule(instrumented(sha("c")), GIB), c, "a module in use was dropped");
  }
  assert.equal(await compiledModule(instrumented(sha(`d${COMPILED_MODULES_MAX - 1}`)), GIB), d.at(-1));
  assert.notEqual(await compiledModule(instrumented(sha("d0")), GIB), d[0], "one module too many was kept");
});

test(`data segments of ${HELD_DATA_BYTES_MIN} bytes and more are held back for the worker to write; fewer are left to the instantiation`, async () => {
  const text = "x".repeat(HELD_DATA_BYTES_MIN);
  const big = wat(`(module (memory (export "memory") 8) (data (i32.const 1024) "${text}") (data (i32.const 300000) "yz"))`);
  const held = await compiledModule(instrumented("e".repeat(64), big), NO_CAP);
  assert.ok(held.data !== null);
  assert.deepEqual(
    held.data.segments.map((s) => ({ offset: s.offset, length: s.length })),
    [
      { offset: 1024, length: HELD_DATA_BYTES_MIN },
      { offset: 300000, length: 2 },
    ],
  );
  const bytes = Buffer.from(held.data.bytes);
  assert.deepEqual(
    held.data.segments.map((s) => bytes.subarray(s.at, s.at + s.length).toString("latin1")),
    [text, "yz"],
  );
  const memory = new WebAssembly.Instance(held.module as WebAssembly.Module).exports["memory"] as WebAssembly.Memory;
  assert.ok(new Uint8Array(memory.buffer).every((b) => b === 0), "the compiled module still writes its data");
  const small = await compiledModule(instrumented("f".repeat(64), wat(`(module (memory (export "memory") 1) (data (i32.const 16) "abc"))`)), NO_CAP);
  assert.equal(small.data, null);
  // Bytes in shared memory (as the cache gives them) are read where they are, capped or not: no copy.
  const sharedBig = new Uint8Array(new SharedArrayBuffer(big.length + 8), 8, big.length);
  sharedBig.set(big);
  for (const cap of [NO_CAP, GIB]) {
    const inPlace = await compiledModule(instrumented("g".repeat(64), sharedBig), cap);
    assert.ok(inPlace.data !== null);
    assert.equal(inPlace.data.bytes, sharedBig.buffer, "the segments were copied");
    const first = inPlace.data.segments[0];
    assert.ok(first !== undefined);
    assert.equal(Buffer.from(inPlace.data.bytes, first.at, first.length).toString("latin1"), text);
  }
});
