/**
 * A node's round, every interval: it gossips its load vector with a window
 * of its view to a few random peers, and, when its load says a decision
 * could move something (`wantsToAct`), describes a bounded sample of its
 * processes and asks the policy what to move. The policy code is the
 * daemon's, unchanged; only what it is fed is built here.
 */
import { ageOf, decide, wantsToAct, type LoadEntry, type LoadView, type Move, type NodeLoad, type ProcessInfo, type ViewRecord } from "../policy/mod.js";
import { GPU, Live, LIVE_FIELDS, NONE, State, type SimState } from "./_state.js";
import { Packed, PACKED_FIELDS } from "./_workload.js";

/** A process's description as the simulator builds it: one of a few reused from round to round. */
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

/** Peer nodes a round learns of through link traffic, at most: bounds a decision's cost. */
const PEER_VIEW_MAX = 8;

const NO_MOVES: readonly Move[] = Object.freeze([]);

/** The rounds of every node of one run, and the scratch they share. */
export class Rounds {
  readonly #s: SimState;
  /**
   * Descriptions handed to the policy, reused: a round's decision keeps
   * none of them (a move names its pid), so a run needs only as many as one
   * round considers, not one per process alive.
   */
  readonly #pool: SimInfo[] = [];
  readonly #processes: ProcessInfo[] = [];
  readonly #peer_mark: Uint32Array;
  #peer_stamp = 0;
  /** Load of a node as last heard with link traffic, and when (s): at most one interval old when used. */
  readonly #heard: (NodeLoad | undefined)[];
  readonly #heard_s: Float64Array;

  constructor(s: SimState) {
    this.#s = s;
    const n = s.c.nodes;
    this.#peer_mark = new Uint32Array(n);
    this.#heard = new Array<NodeLoad | undefined>(n).fill(undefined);
    this.#heard_s = new Float64Array(n).fill(-Infinity);
  }

  /**
   * What a joining node learns from the member it joined through: who some
   * members are, not their load. The entries are too old to decide on
   * (version 0, past the age limit) until gossip brings their load.
   */
  bootstrap(i: number): LoadEntry[] {
    const s = this.#s;
    const out: LoadEntry[] = [];
    for (let k = 0; k < s.c.window * Math.max(1, s.c.fanout); k += 1) {
      const j = s.r.int(s.c.nodes);
      if (j !== i) out.push({ load: s.load(j), version: 0, age_ms: s.c.policy.view_age_max_ms + 1 });
    }
    return out;
  }

  /** Node `n`'s round now: gossip, then the moves it decides (valid until the next round). */
  round(n: number): readonly Move[] {
    const s = this.#s;
    const c = s.c;
    const now_ms = s.now * 1000;
    const view = s.views[n] as LoadView;
    s.version[n] = (s.version[n] as number) + 1;
    s.noteNode(n);
    // Housekeeping and the age figures every 8th round: they cost a scan of the view each.
    const housekeeping = ((s.version[n] as number) & 7) === 0;
    if (housekeeping) view.expire(c.policy.view_age_max_ms * 4, now_ms);
    const own = s.load(n);
    const window = view.window({ load: own, version: s.version[n] as number, age_ms: 0 }, { size: c.window, now_ms });
    for (let f = 0; f < c.fanout; f += 1) {
      const m = s.r.int(c.nodes);
      if (m === n) continue;
      if (!s.owns(m)) s.sendGossip(m, window, now_ms);
      else if (s.up[m] === 1) (s.views[m] as LoadView).merge(window, now_ms);
    }
    let records = view.records();
    const avoid = s.avoid[n];
    if (avoid !== undefined && avoid.size > 0) records = this.#without(records, avoid, now_ms);
    if (housekeeping) {
      for (const rec of records) {
        const age = ageOf(rec, now_ms);
        s.age_sum += age;
        s.age_n += 1;
        if (age > s.age_max) s.age_max = age;
      }
    }
    s.rounds += 1;
    if (c.policy.mode === "none" || !wantsToAct({ local: own, view: records, now_ms }, c.policy)) return NO_MOVES;
    s.decision_rounds += 1;
    s.touch(n);
    const processes = this.#processes;
    processes.length = 0;
    const peer_view: ViewRecord[] = [];
    this.#peer_stamp = (this.#peer_stamp + 1) >>> 0;
    // The bounded sample decide would take anyway: a crowded node costs no more than a full one.
    const heap = s.cpu.heaps[n] as number[];
    const k = c.policy.processes_max;
    const start = heap.length <= k ? 0 : s.pr.int(heap.length);
    for (let i = 0; i < heap.length && processes.length < k; i += 1) {
      const p = heap[(start + i) % heap.length] as number;
      if (s.state[p] !== State.running) continue;
      processes.push(this.#info(processes.length, p, n, peer_view, now_ms));
    }
    return decide({ now_ms, local: own, processes, view: records, peer_view, random: s.pr }, c.policy);
  }

  /**
   * `records` without the nodes that refused a move of this node lately
   * (as a daemon's decision view leaves them out); expired entries are
   * forgotten.
   */
  #without(records: readonly ViewRecord[], avoid: Map<string, number>, now_ms: number): readonly ViewRecord[] {
    for (const [node, until] of avoid) if (until <= now_ms) avoid.delete(node);
    return avoid.size === 0 ? records : records.filter((r) => !avoid.has(r.load.node));
  }

  /** The description of `pid` the last round handed to the policy (valid until the next round). */
  described(pid: string): ProcessInfo | undefined {
    for (const p of this.#processes) if (p.pid === pid) return p;
    return undefined;
  }

  /**
   * The dirty rate of `p` on `n` as a daemon measures it (`_dirty_rate.ts`):
   * bytes written per second of wall time, so a process sharing a core
   * writes in proportion to the CPU it gets; unmeasured (0) for a process
   * within the stop-and-copy limit, whose strategy does not depend on it,
   * and for one that has not run here long enough for a window (the first
   * opens at the round after it arrived and is read at the next).
   */
  measuredDirty(p: number, n: number): number {
    const s = this.#s;
    const at = p * PACKED_FIELDS;
    const mem = s.w.packed[at + Packed.memory_bytes] as number;
    if (mem <= s.c.policy.model.stop_copy_bytes_max) return 0;
    if (s.now - (s.live[p * LIVE_FIELDS + Live.since_s] as number) < (2 * s.c.interval_ms) / 1000) return 0;
    return (s.w.packed[at + Packed.dirty_bytes_per_s] as number) * s.cpu.rate(n);
  }

  /** Fills description `slot` of the pool for `p` on `n`; adds the nodes of its peers to `peer_view`. */
  #info(slot: number, p: number, n: number, peer_view: ViewRecord[], now_ms: number): SimInfo {
    const s = this.#s;
    let info = this.#pool[slot];
    if (info === undefined) {
      info = { pid: "", memory_bytes: 0, dirty_bytes_per_s: 0, cpu_share: 1, cpu_s: 0, requires: NONE, pinned: false, moves: 0, last_move_ms: -Infinity, peers: [] };
      this.#pool.push(info);
    }
    const w = s.w.packed;
    const at = p * PACKED_FIELDS;
    info.pid = s.pid(p);
    info.memory_bytes = w[at + Packed.memory_bytes] as number;
    info.dirty_bytes_per_s = this.measuredDirty(p, n);
    info.requires = w[at + Packed.requires_gpu] === 1 ? GPU : NONE;
    info.cpu_s = Math.max(0, (w[at + Packed.work_s] as number) - s.cpu.remaining(n, p));
    info.moves = s.live[p * LIVE_FIELDS + Live.moves] as number;
    info.last_move_ms = s.live[p * LIVE_FIELDS + Live.last_move_ms] as number;
    const peers = info.peers;
    let k = 0;
    const size = w[at + Packed.group_size] as number;
    if (size > 1) {
      const first = w[at + Packed.group_first] as number;
      const talk = w[at + Packed.talk_bytes_per_s] as number;
      for (let q = first; q < first + size; q += 1) {
        const st = s.state[q] as number;
        if (q === p || st === State.pending || st === State.done) continue;
        const m = s.at[q] as number;
        let peer = peers[k];
        if (peer === undefined) {
          peer = { pid: "", node: "", bytes_per_s: 0 };
          peers.push(peer);
        }
        peer.pid = s.pid(q);
        peer.node = s.names[m] as string;
        peer.bytes_per_s = talk;
        k += 1;
        // Nodes whose processes talk exchange load with their traffic: the peer's node is known fresh.
        if (m !== n && this.#peer_mark[m] !== this.#peer_stamp && peer_view.length < PEER_VIEW_MAX) {
          this.#peer_mark[m] = this.#peer_stamp;
          // Link traffic flows all the time; its piggybacked load is at most one interval old.
          let heard = this.#heard[m];
          if (heard === undefined || s.now - (this.#heard_s[m] as number) > s.c.interval_ms / 1000) {
            heard = s.load(m);
            this.#heard[m] = heard;
            this.#heard_s[m] = s.now;
          }
          peer_view.push({ load: heard, version: s.version[m] as number, age_ms: (s.now - (this.#heard_s[m] as number)) * 1000, received_ms: now_ms });
        }
      }
    }
    if (peers.length !== k) peers.length = k;
    return info;
  }
}
