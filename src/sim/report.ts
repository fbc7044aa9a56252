/** What `ferry sim` prints: the figures of one run. */
import type { MoveReason, PolicyMode, Strategy } from "../policy/mod.js";

/** One point of the imbalance series. */
export interface ImbalanceSample {
  readonly t_s: number;
  /** Coefficient of variation of per-node load (running processes over cores times speed), up nodes. */
  readonly load_cv: number;
  /** Most loaded node's load over the mean. */
  readonly max_over_mean: number;
  /** Nodes running at least one process. */
  readonly busy_nodes: number;
  /** Share of the traffic between live pairs that stays within a node, at this moment. */
  readonly colocated_share: number;
}

/** The result of a simulation. */
export interface SimReport {
  readonly nodes: number;
  readonly processes: number;
  readonly policy: PolicyMode;
  readonly seed: number;
  /** First arrival to last completion. */
  readonly makespan_s: number;
  /** A lower bound: the larger of all work over all capacity and the longest single job from its arrival on the fastest node. */
  readonly ideal_s: number;
  readonly makespan_over_ideal: number;
  /** Mean over processes of (completion - arrival) / CPU time. */
  readonly mean_stretch: number;
  readonly completed: number;
  readonly migrations: {
    readonly total: number;
    readonly per_process: number;
    readonly max_per_process: number;
    readonly by_reason: Record<MoveReason, number>;
    readonly by_strategy: Record<Strategy, number>;
    /** Moves decided but not started (target down, process gone) or abandoned (process ended first, target failed). */
    readonly abandoned: number;
    /** Asks a target refused on its load then (each refused move is decided again elsewhere), and moves that found no target that took them (the process stayed). */
    readonly refused: number;
    readonly refused_kept: number;
    /** Mean over started moves of the time the source's estimate gave (on the dirty rate it had measured), the time the move took (on the process's real rate), and its downtime, ms. */
    readonly expected_ms_mean: number;
    readonly took_ms_mean: number;
    readonly downtime_ms_mean: number;
  };
  readonly bytes_moved: number;
  /** Age of view entries when decisions were made (ms). */
  readonly information_age_ms: { readonly mean: number; readonly max: number };
  readonly imbalance: readonly ImbalanceSample[];
  /** Time-weighted share of pair traffic within a node, over the run. */
  readonly colocated_traffic_share: number;
  readonly failures: number;
  /** Processes restarted from the beginning because their node failed. */
  readonly restarts: number;
  /** When every drained node was empty (null: none drained or never). */
  readonly drain_empty_at_s: number | null;
  /** Processes found on a node without their required labels, or started on a drained node: always 0. */
  readonly invariant_violations: number;
  /** Gossip rounds of up nodes, and those whose load vectors called for a decision (the rest cost no process list). */
  readonly rounds: number;
  readonly decision_rounds: number;
  readonly events: number;
  readonly wall_ms: number;
}
