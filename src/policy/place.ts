/**
 * Placement at start: where a new process should go (`ferry run` without
 * `--node`). Only nodes whose labels meet its requirements, that are not
 * drained and have the memory are candidates; among them, balance picks the
 * one where it would run fastest, pack the fullest with a free core (else
 * the fastest: an idle node wakes), and both prefer a node where its peers
 * run if that costs nothing. Mode none keeps it where it was asked.
 */
import type { Prng } from "../_prng.js";
import { ageOf, type ViewRecord } from "./exchange.js";
import { satisfies, slowdown, type Labels, type NodeLoad } from "./load.js";
import type { PolicyParams } from "./params.js";
import { memoryFloor } from "./_round.js";

/** What placement knows of a process before it runs. */
export interface NewProcess {
  readonly memory_bytes: number;
  readonly requires: Labels;
  /** Nodes its link peers run on, if it has any yet (a job's later members). */
  readonly peer_nodes: readonly string[];
}

/** The nodes placement chooses among. */
export interface PlaceInput {
  /** The process to place. */
  readonly process: NewProcess;
  readonly now_ms: number;
  /** The node asked to start it, which also holds the view. */
  readonly local: NodeLoad;
  readonly view: readonly ViewRecord[];
  readonly random: Prng;
}

/** A placement on a node whose words are formatted only when read (placement runs once per process started; the getter sits on the prototype). */
class OnNode {
  readonly kind = "node";
  readonly #detail: () => string;

  constructor(
    readonly node: string,
    detail: () => string,
  ) {
    this.#detail = detail;
  }

  get detail(): string {
    return this.#detail();
  }

  toJSON(): { kind: "node"; node: string; detail: string } {
    return { kind: this.kind, node: this.node, detail: this.detail };
  }
}

function on(node: string, detail: () => string): Placement {
  return new OnNode(node, detail);
}

/** Where to start a process, and why; or why nowhere. */
export type Placement = { readonly kind: "node"; readonly node: string; readonly detail: string } | { readonly kind: "nowhere"; readonly detail: string };

function feasible(load: NodeLoad, proc: NewProcess, params: PolicyParams): boolean {
  return !load.draining && satisfies(load.labels, proc.requires) && load.memory_free_bytes - proc.memory_bytes >= memoryFloor(load, params);
}

/** Where `proc` should start. */
export function place(input: PlaceInput, params: PolicyParams): Placement {
  const proc = input.process;
  const candidates: NodeLoad[] = [];
  if (feasible(input.local, proc, params)) candidates.push(input.local);
  if (params.mode === "none" && candidates.length === 1) return { kind: "node", node: input.local.node, detail: "started where asked (policy none)" };
  for (const r of input.view) if (ageOf(r, input.now_ms) <= params.view_age_max_ms && feasible(r.load, proc, params)) candidates.push(r.load);
  if (candidates.length === 0) return { kind: "nowhere", detail: "no node known to meet its requirements with the memory free and not drained" };
  if (params.mode === "pack") {
    let fullest: NodeLoad | undefined;
    for (const c of candidates) {
      if (c.runnable + 1 > c.cpus) continue;
      if (fullest === undefined || c.runnable > fullest.runnable || (c.runnable === fullest.runnable && preferred(c, proc) && !preferred(fullest, proc))) fullest = c;
    }
    if (fullest !== undefined) {
      const f = fullest;
      return on(f.node, () => `fullest node with a free core (${f.runnable} of ${f.cpus} busy)`);
    }
  }
  let best: NodeLoad | undefined;
  let best_s = Infinity;
  let ties = 0;
  for (const c of candidates) {
    const s = slowdown(c, c.runnable + 1);
    if (s < best_s) {
      best = c;
      best_s = s;
      ties = 1;
    } else if (s === best_s) {
      ties += 1;
      if (input.random.int(ties) === 0) best = c;
    }
  }
  const chosen = best as NodeLoad;
  // A peer's node within the hysteresis of the best costs nothing balance would undo.
  for (const c of candidates) {
    if (preferred(c, proc) && slowdown(c, c.runnable + 1) <= best_s * (1 + params.hysteresis) && !preferred(chosen, proc)) {
      return on(c.node, () => `with its peers (slowdown ${slowdown(c, c.runnable + 1).toFixed(2)}, best ${best_s.toFixed(2)})`);
    }
  }
  return on(chosen.node, () => `fastest for it (slowdown ${best_s.toFixed(2)}, ${chosen.runnable} runnable on ${chosen.cpus} cores)`);
}

function preferred(load: NodeLoad, proc: NewProcess): boolean {
  return proc.peer_nodes.includes(load.node);
}
