/** The figures of a run: the imbalance series while it runs, and the report at its end. */
import type { MoveReason, Strategy } from "../policy/mod.js";
import type { SimConfig } from "./config.js";
import type { ImbalanceSample, SimReport } from "./report.js";
import { Live, LIVE_FIELDS, State, type SimState } from "./_state.js";

/** Adds a point to the imbalance series: load spread over up nodes, busy nodes, co-located traffic now. */
export function sample(s: SimState): void {
  s.integrate();
  s.checkDrained();
  samplePush(s, [sampleSums(s)]);
}

/** A sample's sums over the up nodes this part owns: load, its square, its maximum, up nodes, busy nodes. */
export function sampleSums(s: SimState): [number, number, number, number, number] {
  let sum = 0;
  let sq = 0;
  let max = 0;
  let up = 0;
  let busy = 0;
  for (let n = 0; n < s.c.nodes; n += 1) {
    if (s.up[n] !== 1 || !s.owns(n)) continue;
    const k = s.cpu.running(n);
    const l = k / ((s.cpu.cpus[n] as number) * (s.cpu.speed[n] as number));
    sum += l;
    sq += l * l;
    if (l > max) max = l;
    up += 1;
    if (k + (s.incoming[n] as number) > 0) busy += 1;
  }
  return [sum, sq, max, up, busy];
}

/** Adds the point the sums of every part make, in part order, at `t_s` (now, unless given). */
export function samplePush(s: SimState, parts: readonly (readonly number[])[], t_s = s.now): void {
  let [sum, sq, max, up, busy] = [0, 0, 0, 0, 0];
  for (const p of parts) {
    sum += p[0] as number;
    sq += p[1] as number;
    max = Math.max(max, p[2] as number);
    up += p[3] as number;
    busy += p[4] as number;
  }
  const mean = up > 0 ? sum / up : 0;
  const cv = mean > 0 ? Math.sqrt(Math.max(0, sq / up - mean * mean)) / mean : 0;
  s.samples.push({ t_s: round3(t_s), load_cv: round3(cv), max_over_mean: round3(mean > 0 ? max / mean : 0), busy_nodes: busy, colocated_share: round3(s.pair_total > 0 ? s.pair_local / s.pair_total : 0) });
}

/**
 * What a run (or one part of it) adds up to at its end: the report is made
 * from these, summed over the parts ({@link combine}).
 */
export interface Figures {
  makespan: number;
  stretch: number;
  max_moves: number;
  done: number;
  migrations: number;
  abandoned: number;
  refused: number;
  refused_kept: number;
  bytes_moved: number;
  expected_ms: number;
  actual_ms: number;
  downtime_ms: number;
  by_reason: Record<MoveReason, number>;
  by_strategy: Record<Strategy, number>;
  age_sum: number;
  age_n: number;
  age_max: number;
  failures: number;
  restarts: number;
  violations: number;
  rounds: number;
  decision_rounds: number;
  events: number;
  /** The same in every part (each replays all the link traffic, and takes the samples and the drain check at the syncs). */
  int_total: number;
  int_local: number;
  drain_empty_at: number | null;
  samples: ImbalanceSample[];
  ideal_s: number;
}

/** The figures of `s`: over the processes that ended on its nodes (all of them, with one part). */
export function figuresOf(s: SimState): Figures {
  const m = s.c.processes;
  let makespan = 0;
  let stretch = 0;
  let max_moves = 0;
  const first = m > 0 ? (s.w.arrival_s[0] as number) : 0;
  for (let p = 0; p < m; p += 1) {
    if (s.state[p] !== State.done || !s.owns(s.at[p] as number)) continue;
    makespan = Math.max(makespan, (s.end_s[p] as number) - first);
    stretch += ((s.end_s[p] as number) - (s.w.arrival_s[p] as number)) / (s.w.work_s[p] as number);
    max_moves = Math.max(max_moves, s.live[p * LIVE_FIELDS + Live.moves] as number);
  }
  return {
    makespan,
    stretch,
    max_moves,
    done: s.done,
    migrations: s.migrations,
    abandoned: s.abandoned,
    refused: s.refused,
    refused_kept: s.refused_kept,
    bytes_moved: s.bytes_moved,
    expected_ms: s.expected_ms,
    actual_ms: s.actual_ms,
    downtime_ms: s.downtime_ms,
    by_reason: { ...s.by_reason },
    by_strategy: { ...s.by_strategy },
    age_sum: s.age_sum,
    age_n: s.age_n,
    age_max: s.age_max,
    failures: s.failures,
    restarts: s.restarts,
    violations: s.violations,
    rounds: s.rounds,
    decision_rounds: s.decision_rounds,
    events: s.events,
    int_total: s.int_total,
    int_local: s.int_local,
    drain_empty_at: s.drain_empty_at,
    samples: s.samples,
    ideal_s: s.ideal_s,
  };
}

/** The figures of a run from those of its parts, in part order: sums, maxima, and what every part holds alike from the first. */
export function combine(parts: readonly Figures[]): Figures {
  const [first, ...rest] = parts as [Figures, ...Figures[]];
  const f: Figures = { ...first, by_reason: { ...first.by_reason }, by_strategy: { ...first.by_strategy } };
  for (const p of rest) {
    f.makespan = Math.max(f.makespan, p.makespan);
    f.max_moves = Math.max(f.max_moves, p.max_moves);
    f.age_max = Math.max(f.age_max, p.age_max);
    for (const k of ["stretch", "done", "migrations", "abandoned", "refused", "refused_kept", "bytes_moved", "expected_ms", "actual_ms", "downtime_ms", "age_sum", "age_n", "failures", "restarts", "violations", "rounds", "decision_rounds", "events"] as const) f[k] += p[k];
    for (const k of Object.keys(f.by_reason) as MoveReason[]) f.by_reason[k] += p.by_reason[k];
    for (const k of Object.keys(f.by_strategy) as Strategy[]) f.by_strategy[k] += p.by_strategy[k];
  }
  return f;
}

/** The report of a finished run that took `wall_ms`. */
export function report(f: Figures, c: SimConfig, wall_ms: number): SimReport {
  const m = c.processes;
  return {
    nodes: c.nodes,
    processes: m,
    policy: c.policy.mode,
    seed: c.seed,
    makespan_s: round3(f.makespan),
    ideal_s: round3(f.ideal_s),
    makespan_over_ideal: round3(f.ideal_s > 0 ? f.makespan / f.ideal_s : 0),
    mean_stretch: round3(f.done > 0 ? f.stretch / f.done : 0),
    completed: f.done,
    migrations: {
      total: f.migrations,
      per_process: round3(m > 0 ? f.migrations / m : 0),
      max_per_process: f.max_moves,
      by_reason: f.by_reason,
      by_strategy: f.by_strategy,
      abandoned: f.abandoned,
      refused: f.refused,
      refused_kept: f.refused_kept,
      expected_ms_mean: round3(f.migrations > 0 ? f.expected_ms / f.migrations : 0),
      took_ms_mean: round3(f.migrations > 0 ? f.actual_ms / f.migrations : 0),
      downtime_ms_mean: round3(f.migrations > 0 ? f.downtime_ms / f.migrations : 0),
    },
    bytes_moved: Math.round(f.bytes_moved),
    information_age_ms: { mean: round3(f.age_n > 0 ? f.age_sum / f.age_n : 0), max: round3(f.age_max) },
    imbalance: thin(f.samples, c.samples),
    colocated_traffic_share: round3(f.int_total > 0 ? f.int_local / f.int_total : 0),
    failures: f.failures,
    restarts: f.restarts,
    drain_empty_at_s: f.drain_empty_at === null ? null : round3(f.drain_empty_at),
    invariant_violations: f.violations,
    rounds: f.rounds,
    decision_rounds: f.decision_rounds,
    events: f.events,
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
