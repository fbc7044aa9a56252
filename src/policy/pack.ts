/**
 * Consolidate (`--policy pack`): fill the fewest nodes, so the rest can
 * idle. A node runs at most `cpus` processes at full speed; a node with more
 * sheds the excess to the fullest node with a free core; a node at most
 * `pack_light_share` full empties onto fuller nodes with a free core.
 *
 * No ping-pong: a light node sends only to a node with more runnable
 * processes than it (or as many and a smaller name), and a node fills only
 * up to its cores, so no move is ever worth making back.
 */
import type { NodeLoad, ProcessInfo } from "./load.js";
import { ageOf, type ViewRecord } from "./exchange.js";
import { commit, estimateFor, expectedRemaining_s, fits, movable, roomForMoves, trafficWith, type Round, type Target } from "./_round.js";
import { fullestWithRoom } from "./evacuate.js";

function fuller(t: Target, round: Round, runnable: number): boolean {
  return t.runnable > runnable || (t.runnable === runnable && t.load.node < round.local.node);
}

/** Whether moving `proc` pays at all: it is expected to run longer than the move takes. */
function worthMoving(proc: ProcessInfo, round: Round, total_ms: number): boolean {
  return expectedRemaining_s(proc, round.params) * 1000 > total_ms + round.params.gain_min_ms;
}

/** Pack moves within the round's limit. */
export function pack(processes: readonly ProcessInfo[], round: Round): void {
  const cpus = round.local.cpus;
  // Longest-running first; but those that talk heavily to others here last, as balance chooses: shed, one would be pulled back by co-location as soon as this node had a free core.
  const talks = (p: ProcessInfo): number => (round.params.colocate && trafficWith(p, round.local.node) >= round.params.colocate_bytes_per_s_min ? 1 : 0);
  const order = processes.filter((p) => movable(p, round)).sort((a, b) => talks(a) - talks(b) || b.cpu_s - a.cpu_s || (a.pid < b.pid ? -1 : 1));
  if (round.here_runnable > cpus) {
    for (const proc of order) {
      if (round.here_runnable <= cpus || !roomForMoves(round)) return;
      const t = fullestWithRoom(proc, round);
      if (t === undefined) continue;
      const estimate = estimateFor(proc, round);
      if (!worthMoving(proc, round, estimate.total_ms)) continue;
      const [here, there] = [round.here_runnable, t.runnable];
      commit(round, proc, t, "pack", estimate, () => `${here} runnable on ${cpus} cores; ${t.load.node} had a free core (${there} of ${t.load.cpus} busy)`);
    }
    return;
  }
  const start = round.here_runnable;
  if (round.local.processes === 0 || start > cpus * round.params.pack_light_share) return;
  for (const proc of order) {
    if (!roomForMoves(round)) return;
    let chosen: Target | undefined;
    for (const t of round.targets) {
      if (t.runnable + proc.cpu_share > t.load.cpus || !fuller(t, round, start) || !fits(proc, t, round.params)) continue;
      if (chosen === undefined || t.runnable > chosen.runnable || (t.runnable === chosen.runnable && t.load.node < chosen.load.node)) chosen = t;
    }
    if (chosen === undefined) continue;
    const estimate = estimateFor(proc, round);
    if (!worthMoving(proc, round, estimate.total_ms)) continue;
    const target = chosen;
    const there = chosen.runnable;
    commit(round, proc, chosen, "pack", estimate, () => `${start} runnable on ${cpus} cores: emptying onto ${target.load.node} (${there} of ${target.load.cpus} busy) so this node can idle`);
  }
}

/**
 * Nodes that pack mode leaves idle, ready to power down: no processes, not
 * drained (a drained node is idle for another reason), heard within
 * `age_max_ms`. The node asking includes itself through `local`.
 */
export function idleNodes(input: { local: NodeLoad; view: readonly ViewRecord[]; now_ms: number }, age_max_ms: number): string[] {
  const { local, view, now_ms } = input;
  const out: string[] = [];
  if (local.processes === 0 && !local.draining) out.push(local.node);
  for (const r of view) if (r.load.processes === 0 && !r.load.draining && ageOf(r, now_ms) <= age_max_ms) out.push(r.load.node);
  return out.sort();
}
