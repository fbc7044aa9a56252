import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { StallWatch } from "./stall.js";

describe("stall watch", () => {
  it("is stalled only once the measure has not grown for the stall time", () => {
    const w = new StallWatch(1000, 0);
    assert.equal(w.sample(0, 0), false);
    assert.equal(w.sample(0, 999), false);
    assert.equal(w.sample(0, 1000), true);
  });

  it("starts over whenever the measure moves", () => {
    const w = new StallWatch(1000, 0);
    w.sample(5, 0);
    assert.equal(w.sample(6, 900), false);
    assert.equal(w.sample(6, 1800), false);
    assert.equal(w.idle_ms(1899), 999);
    assert.equal(w.sample(6, 1900), true);
  });

  it("counts from its start when nothing was sampled yet", () => {
    const w = new StallWatch(500, 100);
    assert.equal(w.idle_ms(400), 300);
  });
});
