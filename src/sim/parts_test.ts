/**
 * A run split in parts (`partitions`): the same report on threads as in
 * one thread, a function of its seed, the invariants held, and figures
 * close to the sequential model's.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { simConfig, type SimChanges } from "./config.js";
import type { SimReport } from "./report.js";
import { simulate } from "./simulate.js";
import { simulateThreaded } from "./threads.js";

/** Every path that crosses between parts: talk, placements, moves, failures (restarts, lost reservations), a drain, requirements. */
const BUSY: SimChanges = { nodes: 60, processes: 3000, label_share: 0.2, require_share: 0.1, failures_per_node_hour: 60, repair_s: 10, drain_nodes: [3, 40], drain_at_s: 5 };

const text = (r: SimReport): string => JSON.stringify({ ...r, wall_ms: 0 });

describe("simulator in parts", () => {
  it("a run of two or three parts reports the same on threads as in one thread", async () => {
    for (const [partitions, mode] of [[2, "balance"], [3, "pack"], [2, "none"]] as const) {
      const changes: SimChanges = { ...BUSY, partitions, policy: { mode } };
      const inline = simulate(changes);
      const threaded = await simulateThreaded(changes);
      assert.equal(text(threaded), text(inline), `${partitions} parts, ${mode}`);
      assert.equal(inline.completed, BUSY.processes);
      assert.equal(inline.invariant_violations, 0, `${partitions} parts, ${mode}`);
    }
  });

  it("is a function of its seed", () => {
    const first = text(simulate({ ...BUSY, partitions: 2, seed: 11 }));
    assert.equal(text(simulate({ ...BUSY, partitions: 2, seed: 11 })), first);
    assert.notEqual(text(simulate({ ...BUSY, partitions: 2, seed: 12 })), first);
  });

  it("stays close to the sequential model: makespan, moves, co-located traffic, information age", () => {
    for (const seed of [1, 2]) {
      const base: SimChanges = { nodes: 200, processes: 20_000, seed };
      const one = simulate({ ...base, partitions: 1 });
      const two = simulate({ ...base, partitions: 2 });
      const at = `seed ${seed}: 1 part ${JSON.stringify({ ...one, imbalance: [] })}, 2 parts ${JSON.stringify({ ...two, imbalance: [] })}`;
      assert.equal(two.completed, 20_000);
      assert.equal(two.invariant_violations, 0);
      assert.ok(Math.abs(two.makespan_over_ideal / one.makespan_over_ideal - 1) < 0.15, at);
      assert.ok(Math.abs(two.migrations.per_process / one.migrations.per_process - 1) < 0.3, at);
      assert.ok(Math.abs(two.colocated_traffic_share - one.colocated_traffic_share) < 0.08, at);
      assert.ok(Math.abs(two.information_age_ms.mean / one.information_age_ms.mean - 1) < 0.2, at);
    }
  });

  it("splits from 2,000 nodes on by default when nodes decide, and checks its parameters", () => {
    assert.equal(simConfig({ nodes: 1999 }).partitions, 1);
    assert.equal(simConfig({ nodes: 2000 }).partitions, 2);
    assert.equal(simConfig({ nodes: 2000, policy: { mode: "pack" } }).partitions, 2);
    assert.equal(simConfig({ nodes: 2000, policy: { mode: "none" } }).partitions, 1);
    assert.equal(simConfig({ nodes: 2000, partitions: 1 }).partitions, 1);
    assert.throws(() => simConfig({ nodes: 4, partitions: 5 }), /partitions must be/);
    assert.throws(() => simConfig({ partitions: 0 }), /partitions must be/);
    assert.throws(() => simConfig({ sync_ms: 0 }), /sync_ms/);
    assert.throws(() => simConfig({ sync_ms: 600, interval_ms: 500 }), /sync_ms/);
  });
});
