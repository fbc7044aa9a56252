/**
 * A node's cores shared among its guests (`--cpus N`): at most N guests
 * compute at once; the others are held at a safe point (`GuestProcess.hold`,
 * no unwinding) and take turns, fairly, every slice. Fair is by virtual
 * time, as Linux's CFS: the guests that computed least here run next, and a
 * guest that arrives (started or migrated in) starts at the least virtual
 * time of those already here, so it neither starves them nor waits behind
 * them.
 *
 * The same pass measures each guest's real use from its worker's counters:
 * CPU time, and the share of a core it wants (time computing or held, over
 * wall time): what the load module reports, not what was requested.
 */
import type { GuestProcess } from "../runtime/mod.js";

/** How often the turns change: long enough that holding costs nothing measurable, short enough that 8 guests on a core each run every second. */
export const SLICE_MS = 100;

/** Weight of the newest sample in a guest's CPU share: a change in behaviour shows within a few slices, one odd slice does not swing it. */
const SHARE_SMOOTHING = 0.3;

/** What the scheduler keeps of one guest. */
export interface GuestSlot {
  /** Milliseconds it computed on this node. */
  cpu_ms: number;
  /** Share of one core it wants lately (0..1): 1 when CPU-bound. */
  cpu_share: number;
  /** Virtual time: what it computed here, from a start level that is fair to those already here. */
  vruntime_ms: number;
  /** When it was first seen here (the caller's clock). */
  first_seen_ms: number;
  /** The worker's counters at the last pass. */
  last_busy_ms: number;
  last_paused_ms: number;
  /** Computed and held since the share was last measured. */
  window_busy_ms: number;
  window_held_ms: number;
}

/** The pass's figures for the node's load vector. */
export interface SchedulerSample {
  /** Cores the guests want (sum of their shares). */
  runnable: number;
  /** Cores the guests used over the last pass. */
  cpu_used: number;
  /** Guests let compute by the last pass that wanted to. */
  computing: number;
  /** Guests the last pass held at a safe point for their turn. */
  queued: number;
}

/** A node's CPU scheduler. The caller runs {@link pass} every {@link SLICE_MS}. */
export class CpuScheduler {
  #cpus: number;
  readonly #slots = new Map<GuestProcess, GuestSlot>();
  /**
   * Slots of guests that hibernated: kept aside, not looked at each pass (a
   * hibernated guest has no worker to measure and wants no core), and taken
   * back when it wakes. Weak: one that ends asleep takes its slot with it.
   */
  readonly #asleep = new WeakMap<GuestProcess, GuestSlot>();
  /** When shares and use were last measured: a pass run early (a guest left) counts toward the next measurement, not one of its own. */
  #window_ms = -1;
  #window_used_ms = 0;
  #sample: SchedulerSample = { runnable: 0, cpu_used: 0, computing: 0, queued: 0 };

  constructor(cpus: number) {
    this.#cpus = checkCpus(cpus);
  }

  /** Guests that compute at once. */
  get cpus(): number {
    return this.#cpus;
  }

  /** The last pass's figures. */
  get sample(): SchedulerSample {
    return this.#sample;
  }

  /** What is known of `proc`, if it was seen here. */
  slot(proc: GuestProcess): GuestSlot | undefined {
    return this.#slots.get(proc) ?? this.#asleep.get(proc);
  }

  /**
   * Measures every guest in `procs` (those running here now that are not
   * hibernated) and decides who computes until the next pass. Guests that
   * left are forgotten; those that hibernated are set aside until they wake.
   */
  pass(procs: readonly GuestProcess[], now_ms: number): void {
    if (this.#window_ms < 0) this.#window_ms = now_ms;
    // Shares are measured over a slice at least, however often passes run: a window of a few ms says nothing.
    const window_ms = now_ms - this.#window_ms;
    const measure = window_ms >= SLICE_MS / 2;
    const here = new Set(procs);
    for (const [p, slot] of this.#slots) {
      if (here.has(p)) continue;
      this.#slots.delete(p);
      if (p.hibernated) {
        // It wants no core while asleep; a hold it had must not outlast it into its wake.
        p.hold(false);
        slot.cpu_share = 0;
        this.#asleep.set(p, slot);
      }
    }
    let floor = Infinity;
    for (const s of this.#slots.values()) floor = Math.min(floor, s.vruntime_ms);
    if (floor === Infinity) floor = 0;
    let runnable = 0;
    const wanting: { proc: GuestProcess; slot: GuestSlot }[] = [];
    for (const proc of procs) {
      const u = proc.usage();
      let slot = this.#slots.get(proc);
      const woke = slot === undefined ? this.#asleep.get(proc) : undefined;
      if (woke !== undefined) {
        // Back from hibernation: what it computed before counts, its sleep does not (as CFS treats a sleeper, it
        // starts no further behind than those here, so it gets no burst of catching up).
        this.#asleep.delete(proc);
        slot = { ...woke, vruntime_ms: Math.max(woke.vruntime_ms, floor), last_busy_ms: u.busy_ms, last_paused_ms: u.paused_ms, window_busy_ms: 0, window_held_ms: 0 };
        this.#slots.set(proc, slot);
      } else if (slot === undefined) {
        // Counted as CPU-bound until measured: placement and balance then do not pile newcomers onto one node.
        slot = { cpu_ms: 0, cpu_share: 1, vruntime_ms: floor, first_seen_ms: now_ms, last_busy_ms: u.busy_ms, last_paused_ms: u.paused_ms, window_busy_ms: 0, window_held_ms: 0 };
        this.#slots.set(proc, slot);
      }
      const busy = u.busy_ms - slot.last_busy_ms;
      const held = u.paused_ms - slot.last_paused_ms;
      slot.last_busy_ms = u.busy_ms;
      slot.last_paused_ms = u.paused_ms;
      slot.cpu_ms += busy;
      slot.vruntime_ms += busy;
      slot.window_busy_ms += busy;
      slot.window_held_ms += held;
      this.#window_used_ms += busy;
      if (measure) {
        slot.cpu_share += SHARE_SMOOTHING * (Math.min(1, (slot.window_busy_ms + slot.window_held_ms) / window_ms) - slot.cpu_share);
        slot.window_busy_ms = 0;
        slot.window_held_ms = 0;
      }
      runnable += slot.cpu_share;
      // Held guests want to run; a guest waiting in a blocking call does not.
      if (proc.held || !u.blocked) wanting.push({ proc, slot });
    }
    const queued = Math.max(0, wanting.length - this.#cpus);
    let cpu_used = this.#sample.cpu_used;
    if (measure) {
      cpu_used = this.#window_used_ms / window_ms;
      this.#window_used_ms = 0;
      this.#window_ms = now_ms;
    }
    this.#sample = { runnable, cpu_used, computing: wanting.length - queued, queued };
    if (wanting.length <= this.#cpus) {
      for (const w of wanting) w.proc.hold(false);
      return;
    }
    wanting.sort((a, b) => a.slot.vruntime_ms - b.slot.vruntime_ms);
    for (const [i, w] of wanting.entries()) w.proc.hold(i >= this.#cpus);
  }

  /** Changes the capacity (the next pass applies it). */
  setCpus(cpus: number): void {
    this.#cpus = checkCpus(cpus);
  }

  /** Lets every guest compute (the node stops scheduling). */
  releaseAll(): void {
    for (const p of this.#slots.keys()) p.hold(false);
  }
}

function checkCpus(cpus: number): number {
  if (!(Number.isInteger(cpus) && cpus >= 1)) throw new RangeError(`cpus must be a whole number >= 1, not ${cpus}`);
  return cpus;
}
