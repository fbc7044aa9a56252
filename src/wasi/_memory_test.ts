import { describe, test } from "node:test";
import assert from "node:assert/strict";

import { Errno, ErrnoError } from "./errno.js";
import { GuestMemory, IOVS_MAX } from "./_memory.js";

function errno(fn: () => unknown): number | undefined {
  try {
    fn();
    return undefined;
  } catch (error) {
    if (error instanceof ErrnoError) return error.errno;
    throw error;
  }
}

describe("GuestMemory", () => {
  for (const shared of [false, true]) {
    test(`follows growth of ${shared ? "shared" : "plain"} memory`, () => {
      const memory = new WebAssembly.Memory(shared ? { initial: 1, maximum: 10, shared: true } : { initial: 1 });
      const mem = new GuestMemory();
      mem.bind(memory);
      assert.equal(errno(() => mem.set_u32(65536, 1)), Errno.fault);
      memory.grow(2);
      mem.set_u32(65536 * 3 - 4, 0x01020304);
      assert.equal(new DataView(memory.buffer).getUint32(65536 * 3 - 4, true), 0x01020304);
      assert.equal(mem.u32(65536 * 3 - 4), 0x01020304);
      assert.equal(errno(() => mem.u64(65536 * 3 - 4)), Errno.fault);
      // Copies are private, so APIs refusing shared buffers accept them.
      assert.equal(mem.copy(0, 4).buffer instanceof ArrayBuffer, true);
    });
  }

  test("unbound memory faults everything", () => {
    const mem = new GuestMemory();
    assert.equal(errno(() => mem.u8(0)), Errno.fault);
  });

  test("iovecs are bounds-checked up front and limited in count", () => {
    const memory = new WebAssembly.Memory({ initial: 1 });
    const mem = new GuestMemory();
    mem.bind(memory);
    mem.set_u32(0, 100);
    mem.set_u32(4, 65536);
    assert.equal(errno(() => mem.iovecs(0, 1)), Errno.fault);
    mem.set_u32(4, 10);
    assert.deepEqual(mem.iovecs(0, 1), [{ ptr: 100, len: 10 }]);
    assert.equal(errno(() => mem.iovecs(0, IOVS_MAX + 1)), Errno.inval);
  });

  test("paths must be UTF-8", () => {
    const memory = new WebAssembly.Memory({ initial: 1 });
    const mem = new GuestMemory();
    mem.bind(memory);
    mem.write(0, new Uint8Array([0x61, 0xc3, 0xa9]));
    assert.equal(mem.path(0, 3), "aé");
    mem.write(0, new Uint8Array([0xc3, 0x28]));
    assert.equal(errno(() => mem.path(0, 2)), Errno.ilseq);
  });
});
