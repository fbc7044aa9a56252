/**
 * The simulator: a seeded discrete-event simulation of a Ferry cluster that
 * runs the policy layer's code unchanged. Each node gossips its load every
 * interval to a few random peers and decides on its own view (never on the
 * truth), and its moves cost what the migration model says: the process runs
 * at the source while its pages flow, stops for the downtime, and resumes at
 * the destination with the CPU time it still needs. Before a move starts its
 * target judges it on its load as it is then (`acceptMove`, as a daemon's
 * target does), and a refused move is decided again elsewhere (`retarget`).
 * A move costs what the model gives for the process's real dirty rate, not
 * the rate its source measured (none yet for a newcomer).
 *
 * Everything that scales with the run lives in typed arrays (processes,
 * nodes, events: _state.ts); policy objects are built only for nodes whose
 * load says a decision could move something (`wantsToAct`, _rounds.ts).
 * This file holds the events: arrivals, completions, the steps of a
 * migration, failures and repairs.
 */
import { acceptMove, avoidAfter_ms, estimateMigration, LoadView, MOVE_ASKS_MAX, moveOffer, place, retarget, type Move, type NodeLoad, type ProcessInfo } from "../policy/mod.js";
import { simConfig, type SimChanges } from "./config.js";
import { EventKind } from "./_events.js";
import { report, sample } from "./_figures.js";
import type { SimReport } from "./report.js";
import { Rounds } from "./_rounds.js";
import { GPU, Live, LIVE_FIELDS, NONE, SimState, State } from "./_state.js";

/** Runs one simulation and returns its figures. */
export function simulate(changes: SimChanges = {}): SimReport {
  return new Simulation(simConfig(changes)).run();
}

class Simulation extends SimState {
  readonly #rounds = new Rounds(this);

  run(): SimReport {
    const wall0 = performance.now();
    const c = this.c;
    const interval_s = c.interval_ms / 1000;
    // Policy none reads no load: its nodes exchange none, and the run costs only its processes.
    const exchange = c.policy.mode !== "none";
    for (let i = 0; i < c.nodes; i += 1) {
      if (exchange) this.q.push(this.r.float() * interval_s, EventKind.round, i);
      // Joining, a node learns a few members from the one it joined through.
      this.views[i]?.merge(this.#rounds.bootstrap(i), 0);
      if (c.failures_per_node_hour > 0) this.q.push(this.exp(3600 / c.failures_per_node_hour), EventKind.fail, i);
    }
    for (const d of c.drain_nodes) this.q.push(c.drain_at_s, EventKind.drain, d);
    this.q.push(0, EventKind.sample, 0);
    const m = c.processes;
    let next = 0;
    while (this.done < m) {
      const ta = next < m ? (this.w.arrival_s[next] as number) : Infinity;
      if (ta <= this.q.peekTime()) {
        this.now = ta;
        if (ta > c.time_max_s) break;
        this.#arrive(next);
        next += 1;
        this.events += 1;
        continue;
      }
      if (!this.q.pop()) break;
      this.now = this.q.time;
      if (this.now > c.time_max_s) break;
      this.events += 1;
      this.#dispatch();
    }
    this.integrate();
    sample(this);
    return report(this, performance.now() - wall0);
  }

  #dispatch(): void {
    const q = this.q;
    switch (q.kind) {
      case EventKind.round:
        return this.#round(q.subject);
      case EventKind.complete:
        if (q.epoch === this.cpu.epoch[q.subject]) this.#complete(q.subject);
        return;
      case EventKind.migrationPause:
        return this.#pause(q.subject, q.epoch);
      case EventKind.migrationDone:
        return this.#arriveMoved(q.subject, q.epoch);
      case EventKind.fail:
        return this.#fail(q.subject);
      case EventKind.repair:
        return this.#repair(q.subject);
      case EventKind.drain:
        this.draining[q.subject] = 1;
        this.load_cache[q.subject] = undefined;
        return;
      case EventKind.coolEnd: {
        const p = q.subject;
        if (this.unmovable[p] === 1 && this.mig_epoch[p] === q.epoch && (this.live[p * LIVE_FIELDS + Live.moves] as number) < this.c.policy.moves_per_process_max) this.movableAgain(p);
        return;
      }
      case EventKind.sample:
        sample(this);
        if (this.done < this.c.processes) q.push(this.now + this.sample_dt, EventKind.sample, 0);
        return;
    }
  }

  #round(n: number): void {
    this.q.push(this.now + this.c.interval_ms / 1000, EventKind.round, n);
    if (this.up[n] !== 1) return;
    const moves = this.#rounds.round(n);
    for (const move of moves) this.#offer(move, n);
  }

  /**
   * Asks the target of `first` whether it takes the move on its load now,
   * as a daemon's source does before a move starts: a refusal brings the
   * target's fresh entry into the source's view, leaves the target out of
   * the source's decisions for a while, and the move is decided again
   * without the nodes that refused it (at most {@link MOVE_ASKS_MAX} asks).
   * The ask is taken as instant: a round trip is small beside a move.
   */
  #offer(first: Move, n: number): void {
    const view = this.views[n] as LoadView;
    const c = this.c;
    if (!c.recheck) return this.#migrate(first, n, view);
    const proc = this.#rounds.described(first.pid);
    if (proc === undefined) throw new Error(`the round's move of ${first.pid} names a process it did not describe`);
    let move: Move | undefined = first;
    let refused: Set<string> | undefined;
    for (let asks = 0; move !== undefined; asks += 1) {
      const d = Number(move.to.slice(1));
      // A target that cannot be asked (down) is left to the migration itself, which gives up.
      if (this.up[d] !== 1) return this.#migrate(move, n, view);
      const here = this.load(n);
      // The source without this process and those already leaving (a daemon's measure leaves its moves in flight out).
      const runnable = here.runnable - (this.moving_out[n] as number) - proc.cpu_share;
      const answer = acceptMove({ local: this.load(d), offer: moveOffer(move, { proc, source: { cpus: here.cpus, speed: here.speed, runnable } }) }, c.policy);
      if (answer.kind === "accept") return this.#migrate(move, n, view);
      this.refused += 1;
      this.version[d] = (this.version[d] as number) + 1;
      const now_ms: number = this.now * 1000;
      view.merge([{ load: this.load(d), version: this.version[d] as number, age_ms: 0 }], now_ms);
      let avoid = this.avoid[n];
      if (avoid === undefined) {
        avoid = new Map();
        this.avoid[n] = avoid;
      }
      avoid.set(move.to, now_ms + avoidAfter_ms(answer));
      refused ??= new Set();
      refused.add(move.to);
      move = asks + 1 < MOVE_ASKS_MAX ? retarget({ now_ms, local: this.#sourceWith(n), proc, view: view.records(), refused, random: this.pr }, c.policy) : undefined;
    }
    this.refused_kept += 1;
  }

  /** The load of `n` as its decisions see it while it has moves under way: those leaving do not count. */
  #sourceWith(n: number): NodeLoad {
    const l = this.load(n);
    const out = this.moving_out[n] as number;
    return out === 0 ? l : { ...l, processes: l.processes - out, runnable: l.runnable - out };
  }

  #start(p: number, n: number, work_s: number, fresh: boolean): void {
    this.touch(n);
    this.cpu.add(n, p, work_s);
    this.cpu.memory_used[n] = (this.cpu.memory_used[n] as number) + (this.w.memory_bytes[p] as number);
    this.state[p] = State.running;
    this.at[p] = n;
    this.live[p * LIVE_FIELDS + Live.since_s] = this.now;
    this.traffic(p, n, 1);
    this.settle(n);
    if (this.w.requires_gpu[p] === 1 && this.gpu[n] !== 1) this.violations += 1;
    if (fresh && this.draining[n] === 1) this.violations += 1;
    if (fresh) return;
    const capped = (this.live[p * LIVE_FIELDS + Live.moves] as number) >= this.c.policy.moves_per_process_max;
    const cool_until_s = ((this.live[p * LIVE_FIELDS + Live.last_move_ms] as number) + this.c.policy.process_cooldown_ms) / 1000;
    if (capped || cool_until_s > this.now) {
      this.unmovable[p] = 1;
      this.unmovable_n[n] = (this.unmovable_n[n] as number) + 1;
      if (!capped) this.q.push(cool_until_s, EventKind.coolEnd, p, this.mig_epoch[p] as number);
    }
  }

  #feasibleFallback(p: number): number {
    const list = this.w.requires_gpu[p] === 1 ? this.gpu_nodes : null;
    for (let tries = 0; tries < 256; tries += 1) {
      const n = list === null ? this.r.int(this.c.nodes) : (list[this.r.int(list.length)] as number);
      if (this.up[n] === 1 && this.draining[n] === 0) return n;
    }
    return -1;
  }

  #entry(p: number): number {
    const c = this.c;
    let e = c.entry === "hot" ? (this.hot[this.r.int(this.hot.length)] as number) : c.entry === "uniform" ? this.r.int(c.nodes) : p % c.nodes;
    for (let tries = 0; this.up[e] !== 1 && tries < 64; tries += 1) e = this.r.int(c.nodes);
    return e;
  }

  #arrive(p: number): void {
    const e = this.#entry(p);
    const needs = this.w.requires_gpu[p] === 1;
    const mem = this.w.memory_bytes[p] as number;
    let n = -1;
    if (this.c.place && this.c.policy.mode !== "none") {
      const peer_nodes: string[] = [];
      const first = this.w.group_first[p] as number;
      for (let q = first; q < p; q += 1) if (this.state[q] !== State.pending && this.state[q] !== State.done) peer_nodes.push(this.names[this.at[q] as number] as string);
      const placed = place({ process: { memory_bytes: mem, requires: needs ? GPU : NONE, peer_nodes }, now_ms: this.now * 1000, local: this.load(e), view: (this.views[e] as LoadView).records(), random: this.pr }, this.c.policy);
      if (placed.kind === "node") n = Number(placed.node.slice(1));
    } else if (this.draining[e] === 0 && (!needs || this.gpu[e] === 1)) n = e;
    if (n < 0 || this.up[n] !== 1) n = this.#feasibleFallback(p);
    if (n < 0) n = e; // nowhere fits: start it where submitted rather than lose it (counted as a violation if it breaks a rule)
    if (n !== e) (this.views[e] as LoadView).account(this.names[n] as string, { processes: 1, runnable: 1, memory_bytes: mem });
    this.#start(p, n, this.w.work_s[p] as number, true);
  }

  #complete(n: number): void {
    this.touch(n);
    const p = this.cpu.first(n);
    if (p < 0) return;
    this.cpu.remove(n, p);
    this.cpu.memory_used[n] = (this.cpu.memory_used[n] as number) - (this.w.memory_bytes[p] as number);
    if (this.unmovable[p] === 1) this.movableAgain(p);
    if (this.state[p] === State.moving) {
      this.moving_out[n] = (this.moving_out[n] as number) - 1;
      this.#cancelReservation(p);
    }
    this.traffic(p, n, -1);
    this.state[p] = State.done;
    this.end_s[p] = this.now;
    this.done += 1;
    this.settle(n);
    this.checkDrained();
  }

  #cancelReservation(p: number): void {
    const d = this.dest[p] as number;
    this.mig_epoch[p] = ((this.mig_epoch[p] as number) + 1) >>> 0;
    this.abandoned += 1;
    if (this.life[d] !== this.dest_life[p]) return; // the node failed since: its reservations are gone already
    this.touch(d);
    this.incoming[d] = (this.incoming[d] as number) - 1;
    this.cpu.memory_used[d] = (this.cpu.memory_used[d] as number) - (this.w.memory_bytes[p] as number);
    this.settle(d);
  }

  #migrate(move: Move, s: number, view: LoadView): void {
    const p = Number(move.pid.slice(1));
    const d = Number(move.to.slice(1));
    if (this.state[p] !== State.running || this.at[p] !== s || this.up[d] !== 1 || d === s) {
      this.abandoned += 1;
      return;
    }
    const mem = this.w.memory_bytes[p] as number;
    this.touch(d);
    this.cpu.memory_used[d] = (this.cpu.memory_used[d] as number) + mem;
    this.incoming[d] = (this.incoming[d] as number) + 1;
    this.settle(d);
    view.account(move.to, { processes: 1, runnable: 1, memory_bytes: mem });
    if (this.unmovable[p] === 1) this.movableAgain(p);
    this.moving_out[s] = (this.moving_out[s] as number) + 1;
    this.load_cache[s] = undefined;
    this.state[p] = State.moving;
    this.dest[p] = d;
    this.dest_life[p] = this.life[d] as number;
    this.src_life[p] = this.life[s] as number;
    const live = p * LIVE_FIELDS;
    this.live[live + Live.moves] = (this.live[live + Live.moves] as number) + 1;
    this.live[live + Live.last_move_ms] = this.now * 1000;
    const epoch = ((this.mig_epoch[p] as number) + 1) >>> 0;
    this.mig_epoch[p] = epoch;
    this.migrations += 1;
    this.by_reason[move.reason] += 1;
    this.by_strategy[move.strategy] += 1;
    // The move takes what the model gives for what the process really writes per second here now, with the strategy its source chose on what it had measured.
    const real: Pick<ProcessInfo, "memory_bytes" | "dirty_bytes_per_s"> = { memory_bytes: mem, dirty_bytes_per_s: (this.w.dirty_bytes_per_s[p] as number) * this.cpu.rate(s) };
    const cost = estimateMigration(real, { strategy: move.strategy, rate_bytes_per_s: this.load(s).transfer_bytes_per_s, model: this.c.policy.model });
    this.bytes_moved += cost.bytes;
    this.expected_ms += move.estimate.total_ms;
    this.actual_ms += cost.total_ms;
    this.downtime_ms += cost.downtime_ms;
    this.q.push(this.now + (cost.total_ms - cost.downtime_ms) / 1000, EventKind.migrationPause, p, epoch);
    this.q.push(this.now + cost.total_ms / 1000, EventKind.migrationDone, p, epoch);
  }

  #pause(p: number, epoch: number): void {
    if (this.mig_epoch[p] !== epoch || this.state[p] !== State.moving) return;
    const s = this.at[p] as number;
    const d = this.dest[p] as number;
    this.moving_out[s] = (this.moving_out[s] as number) - 1;
    this.load_cache[s] = undefined;
    if (this.up[d] !== 1 || this.life[d] !== this.dest_life[p]) {
      // The destination died before the stop: the process never left.
      this.state[p] = State.running;
      this.#cancelReservation(p);
      return;
    }
    this.touch(s);
    this.left_s[p] = this.cpu.remove(s, p);
    this.state[p] = State.paused;
    this.settle(s);
  }

  #arriveMoved(p: number, epoch: number): void {
    if (this.mig_epoch[p] !== epoch || this.state[p] !== State.paused) return;
    const s = this.at[p] as number;
    const d = this.dest[p] as number;
    const mem = this.w.memory_bytes[p] as number;
    if (this.life[s] === this.src_life[p]) {
      this.touch(s);
      this.cpu.memory_used[s] = (this.cpu.memory_used[s] as number) - mem;
      this.settle(s);
    }
    this.traffic(p, s, -1);
    this.state[p] = State.pending; // off the books while its traffic moves with it
    if (this.up[d] !== 1 || this.life[d] !== this.dest_life[p]) {
      // Failed before RUNNING at the destination: it resumes at the source, or restarts if that is gone too.
      this.abandoned += 1;
      if (this.up[s] === 1) this.#start(p, s, this.left_s[p] as number, false);
      else this.#restart(p);
      return;
    }
    this.touch(d);
    this.incoming[d] = (this.incoming[d] as number) - 1;
    this.cpu.memory_used[d] = (this.cpu.memory_used[d] as number) - mem; // #start adds it back
    this.#start(p, d, this.left_s[p] as number, false);
    this.checkDrained();
  }

  #restart(p: number): void {
    this.restarts += 1;
    this.state[p] = State.pending;
    this.#arrive(p);
  }

  #fail(n: number): void {
    if (this.up[n] !== 1) return;
    this.failures += 1;
    this.touch(n);
    const lost = [...(this.cpu.heaps[n] as number[])];
    for (const p of lost) {
      this.cpu.remove(n, p);
      this.unmovable[p] = 0;
      if (this.state[p] === State.moving) this.#cancelReservation(p);
      this.traffic(p, n, -1);
      this.state[p] = State.pending;
    }
    this.up[n] = 0;
    this.life[n] = ((this.life[n] as number) + 1) >>> 0;
    this.cpu.memory_used[n] = 0;
    this.incoming[n] = 0;
    this.remote[n] = 0;
    this.unmovable_n[n] = 0;
    this.moving_out[n] = 0;
    this.views[n] = new LoadView(this.names[n] as string, this.c.view_entries);
    this.avoid[n] = undefined;
    this.settle(n);
    for (const p of lost) this.#restart(p);
    this.q.push(this.now + this.c.repair_s, EventKind.repair, n);
  }

  #repair(n: number): void {
    this.up[n] = 1;
    this.cpu.V[n] = 0;
    this.cpu.last_s[n] = this.now;
    this.remote[n] = 0;
    (this.views[n] as LoadView).merge(this.#rounds.bootstrap(n), this.now * 1000);
    this.settle(n);
    this.q.push(this.now + this.exp(3600 / this.c.failures_per_node_hour), EventKind.fail, n);
  }
}
