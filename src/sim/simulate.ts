/**
 * The simulator: a seeded discrete-event simulation of a Ferry cluster that
 * runs the policy layer's code unchanged. Each node gossips its load every
 * interval to a few random peers and decides on its own view (never on the
 * truth), and its moves cost what the migration model says: the process runs
 * at the source while its pages flow, stops for the downtime, and resumes at
 * the destination with the CPU time it still needs.
 *
 * Everything that scales with the run lives in typed arrays (processes,
 * nodes, events); policy objects are built only for nodes whose load says a
 * decision could move something (`wantsToAct`).
 */
import { Prng } from "../_prng.js";
import { ageOf, decide, LoadView, place, wantsToAct, type LoadEntry, type MoveReason, type NodeLoad, type ProcessInfo, type Strategy, type ViewRecord, type Move } from "../policy/mod.js";
import { simConfig, type SimChanges, type SimConfig } from "./config.js";
import { Cpus } from "./_cluster.js";
import { EventKind, EventQueue } from "./_events.js";
import type { ImbalanceSample, SimReport } from "./report.js";
import { drawWorkload, type Workload } from "./_workload.js";

const State = { pending: 0, running: 1, moving: 2, paused: 3, done: 4 } as const;

/** The simulator's own copy of a process's description, kept between rounds and refreshed in place. */
interface SimInfo {
  pid: string;
  memory_bytes: number;
  dirty_bytes_per_s: number;
  cpu_share: number;
  cpu_s: number;
  requires: Readonly<Record<string, string>>;
  pinned: boolean;
  moves: number;
  last_move_ms: number;
  peers: SimPeer[];
}

/** A link peer as the simulator keeps it: reused from round to round. */
interface SimPeer {
  pid: string;
  node: string;
  bytes_per_s: number;
}
const GPU = Object.freeze({ gpu: "yes" });
/** Peer nodes a round learns of through link traffic, at most: bounds a decision's cost. */
const PEER_VIEW_MAX = 8;
const NONE = Object.freeze({});

/** Runs one simulation and returns its figures. */
export function simulate(changes: SimChanges = {}): SimReport {
  return new Simulation(simConfig(changes)).run();
}

class Simulation {
  readonly c: SimConfig;
  readonly w: Workload;
  readonly cpu: Cpus;
  readonly q = new EventQueue();
  readonly r: Prng;
  readonly pr: Prng;
  readonly names: string[];
  readonly views: LoadView[];
  readonly gpu: Uint8Array;
  readonly up: Uint8Array;
  readonly draining: Uint8Array;
  readonly incoming: Int32Array;
  readonly remote: Float64Array;
  readonly version: Uint32Array;
  readonly life: Uint32Array;
  readonly load_cache: (NodeLoad | undefined)[];
  readonly hot: Int32Array;
  readonly gpu_nodes: number[] = [];
  // Per process.
  readonly state: Uint8Array;
  readonly at: Int32Array;
  readonly dest: Int32Array;
  readonly dest_life: Uint32Array;
  readonly src_life: Uint32Array;
  readonly left_s: Float64Array;
  readonly moves: Uint16Array;
  readonly last_move_ms: Float64Array;
  readonly end_s: Float64Array;
  readonly mig_epoch: Uint32Array;
  readonly pid_names: (string | undefined)[];
  readonly infos: (SimInfo | undefined)[];
  /** Per process: 1 while it counts in its node's unmovable (cooling down after a move, or at its move cap). */
  readonly unmovable: Uint8Array;
  /** Per node: processes that may not move automatically now, and processes leaving by migration. */
  readonly unmovable_n: Int32Array;
  readonly moving_out: Int32Array;
  readonly peer_mark: Uint32Array;
  /** Load of a node as last heard with link traffic, and when (s): at most one interval old when used. */
  readonly heard: (NodeLoad | undefined)[];
  readonly heard_s: Float64Array;
  peer_stamp = 0;
  readonly ideal_s: number;
  // Figures.
  now = 0;
  done = 0;
  events = 0;
  migrations = 0;
  abandoned = 0;
  bytes_moved = 0;
  by_reason: Record<MoveReason, number> = { drain: 0, memory: 0, balance: 0, colocate: 0, pack: 0 };
  by_strategy: Record<Strategy, number> = { "stop-copy": 0, "pre-copy": 0, "post-copy": 0, hybrid: 0 };
  rounds = 0;
  decision_rounds = 0;
  age_sum = 0;
  age_n = 0;
  age_max = 0;
  pair_total = 0;
  pair_local = 0;
  traffic_t = 0;
  int_total = 0;
  int_local = 0;
  failures = 0;
  restarts = 0;
  violations = 0;
  drain_empty_at: number | null = null;
  samples: ImbalanceSample[] = [];
  sample_dt: number;

  constructor(c: SimConfig) {
    this.c = c;
    const n = c.nodes;
    const m = c.processes;
    this.r = new Prng(c.seed);
    this.pr = new Prng((c.seed ^ 0x9e3779b9) >>> 0);
    const mean_speed = (c.speed_min + c.speed_max) / 2;
    const arrival = c.arrival_s >= 0 ? c.arrival_s : (0.5 * m * c.work_mean_s) / (n * c.cpus * mean_speed);
    this.w = drawWorkload(c, arrival, this.r);
    this.cpu = new Cpus(n, m);
    this.names = Array.from({ length: n }, (_, i) => `n${i}`);
    this.views = this.names.map((name) => new LoadView(name, c.view_entries));
    this.gpu = new Uint8Array(n);
    this.up = new Uint8Array(n).fill(1);
    this.draining = new Uint8Array(n);
    this.incoming = new Int32Array(n);
    this.remote = new Float64Array(n);
    this.version = new Uint32Array(n);
    this.life = new Uint32Array(n);
    this.load_cache = new Array<NodeLoad | undefined>(n).fill(undefined);
    let capacity = 0;
    for (let i = 0; i < n; i += 1) {
      this.cpu.cpus[i] = c.cpus;
      this.cpu.speed[i] = c.speed_min + (c.speed_max - c.speed_min) * this.r.float();
      this.cpu.memory_cap[i] = c.node_memory_bytes;
      capacity += c.cpus * (this.cpu.speed[i] as number);
      if (this.r.chance(c.label_share)) {
        this.gpu[i] = 1;
        this.gpu_nodes.push(i);
      }
    }
    if (this.gpu_nodes.length === 0 && c.require_share > 0) {
      this.gpu[0] = 1;
      this.gpu_nodes.push(0);
    }
    const hot = Math.max(1, Math.round(n * c.hot_share));
    this.hot = new Int32Array(hot);
    for (let i = 0; i < hot; i += 1) this.hot[i] = Math.floor((i * n) / hot);
    this.state = new Uint8Array(m);
    this.at = new Int32Array(m).fill(-1);
    this.dest = new Int32Array(m).fill(-1);
    this.dest_life = new Uint32Array(m);
    this.src_life = new Uint32Array(m);
    this.left_s = new Float64Array(m);
    this.moves = new Uint16Array(m);
    this.last_move_ms = new Float64Array(m).fill(-Infinity);
    this.end_s = new Float64Array(m);
    this.mig_epoch = new Uint32Array(m);
    this.pid_names = new Array<string | undefined>(m).fill(undefined);
    this.infos = new Array<SimInfo | undefined>(m).fill(undefined);
    this.unmovable = new Uint8Array(m);
    this.unmovable_n = new Int32Array(n);
    this.moving_out = new Int32Array(n);
    this.peer_mark = new Uint32Array(n);
    this.heard = new Array<NodeLoad | undefined>(n).fill(undefined);
    this.heard_s = new Float64Array(n).fill(-Infinity);
    let longest = 0;
    for (let p = 0; p < m; p += 1) longest = Math.max(longest, (this.w.arrival_s[p] as number) + (this.w.work_s[p] as number) / c.speed_max);
    this.ideal_s = Math.max(this.w.total_work_s / capacity, longest - (m > 0 ? (this.w.arrival_s[0] as number) : 0));
    this.sample_dt = Math.max(c.interval_ms / 1000, this.ideal_s / c.samples);
  }

  run(): SimReport {
    const wall0 = performance.now();
    const c = this.c;
    const interval_s = c.interval_ms / 1000;
    // Policy none reads no load: its nodes exchange none, and the run costs only its processes.
    const exchange = c.policy.mode !== "none";
    for (let i = 0; i < c.nodes; i += 1) {
      if (exchange) this.q.push(this.r.float() * interval_s, EventKind.round, i);
      // Joining, a node learns a few members from the one it joined through.
      this.views[i]?.merge(this.#bootstrap(i), 0);
      if (c.failures_per_node_hour > 0) this.q.push(this.#exp(3600 / c.failures_per_node_hour), EventKind.fail, i);
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
    this.#integrate();
    this.#sample();
    return this.#report(performance.now() - wall0);
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
        if (this.unmovable[p] === 1 && this.mig_epoch[p] === q.epoch && (this.moves[p] as number) < this.c.policy.moves_per_process_max) this.#movableAgain(p);
        return;
      }
      case EventKind.sample:
        this.#sample();
        if (this.done < this.c.processes) q.push(this.now + this.sample_dt, EventKind.sample, 0);
        return;
    }
  }

  #exp(mean: number): number {
    return -Math.log(1 - this.r.float()) * mean;
  }

  /**
   * What a joining node learns from the member it joined through: who some
   * members are, not their load. The entries are too old to decide on
   * (version 0, past the age limit) until gossip brings their load.
   */
  #bootstrap(i: number): LoadEntry[] {
    const out: LoadEntry[] = [];
    for (let k = 0; k < this.c.window * Math.max(1, this.c.fanout); k += 1) {
      const j = this.r.int(this.c.nodes);
      if (j !== i) out.push({ load: this.#load(j), version: 0, age_ms: this.c.policy.view_age_max_ms + 1 });
    }
    return out;
  }

  pid(p: number): string {
    let s = this.pid_names[p];
    if (s === undefined) {
      s = `p${p}`;
      this.pid_names[p] = s;
    }
    return s;
  }

  #load(n: number): NodeLoad {
    const cached = this.load_cache[n];
    if (cached !== undefined) return cached;
    const running = this.cpu.running(n);
    const incoming = this.incoming[n] as number;
    const used = this.cpu.memory_used[n] as number;
    const load: NodeLoad = {
      node: this.names[n] as string,
      cpus: this.cpu.cpus[n] as number,
      speed: this.cpu.speed[n] as number,
      processes: running + incoming,
      movable: Math.max(0, running - (this.moving_out[n] as number) - (this.unmovable_n[n] as number)),
      runnable: running + incoming,
      cpu_used: Math.min(running, this.cpu.cpus[n] as number),
      memory_used_bytes: used,
      memory_free_bytes: Math.max(0, (this.cpu.memory_cap[n] as number) - used),
      remote_bytes_per_s: this.remote[n] as number,
      transfer_bytes_per_s: this.c.policy.model.transfer_bytes_per_s,
      labels: this.gpu[n] === 1 ? GPU : NONE,
      draining: this.draining[n] === 1,
    };
    this.load_cache[n] = load;
    return load;
  }

  /** Brings `n` to now before its rate changes. */
  #touch(n: number): void {
    this.cpu.advance(n, this.now);
  }

  /** After `n` changed: its next completion and its cached load. */
  #settle(n: number): void {
    this.load_cache[n] = undefined;
    this.cpu.epoch[n] = ((this.cpu.epoch[n] as number) + 1) >>> 0;
    const t = this.cpu.nextCompletion_s(n);
    if (t !== Infinity) this.q.push(Math.max(t, this.now), EventKind.complete, n, this.cpu.epoch[n] as number);
  }

  #integrate(): void {
    const dt = this.now - this.traffic_t;
    if (dt > 0) {
      this.int_total += this.pair_total * dt;
      this.int_local += this.pair_local * dt;
    }
    this.traffic_t = this.now;
  }

  /** Adds (sign 1) or removes (-1) the traffic of `p` on `n` with its live peers. */
  #traffic(p: number, n: number, sign: number): void {
    const size = this.w.group_size[p] as number;
    if (size < 2) return;
    this.#integrate();
    const rate = (this.w.talk_bytes_per_s[p] as number) * sign;
    const first = this.w.group_first[p] as number;
    for (let q = first; q < first + size; q += 1) {
      const s = this.state[q] as number;
      if (q === p || s === State.pending || s === State.done) continue;
      const m = this.at[q] as number;
      this.pair_total += rate;
      if (m === n) this.pair_local += rate;
      else {
        this.remote[n] = (this.remote[n] as number) + rate;
        this.remote[m] = (this.remote[m] as number) + rate;
        this.load_cache[m] = undefined;
      }
    }
    this.load_cache[n] = undefined;
  }

  #start(p: number, n: number, work_s: number, fresh: boolean): void {
    this.#touch(n);
    this.cpu.add(n, p, work_s);
    this.cpu.memory_used[n] = (this.cpu.memory_used[n] as number) + (this.w.memory_bytes[p] as number);
    this.state[p] = State.running;
    this.at[p] = n;
    this.#traffic(p, n, 1);
    this.#settle(n);
    if (this.w.requires_gpu[p] === 1 && this.gpu[n] !== 1) this.violations += 1;
    if (fresh && this.draining[n] === 1) this.violations += 1;
    if (fresh) return;
    const capped = (this.moves[p] as number) >= this.c.policy.moves_per_process_max;
    const cool_until_s = ((this.last_move_ms[p] as number) + this.c.policy.process_cooldown_ms) / 1000;
    if (capped || cool_until_s > this.now) {
      this.unmovable[p] = 1;
      this.unmovable_n[n] = (this.unmovable_n[n] as number) + 1;
      if (!capped) this.q.push(cool_until_s, EventKind.coolEnd, p, this.mig_epoch[p] as number);
    }
  }

  /** `p` no longer counts as unmovable on its node (its cooldown ended, or it left). */
  #movableAgain(p: number): void {
    this.unmovable[p] = 0;
    const n = this.at[p] as number;
    this.unmovable_n[n] = (this.unmovable_n[n] as number) - 1;
    this.load_cache[n] = undefined;
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
      const placed = place({ process: { memory_bytes: mem, requires: needs ? GPU : NONE, peer_nodes }, now_ms: this.now * 1000, local: this.#load(e), view: (this.views[e] as LoadView).records(), random: this.pr }, this.c.policy);
      if (placed.kind === "node") n = Number(placed.node.slice(1));
    } else if (this.draining[e] === 0 && (!needs || this.gpu[e] === 1)) n = e;
    if (n < 0 || this.up[n] !== 1) n = this.#feasibleFallback(p);
    if (n < 0) n = e; // nowhere fits: start it where submitted rather than lose it (counted as a violation if it breaks a rule)
    if (n !== e) (this.views[e] as LoadView).account(this.names[n] as string, { processes: 1, runnable: 1, memory_bytes: mem });
    this.#start(p, n, this.w.work_s[p] as number, true);
  }

  #complete(n: number): void {
    this.#touch(n);
    const p = this.cpu.first(n);
    if (p < 0) return;
    this.cpu.remove(n, p);
    this.cpu.memory_used[n] = (this.cpu.memory_used[n] as number) - (this.w.memory_bytes[p] as number);
    if (this.unmovable[p] === 1) this.#movableAgain(p);
    if (this.state[p] === State.moving) {
      this.moving_out[n] = (this.moving_out[n] as number) - 1;
      this.#cancelReservation(p);
    }
    this.#traffic(p, n, -1);
    this.infos[p] = undefined;
    this.pid_names[p] = undefined;
    this.state[p] = State.done;
    this.end_s[p] = this.now;
    this.done += 1;
    this.#settle(n);
    this.#checkDrained();
  }

  #cancelReservation(p: number): void {
    const d = this.dest[p] as number;
    this.mig_epoch[p] = ((this.mig_epoch[p] as number) + 1) >>> 0;
    this.abandoned += 1;
    if (this.life[d] !== this.dest_life[p]) return; // the node failed since: its reservations are gone already
    this.#touch(d);
    this.incoming[d] = (this.incoming[d] as number) - 1;
    this.cpu.memory_used[d] = (this.cpu.memory_used[d] as number) - (this.w.memory_bytes[p] as number);
    this.#settle(d);
  }

  #round(n: number): void {
    const c = this.c;
    const now_ms = this.now * 1000;
    this.q.push(this.now + c.interval_ms / 1000, EventKind.round, n);
    if (this.up[n] !== 1) return;
    const view = this.views[n] as LoadView;
    this.version[n] = (this.version[n] as number) + 1;
    // Housekeeping and the age figures every 8th round: they cost a scan of the view each.
    const housekeeping = ((this.version[n] as number) & 7) === 0;
    if (housekeeping) view.expire(c.policy.view_age_max_ms * 4, now_ms);
    const own = this.#load(n);
    const window = view.window({ load: own, version: this.version[n] as number, age_ms: 0 }, { size: c.window, now_ms });
    for (let f = 0; f < c.fanout; f += 1) {
      const m = this.r.int(c.nodes);
      if (m !== n && this.up[m] === 1) (this.views[m] as LoadView).merge(window, now_ms);
    }
    const records = view.records();
    if (housekeeping) {
      for (const rec of records) {
        const age = ageOf(rec, now_ms);
        this.age_sum += age;
        this.age_n += 1;
        if (age > this.age_max) this.age_max = age;
      }
    }
    this.rounds += 1;
    if (c.policy.mode === "none" || !wantsToAct({ local: own, view: records, now_ms }, c.policy)) return;
    this.decision_rounds += 1;
    this.#touch(n);
    const processes: ProcessInfo[] = [];
    const peer_view: ViewRecord[] = [];
    this.peer_stamp = (this.peer_stamp + 1) >>> 0;
    // The bounded sample decide would take anyway: a crowded node costs no more than a full one.
    const heap = this.cpu.heaps[n] as number[];
    const k = c.policy.processes_max;
    const start = heap.length <= k ? 0 : this.pr.int(heap.length);
    for (let i = 0; i < heap.length && processes.length < k; i += 1) {
      const p = heap[(start + i) % heap.length] as number;
      if (this.state[p] !== State.running) continue;
      processes.push(this.#info(p, n, peer_view, now_ms));
    }
    const moves = decide({ now_ms, local: own, processes, view: records, peer_view, random: this.pr }, c.policy);
    for (const move of moves) this.#migrate(move, n, view);
  }

  #info(p: number, n: number, peer_view: ViewRecord[], now_ms: number): ProcessInfo {
    let info = this.infos[p];
    if (info === undefined) {
      info = {
        pid: this.pid(p),
        memory_bytes: this.w.memory_bytes[p] as number,
        dirty_bytes_per_s: this.w.dirty_bytes_per_s[p] as number,
        cpu_share: 1,
        cpu_s: 0,
        requires: this.w.requires_gpu[p] === 1 ? GPU : NONE,
        pinned: false,
        moves: 0,
        last_move_ms: -Infinity,
        peers: [],
      };
      this.infos[p] = info;
    }
    info.cpu_s = Math.max(0, (this.w.work_s[p] as number) - this.cpu.remaining(n, p));
    info.moves = this.moves[p] as number;
    info.last_move_ms = this.last_move_ms[p] as number;
    const size = this.w.group_size[p] as number;
    if (size > 1) {
      const peers = info.peers;
      let k = 0;
      const first = this.w.group_first[p] as number;
      for (let q = first; q < first + size; q += 1) {
        const s = this.state[q] as number;
        if (q === p || s === State.pending || s === State.done) continue;
        const m = this.at[q] as number;
        let peer = peers[k];
        if (peer === undefined) {
          peer = { pid: this.pid(q), node: "", bytes_per_s: 0 };
          peers.push(peer);
        }
        peer.pid = this.pid(q);
        peer.node = this.names[m] as string;
        peer.bytes_per_s = this.w.talk_bytes_per_s[p] as number;
        k += 1;
        // Nodes whose processes talk exchange load with their traffic: the peer's node is known fresh.
        if (m !== n && this.peer_mark[m] !== this.peer_stamp && peer_view.length < PEER_VIEW_MAX) {
          this.peer_mark[m] = this.peer_stamp;
          // Link traffic flows all the time; its piggybacked load is at most one interval old.
          let heard = this.heard[m];
          if (heard === undefined || this.now - (this.heard_s[m] as number) > this.c.interval_ms / 1000) {
            heard = this.#load(m);
            this.heard[m] = heard;
            this.heard_s[m] = this.now;
          }
          peer_view.push({ load: heard, version: this.version[m] as number, age_ms: (this.now - (this.heard_s[m] as number)) * 1000, received_ms: now_ms });
        }
      }
      if (peers.length !== k) peers.length = k;
    }
    return info;
  }

  #migrate(move: Move, s: number, view: LoadView): void {
    const p = Number(move.pid.slice(1));
    const d = Number(move.to.slice(1));
    if (this.state[p] !== State.running || this.at[p] !== s || this.up[d] !== 1 || d === s) {
      this.abandoned += 1;
      return;
    }
    const mem = this.w.memory_bytes[p] as number;
    this.#touch(d);
    this.cpu.memory_used[d] = (this.cpu.memory_used[d] as number) + mem;
    this.incoming[d] = (this.incoming[d] as number) + 1;
    this.#settle(d);
    view.account(move.to, { processes: 1, runnable: 1, memory_bytes: mem });
    if (this.unmovable[p] === 1) this.#movableAgain(p);
    this.moving_out[s] = (this.moving_out[s] as number) + 1;
    this.load_cache[s] = undefined;
    this.state[p] = State.moving;
    this.dest[p] = d;
    this.dest_life[p] = this.life[d] as number;
    this.src_life[p] = this.life[s] as number;
    this.moves[p] = (this.moves[p] as number) + 1;
    this.last_move_ms[p] = this.now * 1000;
    const epoch = ((this.mig_epoch[p] as number) + 1) >>> 0;
    this.mig_epoch[p] = epoch;
    this.migrations += 1;
    this.by_reason[move.reason] += 1;
    this.by_strategy[move.strategy] += 1;
    this.bytes_moved += move.estimate.bytes;
    this.q.push(this.now + (move.estimate.total_ms - move.estimate.downtime_ms) / 1000, EventKind.migrationPause, p, epoch);
    this.q.push(this.now + move.estimate.total_ms / 1000, EventKind.migrationDone, p, epoch);
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
    this.#touch(s);
    this.left_s[p] = this.cpu.remove(s, p);
    this.state[p] = State.paused;
    this.#settle(s);
  }

  #arriveMoved(p: number, epoch: number): void {
    if (this.mig_epoch[p] !== epoch || this.state[p] !== State.paused) return;
    const s = this.at[p] as number;
    const d = this.dest[p] as number;
    const mem = this.w.memory_bytes[p] as number;
    if (this.life[s] === this.src_life[p]) {
      this.#touch(s);
      this.cpu.memory_used[s] = (this.cpu.memory_used[s] as number) - mem;
      this.#settle(s);
    }
    this.#traffic(p, s, -1);
    this.state[p] = State.pending; // off the books while its traffic moves with it
    if (this.up[d] !== 1 || this.life[d] !== this.dest_life[p]) {
      // Failed before RUNNING at the destination: it resumes at the source, or restarts if that is gone too.
      this.abandoned += 1;
      if (this.up[s] === 1) this.#start(p, s, this.left_s[p] as number, false);
      else this.#restart(p);
      return;
    }
    this.#touch(d);
    this.incoming[d] = (this.incoming[d] as number) - 1;
    this.cpu.memory_used[d] = (this.cpu.memory_used[d] as number) - mem; // #start adds it back
    this.#start(p, d, this.left_s[p] as number, false);
    this.#checkDrained();
  }

  #restart(p: number): void {
    this.restarts += 1;
    this.state[p] = State.pending;
    this.#arrive(p);
  }

  #fail(n: number): void {
    if (this.up[n] !== 1) return;
    this.failures += 1;
    this.#touch(n);
    const lost = [...(this.cpu.heaps[n] as number[])];
    for (const p of lost) {
      this.cpu.remove(n, p);
      this.unmovable[p] = 0;
      if (this.state[p] === State.moving) this.#cancelReservation(p);
      this.#traffic(p, n, -1);
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
    this.#settle(n);
    for (const p of lost) this.#restart(p);
    this.q.push(this.now + this.c.repair_s, EventKind.repair, n);
  }

  #repair(n: number): void {
    this.up[n] = 1;
    this.cpu.V[n] = 0;
    this.cpu.last_s[n] = this.now;
    this.remote[n] = 0;
    (this.views[n] as LoadView).merge(this.#bootstrap(n), this.now * 1000);
    this.#settle(n);
    this.q.push(this.now + this.#exp(3600 / this.c.failures_per_node_hour), EventKind.fail, n);
  }

  #checkDrained(): void {
    if (this.drain_empty_at !== null || this.c.drain_nodes.length === 0 || this.now < this.c.drain_at_s) return;
    for (const d of this.c.drain_nodes) if (this.cpu.running(d) + (this.incoming[d] as number) > 0) return;
    this.drain_empty_at = this.now;
  }

  #sample(): void {
    this.#integrate();
    this.#checkDrained();
    let sum = 0;
    let sq = 0;
    let max = 0;
    let up = 0;
    let busy = 0;
    for (let n = 0; n < this.c.nodes; n += 1) {
      if (this.up[n] !== 1) continue;
      const k = this.cpu.running(n);
      const l = k / ((this.cpu.cpus[n] as number) * (this.cpu.speed[n] as number));
      sum += l;
      sq += l * l;
      if (l > max) max = l;
      up += 1;
      if (k + (this.incoming[n] as number) > 0) busy += 1;
    }
    const mean = up > 0 ? sum / up : 0;
    const cv = mean > 0 ? Math.sqrt(Math.max(0, sq / up - mean * mean)) / mean : 0;
    this.samples.push({ t_s: round3(this.now), load_cv: round3(cv), max_over_mean: round3(mean > 0 ? max / mean : 0), busy_nodes: busy, colocated_share: round3(this.pair_total > 0 ? this.pair_local / this.pair_total : 0) });
  }

  #report(wall_ms: number): SimReport {
    const m = this.c.processes;
    let makespan = 0;
    let stretch = 0;
    let max_moves = 0;
    const first = m > 0 ? (this.w.arrival_s[0] as number) : 0;
    for (let p = 0; p < m; p += 1) {
      if (this.state[p] !== State.done) continue;
      makespan = Math.max(makespan, (this.end_s[p] as number) - first);
      stretch += ((this.end_s[p] as number) - (this.w.arrival_s[p] as number)) / (this.w.work_s[p] as number);
      max_moves = Math.max(max_moves, this.moves[p] as number);
    }
    return {
      nodes: this.c.nodes,
      processes: m,
      policy: this.c.policy.mode,
      seed: this.c.seed,
      makespan_s: round3(makespan),
      ideal_s: round3(this.ideal_s),
      makespan_over_ideal: round3(this.ideal_s > 0 ? makespan / this.ideal_s : 0),
      mean_stretch: round3(this.done > 0 ? stretch / this.done : 0),
      completed: this.done,
      migrations: {
        total: this.migrations,
        per_process: round3(m > 0 ? this.migrations / m : 0),
        max_per_process: max_moves,
        by_reason: this.by_reason,
        by_strategy: this.by_strategy,
        abandoned: this.abandoned,
      },
      bytes_moved: Math.round(this.bytes_moved),
      information_age_ms: { mean: round3(this.age_n > 0 ? this.age_sum / this.age_n : 0), max: round3(this.age_max) },
      imbalance: thin(this.samples, this.c.samples),
      colocated_traffic_share: round3(this.int_total > 0 ? this.int_local / this.int_total : 0),
      failures: this.failures,
      restarts: this.restarts,
      drain_empty_at_s: this.drain_empty_at === null ? null : round3(this.drain_empty_at),
      invariant_violations: this.violations,
      rounds: this.rounds,
      decision_rounds: this.decision_rounds,
      events: this.events,
      wall_ms: Math.round(wall_ms),
    };
  }
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

/** At most about `n` points of `xs`, evenly spaced, first and last kept. */
function thin<T>(xs: readonly T[], n: number): T[] {
  if (xs.length <= n + 1) return [...xs];
  const out: T[] = [];
  for (let i = 0; i < n; i += 1) out.push(xs[Math.floor((i * (xs.length - 1)) / n)] as T);
  out.push(xs[xs.length - 1] as T);
  return out;
}
