/**
 * Balance, after MOSIX's opportunity cost: move a process when what it is
 * expected to win (its remaining time, run faster elsewhere) beats what the
 * move costs (the transfer, during which it still runs here, and its
 * downtime). Hysteresis: a node acts only when a target is `hysteresis`
 * less loaded than it (`wantsToAct`); then the source must be slower than
 * the destination would be, after the move, by the `hysteresis` share, or
 * the move must even the two out without overshooting (the process runs
 * faster there, and the source left without it is still no faster than the
 * target with it). Neither can look worth undoing on the same figures, and
 * the second takes the last step to an even split that a relative margin
 * alone refuses (5 and 3 jobs on two single cores become 4 and 4: 5 is not
 * 25 % over 4).
 *
 * Processes that talk heavily to others here are chosen last: moving them
 * would undo co-location.
 */
import { slowdown, type ProcessInfo } from "./load.js";
import { commit, estimateFor, expectedRemaining_s, fastestTarget, movable, roomForMoves, trafficWith, type Round, type Target } from "./_round.js";
import type { MigrationEstimate } from "./cost.js";

interface Candidate {
  proc: ProcessInfo;
  target: Target;
  estimate: MigrationEstimate;
  gain_ms: number;
  here_s: number;
  there_s: number;
}

/** Expected gain (ms) of moving `proc` from a node where it is slowed `here_s` to one where it would be slowed `there_s`. */
export function balanceGain_ms(proc: ProcessInfo, figures: { estimate: MigrationEstimate; here_s: number; there_s: number; runtime_prior_s: number }): number {
  const { estimate, here_s, there_s, runtime_prior_s } = figures;
  const remaining_s = Math.max(proc.cpu_s, runtime_prior_s);
  // While its pages flow it still runs here, at 1/here_s of a reference core.
  const running_ms = estimate.total_ms - estimate.downtime_ms;
  const left_s = Math.max(0, remaining_s - running_ms / 1000 / here_s);
  return left_s * (here_s - there_s) * 1000 - estimate.downtime_ms;
}

/** The slowdowns a balance move is judged on. */
export interface MoveSlowdowns {
  /** At the source, counting the process. */
  readonly here_s: number;
  /** At the target, counting the process. */
  readonly there_s: number;
  /** At the target as it is (without the process). */
  readonly target_s: number;
  /** At the source left without the process. */
  readonly left_s: number;
}

/**
 * Whether a process is slowed enough less at the target to move: by the
 * hysteresis margin with it counted there; or, toward a target that is that
 * much less loaded than the source as it is, by evening the two out,
 * overshooting by less than the margin (the source left without it, times
 * the margin, is still no faster than the target with it). Either way the
 * move lowers the slower of the two, and moving it back would need the
 * target, with it, to be `hysteresis` slower than the source left without
 * it, so on the same figures it never ping-pongs.
 *
 * The slack matters on measured figures: 5 and 3 CPU-bound jobs on two
 * single cores read as, say, 4.84 and 2.87 runnable (each job's share is
 * 0.93-0.98 of a core, never quite 1), and "left ≥ there" then compared
 * 3.88 with 3.84 or 3.90 by the noise of the shares: the last step to 4 and
 * 4 waited seconds for a favourable reading. A move that would overshoot
 * (4 and 3 become 3 and 4) still fails it: 3 × 1.25 < 4.
 */
export function worthMoving(s: MoveSlowdowns, hysteresis: number): boolean {
  const margin = 1 + hysteresis;
  return s.here_s > s.there_s * margin || (s.here_s > s.target_s * margin && s.here_s > s.there_s && s.left_s * margin >= s.there_s);
}

function best(processes: readonly ProcessInfo[], round: Round, talkers: boolean): Candidate | undefined {
  const here_s = slowdown(round.local, round.here_runnable);
  // A bound on every target's slowdown: if even it is not worth the move, nothing is, and the scan stops early.
  let floor_s = Infinity;
  for (const t of round.targets) floor_s = Math.min(floor_s, slowdown(t.load, t.runnable));
  if (!(here_s > floor_s * (1 + round.params.hysteresis))) return undefined;
  let chosen: Candidate | undefined;
  for (const proc of processes) {
    // Processes come longest-running first: once the bound falls below the best found, none after can beat it.
    const bound_ms = expectedRemaining_s(proc, round.params) * (here_s - floor_s) * 1000;
    if (bound_ms < round.params.gain_min_ms || (chosen !== undefined && bound_ms < chosen.gain_ms)) break;
    if (!movable(proc, round)) continue;
    const talks = round.params.colocate && trafficWith(proc, round.local.node) >= round.params.colocate_bytes_per_s_min;
    if (talks !== talkers) continue;
    const target = fastestTarget(proc, round);
    if (target === undefined) continue;
    const there_s = slowdown(target.load, target.runnable + proc.cpu_share);
    const figures = { here_s, there_s, target_s: slowdown(target.load, target.runnable), left_s: slowdown(round.local, round.here_runnable - proc.cpu_share) };
    if (!worthMoving(figures, round.params.hysteresis)) continue;
    const estimate = estimateFor(proc, round);
    const gain_ms = balanceGain_ms(proc, { estimate, here_s, there_s, runtime_prior_s: round.params.runtime_prior_s });
    if (gain_ms < round.params.gain_min_ms) continue;
    if (chosen === undefined || gain_ms > chosen.gain_ms || (gain_ms === chosen.gain_ms && proc.pid < chosen.proc.pid)) chosen = { proc, target, estimate, gain_ms, here_s, there_s };
  }
  return chosen;
}

/** Balance moves, best gain first, until nothing pays or the round's limit is reached. */
export function balance(processes: readonly ProcessInfo[], round: Round): void {
  const order = [...processes].sort((a, b) => b.cpu_s - a.cpu_s || (a.pid < b.pid ? -1 : 1));
  processes = order;
  while (roomForMoves(round)) {
    const c = best(processes, round, false) ?? (round.params.colocate ? best(processes, round, true) : undefined);
    if (c === undefined) return;
    const remaining = (): string => expectedRemaining_s(c.proc, round.params).toFixed(1);
    const detail = (): string => `slowdown ${c.here_s.toFixed(2)} here vs ${c.there_s.toFixed(2)} on ${c.target.load.node}; expected gain ${c.gain_ms.toFixed(0)} ms over ${remaining()} s remaining, move ${c.estimate.total_ms.toFixed(0)} ms (downtime ${c.estimate.downtime_ms.toFixed(0)} ms)`;
    commit(round, c.proc, c.target, "balance", c.estimate, detail);
  }
}
