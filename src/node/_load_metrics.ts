/**
 * The load module's Prometheus metrics (docs/operations.md, "Metrics"), in
 * the node's registry beside the others: the node's capacity and load as
 * the policy sees them, guests computing and waiting for a core, the age of
 * the cluster view, and the balancer's decisions and moves. Gauges are read
 * at scrape time (nothing runs between scrapes); counters count as things
 * happen.
 */
import { Counter, Gauge, type Registry } from "prom-client";
import type { NodeLoad, MoveReason, Strategy } from "../policy/mod.js";

/** What a scrape reads from the load module as it is now. */
export interface LoadGauges {
  /** This node's load vector, measured now. */
  load(): NodeLoad;
  /** Guests computing now and guests held at a safe point waiting for a core. */
  guests(): { computing: number; queued: number };
  /** Each view entry's node and age in seconds. */
  viewAges(): { node: string; age_s: number }[];
  /** Measured dirty rates by pid (bytes per second). */
  dirtyRates(): Record<string, number>;
}

/** Every reason a move is decided for (docs/load.md): each is reported, 0 included, so a series never vanishes. */
const REASONS: readonly MoveReason[] = ["drain", "memory", "balance", "colocate", "pack"];

/** Every strategy a move can use. */
const STRATEGIES: readonly Strategy[] = ["stop-copy", "pre-copy", "post-copy", "hybrid"];

/** How an automatic move ended: done, failed at the source or on the way, or refused by its target as it was then. */
export type MoveResult = "succeeded" | "failed" | "refused";

/** How long one measured load vector serves a scrape: a scrape reads it for several gauges. */
const LOAD_SNAPSHOT_MS = 100;

/** The load module's metrics. */
export class LoadMetrics {
  readonly #decisions: Counter<"reason">;
  readonly #moves: Counter<"strategy" | "result">;

  constructor(registry: Registry, gauges: LoadGauges) {
    const registers = [registry];
    let snapshot: { load: NodeLoad; at_ms: number } | null = null;
    const load = (): NodeLoad => {
      const now = performance.now();
      if (snapshot === null || now - snapshot.at_ms > LOAD_SNAPSHOT_MS) snapshot = { load: gauges.load(), at_ms: now };
      return snapshot.load;
    };
    const gauge = (name: string, help: string, read: () => number): void => collectedGauge(registry, name, help, read);
    gauge("ferry_node_cpus", "Guests this node computes at once (--cpus): its capacity.", () => load().cpus);
    gauge("ferry_node_cpus_wanted", "Cores this node's processes want (the sum of their CPU shares, incoming migrations counted as one each): the load the balancer compares with ferry_node_cpus.", () => load().runnable);
    gauge("ferry_node_cpus_used", "Cores this node's guests computed on over the last time slice.", () => load().cpu_used);
    gauge("ferry_node_guests_computing", "Guests computing now (neither waiting in a call nor held for their turn).", () => gauges.guests().computing);
    gauge("ferry_node_guests_queued", "Guests that want a core but are held at a safe point for their turn (--cpus).", () => gauges.guests().queued);
    gauge("ferry_node_memory_free_bytes", "Memory free for processes, as the load module reports it.", () => load().memory_free_bytes);
    gauge("ferry_node_draining", "1 while this node is drained (ferry drain), else 0.", () => (load().draining ? 1 : 0));
    new Gauge({
      name: "ferry_load_view_age_seconds",
      help: "Age of each other node's load in this node's view of the cluster (gossip): what the balancer decides on.",
      labelNames: ["peer"],
      registers,
      collect() {
        this.reset();
        for (const a of gauges.viewAges()) this.set({ peer: a.node }, a.age_s);
      },
    });
    gauge("ferry_load_view_nodes", "Other nodes this node's view of the cluster holds.", () => gauges.viewAges().length);
    new Gauge({
      name: "ferry_process_dirty_bytes_per_second",
      help: "Bytes per second each large process here writes, as the load module last measured it (chooses an automatic move's strategy).",
      labelNames: ["pid"],
      registers,
      collect() {
        this.reset();
        for (const [pid, rate] of Object.entries(gauges.dirtyRates())) this.set({ pid }, rate);
      },
    });
    this.#decisions = new Counter({ name: "ferry_balancer_decisions_total", help: "Automatic moves this node's balancer decided, by reason.", labelNames: ["reason"], registers });
    for (const reason of REASONS) this.#decisions.inc({ reason }, 0);
    this.#moves = new Counter({ name: "ferry_balancer_moves_total", help: "Automatic moves from this node by the strategy used, and how they ended (succeeded, failed, or refused by the target).", labelNames: ["strategy", "result"], registers });
    for (const strategy of STRATEGIES) this.#moves.inc({ strategy, result: "succeeded" }, 0);
  }

  /** The balancer decided a move for `reason`. */
  decided(reason: MoveReason): void {
    this.#decisions.inc({ reason });
  }

  /** An automatic move with `strategy` ended. */
  moved(strategy: Strategy, result: MoveResult): void {
    this.#moves.inc({ strategy, result });
  }
}

/** A gauge in `registry` whose value `read` gives at each scrape (nothing runs between scrapes). */
export function collectedGauge(registry: Registry, name: string, help: string, read: () => number): void {
  new Gauge({
    name,
    help,
    registers: [registry],
    collect() {
      this.set(read());
    },
  });
}
