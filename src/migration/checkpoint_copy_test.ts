import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { KernelTracker, kernelTrackerAvailability, ShadowTracker, TRACK_PAGE_BYTES, type PageTracker, type TrackedPage } from "../memory/mod.js";
import { copyPages } from "./checkpoint.js";

const PAGES = 48;
const kernel = kernelTrackerAvailability();

/** The case: pages written before the last look (some carried), then pages written after it; the pause copies both sets. */
function check(makeTracker: () => PageTracker, before: number[], carried_mask: boolean[], after: number[]): void {
  const memory = new WebAssembly.Memory({ initial: 3, maximum: 16, shared: true });
  const live = new Uint8Array(memory.buffer);
  const tracker = makeTracker();
  try {
    for (const _ of tracker.changed(live)) {
      // The first look: every page so far counts as sent.
    }
    for (const i of before) live.fill(1 + (i % 200), i * TRACK_PAGE_BYTES, (i + 1) * TRACK_PAGE_BYTES);
    const found: TrackedPage[] = [...tracker.changed(live)];
    const carried = found.filter((_p, k) => carried_mask[k % carried_mask.length] === true);
    for (const i of after) live[i * TRACK_PAGE_BYTES + 7] = 255 - (i % 200);
    const copied = copyPages(live, carried, tracker);
    const expected = [...new Set([...carried.map((p) => p.index), ...after])].sort((a, b) => a - b);
    assert.deepEqual(copied.map((p) => p.index), expected, "each page once, in index order");
    for (const p of copied) {
      assert.equal(p.data.length, TRACK_PAGE_BYTES);
      assert.deepEqual(Buffer.from(p.data), Buffer.from(live.subarray(p.index * TRACK_PAGE_BYTES, (p.index + 1) * TRACK_PAGE_BYTES)), `page ${p.index} as it is at the copy`);
    }
    // A copy, not a view: the guest's writes after the pause do not reach it.
    const snapshot = copied.map((p) => Buffer.from(p.data));
    live.fill(9);
    copied.forEach((p, k) => assert.deepEqual(Buffer.from(p.data), snapshot[k]));
  } finally {
    tracker.close();
  }
}

const pageSet = fc.uniqueArray(fc.integer({ min: 0, max: PAGES - 1 }), { maxLength: PAGES });

describe("the checkpoint pause's copy", () => {
  it("copies the carried pages and those written since, once each, in order (portable tracker)", () => {
    fc.assert(fc.property(pageSet, fc.array(fc.boolean(), { minLength: 1, maxLength: 8 }), pageSet, (before, mask, after) => check(() => new ShadowTracker(), before, mask, after)), { numRuns: 150 });
  });

  it("the same with the kernel tracker", { skip: kernel.available ? false : `the kernel tracker is unavailable here: ${kernel.reason}` }, () => {
    fc.assert(fc.property(pageSet, fc.array(fc.boolean(), { minLength: 1, maxLength: 8 }), pageSet, (before, mask, after) => check(() => new KernelTracker(), before, mask, after)), { numRuns: 60 });
  });

  it("copies nothing when nothing was carried or written", () => {
    check(() => new ShadowTracker(), [], [false], []);
  });
});
