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
import { satisfies, slowdown, type Labels, type NodeLoad } from "./load.js";
import type { PolicyParams } from "./params.js";
import { memoryFloor, type MoveReason } from "./_round.js";

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
export type Acceptance = { readonly kind: "accept" } | { readonly kind: "refuse"; readonly detail: string };

const ACCEPT: Acceptance = { kind: "accept" };

/** Whether a node whose load is `local` now takes `offer`. */
export function acceptMove(input: { local: NodeLoad; offer: MoveOffer }, params: PolicyParams): Acceptance {
  const { local, offer } = input;
  if (local.draining) return { kind: "refuse", detail: `${local.node} is drained` };
  if (!satisfies(local.labels, offer.requires)) return { kind: "refuse", detail: `${local.node}'s labels do not meet ${offer.pid}'s requirements` };
  const floor = memoryFloor(local, params);
  if (local.memory_free_bytes - offer.memory_bytes < floor) {
    return { kind: "refuse", detail: `${local.node} would have ${fmtMiB(local.memory_free_bytes - offer.memory_bytes)} free, under its floor of ${fmtMiB(floor)}` };
  }
  if (offer.reason === "drain" || offer.reason === "memory") return ACCEPT;
  const after = local.runnable + offer.cpu_share;
  const there_s = slowdown(local, after);
  switch (offer.reason) {
    case "pack":
      return after <= local.cpus ? ACCEPT : { kind: "refuse", detail: `${local.node} would want ${after.toFixed(2)} cores of ${local.cpus}` };
    case "balance":
    case "colocate": {
      // No hysteresis here: the source applied it on its view. This only stops a move that fresher news shows would not help the process at all (a pile-up of stale decisions).
      const here_s = slowdown(offer.source, offer.source.runnable + offer.cpu_share);
      return there_s <= here_s ? ACCEPT : { kind: "refuse", detail: `slowdown ${there_s.toFixed(2)} on ${local.node} now with it, over ${here_s.toFixed(2)} at the source` };
    }
  }
}

function fmtMiB(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(0)} MiB`;
}
