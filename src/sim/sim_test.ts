/**
 * The simulator with fixed seeds: what the policies must do to a cluster,
 * checked on the figures of whole runs.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { SimChanges } from "./config.js";
import { simulate } from "./simulate.js";
import type { SimReport } from "./report.js";

/** A small, quiet cluster: equal nodes, no labels, no talk, everything arrives at once where submitted. */
const QUIET: SimChanges = { nodes: 8, cpus: 4, speed_min: 1, speed_max: 1, arrival_s: 0, place: false, group_max: 1, label_share: 0, require_share: 0, seed: 7 };

function run(changes: SimChanges): SimReport {
  return simulate({ ...QUIET, ...changes, policy: { ...changes.policy } });
}

describe("simulator", () => {
  it("a balanced cluster stays put", () => {
    const r = run({ processes: 32, entry: "round-robin", work_mean_s: 60 });
    assert.equal(r.completed, 32);
    assert.equal(r.migrations.total, 0);
  });

  it("a hot spot spreads within a few rounds, and balancing beats not balancing", () => {
    const hot: SimChanges = { processes: 64, entry: "hot", hot_share: 1 / 8, work_mean_s: 60, samples: 240 };
    const r = run(hot);
    const none = run({ ...hot, policy: { mode: "none" } });
    const spread = r.imbalance.find((s) => s.t_s > 0 && s.max_over_mean <= 1.5);
    assert.ok(spread !== undefined && spread.t_s <= 10, `max/mean still above 1.5 at ${JSON.stringify(r.imbalance.slice(0, 12))}`);
    // At least the 56 processes above one node's share move; later moves follow completions, none ping-pongs up to the cap (8).
    // A long job may follow the cores freed as others end: here one moved 4 times in 50 s, each time to a node 25 % less loaded with it.
    assert.ok(r.migrations.total >= 56 && r.migrations.total <= 128, `migrations ${r.migrations.total}`);
    assert.ok(r.migrations.max_per_process <= 4, `max per process ${r.migrations.max_per_process}`);
    assert.ok(r.makespan_s < none.makespan_s / 2, `balanced ${r.makespan_s} s vs ${none.makespan_s} s`);
    assert.equal(none.migrations.total, 0);
  });

  it("a random message graph's co-located traffic share rises", () => {
    const talk: SimChanges = { nodes: 16, cpus: 8, processes: 64, entry: "uniform", group_max: 4, talk_min_bytes_per_s: 1e6, talk_max_bytes_per_s: 4e6, work_mean_s: 200, samples: 1000 };
    const r = run(talk);
    const off = run({ ...talk, policy: { colocate: false } });
    const first = r.imbalance[0]?.colocated_share ?? 1;
    const at60 = r.imbalance.find((s) => s.t_s >= 60)?.colocated_share ?? 0;
    const off60 = off.imbalance.find((s) => s.t_s >= 60)?.colocated_share ?? 1;
    assert.ok(first < 0.3, `share at first ${first}`);
    assert.ok(at60 > 0.7, `share after 60 s ${at60}`);
    assert.ok(off60 < 0.3, `without co-location ${off60}`);
    assert.ok(r.migrations.by_reason.colocate > 0);
  });

  it("a target re-checks a move on its load when asked: stale views make fewer moves, none wasted on a full target", () => {
    // Three hot nodes of eight decide on views up to seconds old (a slow exchange to one peer): without the target's second look they pile onto the same quiet nodes and have to undo it.
    const stale: SimChanges = { processes: 96, entry: "hot", hot_share: 3 / 8, work_mean_s: 60, samples: 240, interval_ms: 3000, fanout: 1, policy: { view_age_max_ms: 20_000, moves_per_round_max: 8 } };
    const r = run(stale);
    const off = run({ ...stale, recheck: false });
    assert.ok(r.migrations.refused > 0, `refused ${r.migrations.refused}`);
    assert.equal(off.migrations.refused, 0);
    assert.ok(r.migrations.total < off.migrations.total * 0.8, `moves ${r.migrations.total} with the re-check, ${off.migrations.total} without`);
    assert.ok(r.makespan_s <= off.makespan_s, `makespan ${r.makespan_s} s with the re-check, ${off.makespan_s} s without`);
    assert.ok(r.migrations.max_per_process < off.migrations.max_per_process, `max per process ${r.migrations.max_per_process} vs ${off.migrations.max_per_process}`);
    assert.equal(r.completed, 96);
  });

  it("a move costs what the process really writes; its strategy follows the rate its source measured", () => {
    const big: SimChanges = { memory_min_bytes: 256 * 1024 ** 2, memory_max_bytes: 512 * 1024 ** 2, node_memory_bytes: 64 * 1024 ** 3 };
    // A drain at 5 s: every process has run long enough to be measured, at full speed (4 on 4 cores).
    const drain: SimChanges = { ...big, processes: 32, entry: "round-robin", work_mean_s: 60, drain_nodes: [3], drain_at_s: 5 };
    const still = run({ ...drain, dirty_share_max: 0 });
    const writing = run({ ...drain, dirty_share_max: 2 });
    assert.equal(still.migrations.total, 4);
    assert.equal(still.migrations.by_strategy["pre-copy"], 4);
    assert.equal(still.migrations.took_ms_mean, still.migrations.expected_ms_mean);
    assert.equal(still.migrations.downtime_ms_mean, 20, "nothing written: the last round is empty, the pause is all");
    assert.equal(writing.migrations.total, 4, "the same four processes leave");
    assert.ok(writing.migrations.by_strategy.hybrid + writing.migrations.by_strategy["post-copy"] > 0, JSON.stringify(writing.migrations.by_strategy));
    assert.ok(writing.bytes_moved > still.bytes_moved, `${writing.bytes_moved} bytes vs ${still.bytes_moved}`);
    // A hot spot at the start: the first moves are decided before any rate was measured, so fast writers cost more than their source expected.
    const hot: SimChanges = { ...big, processes: 64, entry: "hot", hot_share: 1 / 8, work_mean_s: 60, dirty_share_max: 2 };
    const h = run(hot);
    assert.ok(h.migrations.took_ms_mean > h.migrations.expected_ms_mean, `took ${h.migrations.took_ms_mean} ms, expected ${h.migrations.expected_ms_mean} ms`);
    assert.ok(h.migrations.downtime_ms_mean > 20);
  });

  it("a drained node empties and nothing new lands on it", () => {
    const r = run({ processes: 64, entry: "round-robin", work_mean_s: 60, drain_nodes: [3], drain_at_s: 5 });
    assert.ok(r.drain_empty_at_s !== null && r.drain_empty_at_s <= 10, `emptied at ${r.drain_empty_at_s}`);
    assert.equal(r.migrations.by_reason.drain, 8);
    // Arrivals go on after the drain, some submitted at the drained node: none may start there (the run counts it).
    const later = run({ processes: 64, entry: "round-robin", work_mean_s: 60, drain_nodes: [3], drain_at_s: 5, arrival_s: 20, place: true });
    assert.ok(later.drain_empty_at_s !== null);
    assert.equal(later.invariant_violations, 0);
  });

  it("a node short of memory ushers processes away before it thrashes", () => {
    const tight: SimChanges = { processes: 40, entry: "hot", hot_share: 1 / 8, work_mean_s: 60, node_memory_bytes: 4 * 1024 ** 3, memory_min_bytes: 128 * 1024 ** 2, memory_max_bytes: 512 * 1024 ** 2 };
    const r = run({ ...tight, policy: { hysteresis: 100 } });
    assert.ok(r.migrations.by_reason.memory > 0, JSON.stringify(r.migrations.by_reason));
    assert.equal(r.migrations.by_reason.balance, 0);
    assert.equal(r.completed, 40);
  });

  it("pack keeps fewer nodes busy than balance on a light load", () => {
    const light: SimChanges = { nodes: 16, processes: 24, entry: "uniform", work_mean_s: 120, samples: 60 };
    const busy = (r: SimReport): number => r.imbalance.find((s) => s.t_s >= 30)?.busy_nodes ?? 0;
    const packed = run({ ...light, policy: { mode: "pack" } });
    const balanced = run(light);
    assert.ok(busy(packed) <= 8, `pack: ${busy(packed)} busy`);
    assert.ok(busy(balanced) > busy(packed), `balance ${busy(balanced)} vs pack ${busy(packed)}`);
  });

  it("requirements always hold, with failures and every policy", () => {
    for (const mode of ["balance", "pack", "none"] as const) {
      for (const seed of [1, 2, 3]) {
        const r = simulate({ nodes: 40, processes: 2000, seed, label_share: 0.2, require_share: 0.3, failures_per_node_hour: 60, repair_s: 10, policy: { mode } });
        assert.equal(r.invariant_violations, 0, `${mode} seed ${seed}`);
        assert.equal(r.completed, 2000, `${mode} seed ${seed}`);
        assert.ok(r.failures > 0);
      }
    }
  });

  it("a run is a function of its seed, whatever ran before it in the process", () => {
    // Failures, a drain, talk and requirements: every path that draws randomness or reuses scratch between rounds.
    const busy: SimChanges = { nodes: 24, processes: 1200, label_share: 0.2, require_share: 0.1, failures_per_node_hour: 60, repair_s: 10, drain_nodes: [2], drain_at_s: 5 };
    for (const mode of ["balance", "pack"] as const) {
      const text = (seed: number): string => JSON.stringify({ ...simulate({ ...busy, seed, policy: { mode } }), wall_ms: 0 });
      const first = text(11);
      const other = text(12);
      assert.notEqual(other, first, mode);
      assert.equal(text(11), first, mode);
    }
  });

  it("a run is a function of its seed", () => {
    const a = simulate({ nodes: 30, processes: 1500, seed: 5 });
    const b = simulate({ nodes: 30, processes: 1500, seed: 5 });
    assert.deepEqual({ ...a, wall_ms: 0 }, { ...b, wall_ms: 0 });
    assert.notEqual(simulate({ nodes: 30, processes: 1500, seed: 6 }).makespan_s, a.makespan_s);
  });
});
