/**
 * Properties of the decisions over random clusters (fast-check): no move
 * breaks a requirement, a pin or a drain; a round never exceeds its limit;
 * a balanced cluster makes no move; and with exact views, a process moved
 * in one round is never moved back in the next, even with no cooldown.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import * as fc from "fast-check";
import { fuzzParameters } from "../_fuzz.js";
import { Prng } from "../_prng.js";
import { decide, wantsToAct } from "./decide.js";
import type { NodeLoad, ProcessInfo } from "./load.js";
import { satisfies } from "./load.js";
import { policyParams, type PolicyMode, type PolicyParams } from "./params.js";
import type { Decision } from "./_round.js";
import { viewOf } from "./_testing.js";

const GIB = 1024 ** 3;

interface Cluster {
  nodes: { load: NodeLoad; processes: ProcessInfo[] }[];
  mode: PolicyMode;
  seed: number;
  limit: number;
}

const labelArb = fc.constantFrom<Record<string, string>>({}, { zone: "a" }, { zone: "b" }, { gpu: "yes" }, { zone: "a", gpu: "yes" });

const clusterArb = (opts: { emergencies: boolean; share_one: boolean }): fc.Arbitrary<Cluster> =>
  fc
    .record({
      nodes: fc.array(
        fc.record({
          cpus: fc.integer({ min: 1, max: 8 }),
          speed: fc.constantFrom(0.5, 1, 1.5),
          labels: labelArb,
          draining: opts.emergencies ? fc.boolean() : fc.constant(false),
          memory_gib: opts.emergencies ? fc.integer({ min: 1, max: 16 }) : fc.constant(64),
          procs: fc.array(
            fc.record({
              mem_mib: fc.integer({ min: 1, max: 2048 }),
              share: opts.share_one ? fc.constant(1) : fc.constantFrom(0, 0.5, 1),
              cpu_s: fc.integer({ min: 0, max: 100 }),
              requires: labelArb,
              pinned: fc.boolean(),
              peers: fc.array(fc.nat(), { maxLength: 3 }),
            }),
            { maxLength: 16 },
          ),
        }),
        { minLength: 2, maxLength: 8 },
      ),
      mode: fc.constantFrom<PolicyMode>("balance", "pack"),
      seed: fc.nat(),
      limit: fc.integer({ min: 0, max: 6 }),
    })
    .map(({ nodes, mode, seed, limit }) => {
      const names = nodes.map((_, i) => `n${i}`);
      const all: { pid: string; node: string }[] = [];
      nodes.forEach((n, i) => n.procs.forEach((_, j) => all.push({ pid: `p${i}-${j}`, node: names[i] as string })));
      const built = nodes.map((n, i) => {
        const processes: ProcessInfo[] = n.procs.map((p, j) => ({
          pid: `p${i}-${j}`,
          memory_bytes: p.mem_mib * 2 ** 20,
          dirty_bytes_per_s: 1e6,
          cpu_share: p.share,
          cpu_s: p.cpu_s,
          requires: p.requires,
          pinned: p.pinned,
          moves: 0,
          last_move_ms: -Infinity,
          peers: all.length === 0 ? [] : p.peers.map((k) => all[k % all.length] as { pid: string; node: string }).filter((q) => q.pid !== `p${i}-${j}`).map((q) => ({ ...q, bytes_per_s: 1e6 })),
        }));
        return { load: loadOf(names[i] as string, n, processes), processes };
      });
      return { nodes: built, mode, seed, limit };
    });

function loadOf(node: string, n: { cpus: number; speed: number; labels: Record<string, string>; draining: boolean; memory_gib: number }, processes: readonly ProcessInfo[]): NodeLoad {
  const used = processes.reduce((s, p) => s + p.memory_bytes, 0);
  const remote = processes.reduce((s, p) => s + p.peers.filter((q) => q.node !== node).reduce((t, q) => t + q.bytes_per_s, 0), 0);
  return {
    node,
    cpus: n.cpus,
    speed: n.speed,
    processes: processes.length,
    movable: processes.filter((p) => !p.pinned).length,
    runnable: processes.reduce((s, p) => s + p.cpu_share, 0),
    cpu_used: 0,
    memory_used_bytes: used,
    memory_free_bytes: Math.max(0, n.memory_gib * GIB - used),
    remote_bytes_per_s: remote,
    transfer_bytes_per_s: 250e6,
    labels: n.labels,
    draining: n.draining,
  };
}

function paramsOf(c: Cluster, changes: Partial<PolicyParams> = {}): PolicyParams {
  return policyParams({ mode: c.mode, moves_per_round_max: c.limit, ...changes });
}

function decideAt(c: Cluster, i: number, params: PolicyParams, now_ms: number): Decision[] {
  const me = c.nodes[i]!;
  const others = c.nodes.filter((_, k) => k !== i).map((n) => n.load);
  return decide({ now_ms, local: me.load, processes: me.processes, view: viewOf(others, now_ms), random: new Prng(c.seed + i) }, params);
}

describe("policy properties", () => {
  it("no move breaks a requirement, a pin or a drain, or exceeds the round's limit", () => {
    fc.assert(
      fc.property(clusterArb({ emergencies: true, share_one: false }), (c) => {
        const params = paramsOf(c);
        c.nodes.forEach((me, i) => {
          const moves = decideAt(c, i, params, 1000);
          assert.ok(moves.length <= c.limit);
          assert.equal(new Set(moves.map((m) => m.pid)).size, moves.length, "a process moves once per round");
          for (const m of moves) {
            const p = me.processes.find((q) => q.pid === m.pid)!;
            const to = c.nodes.find((n) => n.load.node === m.to)!;
            assert.equal(m.from, me.load.node);
            assert.ok(!p.pinned, `pinned ${p.pid} moved`);
            assert.ok(satisfies(to.load.labels, p.requires), `${p.pid} moved to ${m.to} without its requirements`);
            assert.ok(!to.load.draining, `${p.pid} moved to drained ${m.to}`);
          }
        });
      }),
      fuzzParameters(300),
    );
  });

  it("decide moves nothing whenever wantsToAct says no", () => {
    fc.assert(
      fc.property(clusterArb({ emergencies: true, share_one: false }), (c) => {
        const params = paramsOf(c, { moves_per_round_max: Math.max(1, c.limit) });
        c.nodes.forEach((me, i) => {
          const others = viewOf(c.nodes.filter((_, k) => k !== i).map((n) => n.load), 0);
          if (!wantsToAct({ local: me.load, view: others, now_ms: 0 }, params)) assert.deepEqual(decideAt(c, i, params, 0), []);
        });
      }),
      fuzzParameters(300),
    );
  });

  it("an evenly loaded cluster of equal nodes makes no move", () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 10 }), fc.integer({ min: 1, max: 8 }), fc.integer({ min: 0, max: 12 }), fc.constantFrom<PolicyMode>("balance", "pack"), (n, cpus, per, mode) => {
        const loads = Array.from({ length: n }, (_, i) => loadOf(`n${i}`, { cpus, speed: 1, labels: {}, draining: false, memory_gib: 64 }, []));
        const c: Cluster = { nodes: loads.map((l, i) => {
          const processes = Array.from({ length: per }, (_, j) => ({ pid: `p${i}-${j}`, memory_bytes: 2 ** 20, dirty_bytes_per_s: 0, cpu_share: 1, cpu_s: 50, requires: {}, pinned: false, moves: 0, last_move_ms: -Infinity, peers: [] }));
          return { load: { ...l, processes: per, runnable: per, memory_used_bytes: per * 2 ** 20 }, processes };
        }), mode, seed: 1, limit: 4 };
        // Pack mode consolidates a lightly and evenly loaded cluster on purpose: balanced means full or past half.
        if (mode === "pack" && per > 0 && per <= cpus / 2) return;
        c.nodes.forEach((_, i) => assert.deepEqual(decideAt(c, i, paramsOf(c), 0), []));
      }),
      fuzzParameters(300),
    );
  });

  it("hysteresis: with exact views and no cooldown, a moved process is not moved back", () => {
    fc.assert(
      fc.property(clusterArb({ emergencies: false, share_one: true }), (c) => {
        const params = paramsOf(c, { process_cooldown_ms: 0, moves_per_process_max: 1000 });
        for (let i = 0; i < c.nodes.length; i += 1) {
          const moves = decideAt(c, i, params, 0);
          if (moves.length === 0) continue;
          const after = apply(c, moves);
          for (const m of moves) {
            const k = after.nodes.findIndex((n) => n.load.node === m.to);
            const back = decideAt(after, k, params, 0).filter((d) => d.pid === m.pid && d.to === m.from);
            assert.deepEqual(back, [], `${m.pid} ${m.reason} ${m.from}->${m.to} then back`);
          }
        }
      }),
      fuzzParameters(300),
    );
  });
});

/** The cluster after `moves` (all from one node), with loads and peers' nodes recomputed exactly. */
function apply(c: Cluster, moves: readonly Decision[]): Cluster {
  const where = new Map<string, string>();
  for (const n of c.nodes) for (const p of n.processes) where.set(p.pid, n.load.node);
  for (const m of moves) where.set(m.pid, m.to);
  const everyone = c.nodes.flatMap((n) => n.processes);
  const moved = new Set(moves.map((m) => m.pid));
  const nodes = c.nodes.map((n) => {
    const processes = everyone
      .filter((p) => where.get(p.pid) === n.load.node)
      .map((p) => ({ ...p, moves: p.moves + (moved.has(p.pid) ? 1 : 0), last_move_ms: moved.has(p.pid) ? 0 : p.last_move_ms, peers: p.peers.map((q) => ({ ...q, node: where.get(q.pid) ?? q.node })) }));
    const l = n.load;
    return { load: loadOf(l.node, { cpus: l.cpus, speed: l.speed, labels: { ...l.labels }, draining: l.draining, memory_gib: (l.memory_used_bytes + l.memory_free_bytes) / GIB }, processes), processes };
  });
  return { ...c, nodes };
}
