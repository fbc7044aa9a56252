/** Capping a module's memory: the engine then refuses to grow it past the cap. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { capMemory } from "./_binary.js";

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
