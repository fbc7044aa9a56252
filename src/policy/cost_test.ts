import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { chooseStrategy, estimateMigration, MIGRATION_MODEL_DEFAULT as M } from "./cost.js";

const MIB = 1024 * 1024;

describe("strategy choice", () => {
  it("small processes stop and copy", () => {
    assert.equal(chooseStrategy({ memory_bytes: 4 * MIB, dirty_bytes_per_s: 200e6 }, { rate_bytes_per_s: 250e6, model: M }), "stop-copy");
  });
  it("large processes that write slowly pre-copy, fast writers post-copy, in between hybrid", () => {
    assert.equal(chooseStrategy({ memory_bytes: 512 * MIB, dirty_bytes_per_s: 10e6 }, { rate_bytes_per_s: 250e6, model: M }), "pre-copy");
    assert.equal(chooseStrategy({ memory_bytes: 512 * MIB, dirty_bytes_per_s: 240e6 }, { rate_bytes_per_s: 250e6, model: M }), "post-copy");
    assert.equal(chooseStrategy({ memory_bytes: 512 * MIB, dirty_bytes_per_s: 120e6 }, { rate_bytes_per_s: 250e6, model: M }), "hybrid");
  });
});

describe("migration estimate", () => {
  it("a small process takes about a second, as measured, with a short downtime", () => {
    const e = estimateMigration({ memory_bytes: 16 * MIB, dirty_bytes_per_s: 0 }, { strategy: "stop-copy", rate_bytes_per_s: 250e6, model: M });
    assert.ok(e.total_ms > 900 && e.total_ms < 1100, String(e.total_ms));
    assert.ok(e.downtime_ms < 100, String(e.downtime_ms));
  });
  it("pre-copy of a slow writer ends within the downtime target and sends a little more than its memory", () => {
    const e = estimateMigration({ memory_bytes: 1024 * MIB, dirty_bytes_per_s: 20e6 }, { strategy: "pre-copy", rate_bytes_per_s: 250e6, model: M });
    assert.ok(e.downtime_ms <= M.downtime_target_ms + M.pause_ms, String(e.downtime_ms));
    assert.ok(e.bytes > 1024 * MIB && e.bytes < 1.2 * 1024 * MIB);
  });
  it("post-copy's downtime is the pause whatever the size; stop-copy's grows with it", () => {
    const big = { memory_bytes: 2048 * MIB, dirty_bytes_per_s: 0 };
    assert.equal(estimateMigration(big, { strategy: "post-copy", rate_bytes_per_s: 250e6, model: M }).downtime_ms, M.pause_ms);
    assert.ok(estimateMigration(big, { strategy: "stop-copy", rate_bytes_per_s: 250e6, model: M }).downtime_ms > 8000);
  });
});
