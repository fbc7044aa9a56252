/**
 * Co-location, after Orleans' repartitioning by the message graph: a process
 * that talks more to processes on another node than to those here moves
 * there, while balance allows (the destination, with it, is no slower than
 * this node is now, so balance can never send it back), or in pack mode
 * while packing allows (a free core there, and there at least as full as
 * here).
 *
 * Of a pair split across two nodes only one side moves: a process moves
 * toward a node only if a peer there has a smaller pid. Both sides apply the
 * same rule on the same pids, so a pair never swaps places.
 */
import { slowdown, type ProcessInfo } from "./load.js";
import { commit, estimateFor, fits, movable, roomForMoves, trafficWith, type Round, type Target } from "./_round.js";

interface Pull {
  proc: ProcessInfo;
  target: Target;
  there_bytes_per_s: number;
  here_bytes_per_s: number;
}

function pullOf(proc: ProcessInfo, round: Round): Pull | undefined {
  if (proc.peers.length === 0 || !movable(proc, round)) return undefined;
  const here = trafficWith(proc, round.local.node);
  let chosen: Pull | undefined;
  for (const peer of proc.peers) {
    if (peer.node === round.local.node || !(peer.pid < proc.pid)) continue;
    if (chosen !== undefined && chosen.target.load.node === peer.node) continue;
    const there = trafficWith(proc, peer.node);
    if (there < round.params.colocate_bytes_per_s_min || there <= here) continue;
    if (chosen !== undefined && there <= chosen.there_bytes_per_s) continue;
    const target = round.targets.find((t) => t.load.node === peer.node);
    if (target === undefined || !fits(proc, target, round.params)) continue;
    chosen = { proc, target, there_bytes_per_s: there, here_bytes_per_s: here };
  }
  return chosen;
}

function balanceAllows(round: Round, proc: ProcessInfo, t: Target): boolean {
  // Pack: onto a free core of a node that, with it, is at least as full as this one is now. Pulled toward a lighter node, a process would undo the move that emptied that node, and pack would send it off again.
  if (round.params.mode === "pack") return t.runnable + proc.cpu_share <= t.load.cpus && t.runnable + proc.cpu_share >= round.here_runnable;
  return slowdown(t.load, t.runnable + proc.cpu_share) <= slowdown(round.local, round.here_runnable);
}

/** Co-location moves, heaviest traffic first, within the round's limit. */
export function colocate(processes: readonly ProcessInfo[], round: Round): void {
  if (!round.params.colocate || round.params.mode === "none") return;
  const pulls: Pull[] = [];
  for (const proc of processes) {
    const pull = pullOf(proc, round);
    if (pull !== undefined) pulls.push(pull);
  }
  pulls.sort((a, b) => b.there_bytes_per_s - a.there_bytes_per_s || (a.proc.pid < b.proc.pid ? -1 : 1));
  for (const pull of pulls) {
    if (!roomForMoves(round)) return;
    if (round.taken.has(pull.proc.pid) || !fits(pull.proc, pull.target, round.params) || !balanceAllows(round, pull.proc, pull.target)) continue;
    const estimate = estimateFor(pull.proc, round);
    const kib = (x: number): string => (x / 1024).toFixed(0);
    const detail = (): string => `talks ${kib(pull.there_bytes_per_s)} KiB/s with processes on ${pull.target.load.node}, ${kib(pull.here_bytes_per_s)} KiB/s here`;
    commit(round, pull.proc, pull.target, "colocate", estimate, detail);
  }
}
