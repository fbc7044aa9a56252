import assert from "node:assert/strict";
import { randomFillSync } from "node:crypto";
import { describe, it } from "node:test";
import { Worker } from "node:worker_threads";

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
  it("lets the other threads map memory while it backs a large memory", { skip: noAddon }, async (ctx) => {
    // A standby's memory is backed in its worker while the node's thread serves everything else; that thread maps
    // memory now and then (V8's heap, a thread starting, a large buffer), which waits for the kernel's mmap lock.
    // 1 GiB in small pages: long enough to back (about 0.4 s here; huge pages can take 30 ms when the kernel has them
    // ready) for several mappings to fit in.
    const memory = new WebAssembly.Memory({ initial: 16384, maximum: 16384, shared: true });
    const phase = new Int32Array(new SharedArrayBuffer(4));
    const worker = new Worker(
      `const { parentPort, workerData } = require("node:worker_threads");
      import(workerData.native).then(({ nativeAddon }) => {
        const { addon } = nativeAddon();
        const phase = new Int32Array(workerData.phase);
        const view = new Uint8Array(workerData.memory.buffer);
        Atomics.store(phase, 0, 1);
        try {
          addon.populate(view, view.length, false);
          Atomics.store(phase, 0, 2);
        } catch (err) {
          // A kernel before 5.14 has no MADV_POPULATE_WRITE (backStandby then writes the pages from JavaScript).
          parentPort.postMessage(String(err.message));
          Atomics.store(phase, 0, 3);
        }
      });`,
      { eval: true, workerData: { native: new URL("../native.js", import.meta.url).href, phase: phase.buffer, memory } },
    );
    const ended = new Promise((resolve, reject) => worker.once("exit", resolve).once("error", reject));
    let failure = "";
    worker.on("message", (m: string) => (failure = m));
    try {
      while (Atomics.load(phase, 0) === 0) Atomics.wait(phase, 0, 0, 100);
      // Mappings begun and ended while the populate ran: 64 MiB is past malloc's largest threshold, so each one maps.
      let mapped = 0;
      const started = performance.now();
      while (Atomics.load(phase, 0) === 1) {
        Buffer.allocUnsafeSlow(64 * 1024 * 1024);
        if (Atomics.load(phase, 0) === 1) mapped++;
      }
      if (Atomics.load(phase, 0) === 3) {
        await ended;
        ctx.skip(`the kernel cannot populate here: ${failure}`);
        return;
      }
      ctx.diagnostic(`populating 1 GiB took ${(performance.now() - started).toFixed(0)} ms; mappings meanwhile: ${mapped}`);
      // In one call the populate holds the lock throughout: the first mapping waits until it ends (one at most may slip
      // in as it ends, before the worker says so).
      assert.ok(mapped >= 3, `only ${mapped} mappings were made while the memory was backed`);
    } finally {
      await ended;
    }
  });
});
