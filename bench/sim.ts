/**
 * Simulator benchmark: the load policies over simulated clusters of 100,
 * 1,000 and 10,000 nodes (100 processes per node, the defaults of
 * `ferry sim` otherwise), balance against none in the same run, and at
 * 10,000 nodes balance in two parts (two threads) beside one: wall and
 * CPU time of the simulation, makespan over the ideal, migrations per
 * process, information age, the share of traffic kept within a node, the
 * targets' refusals per process, and moves' expected against real time.
 */
import os from "node:os";
import { simConfig, simulateThreaded, type SimReport } from "../src/sim/mod.js";
import type { PolicyMode } from "../src/policy/mod.js";

function row(nodes: number, mode: PolicyMode, r: SimReport, cpu_s: number, parts: number): string {
  const f = (x: number, d = 2): string => x.toFixed(d);
  return `| ${nodes} | ${r.processes} | ${mode} | ${parts} | ${f(r.wall_ms / 1000, 1)} | ${f(cpu_s, 1)} | ${f(r.makespan_s, 0)} / ${f(r.ideal_s, 0)} = ${f(r.makespan_over_ideal)} | ${f(r.mean_stretch)} | ${f(r.migrations.per_process, 3)} | ${r.migrations.max_per_process} | ${f(r.information_age_ms.mean, 0)} | ${f(r.colocated_traffic_share)} | ${f(r.migrations.refused / Math.max(1, r.processes), 3)} | ${f(r.migrations.expected_ms_mean, 0)} / ${f(r.migrations.took_ms_mean, 0)} | ${r.invariant_violations} |`;
}

/** Runs the simulator benchmark and prints its table. */
export async function simBench(quick: boolean): Promise<void> {
  const sizes = quick ? [100, 1000] : [100, 1000, 10_000];
  console.log(`\n(m) simulator: 100 processes per node, seed 1, the defaults of ferry sim otherwise (load average ${os.loadavg()[0]?.toFixed(1)} on ${os.cpus().length} cores at the start)`);
  console.log("| nodes | processes | policy | parts | wall s | CPU s | makespan / ideal s | mean stretch | migrations/process | max per process | info age ms | co-located traffic | refusals/process | move ms expected / took | violations |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
  for (const nodes of sizes) {
    // `ferry sim`'s way: from 2,000 nodes on, two parts on two threads (the process's CPU time counts both);
    // there, balance also in one part (the sequential model) beside it, in the same run.
    const parts = simConfig({ nodes }).partitions;
    const runs: [PolicyMode, number][] = [["balance", parts], ...(parts > 1 ? [["balance", 1] as [PolicyMode, number]] : []), ["none", simConfig({ nodes, policy: { mode: "none" } }).partitions]];
    for (const [mode, partitions] of runs) {
      const c0 = process.cpuUsage();
      const r = await simulateThreaded({ nodes, processes: nodes * 100, partitions, policy: { mode } });
      const cpu = process.cpuUsage(c0);
      console.log(row(nodes, mode, r, (cpu.user + cpu.system) / 1e6, partitions));
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
}
