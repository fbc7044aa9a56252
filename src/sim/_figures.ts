/** The figures of a run: the imbalance series while it runs, and the report at its end. */
import type { SimReport } from "./report.js";
import { Live, LIVE_FIELDS, State, type SimState } from "./_state.js";

/** Adds a point to the imbalance series: load spread over up nodes, busy nodes, co-located traffic now. */
export function sample(s: SimState): void {
  s.integrate();
  s.checkDrained();
  let sum = 0;
  let sq = 0;
  let max = 0;
  let up = 0;
  let busy = 0;
  for (let n = 0; n < s.c.nodes; n += 1) {
    if (s.up[n] !== 1) continue;
    const k = s.cpu.running(n);
    const l = k / ((s.cpu.cpus[n] as number) * (s.cpu.speed[n] as number));
    sum += l;
    sq += l * l;
    if (l > max) max = l;
    up += 1;
    if (k + (s.incoming[n] as number) > 0) busy += 1;
  }
  const mean = up > 0 ? sum / up : 0;
  const cv = mean > 0 ? Math.sqrt(Math.max(0, sq / up - mean * mean)) / mean : 0;
  s.samples.push({ t_s: round3(s.now), load_cv: round3(cv), max_over_mean: round3(mean > 0 ? max / mean : 0), busy_nodes: busy, colocated_share: round3(s.pair_total > 0 ? s.pair_local / s.pair_total : 0) });
}

/** The report of a finished run that took `wall_ms`. */
export function report(s: SimState, wall_ms: number): SimReport {
  const m = s.c.processes;
  let makespan = 0;
  let stretch = 0;
  let max_moves = 0;
  const first = m > 0 ? (s.w.arrival_s[0] as number) : 0;
  for (let p = 0; p < m; p += 1) {
    if (s.state[p] !== State.done) continue;
    makespan = Math.max(makespan, (s.end_s[p] as number) - first);
    stretch += ((s.end_s[p] as number) - (s.w.arrival_s[p] as number)) / (s.w.work_s[p] as number);
    max_moves = Math.max(max_moves, s.live[p * LIVE_FIELDS + Live.moves] as number);
  }
  return {
    nodes: s.c.nodes,
    processes: m,
    policy: s.c.policy.mode,
    seed: s.c.seed,
    makespan_s: round3(makespan),
    ideal_s: round3(s.ideal_s),
    makespan_over_ideal: round3(s.ideal_s > 0 ? makespan / s.ideal_s : 0),
    mean_stretch: round3(s.done > 0 ? stretch / s.done : 0),
    completed: s.done,
    migrations: {
      total: s.migrations,
      per_process: round3(m > 0 ? s.migrations / m : 0),
      max_per_process: max_moves,
      by_reason: s.by_reason,
      by_strategy: s.by_strategy,
      abandoned: s.abandoned,
      refused: s.refused,
      refused_kept: s.refused_kept,
      expected_ms_mean: round3(s.migrations > 0 ? s.expected_ms / s.migrations : 0),
      took_ms_mean: round3(s.migrations > 0 ? s.actual_ms / s.migrations : 0),
      downtime_ms_mean: round3(s.migrations > 0 ? s.downtime_ms / s.migrations : 0),
    },
    bytes_moved: Math.round(s.bytes_moved),
    information_age_ms: { mean: round3(s.age_n > 0 ? s.age_sum / s.age_n : 0), max: round3(s.age_max) },
    imbalance: thin(s.samples, s.c.samples),
    colocated_traffic_share: round3(s.int_total > 0 ? s.int_local / s.int_total : 0),
    failures: s.failures,
    restarts: s.restarts,
    drain_empty_at_s: s.drain_empty_at === null ? null : round3(s.drain_empty_at),
    invariant_violations: s.violations,
    rounds: s.rounds,
    decision_rounds: s.decision_rounds,
    events: s.events,
    wall_ms: Math.round(wall_ms),
  };
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

/** At most about `n` points of `xs`, evenly spaced, first and last kept. */
function thin<T>(xs: readonly T[], n: number): T[] {
  if (xs.length <= n + 1) return [...xs];
  const out: T[] = [];
  for (let i = 0; i < n; i += 1) out.push(xs[Math.floor((i * (xs.length - 1)) / n)] as T);
  out.push(xs[xs.length - 1] as T);
  return out;
}
