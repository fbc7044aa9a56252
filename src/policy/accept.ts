/**
 * A target's second look at an automatic move (docs/load.md, "A target
 * checks its load"): the source decided on its view, which may be seconds
 * old, and several sources may pick the same quiet node at once. When the
 * move is about to start, the target judges it on its load as it is now,
 * counting the moves it has already accepted, and refuses one that would
 * overload it: it would then be more crowded than the source it relieves
 * (balance), slower than the process was at its source (co-location), past
 * its cores (pack), short of memory, drained, or without the labels the
 * process requires. Evacuations (drain, memory) are refused only for the
 * last three: the process must leave, and a busy target is still better.
 * Pure, like every policy: the daemon and a test call it the same way.
 */
import type { Prng } from "../_prng.js";
import { decide } from "./decide.js";
import type { ViewRecord } from "./exchange.js";
import { satisfies, slowdown, type Labels, type NodeLoad, type ProcessInfo } from "./load.js";
import type { PolicyParams } from "./params.js";
import { memoryFloor, type Move, type MoveReason } from "./_round.js";

/** Targets one automatic move asks at most before it gives up for this round: each refusal was on fresher news than the view, so a fourth ask is unlikely to find better. */
export const MOVE_ASKS_MAX = 3;

/** How long a node that refused a move for a reason the view cannot show (its own memory floor, or its labels or drain as they are now) is left out of its source's decisions: it would otherwise be asked again every round. */
export const REFUSED_AVOID_MS = 2_000;

/**
 * How long a node that refused a move on its load is left out: its answer
 * carries its fresh load, which the next decisions see, so only the rest of
 * the round. Left out for {@link REFUSED_AVOID_MS}, a target that refused
 * one move of a burst (on a source's share readings still low from its
 * starts) took no other for 2 s, while it had idle cores.
 */
export const REFUSED_ON_LOAD_AVOID_MS = 250;

/** How long the source of a move `answer` refused leaves its target out of its decisions. */
export function avoidAfter_ms(answer: { readonly on_load: boolean }): number {
  return answer.on_load ? REFUSED_ON_LOAD_AVOID_MS : REFUSED_AVOID_MS;
}

/** What the source says of a move when it asks the target. */
export interface MoveOffer {
  readonly pid: string;
  readonly reason: MoveReason;
  /** Share of a core the process wants. */
  readonly cpu_share: number;
  readonly memory_bytes: number;
  readonly requires: Labels;
  /** The source now: its cores, their speed, and what its processes want without this one (nor others it is sending away). */
  readonly source: { readonly cpus: number; readonly speed: number; readonly runnable: number };
}

/** The target's answer: take it, or not and why (in words with the figures). */
export type Acceptance =
  | { readonly kind: "accept" }
  /** `on_load`: refused on load figures alone, which the answer's fresh entry shows the source. */
  | { readonly kind: "refuse"; readonly detail: string; readonly on_load: boolean };

const ACCEPT: Acceptance = { kind: "accept" };

/** Whether a node whose load is `local` now takes `offer`. */
export function acceptMove(input: { local: NodeLoad; offer: MoveOffer }, params: PolicyParams): Acceptance {
  const { local, offer } = input;
  if (local.draining) return { kind: "refuse", detail: `${local.node} is drained`, on_load: false };
  if (!satisfies(local.labels, offer.requires)) return { kind: "refuse", detail: `${local.node}'s labels do not meet ${offer.pid}'s requirements`, on_load: false };
  const floor = memoryFloor(local, params);
  if (local.memory_free_bytes - offer.memory_bytes < floor) {
    return { kind: "refuse", detail: `${local.node} would have ${fmtMiB(local.memory_free_bytes - offer.memory_bytes)} free, under its floor of ${fmtMiB(floor)}`, on_load: false };
  }
  if (offer.reason === "drain" || offer.reason === "memory") return ACCEPT;
  const after = local.runnable + offer.cpu_share;
  const there_s = slowdown(local, after);
  switch (offer.reason) {
    case "pack":
      return after <= local.cpus ? ACCEPT : { kind: "refuse", detail: `${local.node} would want ${after.toFixed(2)} cores of ${local.cpus}`, on_load: true };
    case "balance":
    case "colocate": {
      // No hysteresis here: the source applied it on its view. This only stops a move that fresher news shows would not help the process at all (a pile-up of stale decisions).
      const here_s = slowdown(offer.source, offer.source.runnable + offer.cpu_share);
      return there_s <= here_s ? ACCEPT : { kind: "refuse", detail: `slowdown ${there_s.toFixed(2)} on ${local.node} now with it, over ${here_s.toFixed(2)} at the source`, on_load: true };
    }
  }
}

/**
 * The offer the source of `move` sends its target: the process's share,
 * memory and requirements, and the source's load `source` measured without
 * it (nor the others it is sending away).
 */
export function moveOffer(move: Move, figures: { proc: ProcessInfo; source: Pick<NodeLoad, "cpus" | "speed" | "runnable"> }): MoveOffer {
  const { proc, source } = figures;
  return { pid: move.pid, reason: move.reason, cpu_share: proc.cpu_share, memory_bytes: proc.memory_bytes, requires: proc.requires, source: { cpus: source.cpus, speed: source.speed, runnable: source.runnable } };
}

/** What a refused move is decided again on. */
export interface RetargetInput {
  readonly now_ms: number;
  /** The source's load, counting the process. */
  readonly local: NodeLoad;
  readonly proc: ProcessInfo;
  /** The source's view, refreshed by the refusals' answers. */
  readonly view: readonly ViewRecord[];
  /** Nodes that refused this move: not asked again. */
  readonly refused: ReadonlySet<string>;
  readonly random: Prng;
}

/**
 * The move a refusal leaves for `proc`: decided again for it alone, by the
 * same policy, on the view without the nodes that refused it; undefined
 * when none pays any more (it stays).
 */
export function retarget(input: RetargetInput, params: PolicyParams): Move | undefined {
  const { refused } = input;
  const view = input.view.filter((r) => !refused.has(r.load.node));
  for (const m of decide({ now_ms: input.now_ms, local: input.local, processes: [input.proc], view, peer_view: view, random: input.random }, params)) if (m.pid === input.proc.pid) return m;
  return undefined;
}

function fmtMiB(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(0)} MiB`;
}
