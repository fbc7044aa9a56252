/** Capping a module's memory: the engine then refuses to grow it past the cap. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import binaryen from "binaryen";
import { capMemory, holdBackData, instantiationWrites } from "./_binary.js";
import { wat } from "./_wat.js";

/** A module that defines and exports one memory with these limits (pages). */
function moduleWith(initial: number, maximum: number | undefined, shared = false): Uint8Array {
  const flags = (maximum === undefined ? 0 : 1) | (shared ? 2 : 0);
  const limits = [flags, initial, ...(maximum === undefined ? [] : [maximum])];
  const memory = [0x05, limits.length + 1, 0x01, ...limits];
  const exported = [0x07, 0x0a, 0x01, 0x06, ...Buffer.from("memory"), 0x02, 0x00];
  return new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ...memory, ...exported]);
}

function memoryOf(wasm: Uint8Array): WebAssembly.Memory {
  return new WebAssembly.Instance(new WebAssembly.Module(wasm)).exports["memory"] as WebAssembly.Memory;
}

describe("capMemory", () => {
  it("lowers the maximum: growing past it fails, up to it works", () => {
    const memory = memoryOf(capMemory(moduleWith(1, 100), 4));
    memory.grow(3);
    assert.throws(() => memory.grow(1), RangeError);
    assert.equal(memory.buffer.byteLength, 4 * 65536);
  });

  it("keeps a lower declared maximum, sets one where none was declared, and keeps memory shared", () => {
    assert.throws(() => memoryOf(capMemory(moduleWith(1, 2), 4)).grow(2), RangeError);
    assert.throws(() => memoryOf(capMemory(moduleWith(1, undefined), 2)).grow(2), RangeError);
    assert.ok(memoryOf(capMemory(moduleWith(1, 10, true), 4)).buffer instanceof SharedArrayBuffer);
  });

  it("refuses a module whose memory starts over the cap", () => {
    assert.throws(() => capMemory(moduleWith(5, 10), 4), RangeError);
  });
});

describe("instantiationWrites", () => {
  /** Every non-zero byte of a fresh instance's memory lies in a range said. */
  const covered = (wasm: Uint8Array, ranges: { offset: number; length: number }[]): void => {
    const memory = new Uint8Array((new WebAssembly.Instance(new WebAssembly.Module(wasm)).exports["memory"] as WebAssembly.Memory).buffer);
    for (let i = 0; i < memory.length; i += 1) {
      if (memory[i] !== 0) assert.ok(ranges.some((r) => i >= r.offset && i < r.offset + r.length), `byte ${i} written outside the ranges ${JSON.stringify(ranges)}`);
    }
  };

  it("says the active segments at constant offsets, leaves passive ones out, and covers every byte instantiation writes", () => {
    const wasm = wat(`(module (memory (export "memory") 2)
      (data (i32.const 16) "abc")
      (data (i32.const 70000) "\\01\\02")
      (data $p "passive"))`);
    const ranges = instantiationWrites(wasm);
    assert.deepEqual(ranges, [{ offset: 16, length: 3 }, { offset: 70000, length: 2 }]);
    covered(wasm, ranges ?? []);
    assert.deepEqual(instantiationWrites(wat(`(module (memory (export "memory") 1))`)), []);
  });

  it("reads an offset whose i32 is negative as the unsigned offset it is", () => {
    const ranges = instantiationWrites(wat(`(module (memory (export "memory") 1 65536) (data (i32.const -2147483648) ""))`));
    assert.deepEqual(ranges, [{ offset: 2147483648, length: 0 }]);
  });

  it("cannot say for a start function or an offset that is not a constant", () => {
    assert.equal(instantiationWrites(wat(`(module (memory (export "memory") 1) (func $s (i32.store (i32.const 8) (i32.const 1))) (start $s))`)), null);
    assert.equal(instantiationWrites(wat(`(module (import "e" "g" (global $g i32)) (memory (export "memory") 1) (data (global.get $g) "x"))`)), null);
    assert.equal(instantiationWrites(new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x0b, 0x05, 0x01, 0x00, 0x41])), null);
  });
});

describe("holdBackData", () => {
  const memoryBytes = (instance: WebAssembly.Instance): Uint8Array => new Uint8Array((instance.exports["memory"] as WebAssembly.Memory).buffer);

  it("empties the active segments, keeps passive ones, and gives back what writing them makes of memory", () => {
    // With bulk memory, so the binary has the data count section memory.init needs.
    const m = binaryen.parseText(`(module (memory (export "memory") 2)
      (data (i32.const 16) "abc")
      (data (memory 0) (i32.const 70000) "\\01\\02")
      (data $p "passive")
      (func (export "init") (memory.init $p (i32.const 100) (i32.const 0) (i32.const 7)))
      (func (export "drop") (data.drop 0)))`);
    m.setFeatures(binaryen.Features.BulkMemory);
    const wasm = m.emitBinary();
    m.dispose();
    const held = holdBackData(wasm);
    assert.ok(held !== null);
    assert.deepEqual(
      held.segments.map((s) => ({ offset: s.offset, bytes: Buffer.from(wasm.subarray(s.at, s.at + s.length)).toString("latin1") })),
      [
        { offset: 16, bytes: "abc" },
        { offset: 70000, bytes: "\x01\x02" },
      ],
    );
    const original = new WebAssembly.Instance(new WebAssembly.Module(wasm));
    const stripped = new WebAssembly.Instance(new WebAssembly.Module(held.wasm));
    const memory = memoryBytes(stripped);
    assert.ok(memory.every((b) => b === 0), "the stripped module's instantiation wrote memory");
    for (const s of held.segments) memory.set(wasm.subarray(s.at, s.at + s.length), s.offset);
    assert.deepEqual(memory, memoryBytes(original));
    // The passive segment is still there for memory.init; the active one's index still drops.
    (stripped.exports["init"] as () => void)();
    assert.equal(Buffer.from(memory.subarray(100, 107)).toString(), "passive");
    (stripped.exports["drop"] as () => void)();
  });

  it("holds nothing back when instantiation writes nothing, or may write more than its segments", () => {
    assert.equal(holdBackData(wat(`(module (memory (export "memory") 1))`)), null);
    assert.equal(holdBackData(wat(`(module (memory (export "memory") 1) (data (i32.const 8) ""))`)), null);
    assert.equal(holdBackData(wat(`(module (memory (export "memory") 1) (data (i32.const 8) "x") (func $s) (start $s))`)), null);
    assert.equal(holdBackData(wat(`(module (import "e" "g" (global $g i32)) (memory (export "memory") 1) (data (global.get $g) "x"))`)), null);
  });
});
