/**
 * One node's decision round: `(view, local state, params) → moves`, each
 * with its reason. Pure: the time and the randomness come in the input, so
 * the daemon and the simulator run exactly this.
 *
 * Order of precedence: drain, memory ushering, then balance or pack, then
 * co-location, all within one limit of moves per round.
 */
import type { Prng } from "../_prng.js";
import { balance } from "./balance.js";
import { colocate } from "./colocate.js";
import { drain, usherMemory } from "./evacuate.js";
import { ageOf, type ViewRecord } from "./exchange.js";
import { slowdown, type NodeLoad, type ProcessInfo } from "./load.js";
import { pack } from "./pack.js";
import type { PolicyParams } from "./params.js";
import { memoryFloor, targetsOf, type Decision, type Round } from "./_round.js";

/** What one round decides on. */
export interface DecideInput {
  /** The caller's clock (ms); ages and cooldowns are measured on it. */
  readonly now_ms: number;
  /** This node's own load, measured now. */
  readonly local: NodeLoad;
  /** The processes running (or waiting) here. */
  readonly processes: readonly ProcessInfo[];
  /** Other nodes' load as gossiped (a {@link LoadView}'s records). */
  readonly view: readonly ViewRecord[];
  /** Load of the nodes local processes talk to, heard with their traffic; always considered for co-location. */
  readonly peer_view?: readonly ViewRecord[];
  /** The only randomness a decision may use (sampling the view, breaking ties). */
  readonly random: Prng;
}

/**
 * Whether a round could decide anything, from load vectors alone (no
 * process list needed): {@link decide} returns no moves whenever this is
 * false, so a caller with many nodes builds process lists only where it is
 * true.
 */
export function wantsToAct(input: Pick<DecideInput, "local" | "view" | "now_ms">, params: PolicyParams): boolean {
  const { local, view, now_ms } = input;
  if (params.mode === "none" || params.moves_per_round_max === 0 || local.processes === 0) return false;
  if (local.draining) return true;
  if (local.memory_free_bytes < memoryFloor(local, params)) return true;
  // Past the emergencies, only processes an automatic move may take count.
  if (local.movable === 0) return false;
  if (params.colocate && local.remote_bytes_per_s >= params.colocate_bytes_per_s_min) return true;
  const here_s = slowdown(local, local.runnable);
  const light = local.runnable <= local.cpus * params.pack_light_share;
  for (const r of view) {
    if (r.load.draining || ageOf(r, now_ms) > params.view_age_max_ms) continue;
    if (params.mode === "balance") {
      // The trigger: some target is `hysteresis` less loaded than this node (the smallest process adds almost nothing there, so its load is taken as it is). Once triggered, a move may also just even the two out (balance.ts).
      if (here_s > slowdown(r.load, r.load.runnable) * (1 + params.hysteresis)) return true;
    } else if (r.load.runnable <= r.load.cpus) {
      if (local.runnable > local.cpus) return true;
      if (light && (r.load.runnable > local.runnable || (r.load.runnable === local.runnable && r.load.node < local.node))) return true;
    }
  }
  return false;
}

/** The moves this node decides now, at most `moves_per_round_max`, each with its reason. */
export function decide(input: DecideInput, params: PolicyParams): Decision[] {
  if (!wantsToAct(input, params)) return [];
  const round: Round = {
    now_ms: input.now_ms,
    params,
    local: input.local,
    random: input.random,
    targets: targetsOf(input.view, input.peer_view ?? [], input.now_ms, params, input.random),
    here_runnable: input.local.runnable,
    here_free_bytes: input.local.memory_free_bytes,
    moves: [],
    taken: new Set(),
  };
  if (round.targets.length === 0) return [];
  drain(input.processes, round);
  usherMemory(input.processes, round);
  const sample = sampleOf(input.processes, params.processes_max, input.random);
  if (params.mode === "balance") balance(sample, round);
  else pack(sample, round);
  colocate(sample, round);
  return round.moves;
}

/** At most `k` of `items`, each equally likely (reservoir sampling), in their original order when all fit. */
function sampleOf<T>(items: readonly T[], k: number, random: Prng): readonly T[] {
  if (items.length <= k) return items;
  const out = items.slice(0, k);
  for (let i = k; i < items.length; i += 1) {
    const j = random.int(i + 1);
    if (j < k) out[j] = items[i] as T;
  }
  return out;
}
