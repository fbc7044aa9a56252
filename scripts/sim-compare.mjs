#!/usr/bin/env node
// Compares the simulator's reports of two builds for the same seeds, the
// check a speed-up of the simulator must pass: a change that only makes it
// faster gives byte-identical JSON (but for wall_ms) for every configuration.
//
//   node scripts/sim-compare.mjs OLD_DIST NEW_DIST [--nodes 100,1000]
//
// OLD_DIST is a copy of dist/ built from the code before the change (e.g.
// `git worktree add` at that commit, npm run build, copy its dist/). Each
// configuration runs in a process of its own, old then new, and the line
// printed gives both runs' CPU seconds. Exit status 1 if any report differs.
import { execFileSync } from "node:child_process";
import path from "node:path";
import { parseArgs } from "node:util";

const { positionals, values } = parseArgs({ allowPositionals: true, options: { nodes: { type: "string", default: "100,1000" } } });
if (positionals.length !== 2) {
  console.error("usage: node scripts/sim-compare.mjs OLD_DIST NEW_DIST [--nodes 100,1000]");
  process.exit(2);
}
const [old_dist, new_dist] = positionals.map((d) => path.resolve(d));

// Every policy and event the simulator has, each at a small size; then the defaults at each --nodes.
const configs = [
  { nodes: 100 },
  { nodes: 100, recheck: false },
  { nodes: 200, policy: { mode: "pack" }, failures_per_node_hour: 20 },
  { nodes: 200, drain_nodes: [0, 1, 2], drain_at_s: 5, failures_per_node_hour: 10, entry: "uniform", dirty_share_max: 2 },
  { nodes: 300, seed: 7, group_max: 8 },
  ...values.nodes.split(",").map((n) => ({ nodes: Number(n) })),
];

// Runs in a child: prints the report (without wall_ms) on the first line, the CPU seconds on the second.
const child = `
const changes = JSON.parse(process.argv[2]);
const { simulate } = await import(process.argv[1] + "/src/sim/mod.js");
const c0 = process.cpuUsage();
const { wall_ms, ...report } = simulate({ processes: changes.nodes * 100, ...changes });
const cpu = process.cpuUsage(c0);
console.log(JSON.stringify(report));
console.log(((cpu.user + cpu.system) / 1e6).toFixed(1));
`;

function run(dist, changes) {
  const out = execFileSync(process.execPath, ["--input-type=module", "-e", child, dist, JSON.stringify(changes)], { encoding: "utf8", maxBuffer: 64 << 20 });
  const [report, cpu_s] = out.trim().split("\n");
  return { report, cpu_s };
}

let differ = 0;
for (const changes of configs) {
  const a = run(old_dist, changes);
  const b = run(new_dist, changes);
  const same = a.report === b.report;
  if (!same) differ += 1;
  console.log(`${same ? "same" : "DIFFERENT"}  ${JSON.stringify(changes)}  CPU s ${a.cpu_s} -> ${b.cpu_s}`);
}
process.exit(differ === 0 ? 0 : 1);
