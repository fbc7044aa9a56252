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
import { acceptMove, avoidAfter_ms, estimateMigration, LoadView, MOVE_ASKS_MAX, moveOffer, place, retarget, type LoadEntry, type Move, type NodeLoad, type ProcessInfo } from "../policy/mod.js";
import { Prng } from "../_prng.js";
import { simConfig, type SimChanges, type SimConfig } from "./config.js";
import { EventKind } from "./_events.js";
import { combine, figuresOf, report, sample, samplePush, sampleSums, type Figures } from "./_figures.js";
import type { SimReport } from "./report.js";
import { Rounds } from "./_rounds.js";
import { GPU, Live, LIVE_FIELDS, NONE, SimState, State } from "./_state.js";
import { ENTRY_FIELDS, Head, HEAD_FIELDS, loadAt, LOAD_NUMBERS, Msg, NODE_FIELDS, NodeField, NumberList } from "./_wire.js";

/**
 * Runs one simulation in this thread and returns its figures; a run of
 * several parts runs them one after the other between syncs (see
 * `simulateThreaded` for one thread per part: the same report).
 */
export function simulate(changes: SimChanges = {}): SimReport {
  const c = simConfig(changes);
  if (c.partitions === 1) return new Simulation(c).run();
  const wall0 = performance.now();
  const parts = Array.from({ length: c.partitions }, (_, k) => new Simulation(c, k));
  for (const part of parts) part.begin();
  // The syncs' times as every part computes them (_part_worker.ts too): i * sync, never a running sum.
  let previous: Float64Array[] | null = null;
  for (let i = 1; ; i += 1) {
    for (const part of parts) part.window(i * (c.sync_ms / 1000));
    const batches = parts.map((part) => part.batch());
    let over = false;
    if (previous !== null) for (const part of parts) over = part.sync(previous, (i - 1) * (c.sync_ms / 1000));
    if (over) break;
    previous = batches;
  }
  return report(combine(parts.map((part) => part.figures())), c, performance.now() - wall0);
}

/** A run, or one part of a run (`part` of `c.partitions`). */
export class Simulation extends SimState {
  readonly #rounds = new Rounds(this);
  /** With parts: the processes submitted at this part's nodes, in arrival order, and the next to arrive. */
  #arrivals = new Int32Array(0);
  #next_arrival = 0;
  /** With parts: the node each process is submitted at, the same in every part. */
  #entry_of = new Int32Array(0);
  #next_sample_s = 0;
  /** The run is over but for its last sample: the next batch carries the sums. */
  #final_sample = false;
  /** With parts: this part's nodes, `#first` up to `#end`. */
  readonly #first: number;
  readonly #end: number;
  /** What the last batches said of each of this part's nodes (`NODE_FIELDS` numbers each). */
  readonly #sent: Float64Array;
  /** The batch being built, reused. */
  readonly #batch = new NumberList(1 << 16);
  /** Scratch of a gossip window received from another part, by its length: the entries, not their load vectors. */
  readonly #received: { load: NodeLoad; version: number; age_ms: number }[][] = [];

  constructor(c: SimConfig, part = 0) {
    super(c, part);
    this.#first = Math.ceil((part * c.nodes) / c.partitions);
    this.#end = Math.ceil(((part + 1) * c.nodes) / c.partitions);
    this.#sent = new Float64Array(c.partitions > 1 ? c.nodes * NODE_FIELDS : 0).fill(NaN);
  }

  /** The first events of this part's nodes: rounds, views they join with, failures, drains. */
  #schedule(): void {
    const c = this.c;
    const interval_s = c.interval_ms / 1000;
    // Policy none reads no load: its nodes exchange none, and the run costs only its processes.
    const exchange = c.policy.mode !== "none";
    for (let i = 0; i < c.nodes; i += 1) {
      if (!this.owns(i)) continue;
      if (exchange) this.q.push(this.r.float() * interval_s, EventKind.round, i);
      // Joining, a node learns a few members from the one it joined through.
      this.views[i]?.merge(this.#rounds.bootstrap(i), 0);
      if (c.failures_per_node_hour > 0) this.q.push(this.exp(3600 / c.failures_per_node_hour), EventKind.fail, i);
    }
    for (const d of c.drain_nodes) if (this.owns(d)) this.q.push(c.drain_at_s, EventKind.drain, d);
  }

  run(): SimReport {
    const wall0 = performance.now();
    const c = this.c;
    this.#schedule();
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
    return report(figuresOf(this), c, performance.now() - wall0);
  }

  /** What this part adds to the report. */
  figures(): Figures {
    return figuresOf(this);
  }

  /**
   * Sets this part up (a run of several): where each process is submitted
   * (the same draw in every part), the arrivals it takes (those submitted at
   * its nodes), and its nodes' first events.
   */
  begin(): void {
    const c = this.c;
    const m = c.processes;
    const er = new Prng((c.seed ^ 0x51ed270b) >>> 0);
    this.#entry_of = new Int32Array(m);
    let own = 0;
    for (let p = 0; p < m; p += 1) {
      const e = c.entry === "hot" ? (this.hot[er.int(this.hot.length)] as number) : c.entry === "uniform" ? er.int(c.nodes) : p % c.nodes;
      this.#entry_of[p] = e;
      if (this.owns(e)) own += 1;
    }
    this.#arrivals = new Int32Array(own);
    own = 0;
    for (let p = 0; p < m; p += 1) if (this.owns(this.#entry_of[p] as number)) this.#arrivals[own++] = p;
    this.#schedule();
  }

  /** Runs this part's arrivals and events before `until_s` (none past the run's time bound), then stands at `until_s`. */
  window(until_s: number): void {
    const arrivals = this.#arrivals;
    const time_max_s = this.c.time_max_s;
    for (;;) {
      const p = this.#next_arrival < arrivals.length ? (arrivals[this.#next_arrival] as number) : -1;
      const ta = p >= 0 ? (this.w.arrival_s[p] as number) : Infinity;
      const te = this.q.peekTime();
      if (Math.min(ta, te) >= until_s || Math.min(ta, te) > time_max_s) break;
      this.events += 1;
      if (ta <= te) {
        this.now = ta;
        this.#next_arrival += 1;
        this.#arrive(p);
        continue;
      }
      this.q.pop();
      this.now = this.q.time;
      this.#dispatch();
    }
    this.now = until_s;
  }

  /**
   * This part's batch for the sync at `now` (`_wire.ts`): its figures, its
   * nodes, the processes it changed, its messages and its link-traffic
   * changes. What the batch holds is forgotten here.
   */
  batch(): Float64Array {
    const c = this.c;
    const out = this.#batch;
    out.clear();
    const head = out.reserve(HEAD_FIELDS);
    // A sample's sums only when one may be due at the sync that takes this batch (NaN otherwise): a scan of every node.
    const [sum, sq, max, up, busy] = this.now >= this.#next_sample_s || this.#final_sample ? sampleSums(this) : [NaN, NaN, NaN, NaN, NaN];
    let drain_left = 0;
    for (const d of c.drain_nodes) if (this.owns(d)) drain_left += this.cpu.running(d) + (this.incoming[d] as number);
    out.set(head + Head.done, this.done);
    out.set(head + Head.load_sum, sum);
    out.set(head + Head.load_sq, sq);
    out.set(head + Head.load_max, max);
    out.set(head + Head.up, up);
    out.set(head + Head.busy, busy);
    out.set(head + Head.drain_left, drain_left);
    // Only the nodes that changed since the last batch: each node's record is written, and taken back if it says what the last one said.
    const count_at = out.reserve(1);
    const last = this.#sent;
    let sent = 0;
    for (let i = 0; i < this.dirty.length; i += 1) {
      const n = this.dirty.get(i);
      const b = out.reserve(NODE_FIELDS);
      out.set(b + NodeField.index, n);
      out.set(b + NodeField.version, this.version[n] as number);
      out.set(b + NodeField.up, this.up[n] as number);
      out.set(b + NodeField.life, this.life[n] as number);
      out.set(b + NodeField.draining, this.draining[n] as number);
      out.set(b + NodeField.gpu, this.gpu[n] as number);
      this.loadFields(n, out.view(), b + NodeField.cpus);
      let same = true;
      const o = n * NODE_FIELDS;
      for (let f = 0; f < NODE_FIELDS && same; f += 1) same = out.get(b + f) === last[o + f];
      if (same) {
        out.length -= NODE_FIELDS;
        continue;
      }
      for (let f = 0; f < NODE_FIELDS; f += 1) last[o + f] = out.get(b + f);
      sent += 1;
    }
    out.set(count_at, sent);
    this.undirtyAll();
    out.push(this.changed.length);
    for (let i = 0; i < this.changed.length; i += 1) {
      const p = this.changed.get(i);
      out.push(p);
      out.push(this.state[p] as number);
      out.push(this.at[p] as number);
    }
    this.unmarkAll();
    out.push(this.out_msgs.length);
    out.append(this.out_msgs.view());
    this.out_msgs.clear();
    out.push(this.out_traffic.length);
    out.append(this.out_traffic.view());
    this.out_traffic.clear();
    return out.copy();
  }

  /**
   * Takes the batches every part made at the sync before this one (at
   * `at_s`), in part order, this part's own among them: the other parts'
   * nodes and processes as they were then, their messages to this part's
   * nodes, and everyone's link traffic up to then. A batch is taken one
   * sync late so that a part may run a window ahead of the others: a part
   * waits only when another is more than a window behind. Returns whether
   * the run is over (every part says the same, from the same batches).
   */
  sync(batches: readonly Float64Array[], at_s: number): boolean {
    const c = this.c;
    const parsed = batches.map(sections);
    for (let k = 0; k < batches.length; k += 1) if (k !== this.part) this.#takeState(batches[k] as Float64Array, parsed[k] as Sections);
    for (let k = 0; k < batches.length; k += 1) if (k !== this.part) this.#takeMessages(batches[k] as Float64Array, parsed[k] as Sections);
    this.replayTraffic(batches.map((b, k) => b.subarray((parsed[k] as Sections).traffic, (parsed[k] as Sections).traffic + (parsed[k] as Sections).traffic_len)));
    this.integrateTo(at_s);
    let done = 0;
    let drain_left = 0;
    const sums: number[][] = [];
    for (let k = 0; k < batches.length; k += 1) {
      const b = batches[k] as Float64Array;
      done += b[Head.done] as number;
      drain_left += b[Head.drain_left] as number;
      sums.push([b[Head.load_sum], b[Head.load_sq], b[Head.load_max], b[Head.up], b[Head.busy]] as number[]);
    }
    if (this.drain_empty_at === null && c.drain_nodes.length > 0 && at_s >= c.drain_at_s && drain_left === 0) this.drain_empty_at = at_s;
    const over = done >= c.processes || at_s > c.time_max_s;
    if (at_s >= this.#next_sample_s || over) {
      // The last sample wants the sums, which a batch carries only when a sample was due: then the run ends a sync later.
      if (Number.isNaN(sums[0]?.[0])) {
        this.#final_sample = true;
        return false;
      }
      samplePush(this, sums, at_s);
      this.#next_sample_s = at_s + this.sample_dt;
    }
    return over;
  }

  /** Another part's nodes and changed processes, as its batch has them. */
  #takeState(b: Float64Array, at: Sections): void {
    for (let i = 0; i < at.nodes_n; i += 1) {
      const o = at.nodes + i * NODE_FIELDS;
      const n = b[o + NodeField.index] as number;
      this.version[n] = b[o + NodeField.version] as number;
      this.up[n] = b[o + NodeField.up] as number;
      this.life[n] = b[o + NodeField.life] as number;
      this.draining[n] = b[o + NodeField.draining] as number;
      this.load_cache[n] = loadAt(b, o + NodeField.cpus, this.names[n] as string, b[o + NodeField.gpu] === 1 ? GPU : NONE, b[o + NodeField.draining] === 1);
    }
    for (let i = 0; i < at.changed_n; i += 1) {
      const o = at.changed + i * 3;
      const p = b[o] as number;
      this.state[p] = b[o + 1] as number;
      this.at[p] = b[o + 2] as number;
    }
  }

  /** Another part's messages to this part's nodes, in the order it sent them. */
  #takeMessages(b: Float64Array, at: Sections): void {
    const end = at.msgs + at.msgs_len;
    for (let o = at.msgs; o < end; ) {
      const kind = b[o] as number;
      const node = b[o + 1] as number;
      if (kind === Msg.gossip) {
        const count = b[o + 3] as number;
        if (this.owns(node)) this.#takeGossip(b, node, b[o + 2] as number, o + 4, count);
        o += 4 + count * ENTRY_FIELDS;
        continue;
      }
      const args = b.subarray(o + 3, o + 3 + (b[o + 2] as number));
      o += 3 + args.length;
      if (!this.owns(node)) continue;
      this.#takeMessage(kind, node, args);
    }
  }

  /** A gossip window sent to `m` at `sent_ms` by a node of another part. */
  #takeGossip(b: Float64Array, m: number, sent_ms: number, from: number, count: number): void {
    if (this.up[m] !== 1) return;
    let window = this.#received[count];
    if (window === undefined) {
      window = Array.from({ length: count }, () => ({ load: NONE_LOAD, version: 0, age_ms: 0 }));
      this.#received[count] = window;
    }
    for (let i = 0; i < count; i += 1) {
      const o = from + i * ENTRY_FIELDS;
      const e = window[i] as { load: NodeLoad; version: number; age_ms: number };
      const flags = b[o + 3 + LOAD_NUMBERS] as number;
      e.version = b[o + 1] as number;
      e.age_ms = b[o + 2] as number;
      e.load = loadAt(b, o + 3, this.names[b[o] as number] as string, (flags & 1) === 1 ? GPU : NONE, (flags & 2) === 2);
    }
    (this.views[m] as LoadView).merge(window satisfies LoadEntry[], sent_ms);
  }

  /** A message about node `node` of this part (`Msg`). */
  #takeMessage(kind: number, node: number, a: Float64Array): void {
    const p = a[0] as number;
    switch (kind) {
      case Msg.reserve:
        if (this.up[node] === 1 && this.life[node] === a[1]) this.#reserve(p, node, 1);
        return;
      case Msg.unreserve:
        if (this.life[node] === a[1]) this.#reserve(p, node, -1);
        return;
      case Msg.arrive: {
        // p, source, CPU left, moves, last move ms, epoch, target's life
        const left_s = a[2] as number;
        if (this.up[node] !== 1 || this.life[node] !== a[6]) {
          // Failed before RUNNING here: it resumes at its source (or restarts there if that is gone too).
          this.abandoned += 1;
          this.send(Msg.resume, a[1] as number, p, left_s, a[3] as number, a[4] as number, a[5] as number);
          return;
        }
        this.#adopt(p, a[3] as number, a[4] as number, a[5] as number);
        this.#land(p, node, left_s);
        return;
      }
      case Msg.resume:
        // p, CPU left, moves, last move ms, epoch
        this.#adopt(p, a[2] as number, a[3] as number, a[4] as number);
        this.#resume(p, node, a[1] as number);
        return;
      case Msg.start: {
        // p, CPU needed, fresh, moves, last move ms, epoch
        const work_s = a[1] as number;
        const fresh = a[2] === 1;
        this.#adopt(p, a[3] as number, a[4] as number, a[5] as number);
        let n = node;
        // Gone or draining since it was placed here: placed again, as a target refuses what it cannot take.
        if (this.up[n] !== 1 || (fresh && this.draining[n] === 1)) {
          const other = this.#feasibleFallback(p);
          if (other >= 0) n = other;
        }
        if (!this.owns(n)) return this.#handOff(p, n, work_s, fresh);
        this.#start(p, n, work_s, fresh);
        return;
      }
    }
  }

  /** Books (sign 1) or gives back (-1) the reservation of a move of `p` to `d`: its memory, and one incoming. */
  #reserve(p: number, d: number, sign: number): void {
    this.touch(d);
    this.cpu.memory_used[d] = (this.cpu.memory_used[d] as number) + sign * (this.w.memory_bytes[p] as number);
    this.incoming[d] = (this.incoming[d] as number) + sign;
    this.settle(d);
  }

  /** A moved `p` runs at its destination `d`, with `left_s` to go: its reservation becomes the process. */
  #land(p: number, d: number, left_s: number): void {
    this.touch(d);
    this.incoming[d] = (this.incoming[d] as number) - 1;
    this.cpu.memory_used[d] = (this.cpu.memory_used[d] as number) - (this.w.memory_bytes[p] as number); // #start adds it back
    this.#start(p, d, left_s, false);
  }

  /** A move of `p` that did not land: it goes on at its source `s`, or restarts if that is gone too. */
  #resume(p: number, s: number, left_s: number): void {
    if (this.up[s] === 1) this.#start(p, s, left_s, false);
    else this.#restart(p);
  }

  /** Takes over `p` from another part: its moves so far, when it last moved, its migration epoch. */
  #adopt(p: number, moves: number, last_move_ms: number, epoch: number): void {
    this.live[p * LIVE_FIELDS + Live.moves] = moves;
    this.live[p * LIVE_FIELDS + Live.last_move_ms] = last_move_ms;
    this.mig_epoch[p] = epoch;
  }

  /**
   * Hands `p` to the part that owns `n`, to start there with `work_s` left.
   * Until that part says otherwise (at the next sync), this part takes it
   * to run there: a group's next member placed here meanwhile joins it.
   */
  #handOff(p: number, n: number, work_s: number, fresh: boolean): void {
    this.state[p] = State.running;
    this.at[p] = n;
    const live = p * LIVE_FIELDS;
    this.send(Msg.start, n, p, work_s, fresh ? 1 : 0, this.live[live + Live.moves] as number, this.live[live + Live.last_move_ms] as number, this.mig_epoch[p] as number);
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
        this.invalidate(q.subject);
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
      this.noteNode(d);
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
    this.mark(p);
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
    if (this.parts > 1) {
      // Submitted here, or resubmitted (a restart) at a node of this part that is up.
      let e = this.#entry_of[p] as number;
      for (let tries = 0; (!this.owns(e) || this.up[e] !== 1) && tries < 64; tries += 1) e = this.#ownNode();
      return e;
    }
    let e = c.entry === "hot" ? (this.hot[this.r.int(this.hot.length)] as number) : c.entry === "uniform" ? this.r.int(c.nodes) : p % c.nodes;
    for (let tries = 0; this.up[e] !== 1 && tries < 64; tries += 1) e = this.r.int(c.nodes);
    return e;
  }

  /** A node of this part at random. */
  #ownNode(): number {
    return this.#first + this.r.int(this.#end - this.#first);
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
    // A target draining since the view heard of it refuses a new process, as a daemon's admission does: placed elsewhere.
    if (n < 0 || this.up[n] !== 1 || this.draining[n] === 1) n = this.#feasibleFallback(p);
    if (n < 0) n = e; // nowhere fits: start it where submitted rather than lose it (counted as a violation if it breaks a rule)
    if (n !== e) (this.views[e] as LoadView).account(this.names[n] as string, { processes: 1, runnable: 1, memory_bytes: mem });
    if (!this.owns(n)) return this.#handOff(p, n, this.w.work_s[p] as number, true);
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
    this.mark(p);
    this.end_s[p] = this.now;
    this.done += 1;
    this.settle(n);
    this.checkDrained();
  }

  #cancelReservation(p: number): void {
    const d = this.dest[p] as number;
    this.mig_epoch[p] = ((this.mig_epoch[p] as number) + 1) >>> 0;
    this.abandoned += 1;
    if (!this.owns(d)) return this.send(Msg.unreserve, d, p, this.dest_life[p] as number);
    // The node failed since: its reservations are gone already.
    if (this.life[d] === this.dest_life[p]) this.#reserve(p, d, -1);
  }

  #migrate(move: Move, s: number, view: LoadView): void {
    const p = Number(move.pid.slice(1));
    const d = Number(move.to.slice(1));
    if (this.state[p] !== State.running || this.at[p] !== s || this.up[d] !== 1 || d === s) {
      this.abandoned += 1;
      return;
    }
    const mem = this.w.memory_bytes[p] as number;
    if (this.owns(d)) this.#reserve(p, d, 1);
    else this.send(Msg.reserve, d, p, this.life[d] as number);
    view.account(move.to, { processes: 1, runnable: 1, memory_bytes: mem });
    if (this.unmovable[p] === 1) this.movableAgain(p);
    this.moving_out[s] = (this.moving_out[s] as number) + 1;
    this.invalidate(s);
    this.state[p] = State.moving;
    this.mark(p);
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
    this.invalidate(s);
    if (this.up[d] !== 1 || this.life[d] !== this.dest_life[p]) {
      // The destination died before the stop: the process never left.
      this.state[p] = State.running;
      this.mark(p);
      this.#cancelReservation(p);
      return;
    }
    this.touch(s);
    this.left_s[p] = this.cpu.remove(s, p);
    this.state[p] = State.paused;
    this.mark(p);
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
    this.mark(p);
    if (!this.owns(d)) {
      const live = p * LIVE_FIELDS;
      return this.send(Msg.arrive, d, p, s, this.left_s[p] as number, this.live[live + Live.moves] as number, this.live[live + Live.last_move_ms] as number, this.mig_epoch[p] as number, this.dest_life[p] as number);
    }
    if (this.up[d] !== 1 || this.life[d] !== this.dest_life[p]) {
      // Failed before RUNNING at the destination: it resumes at the source, or restarts if that is gone too.
      this.abandoned += 1;
      this.#resume(p, s, this.left_s[p] as number);
      return;
    }
    this.#land(p, d, this.left_s[p] as number);
    this.checkDrained();
  }

  #restart(p: number): void {
    this.restarts += 1;
    this.state[p] = State.pending;
    this.mark(p);
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
      this.mark(p);
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

/** A load vector that stands in an entry of a scratch window until a received one fills it. */
const NONE_LOAD: NodeLoad = Object.freeze(loadAt(new Float64Array(LOAD_NUMBERS), 0, "", NONE, false));

/** Where the sections of a batch start (`_wire.ts`), and their sizes. */
interface Sections {
  nodes: number;
  nodes_n: number;
  changed: number;
  changed_n: number;
  msgs: number;
  msgs_len: number;
  traffic: number;
  traffic_len: number;
}

function sections(b: Float64Array): Sections {
  let o = HEAD_FIELDS;
  const nodes_n = b[o] as number;
  const nodes = o + 1;
  o = nodes + nodes_n * NODE_FIELDS;
  const changed_n = b[o] as number;
  const changed = o + 1;
  o = changed + changed_n * 3;
  const msgs_len = b[o] as number;
  const msgs = o + 1;
  o = msgs + msgs_len;
  const traffic_len = b[o] as number;
  return { nodes, nodes_n, changed, changed_n, msgs, msgs_len, traffic: o + 1, traffic_len };
}
