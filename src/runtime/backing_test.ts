import assert from "node:assert/strict";
import { randomFillSync } from "node:crypto";
import { describe, it } from "node:test";

import { CopyMode, nativeAddon } from "../native.js";
import { copyOut, readable } from "./_backing.js";

const native = nativeAddon();
const noAddon = "addon" in native ? false : "the native addon is not built";

/** A shared memory of `bytes` with random contents, as a guest's. */
function guestMemory(bytes: number): Uint8Array {
  const memory = new WebAssembly.Memory({ initial: Math.ceil(bytes / 65536), maximum: 65536, shared: true });
  const view = new Uint8Array(memory.buffer);
  // randomFillSync refuses a SharedArrayBuffer: fill a copy and move it in.
  view.set(randomFillSync(new Uint8Array(view.length)));
  return view;
}

describe("copyOut", () => {
  const memory = guestMemory(4 * 1048576);
  // Lengths around the 64 KiB probe and the page size, from offsets that are not page aligned.
  const cases: [number, number][] = [[0, 0], [3, 1], [4097, 4095], [0, 65536], [1, 65537], [12345, 1048576 + 3], [65536, 3 * 1048576]];

  for (const mode of [CopyMode.all, CopyMode.kernel]) {
    it(`copies every byte ${mode === CopyMode.kernel ? "through /proc/self/mem" : "by the faster way it finds"}, and nothing past the source's length`, { skip: noAddon }, () => {
      const addon = (native as { addon: { copyOut(src: Uint8Array, dst: Uint8Array, mode?: CopyMode): boolean } }).addon;
      for (const [at, length] of cases) {
        const src = memory.subarray(at, at + length);
        const dst = Buffer.alloc(length + 100, 0xa5);
        assert.equal(addon.copyOut(src, dst, mode), true);
        assert.ok(Buffer.from(src).equals(dst.subarray(0, length)), `${length} bytes from ${at}`);
        assert.ok(dst.subarray(length).every((b) => b === 0xa5), `past ${length} bytes from ${at}`);
      }
    });
  }

  it("gives memory to read either in place or copied whole into the spare buffer", () => {
    // Which one depends on how fast the pages read now (the host may have unmapped them since they were written).
    for (const [at, length] of cases) {
      const src = memory.subarray(at, at + length);
      const spare = Buffer.alloc(length + 10, 0xa5);
      const got = readable(src, spare);
      if (got !== src) {
        assert.equal(got.buffer, spare.buffer, `${length} bytes from ${at}: a view of the spare buffer`);
        assert.equal(got.byteOffset, spare.byteOffset);
      }
      assert.equal(got.length, length);
      assert.ok(Buffer.from(got).equals(Buffer.from(src)), `${length} bytes from ${at}`);
    }
  });

  it("refuses a destination shorter than the source, or a mode it does not know", { skip: noAddon }, () => {
    const addon = (native as { addon: { copyOut(src: Uint8Array, dst: Uint8Array, mode?: number): boolean } }).addon;
    assert.throws(() => addon.copyOut(memory.subarray(0, 10), new Uint8Array(10), 3), { code: "ERR_COPY_ARGS" });
    assert.throws(() => copyOut(memory.subarray(0, 100), new Uint8Array(99)), { code: "ERR_COPY_ARGS" });
  });

  it("copies with a plain copy where the addon is not built, or through it", () => {
    const src = memory.subarray(7, 7 + 200_000);
    const dst = new Uint8Array(200_000);
    copyOut(src, dst);
    assert.ok(Buffer.from(src).equals(Buffer.from(dst)));
  });
});

describe("populate", () => {
  it("backs a memory one huge page per call, so that other threads can map memory in between", { skip: noAddon }, (ctx) => {
    // A standby's memory is backed in its worker while the node's thread serves everything else; that thread maps
    // memory now and then (V8's heap, a thread starting, a large buffer), which waits for the kernel's mmap lock. The
    // kernel holds that lock through a whole MADV_POPULATE_WRITE: one call for all of a large memory held up every
    // other thread that mapped for as long as the kernel took (3.1 s for 1 GiB on a host with shadow page tables).
    // What lets them in is the number of calls, whatever either side's speed: that is what is checked.
    const addon = (native as { addon: { populate(view: Uint8Array, bytes: number, huge?: boolean): number } }).addon;
    const view = guestMemory(64 * 1048576);
    const before = Buffer.from(view);
    const huge_page = 2 * 1048576;
    for (const huge of [false, true]) {
      let calls: number;
      try {
        calls = addon.populate(view, view.length, huge);
      } catch (err: unknown) {
        // A kernel before 5.14 has no MADV_POPULATE_WRITE (backStandby then writes the pages from JavaScript).
        ctx.skip(`the kernel cannot populate here: ${(err as Error).message}`);
        return;
      }
      // The memory need not start on a huge page: its first and last calls may then cover less.
      assert.ok(calls >= view.length / huge_page && calls <= view.length / huge_page + 1, `${calls} calls for ${view.length / 1048576} MiB (huge: ${huge})`);
      assert.ok(Buffer.from(view).equals(before), "populating changed the memory's contents");
    }
    // Part of a memory: only the bytes asked for, still one huge page at a time.
    assert.ok(addon.populate(view, 5 * 1048576) <= 4);
    assert.equal(addon.populate(view, 0), 0);
  });
});
