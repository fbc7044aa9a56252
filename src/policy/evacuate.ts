/**
 * The two emergencies, which take precedence over every other reason and
 * ignore the per-process cooldown and move cap (but never a pin, and never a
 * process's requirements):
 * - **drain**: a drained node sends every process it can away;
 * - **memory ushering** (MOSIX): a node whose free memory fell below its
 *   floor sends its largest processes to nodes with room, before it runs out.
 */
import { slowdown, type ProcessInfo } from "./load.js";
import { commit, estimateFor, fastestTarget, fits, memoryFloor, roomForMoves, type Round, type Target } from "./_round.js";

function emergencyMovable(proc: ProcessInfo, round: Round): boolean {
  return !proc.pinned && !round.taken.has(proc.pid);
}

/** The fullest target with a free core that `proc` fits (pack mode), else undefined. */
export function fullestWithRoom(proc: ProcessInfo, round: Round): Target | undefined {
  let best: Target | undefined;
  for (const t of round.targets) {
    if (t.runnable + proc.cpu_share > t.load.cpus || !fits(proc, t, round.params)) continue;
    if (best === undefined || t.runnable > best.runnable || (t.runnable === best.runnable && t.load.node < best.load.node)) best = t;
  }
  return best;
}

function targetFor(proc: ProcessInfo, round: Round): Target | undefined {
  if (round.params.mode === "pack") return fullestWithRoom(proc, round) ?? fastestTarget(proc, round);
  return fastestTarget(proc, round);
}

/** Drain: every process that is not pinned leaves, smallest first (most processes out per second of transfer). */
export function drain(processes: readonly ProcessInfo[], round: Round): void {
  if (!round.local.draining) return;
  const order = processes.filter((p) => emergencyMovable(p, round)).sort((a, b) => a.memory_bytes - b.memory_bytes || (a.pid < b.pid ? -1 : 1));
  for (const proc of order) {
    if (!roomForMoves(round)) return;
    const t = targetFor(proc, round);
    if (t === undefined) continue;
    const estimate = estimateFor(proc, round);
    commit(round, proc, t, "drain", estimate, () => `node ${round.local.node} is drained`);
  }
}

/** Memory ushering: largest processes first, until free memory is back above the floor. */
export function usherMemory(processes: readonly ProcessInfo[], round: Round): void {
  const floor = memoryFloor(round.local, round.params);
  if (round.here_free_bytes >= floor) return;
  const order = processes.filter((p) => emergencyMovable(p, round)).sort((a, b) => b.memory_bytes - a.memory_bytes || (a.pid < b.pid ? -1 : 1));
  for (const proc of order) {
    if (round.here_free_bytes >= floor || !roomForMoves(round)) return;
    const t = targetFor(proc, round);
    if (t === undefined) continue;
    const estimate = estimateFor(proc, round);
    const here_free = round.here_free_bytes;
    const there_free = t.free_bytes;
    const there_s = slowdown(t.load, t.runnable + proc.cpu_share);
    const detail = (): string => `free memory ${mib(here_free)} MiB below the floor of ${mib(floor)} MiB; ${t.load.node} has ${mib(there_free)} MiB free (slowdown there ${there_s.toFixed(2)})`;
    commit(round, proc, t, "memory", estimate, detail);
  }
}

function mib(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(0);
}
