import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ShadowTracker, TRACK_PAGE_BYTES } from "./mod.js";

describe("ShadowTracker", () => {
  it("reports non-zero pages first, then only what changed, including pages cleared and grown", () => {
    const t = new ShadowTracker();
    const mem = new Uint8Array(8 * TRACK_PAGE_BYTES);
    mem[0] = 1;
    mem[5 * TRACK_PAGE_BYTES + 7] = 2;
    assert.deepEqual([...t.changed(mem)].map((p) => p.index), [0, 5]);
    assert.deepEqual([...t.changed(mem)].map((p) => p.index), []);
    mem[3 * TRACK_PAGE_BYTES] = 9;
    mem[0] = 0;
    const round = [...t.changed(mem)];
    assert.deepEqual(round.map((p) => p.index), [0, 3]);
    assert.ok(round[0]!.data.every((b) => b === 0), "a cleared page is reported with its zeros");
    const grown = new Uint8Array(10 * TRACK_PAGE_BYTES);
    grown.set(mem);
    grown[9 * TRACK_PAGE_BYTES + 1] = 4;
    assert.deepEqual([...t.changed(grown)].map((p) => p.index), [9]);
  });

  it("reports a copy, not the live page", () => {
    const t = new ShadowTracker();
    const mem = new Uint8Array(TRACK_PAGE_BYTES);
    mem[0] = 1;
    const [page] = [...t.changed(mem)];
    mem[0] = 2;
    assert.equal(page!.data[0], 1);
    assert.deepEqual([...t.changed(mem)].map((p) => p.data[0]), [2]);
  });
});
