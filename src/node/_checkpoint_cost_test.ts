/** A checkpoint's runtime slowdown is its pause over the interval since the previous one's pause ended. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { checkpointSlowdown } from "./_checkpoint_cost.js";

describe("a checkpoint's runtime slowdown", () => {
  it("is the pause over the interval since the previous pause ended", () => {
    assert.deepEqual(checkpointSlowdown(1000, 2000, 10), { interval_ms: 1000, slowdown_ratio: 0.01 });
    assert.deepEqual(checkpointSlowdown(0, 100, 25), { interval_ms: 100, slowdown_ratio: 0.25 });
  });

  it("counts an interval as long as its pause at least, so the share never passes 1", () => {
    assert.deepEqual(checkpointSlowdown(1990, 2000, 30), { interval_ms: 30, slowdown_ratio: 1 });
    assert.equal(checkpointSlowdown(5, 5, 0).slowdown_ratio, 0);
  });
});
