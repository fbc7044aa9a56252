/**
 * One node's decision round: the targets it may send to, its own load as
 * the round's moves change it, and the moves so far. Every sub-policy
 * (evacuate, balance, co-locate, pack) works on this, so a target chosen by
 * one is seen as fuller by the next and the per-round limit holds for all.
 */
import type { Prng } from "../_prng.js";
import { chooseStrategy, estimateMigration, type MigrationEstimate, type Strategy } from "./cost.js";
import { ageOf, type ViewRecord } from "./exchange.js";
import { satisfies, slowdown, type NodeLoad, type ProcessInfo } from "./load.js";
import type { PolicyParams } from "./params.js";

/** Why a process moves. */
export type MoveReason = "drain" | "memory" | "balance" | "colocate" | "pack";

/** One automatic move, with the reason and the expected cost, to be recorded as an event. */
export interface Move {
  readonly kind: "move";
  readonly pid: string;
  readonly from: string;
  readonly to: string;
  readonly reason: MoveReason;
  readonly strategy: Strategy;
  readonly estimate: MigrationEstimate;
  /** Why, in words with the figures that decided it. */
  readonly detail: string;
}

/**
 * A move as decided. Its words are formatted only when read: a simulation
 * decides millions of moves and reads none. (A class, so the getter lives on
 * the prototype: a getter in an object literal gives every object its own
 * hidden class.)
 */
class PlannedMove implements Move {
  readonly kind = "move";
  readonly strategy: Strategy;
  readonly #detail: () => string;

  constructor(
    readonly pid: string,
    readonly from: string,
    readonly to: string,
    readonly reason: MoveReason,
    readonly estimate: MigrationEstimate,
    detail: () => string,
  ) {
    this.strategy = estimate.strategy;
    this.#detail = detail;
  }

  get detail(): string {
    return this.#detail();
  }

  toJSON(): Omit<Move, "detail"> & { detail: string } {
    return { kind: this.kind, pid: this.pid, from: this.from, to: this.to, reason: this.reason, strategy: this.strategy, estimate: this.estimate, detail: this.detail };
  }
}

/** A decision of a round (only moves so far; a union keyed on `kind` so more can come). */
export type Decision = Move;

/** A node a process may go to, with its load as this round's moves change it. */
export interface Target {
  readonly load: NodeLoad;
  readonly age_ms: number;
  runnable: number;
  free_bytes: number;
}

/** The mutable state of one round. */
export interface Round {
  readonly now_ms: number;
  readonly params: PolicyParams;
  readonly local: NodeLoad;
  readonly random: Prng;
  readonly targets: Target[];
  here_runnable: number;
  here_free_bytes: number;
  readonly moves: Move[];
  readonly taken: Set<string>;
}

/** Free memory below which `load`'s node is short: ushering starts, and nothing is sent there. */
export function memoryFloor(load: NodeLoad, params: PolicyParams): number {
  return Math.max(params.memory_free_min_bytes, params.memory_free_min_share * (load.memory_used_bytes + load.memory_free_bytes));
}

/**
 * The targets of a round: view entries young enough to trust, not draining,
 * at most `targets_max` of them (a random sample when the view holds more),
 * plus every usable entry of `peer_view` (the nodes local processes talk
 * to), which co-location needs whatever the sample holds.
 */
export function targetsOf(view: readonly ViewRecord[], peer_view: readonly ViewRecord[], now_ms: number, params: PolicyParams, random: Prng): Target[] {
  const out: Target[] = [];
  for (const r of peer_view) {
    const age_ms = ageOf(r, now_ms);
    if (r.load.draining || age_ms > params.view_age_max_ms || namedIn(out, out.length, r.load.node)) continue;
    out.push({ load: r.load, age_ms, runnable: r.load.runnable, free_bytes: r.load.memory_free_bytes });
  }
  const base = out.length;
  let seen = 0;
  for (const r of view) {
    const age_ms = ageOf(r, now_ms);
    if (r.load.draining || age_ms > params.view_age_max_ms || namedIn(out, base, r.load.node)) continue;
    seen += 1;
    if (out.length - base < params.targets_max) out.push({ load: r.load, age_ms, runnable: r.load.runnable, free_bytes: r.load.memory_free_bytes });
    else {
      // Reservoir sampling: every fresh entry equally likely to be considered.
      const j = random.int(seen);
      if (j < params.targets_max) out[base + j] = { load: r.load, age_ms, runnable: r.load.runnable, free_bytes: r.load.memory_free_bytes };
    }
  }
  return out;
}

/**
 * Whether one of the first `count` targets is about `node`. A scan, not a
 * set: the peer targets are a handful, and a round that builds a set for
 * them costs more than it saves.
 */
function namedIn(targets: readonly Target[], count: number, node: string): boolean {
  for (let i = 0; i < count; i += 1) if ((targets[i] as Target).load.node === node) return true;
  return false;
}

/** Whether `proc` may land on `t`: its requirements hold and the memory fits above the floor. */
export function fits(proc: ProcessInfo, t: Target, params: PolicyParams): boolean {
  return satisfies(t.load.labels, proc.requires) && t.free_bytes - proc.memory_bytes >= memoryFloor(t.load, params);
}

/** Whether an automatic (not an emergency) move of `proc` is allowed now: not pinned, not moved too often or too recently. */
export function movable(proc: ProcessInfo, round: Round): boolean {
  return !proc.pinned && proc.moves < round.params.moves_per_process_max && round.now_ms - proc.last_move_ms >= round.params.process_cooldown_ms && !round.taken.has(proc.pid);
}

/** The feasible target where `proc` would run fastest, ties broken by fewer runnable then at random. */
export function fastestTarget(proc: ProcessInfo, round: Round): Target | undefined {
  let best: Target | undefined;
  let best_s = Infinity;
  let ties = 0;
  for (const t of round.targets) {
    if (!fits(proc, t, round.params)) continue;
    const s = slowdown(t.load, t.runnable + proc.cpu_share);
    if (s < best_s || (s === best_s && best !== undefined && t.runnable < best.runnable)) {
      best = t;
      best_s = s;
      ties = 1;
    } else if (s === best_s && best !== undefined && t.runnable === best.runnable) {
      ties += 1;
      if (round.random.int(ties) === 0) best = t;
    }
  }
  return best;
}

/** Expected remaining CPU time of `proc`, reference-core seconds: as long again as it has run, at least the prior. */
export function expectedRemaining_s(proc: ProcessInfo, params: PolicyParams): number {
  return Math.max(proc.cpu_s, params.runtime_prior_s);
}

/** The cost of moving `proc` from this node, with the strategy the model picks. */
export function estimateFor(proc: ProcessInfo, round: Round): MigrationEstimate {
  const rate = round.local.transfer_bytes_per_s > 0 ? round.local.transfer_bytes_per_s : round.params.model.transfer_bytes_per_s;
  const model = round.params.model;
  // Spelled out rather than spread: balance estimates every candidate of every round.
  return estimateMigration(proc, { strategy: chooseStrategy(proc, { rate_bytes_per_s: rate, model }), rate_bytes_per_s: rate, model });
}

/** Whether the round may still move. */
export function roomForMoves(round: Round): boolean {
  return round.moves.length < round.params.moves_per_round_max;
}

/** Records the move of `proc` to `t` and updates both sides' projected load. */
export function commit(round: Round, proc: ProcessInfo, t: Target, reason: MoveReason, estimate: MigrationEstimate, detail: () => string): void {
  round.moves.push(new PlannedMove(proc.pid, round.local.node, t.load.node, reason, estimate, detail));
  round.taken.add(proc.pid);
  round.here_runnable -= proc.cpu_share;
  round.here_free_bytes += proc.memory_bytes;
  t.runnable += proc.cpu_share;
  t.free_bytes -= proc.memory_bytes;
}

/** Traffic of `proc` with peers on `node`. */
export function trafficWith(proc: ProcessInfo, node: string): number {
  let sum = 0;
  for (const p of proc.peers) if (p.node === node) sum += p.bytes_per_s;
  return sum;
}
