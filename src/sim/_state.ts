/**
 * The simulation's state: the cluster, the processes and the figures, all in
 * typed arrays indexed by node or process, and the bookkeeping every event
 * shares (a node's load vector, its CPU clock, link traffic). The events
 * themselves live in simulate.ts, the decision rounds in _rounds.ts, the
 * figures in _figures.ts.
 */
import { Prng } from "../_prng.js";
import { LoadView, type LoadEntry, type MoveReason, type NodeLoad, type Strategy } from "../policy/mod.js";
import type { SimConfig } from "./config.js";
import { Cpus } from "./_cluster.js";
import { EventKind, EventQueue } from "./_events.js";
import type { ImbalanceSample } from "./report.js";
import { drawWorkload, type Workload } from "./_workload.js";
import { ENTRY_FIELDS, loadAt, LOAD_NUMBERS, Msg, NumberList, putLoad, TRAFFIC_FIELDS } from "./_wire.js";

/** Where a process is in its life. */
export const State = { pending: 0, running: 1, moving: 2, paused: 3, done: 4 } as const;

/** Numbers per process in {@link SimState.live}: four doubles, half a cache line. */
export const LIVE_FIELDS = 4;

/** Offsets of a process's figures in {@link SimState.live}. */
export const Live = { moves: 0, last_move_ms: 1, since_s: 2 } as const;

/** The labels of a gpu node, and the requirement of a process that needs one: one object each, shared. */
export const GPU = Object.freeze({ gpu: "yes" });
/** No labels, no requirements. */
export const NONE = Object.freeze({});

/**
 * `s` as the engine's unique copy (a property key is interned): the policies
 * compare node names all the time, and two distinct interned strings differ
 * by pointer alone, where other strings of one length are compared byte by
 * byte, each a cache miss at 10,000 nodes.
 */
function interned(s: string): string {
  return Object.keys({ [s]: 0 })[0] as string;
}

/** The index of the node named `name` (`n` and its index, as the run names them). */
function nodeIndex(name: string): number {
  let i = 0;
  for (let k = 1; k < name.length; k += 1) i = i * 10 + (name.charCodeAt(k) - 48);
  return i;
}

/** Everything a run holds; the event handlers and the rounds work on it. */
export class SimState {
  readonly c: SimConfig;
  /**
   * This part's index and the run's part count (see `simulate`): a part
   * owns a contiguous share of the nodes and handles their events; with one
   * part, the run is the sequential model and nothing below is used.
   */
  readonly part: number;
  readonly parts: number;
  /** Messages to other parts' nodes since the last sync (`_wire.ts` records). */
  readonly out_msgs = new NumberList();
  /** Link-traffic changes since the last sync, replayed by every part at the sync in one order. */
  readonly out_traffic = new NumberList();
  /** Processes whose state or node changed since the last sync, once each. */
  readonly changed = new NumberList();
  readonly #changed_mark: Uint8Array;
  /** This part's nodes whose figures may have changed since the last batch, once each. */
  readonly dirty = new NumberList();
  readonly #dirty_mark: Uint8Array;
  /** Per process: its node in the link-traffic books (-1: off them), kept by the replay alone. */
  readonly #tnode: Int32Array;
  /** Scratch of {@link loadNow}. */
  readonly #load_numbers = new Float64Array(LOAD_NUMBERS);
  readonly w: Workload;
  readonly cpu: Cpus;
  readonly q = new EventQueue();
  /** The run's randomness: `r` for the world (workload, gossip peers, failures), `pr` for the policies' own. */
  r: Prng;
  pr: Prng;
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
  /**
   * Per process, side by side at `p * LIVE_FIELDS` plus a `Live` offset:
   * its moves so far, when it last moved (ms, -Infinity if never), and when
   * it began running on its node (started or arrived by a move: its dirty
   * rate is measured only after a while there). Describing a process reads
   * all three: one cache line instead of three.
   */
  readonly live: Float64Array;
  readonly end_s: Float64Array;
  readonly mig_epoch: Uint32Array;
  /** Per process: 1 while it counts in its node's unmovable (cooling down after a move, or at its move cap). */
  readonly unmovable: Uint8Array;
  /** Per node: processes that may not move automatically now, and processes leaving by migration. */
  readonly unmovable_n: Int32Array;
  readonly moving_out: Int32Array;
  /** Per node: nodes that refused one of its moves lately, until when (ms) they are left out of its decisions; made at its first refusal. */
  readonly avoid: (Map<string, number> | undefined)[];
  readonly ideal_s: number;
  // Figures.
  now = 0;
  done = 0;
  events = 0;
  migrations = 0;
  abandoned = 0;
  /** Asks a target refused on its load then, and moves that then found no other target. */
  refused = 0;
  refused_kept = 0;
  bytes_moved = 0;
  /** Sums over started moves: what the source's estimate said, what the move took, and its downtime (ms). */
  expected_ms = 0;
  actual_ms = 0;
  downtime_ms = 0;
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
  readonly sample_dt: number;

  constructor(c: SimConfig, part = 0) {
    this.c = c;
    const n = c.nodes;
    const m = c.processes;
    this.parts = c.partitions;
    this.part = part;
    this.#changed_mark = new Uint8Array(this.parts > 1 ? m : 0);
    this.#dirty_mark = new Uint8Array(this.parts > 1 ? n : 0);
    this.#tnode = new Int32Array(this.parts > 1 ? m : 0).fill(-1);
    this.r = new Prng(c.seed);
    this.pr = new Prng((c.seed ^ 0x9e3779b9) >>> 0);
    const mean_speed = (c.speed_min + c.speed_max) / 2;
    const arrival = c.arrival_s >= 0 ? c.arrival_s : (0.5 * m * c.work_mean_s) / (n * c.cpus * mean_speed);
    this.w = drawWorkload(c, arrival, this.r);
    this.cpu = new Cpus(n, m);
    this.names = Array.from({ length: n }, (_, i) => interned(`n${i}`));
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
    this.live = new Float64Array(m * LIVE_FIELDS);
    for (let p = 0; p < m; p += 1) this.live[p * LIVE_FIELDS + Live.last_move_ms] = -Infinity;
    this.end_s = new Float64Array(m);
    this.mig_epoch = new Uint32Array(m);
    this.unmovable = new Uint8Array(m);
    this.unmovable_n = new Int32Array(n);
    this.moving_out = new Int32Array(n);
    this.avoid = new Array<Map<string, number> | undefined>(n).fill(undefined);
    let longest = 0;
    for (let p = 0; p < m; p += 1) longest = Math.max(longest, (this.w.arrival_s[p] as number) + (this.w.work_s[p] as number) / c.speed_max);
    this.ideal_s = Math.max(this.w.total_work_s / capacity, longest - (m > 0 ? (this.w.arrival_s[0] as number) : 0));
    this.sample_dt = Math.max(c.interval_ms / 1000, this.ideal_s / c.samples);
    if (this.parts > 1) {
      // Everything above is the same in every part; from here on each part draws from streams of its own.
      this.r = new Prng((c.seed + Math.imul(0x632be5ab, part + 1)) >>> 0);
      this.pr = new Prng((c.seed + Math.imul(0x632be5ab, part + 1)) ^ 0x9e3779b9);
      // The other parts' nodes as they start (the same everywhere), until their first sync.
      for (let i = 0; i < n; i += 1) if (!this.owns(i)) this.load_cache[i] = this.loadNow(i);
    }
  }

  /** The part that owns node `n`: parts own contiguous shares (the hot nodes are spread evenly among them). */
  ownerOf(n: number): number {
    return Math.floor((n * this.parts) / this.c.nodes);
  }

  /** Whether this part owns node `n` (always, with one part). */
  owns(n: number): boolean {
    return this.parts === 1 || this.ownerOf(n) === this.part;
  }

  /** Notes that `p`'s state or node changed, for the other parts (nothing with one part). */
  mark(p: number): void {
    if (this.parts === 1 || this.#changed_mark[p] === 1) return;
    this.#changed_mark[p] = 1;
    this.changed.push(p);
  }

  /** Sends a gossip window to node `m` of another part: it merges it at the next sync, as received when sent. */
  sendGossip(m: number, window: readonly LoadEntry[], now_ms: number): void {
    const out = this.out_msgs;
    const at = out.reserve(4 + window.length * ENTRY_FIELDS);
    out.set(at, Msg.gossip);
    out.set(at + 1, m);
    out.set(at + 2, now_ms);
    out.set(at + 3, window.length);
    const f = out.view();
    let b = at + 4;
    for (const e of window) {
      const l = e.load;
      f[b] = nodeIndex(l.node);
      f[b + 1] = e.version;
      f[b + 2] = e.age_ms;
      putLoad(f, b + 3, l);
      f[b + 3 + LOAD_NUMBERS] = (l.labels === GPU ? 1 : 0) + (l.draining ? 2 : 0);
      b += ENTRY_FIELDS;
    }
  }

  /** Sends a message of `Msg` kind `kind` about node `node` to the part that owns it, with `args`. */
  send(kind: number, node: number, ...args: number[]): void {
    const out = this.out_msgs;
    out.push(kind);
    out.push(node);
    out.push(args.length);
    for (const a of args) out.push(a);
  }

  /** Node `n`'s load vector is out of date: made again when next asked, and sent to the other parts at the next batch. */
  invalidate(n: number): void {
    this.load_cache[n] = undefined;
    this.noteNode(n);
  }

  /** Notes that node `n` of this part changed (its load, version, up or life), for the next batch. */
  noteNode(n: number): void {
    if (this.parts === 1 || this.#dirty_mark[n] === 1 || !this.owns(n)) return;
    this.#dirty_mark[n] = 1;
    this.dirty.push(n);
  }

  /** Clears the marks of {@link dirty} once its nodes are sent. */
  undirtyAll(): void {
    for (let i = 0; i < this.dirty.length; i += 1) this.#dirty_mark[this.dirty.get(i)] = 0;
    this.dirty.clear();
  }

  /** Clears the marks of {@link changed} once sent. */
  unmarkAll(): void {
    for (let i = 0; i < this.changed.length; i += 1) this.#changed_mark[this.changed.get(i)] = 0;
    this.changed.clear();
  }

  /** A process's pid as the policies see it. Made when asked: keeping a million of them would only feed the collector. */
  pid(p: number): string {
    return `p${p}`;
  }

  /** Node `n`'s load vector now: one object until something changes it (views keep it as a snapshot). */
  load(n: number): NodeLoad {
    const cached = this.load_cache[n];
    if (cached !== undefined) return cached;
    // Another part's node is known from its last sync only; its arrays here are not its state.
    if (!this.owns(n)) throw new Error(`part ${this.part} has no load of node ${n}, which part ${this.ownerOf(n)} owns`);
    return this.loadNow(n);
  }

  /**
   * The numbers of node `n`'s load vector, from its arrays, written into
   * `f` from `at` as `putLoad` writes them, with no object made (a batch
   * sends them; {@link loadNow} makes the vector from them).
   */
  loadFields(n: number, f: Float64Array, at: number): void {
    const running = this.cpu.running(n);
    const incoming = this.incoming[n] as number;
    const used = this.cpu.memory_used[n] as number;
    f[at] = this.cpu.cpus[n] as number;
    f[at + 1] = this.cpu.speed[n] as number;
    f[at + 2] = running + incoming;
    f[at + 3] = Math.max(0, running - (this.moving_out[n] as number) - (this.unmovable_n[n] as number));
    f[at + 4] = running + incoming;
    f[at + 5] = Math.min(running, this.cpu.cpus[n] as number);
    f[at + 6] = used;
    f[at + 7] = Math.max(0, (this.cpu.memory_cap[n] as number) - used);
    f[at + 8] = this.remote[n] as number;
    f[at + 9] = this.c.policy.model.transfer_bytes_per_s;
  }

  /** Node `n`'s load vector computed from its arrays, cached. */
  loadNow(n: number): NodeLoad {
    const f = this.#load_numbers;
    this.loadFields(n, f, 0);
    const load = loadAt(f, 0, this.names[n] as string, this.gpu[n] === 1 ? GPU : NONE, this.draining[n] === 1);
    this.load_cache[n] = load;
    return load;
  }

  /** Brings `n` to now before its rate changes. */
  touch(n: number): void {
    this.cpu.advance(n, this.now);
  }

  /** After `n` changed: its next completion and its cached load. */
  settle(n: number): void {
    this.invalidate(n);
    this.cpu.epoch[n] = ((this.cpu.epoch[n] as number) + 1) >>> 0;
    const t = this.cpu.nextCompletion_s(n);
    if (t !== Infinity) this.q.push(Math.max(t, this.now), EventKind.complete, n, this.cpu.epoch[n] as number);
  }

  /** Adds the pair traffic since the last change to the run's integrals. */
  integrate(): void {
    this.integrateTo(this.now);
  }

  /** Adds the pair traffic from the last change up to `t_s` to the run's integrals. */
  integrateTo(t_s: number): void {
    const dt = t_s - this.traffic_t;
    if (dt > 0) {
      this.int_total += this.pair_total * dt;
      this.int_local += this.pair_local * dt;
    }
    this.traffic_t = t_s;
  }

  /**
   * Adds (sign 1) or removes (-1) the traffic of `p` on `n` with its live
   * peers. With parts, the change is noted and applied at the next sync by
   * every part, in one order (see {@link replayTraffic}).
   */
  traffic(p: number, n: number, sign: number): void {
    const size = this.w.group_size[p] as number;
    if (size < 2) return;
    if (this.parts > 1) {
      const at = this.out_traffic.reserve(TRAFFIC_FIELDS);
      this.out_traffic.set(at, this.now);
      this.out_traffic.set(at + 1, p);
      this.out_traffic.set(at + 2, n);
      this.out_traffic.set(at + 3, sign);
      return;
    }
    this.integrate();
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
        this.invalidate(m);
      }
    }
    this.invalidate(n);
  }

  /**
   * Applies the link-traffic changes of every part since the last sync, in
   * time order (ties: the lower part first, then as noted), against books of
   * its own: every part computes the same sums, and each pair's traffic is
   * added and taken away against the same view of who is where. Loads of
   * this part's nodes whose traffic changed are recomputed.
   */
  replayTraffic(lists: readonly Float64Array[]): void {
    const at = new Int32Array(lists.length);
    const tnode = this.#tnode;
    for (;;) {
      let from = -1;
      let t = Infinity;
      for (let k = 0; k < lists.length; k += 1) {
        const list = lists[k] as Float64Array;
        const i = at[k] as number;
        if (i < list.length && (list[i] as number) < t) {
          t = list[i] as number;
          from = k;
        }
      }
      if (from < 0) return;
      const list = lists[from] as Float64Array;
      const i = at[from] as number;
      at[from] = i + TRAFFIC_FIELDS;
      const p = list[i + 1] as number;
      const n = list[i + 2] as number;
      const sign = list[i + 3] as number;
      if (t > this.traffic_t) this.integrateTo(t);
      if (sign < 0) tnode[p] = -1;
      const rate = (this.w.talk_bytes_per_s[p] as number) * sign;
      const first = this.w.group_first[p] as number;
      const size = this.w.group_size[p] as number;
      for (let q = first; q < first + size; q += 1) {
        const m = tnode[q] as number;
        if (q === p || m < 0) continue;
        this.pair_total += rate;
        if (m === n) this.pair_local += rate;
        else {
          this.remote[n] = (this.remote[n] as number) + rate;
          this.remote[m] = (this.remote[m] as number) + rate;
          if (this.owns(m)) this.invalidate(m);
        }
      }
      if (sign > 0) tnode[p] = n;
      if (this.owns(n)) this.invalidate(n);
    }
  }

  /** `p` no longer counts as unmovable on its node (its cooldown ended, or it left). */
  movableAgain(p: number): void {
    this.unmovable[p] = 0;
    const n = this.at[p] as number;
    this.unmovable_n[n] = (this.unmovable_n[n] as number) - 1;
    this.invalidate(n);
  }

  /** A draw from the exponential distribution of mean `mean`. */
  exp(mean: number): number {
    return -Math.log(1 - this.r.float()) * mean;
  }

  /** Records when every drained node first ran empty. */
  checkDrained(): void {
    // With parts, every sync checks it from each part's count (Simulation.sync).
    if (this.parts > 1) return;
    if (this.drain_empty_at !== null || this.c.drain_nodes.length === 0 || this.now < this.c.drain_at_s) return;
    for (const d of this.c.drain_nodes) if (this.cpu.running(d) + (this.incoming[d] as number) > 0) return;
    this.drain_empty_at = this.now;
  }
}
