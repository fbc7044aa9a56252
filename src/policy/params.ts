/**
 * The knobs of the load module, named in one place with the reason for each
 * default. `ferry policy` will show and change them at run time; the
 * simulator takes them from its command line.
 */
import { MIGRATION_MODEL_DEFAULT, type MigrationModel } from "./cost.js";

/** What the automatic moves aim for: even load, the fewest busy nodes, or nothing. */
export type PolicyMode = "balance" | "pack" | "none";

/** All parameters of one policy. */
export interface PolicyParams {
  readonly mode: PolicyMode;
  /** Pull heavy-talking pairs onto one node (while balance allows). */
  readonly colocate: boolean;
  /** Moves one node decides per round, all reasons together: bounds the churn a stale view can cause. */
  readonly moves_per_round_max: number;
  /** Automatic moves of one process over its life (drain and memory ushering excepted). */
  readonly moves_per_process_max: number;
  /** A process that moved is left alone this long (drain and memory ushering excepted). */
  readonly process_cooldown_ms: number;
  /** Balance moves only if the source's slowdown exceeds the destination's (after the move) by this share: no ping-pong. */
  readonly hysteresis: number;
  /** A balance move must win at least this much of the process's time, after its own cost. */
  readonly gain_min_ms: number;
  /** Remaining run time expected of a process with no history; after that, as long again as it has run (a process that has run long tends to run long). */
  readonly runtime_prior_s: number;
  /** View entries older than this are not trusted for decisions (their node may have changed or died). */
  readonly view_age_max_ms: number;
  /** Processes balance, co-location and pack consider per round at most (a random sample when more run here): bounds a round's cost on a crowded node. */
  readonly processes_max: number;
  /** Targets one decision considers at most (a random sample of the view if it holds more). */
  readonly targets_max: number;
  /** Pair traffic that counts as heavy talk. */
  readonly colocate_bytes_per_s_min: number;
  /** Memory ushering starts when free memory falls below the larger of this... */
  readonly memory_free_min_bytes: number;
  /** ...and this share of the node's memory. */
  readonly memory_free_min_share: number;
  /** In pack mode a node this full or less (share of its cpus) empties onto fuller nodes. */
  readonly pack_light_share: number;
  /** The migration cost model. */
  readonly model: MigrationModel;
}

/** Defaults: a balancer that moves when it clearly pays and never oscillates. */
export const POLICY_PARAMS_DEFAULT: PolicyParams = {
  mode: "balance",
  colocate: true,
  moves_per_round_max: 4,
  moves_per_process_max: 8,
  process_cooldown_ms: 10_000,
  hysteresis: 0.25,
  gain_min_ms: 500,
  runtime_prior_s: 2,
  view_age_max_ms: 5_000,
  targets_max: 16,
  processes_max: 8,
  colocate_bytes_per_s_min: 64 * 1024,
  memory_free_min_bytes: 256 * 1024 * 1024,
  memory_free_min_share: 0.05,
  pack_light_share: 0.5,
  model: MIGRATION_MODEL_DEFAULT,
};

/** `base` with `changes` applied, checked: a bad value is a programmer's or a user's error, never silently clamped. */
export function policyParams(changes: Partial<PolicyParams> = {}, base: PolicyParams = POLICY_PARAMS_DEFAULT): PolicyParams {
  const p: PolicyParams = { ...base, ...changes };
  const counts: (keyof PolicyParams)[] = ["moves_per_round_max", "moves_per_process_max", "targets_max", "processes_max"];
  for (const key of counts) {
    const v = p[key];
    if (!(typeof v === "number" && Number.isInteger(v) && v >= 0)) throw new RangeError(`${key} must be a whole number, not ${String(v)}`);
  }
  const nonneg: (keyof PolicyParams)[] = ["process_cooldown_ms", "hysteresis", "gain_min_ms", "runtime_prior_s", "view_age_max_ms", "colocate_bytes_per_s_min", "memory_free_min_bytes", "memory_free_min_share", "pack_light_share"];
  for (const key of nonneg) {
    const v = p[key];
    if (!(typeof v === "number" && Number.isFinite(v) && v >= 0)) throw new RangeError(`${key} must be a finite number >= 0, not ${String(v)}`);
  }
  if (p.mode !== "balance" && p.mode !== "pack" && p.mode !== "none") throw new RangeError(`mode must be balance, pack or none, not ${String(p.mode)}`);
  return p;
}
