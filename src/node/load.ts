/**
 * The load module in the daemon (docs/load.md, "In the daemon"): it runs
 * the pure policies of `src/policy` against this node's real measurements.
 * It shares the node's cores among its guests (`--cpus`, `_scheduler.ts`),
 * measures its load vector, keeps a {@link LoadView} of the cluster fed by
 * gossip (`_gossip.ts`), places new processes, and runs a balancer round
 * every interval (`_balancer.ts`). Drain, labels and the policy's
 * parameters are its state; every automatic move is an event.
 */
import os from "node:os";
import { Prng } from "../_prng.js";
import { FerryError } from "../errors.js";
import {
  acceptMove,
  idleNodes,
  loadCopy,
  LoadView,
  place,
  policyParams,
  satisfies,
  type Labels,
  type Acceptance,
  type LinkPeer,
  type MoveOffer,
  type NewProcess,
  type NodeLoad,
  type Placement,
  type PolicyMode,
  type PolicyParams,
  type ProcessInfo,
  type ViewRecord,
} from "../policy/mod.js";
import { refillWarm } from "../runtime/mod.js";
import { errorField } from "../log/mod.js";
import type { FerryNode } from "./node.js";
import { CpuScheduler, SLICE_MS } from "./_scheduler.js";
import { applyPolicyChanges } from "./_policy_changes.js";
import { ConstraintsSchema } from "./_load_schemas.js";
import { parse } from "../validate.js";
import { requestJson } from "./_http.js";
import { nodeNamed } from "./_dialer.js";
import { DirtyMeter, type DirtyCandidate } from "./_dirty_rate.js";
import { LoadMetrics } from "./_load_metrics.js";
import type { Running } from "./_records.js";
import { LOAD_STATE_VERSION, LoadStateFile } from "./node_state.js";

/** How often a node measures, gossips and decides, after MOSIX. */
export const LOAD_INTERVAL_MS_DEFAULT = 500;

/** How the load module of a node is set up (`ferry node start` flags). */
export interface LoadOptions {
  /** Guests computing at once (`--cpus`; default: this machine's cores). */
  cpus?: number;
  /** `--label k=v`. */
  labels?: Labels;
  /** Run the balancer and place new processes (`--balance on|off`). */
  balance?: boolean;
  /** `--policy balance|pack|none`. */
  mode?: PolicyMode;
  /** Measure, gossip and decide this often. */
  interval_ms?: number;
}

/** What the runner knows of a process's constraints; unknown (null) while its home has not said, and then it is not moved. */
interface Constraints {
  requires: Labels;
  pinned: boolean;
}

/** Traffic of one pair as last sampled. */
interface PairSample {
  bytes: number;
  at_ms: number;
  bytes_per_s: number;
}

/**
 * How long a target counts a move it accepted before the process's standby
 * shows up here: the source starts the move at once, and its OFFER is the
 * first thing it sends on its data connection (moves of small processes
 * here took 65-920 ms in all, OFFER to running). A move that failed before
 * (the process ended meanwhile, which happens at a batch's tail) is
 * forgotten after this: at 5 s, a target counted a job that never came
 * through the next batch's spread and refused its last move.
 */
const ACCEPTED_MOVE_MS = 2_000;

/**
 * Least time between two rounds run early because work arrived: a burst of
 * starts spreads at once (not up to an interval later), but a steady
 * trickle of arrivals does not gossip more than every slice. A regular
 * round does not hold one back: it saw the node before the work arrived.
 */
const EARLY_ROUND_GAP_MS = 100;

/** One node's row of `GET /v1/nodes`'s load columns. */
export interface LoadRow {
  cpus: number;
  runnable: number;
  cpu_used: number;
  processes: number;
  memory_used_bytes: number;
  labels: Labels;
  draining: boolean;
  /** How old this figure is (0: measured by the node answering). */
  load_age_ms: number;
}

/** The load module of one node. */
export class LoadModule {
  readonly scheduler: CpuScheduler;
  readonly view: LoadView;
  readonly interval_ms: number;
  /** The only randomness decisions use (gossip targets, samples, ties). */
  readonly random: Prng;
  /** Large processes' dirty rates, a window at a time (`_dirty_rate.ts`). */
  readonly dirty: DirtyMeter;
  readonly #node: FerryNode;
  /** Where the drain is kept across restarts. */
  readonly #state: LoadStateFile;
  #labels: Labels;
  #draining = false;
  #balance: boolean;
  #params: PolicyParams;
  #version = 0;
  #own: NodeLoad | null = null;
  readonly #constraints = new Map<string, Constraints | null>();
  readonly #pairs = new Map<string, PairSample>();
  /** Pids this node's balancer is moving now. */
  readonly in_flight = new Set<string>();
  /**
   * This node's moves whose target may not count them yet: from the
   * decision until an entry the target measured after the move ended
   * arrives. Decisions see the targets with these added
   * ({@link decisionView}), so a round does not send more to a node whose
   * gossiped load predates the moves already on their way (the target
   * counts an incoming move only once its offer arrived).
   */
  readonly #pending = new Map<string, { to: string; runnable: number; memory_bytes: number; ended_ms: number | null }>();
  /** Automatic moves this node accepted as their target, counted in its load until the process runs here (or {@link ACCEPTED_MOVE_MS}). */
  readonly #accepted = new Map<string, { runnable: number; memory_bytes: number; until_ms: number }>();
  /** Nodes that refused a move of this node lately, until when they are left out of its decisions. */
  readonly #refused = new Map<string, number>();
  /** Measured page transfer rate of this node's migrations (bytes/s), smoothed; the model's default until one is measured. */
  transfer_bytes_per_s: number;
  /** Measured fixed cost of this node's moves (request to running, less the pages' transfer), smoothed; null until one is measured (the model's `setup_ms` then). */
  setup_ms: number | null = null;
  /** Idle nodes in pack mode, as last reported. */
  idle: string[] = [];
  #timers: NodeJS.Timeout[] = [];
  /** Its Prometheus metrics, registered when it starts (the node's registry exists by then). */
  metrics: LoadMetrics | null = null;

  constructor(node: FerryNode, options: LoadOptions = {}) {
    this.#node = node;
    this.scheduler = new CpuScheduler(options.cpus ?? os.availableParallelism());
    this.#labels = options.labels ?? {};
    this.#balance = options.balance ?? false;
    this.#params = policyParams({ mode: options.mode ?? "balance" });
    this.interval_ms = options.interval_ms ?? LOAD_INTERVAL_MS_DEFAULT;
    this.view = new LoadView(node.name);
    let seed = Date.now();
    for (const c of node.name) seed = (seed * 31 + c.charCodeAt(0)) >>> 0;
    this.random = new Prng(seed);
    this.transfer_bytes_per_s = this.#params.model.transfer_bytes_per_s;
    this.dirty = new DirtyMeter({ enabled: node.page_tracker.name === "userfaultfd", log: node.log });
    this.#state = new LoadStateFile(node.data_dir);
    // A drain is an operator's decision: it outlives a restart (ERR_STATE_FILE if the file is damaged).
    this.#draining = this.#state.load(node.name)?.draining ?? false;
    if (this.#draining) node.log.info({ draining: true }, "drained before the restart: everything movable leaves, nothing new lands");
  }

  /** Starts the scheduler's slices and the load rounds; `round` is the balancer's. */
  start(round: () => Promise<void>): void {
    this.#round = round;
    this.metrics ??= new LoadMetrics(this.#node.metrics.registry, {
      load: () => this.measure(),
      guests: () => this.scheduler.sample,
      viewAges: () => {
        const now = performance.now();
        return this.view.records().map((r) => ({ node: r.load.node, age_s: (r.age_ms + Math.max(0, now - r.received_ms)) / 1000 }));
      },
      dirtyRates: () => this.dirty.rates(),
    });
    this.#timers.push(setInterval(() => this.slice(), SLICE_MS));
    this.#timers.push(setInterval(() => this.#runRound(), this.interval_ms));
    for (const t of this.#timers) t.unref();
  }

  #round: (() => Promise<void>) | null = null;
  #round_busy = false;
  /** When the last round run early started. */
  #early_ms = -Infinity;
  /** Comes back to run an early round once {@link EARLY_ROUND_GAP_MS} has passed since the last. */
  #early_timer: NodeJS.Timeout | null = null;
  /** Processes here at the start of the last round: more now means work arrived. */
  #round_processes = 0;
  #early = false;

  /**
   * Whether the round under way was started early, because work arrived and
   * waits for a core: it then decides at once on the view as it is (peers'
   * entries at most an interval old, this node's moves counted at their
   * targets) before its exchange, rather than a round trip later.
   */
  get early(): boolean {
    return this.#early;
  }

  /** Runs a round unless one is under way (a slow round, a peer timing out, is not run twice at once). */
  #runRound(early = false): void {
    const round = this.#round;
    if (round === null || this.#round_busy) return;
    this.#round_busy = true;
    this.#early = early;
    if (early) this.#early_ms = performance.now();
    this.#round_processes = this.#node.table.running_count + this.#node.standbys.count;
    round()
      .catch((err: unknown) => this.#node.log.warn({ err: errorField(err) }, "a load round failed"))
      .finally(() => {
        this.#round_busy = false;
      });
  }

  /** Stops both loops and lets every guest compute. */
  stop(): void {
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    if (this.#early_timer !== null) clearTimeout(this.#early_timer);
    this.#early_timer = null;
    this.scheduler.releaseAll();
    this.dirty.close();
  }

  /**
   * Opens and closes dirty-rate windows (each round). Measured: processes
   * larger than the stop-and-copy limit (the strategy of smaller ones does
   * not depend on it) that are not moving, not receiving post-copy pages and
   * not in a checkpoint chain (each of those tracks the memory's writes
   * itself, and a memory takes one tracker at a time).
   */
  sampleDirty(): void {
    // Only moves read it: with the balancer off and no drain, the guests pay nothing.
    if (!this.#balance && !this.#draining) {
      this.dirty.close();
      return;
    }
    const limit = this.#params.model.stop_copy_bytes_max;
    const candidates: DirtyCandidate[] = [];
    // A hibernated guest writes nothing, and has no memory in place to watch.
    for (const r of this.#node.table.runningAwake()) {
      if (r.migrating || this.in_flight.has(r.pid) || r.checkpoint_every_ms !== undefined) continue;
      if (r.proc.memory_bytes <= limit || r.proc.hibernated) continue;
      if (this.#node.postcopy.forPid(r.pid) !== undefined || this.#node.checkpoints.tracks(r.pid)) continue;
      candidates.push({ pid: r.pid, memory: r.proc.memory });
    }
    this.dirty.tick(candidates, performance.now());
  }

  #reschedule_soon = false;

  /**
   * Runs a slice at once (on the next turn of the event loop, once for
   * any number of calls meanwhile): a guest stopped wanting its core (it
   * ended, moved away or stopped for a move), and a guest held for its turn
   * should not wait up to a slice for it.
   */
  reschedule(): void {
    if (this.#reschedule_soon || this.#timers.length === 0) return;
    this.#reschedule_soon = true;
    setImmediate(() => {
      this.#reschedule_soon = false;
      if (this.#timers.length > 0) this.slice();
    });
  }

  /** Whether this node's guests leave a core free now (the last slice's figures): warm workers are started then. */
  spareCore(): boolean {
    const s = this.scheduler.sample;
    return s.queued === 0 && s.computing < this.scheduler.cpus;
  }

  /** One scheduling slice: measure the guests and give the cores out. */
  slice(): void {
    const now = performance.now();
    // Hibernated guests are left out: they have no worker to measure and want no core (the table keeps them apart).
    this.scheduler.pass(this.#node.table.runningAwake().map((r) => r.proc), now);
    if (this.spareCore()) refillWarm();
    // Work arrived and waits for a core: decide now rather than up to an interval later (the skewed batch's first moves).
    if ((this.#balance || this.#draining) && this.scheduler.sample.queued > 0 && this.#node.table.running_count + this.#node.standbys.count > this.#round_processes) {
      const wait_ms = EARLY_ROUND_GAP_MS - (now - this.#early_ms);
      if (wait_ms <= 0) this.#runRound(true);
      else
        this.#early_timer ??= setTimeout(() => {
          this.#early_timer = null;
          if (this.#timers.length > 0) this.slice();
        }, Math.ceil(wait_ms)).unref();
    }
  }

  get labels(): Labels {
    return this.#labels;
  }

  get draining(): boolean {
    return this.#draining;
  }

  get balance(): boolean {
    return this.#balance;
  }

  get params(): PolicyParams {
    return this.#params;
  }

  /** Whether `ferry run` without `--node` is placed by the policy (else it starts where asked, as before). */
  get placing(): boolean {
    return this.#balance && this.#params.mode !== "none";
  }

  /** Drains (true) or undrains this node, durably (it holds across a restart); an event says so. */
  setDraining(on: boolean): void {
    if (this.#draining === on) return;
    // Saved first: an answer of "drained" means a restart keeps it.
    this.#state.save({ version: LOAD_STATE_VERSION, node: this.#node.name, draining: on });
    this.#draining = on;
    this.#node.log.info({ draining: on }, on ? "drained: everything movable leaves, nothing new lands" : "undrained");
    this.#node.events.publish({ type: "node.drain", draining: on });
  }

  /** Applies `KEY=VALUE` changes (`_policy_changes.ts`): all checked before any applies. */
  setPolicy(set: Record<string, string | number | boolean>): void {
    const next = applyPolicyChanges({ params: this.#params, balance: this.#balance, cpus: this.scheduler.cpus }, set);
    this.#params = next.params;
    this.#balance = next.balance;
    this.scheduler.setCpus(next.cpus);
    this.#node.events.publish({ type: "policy.changed", set });
  }

  /** What `GET /v1/policy` answers for this node. */
  describe(): Record<string, unknown> {
    return {
      node: this.#node.name,
      balance: this.#balance,
      cpus: this.scheduler.cpus,
      labels: this.#labels,
      draining: this.#draining,
      interval_ms: this.interval_ms,
      params: this.#params,
      idle_nodes: this.idle,
      moving: [...this.in_flight],
      dirty_rates_measured: this.dirty.measuring,
      dirty_bytes_per_s: this.dirty.rates(),
    };
  }

  /**
   * This node's load vector now. Processes this node's balancer is moving
   * out are not counted (the destination counts them from its offer on);
   * incoming migrations' standbys are, as CPU-bound.
   */
  measure(): NodeLoad {
    const table = this.#node.table;
    let processes = this.#node.standbys.count;
    let runnable = this.#node.standbys.count;
    let movable = 0;
    let memory = this.#node.standbys.bytes;
    if (!this.#sleepersMove()) {
      // Counted, not walked: a hibernated guest wants no core and is no candidate (see #sleepersMove).
      processes += table.asleep.count;
      memory += table.asleep.memory_bytes;
    }
    const now = performance.now();
    for (const r of this.#candidates()) {
      if (this.in_flight.has(r.pid)) continue;
      processes += 1;
      memory += r.proc.memory_bytes;
      // A hibernated guest waits, with no worker: it wants no core.
      if (!r.proc.hibernated) runnable += this.scheduler.slot(r.proc)?.cpu_share ?? 1;
      if (r.migrating || r.moves >= this.#params.moves_per_process_max || now - this.#arrived(r) < this.#params.process_cooldown_ms) continue;
      const c = this.constraintsOf(r.pid, r.home);
      if (c !== null && !c.pinned) movable += 1;
    }
    for (const [pid, a] of this.#accepted) {
      // Here by now (itself counts it; its standby did, see arriving()), or never coming.
      if (this.#node.table.running(pid) !== undefined || now > a.until_ms) {
        this.#accepted.delete(pid);
        continue;
      }
      processes += 1;
      runnable += a.runnable;
      memory += a.memory_bytes;
    }
    let remote = 0;
    for (const p of this.#peersAll().values()) for (const peer of p) if (peer.node !== this.#node.name) remote += peer.bytes_per_s;
    const load: NodeLoad = {
      node: this.#node.name,
      cpus: this.scheduler.cpus,
      speed: 1,
      processes,
      movable,
      runnable,
      cpu_used: this.scheduler.sample.cpu_used,
      memory_used_bytes: memory,
      memory_free_bytes: os.freemem(),
      remote_bytes_per_s: remote,
      transfer_bytes_per_s: this.transfer_bytes_per_s,
      labels: this.#labels,
      draining: this.#draining,
    };
    this.#own = load;
    return load;
  }

  /** This node's own entry for gossip: a new version each time it is measured. */
  ownEntry(): { load: NodeLoad; version: number; age_ms: number } {
    this.#version += 1;
    return { load: this.measure(), version: this.#version, age_ms: 0 };
  }

  /** The last measured load (measured now if never). */
  get own(): NodeLoad {
    return this.#own ?? this.measure();
  }

  /** When a process began running here (its arrival, for a process that moved); -Infinity if it never moved. */
  #arrived(r: { proc: Parameters<CpuScheduler["slot"]>[0]; moves: number }): number {
    if (r.moves === 0) return -Infinity;
    return this.scheduler.slot(r.proc)?.first_seen_ms ?? performance.now();
  }

  /**
   * Whether a round considers hibernated processes. Only to empty a node
   * (drain, or pack, which empties light nodes so they can power down): a
   * sleeper wants no core, so moving it balances nothing, and it does not
   * talk. Otherwise a round counts them from the table's sums and walks
   * only the awake: a node holding thousands of sleepers pays for its few
   * awake ones, twice an interval.
   */
  #sleepersMove(): boolean {
    return this.#draining || (this.#balance && this.#params.mode === "pack");
  }

  /** The processes a round walks: the awake ones, or all when sleepers may move (#sleepersMove). */
  #candidates(): Running[] {
    return this.#sleepersMove() ? this.#node.table.runningAll() : this.#node.table.runningAwake();
  }

  /**
   * The processes here as the policies see them; those in flight or of
   * unknown constraints are left out, and hibernated ones unless this round
   * may move them (#sleepersMove).
   */
  processes(): ProcessInfo[] {
    const peers = this.#peersAll();
    const out: ProcessInfo[] = [];
    for (const r of this.#candidates()) {
      if (this.in_flight.has(r.pid) || r.migrating) continue;
      const c = this.constraintsOf(r.pid, r.home);
      if (c === null) continue;
      const slot = this.scheduler.slot(r.proc);
      out.push({
        pid: r.pid,
        memory_bytes: r.proc.memory_bytes,
        // Unmeasured (small, or no kernel tracker here): the strategy then follows size alone.
        dirty_bytes_per_s: this.dirty.rate(r.pid) ?? 0,
        cpu_share: slot?.cpu_share ?? 1,
        cpu_s: (slot?.cpu_ms ?? 0) / 1000,
        requires: c.requires,
        pinned: c.pinned,
        moves: r.moves,
        last_move_ms: this.#arrived(r),
        peers: peers.get(r.pid) ?? [],
      });
    }
    return out;
  }

  /**
   * Each local process's link peers with the pair's traffic per second over
   * the last interval (both directions when the peer runs here too).
   */
  #peersAll(): Map<string, LinkPeer[]> {
    const now = performance.now();
    const sent = new Map<string, Map<string, number>>();
    // A sleeper sends nothing: its pairs' rates are those of its awake peers alone.
    for (const r of this.#candidates()) {
      const stats = r.links.stats();
      // Most processes never linked to any: nothing to allocate for them, each round.
      if (stats.size === 0) continue;
      const rates = new Map<string, number>();
      for (const [to, s] of stats) {
        const key = `${r.pid}>${to}`;
        const last = this.#pairs.get(key);
        let rate = last?.bytes_per_s ?? 0;
        if (last === undefined) this.#pairs.set(key, { bytes: s.bytes, at_ms: now, bytes_per_s: 0 });
        else if (now - last.at_ms >= this.interval_ms / 2) {
          rate = ((s.bytes - last.bytes) * 1000) / (now - last.at_ms);
          this.#pairs.set(key, { bytes: s.bytes, at_ms: now, bytes_per_s: rate });
        }
        rates.set(to, rate);
      }
      sent.set(r.pid, rates);
    }
    const out = new Map<string, LinkPeer[]>();
    for (const [pid, rates] of sent) {
      const list: LinkPeer[] = [];
      for (const [to, rate] of rates) {
        const node = this.#node.links.whereIs(to);
        if (node === undefined) continue;
        const back = sent.get(to)?.get(pid) ?? 0;
        list.push({ pid: to, node, bytes_per_s: rate + back });
      }
      out.set(pid, list);
    }
    if (this.#pairs.size > 4 * (sent.size + 1) * 16) this.#sweepPairs(sent);
    return out;
  }

  /** Forgets pairs of processes no longer here. */
  #sweepPairs(sent: Map<string, unknown>): void {
    for (const key of this.#pairs.keys()) if (!sent.has(key.slice(0, key.indexOf(">")))) this.#pairs.delete(key);
  }

  /**
   * The requirements and pin of `pid`: from its home record here, else asked
   * of its home once (null until it answers: a process whose constraints are
   * not known is never moved automatically).
   */
  constraintsOf(pid: string, home: string): Constraints | null {
    const record = this.#node.table.home(pid);
    if (record !== undefined) return { requires: record.requires ?? {}, pinned: record.pinned ?? false };
    if (this.#constraints.has(pid)) return this.#constraints.get(pid) ?? null;
    this.#constraints.set(pid, null);
    void this.#askHome(pid, home);
    return null;
  }

  async #askHome(pid: string, home: string): Promise<void> {
    try {
      const value = await requestJson(this.#node.dialer, await this.#node.addressOf(home), "GET", `/v1/processes/${pid}`, { expect: nodeNamed(home) });
      const c = parse(ConstraintsSchema, value, `node ${home}'s record of ${pid}`, { code: "ERR_PEER_UNREACHABLE" });
      this.#constraints.set(pid, { requires: c.requires, pinned: c.pinned });
    } catch (err: unknown) {
      // Asked again next round: until then the process stays here.
      this.#constraints.delete(pid);
      this.#node.log.debug({ pid, home, err: errorField(err) }, `could not learn the constraints of ${pid} from its home`);
    }
    // Forget processes no longer here, so the map stays as large as the table.
    for (const p of this.#constraints.keys()) if (this.#node.table.running(p) === undefined && p !== pid) this.#constraints.delete(p);
  }

  /** Notes a move this node starts (`pid` to `to`, its CPU share and memory). */
  moveStarted(pid: string, to: string, runnable: number, memory_bytes: number): void {
    this.in_flight.add(pid);
    this.#pending.set(pid, { to, runnable, memory_bytes, ended_ms: null });
  }

  /** Notes the end of a move (done or failed: a failed one is dropped from the targets' counts at once). */
  moveEnded(pid: string, ok: boolean): void {
    this.in_flight.delete(pid);
    const p = this.#pending.get(pid);
    if (p === undefined) return;
    if (ok) p.ended_ms = performance.now();
    else this.#pending.delete(pid);
  }

  /** Notes that `node` refused a move: it is left out of decisions for `avoid_ms` (`avoidAfter_ms`: longer for a reason the view cannot show). */
  moveRefused(node: string, avoid_ms: number): void {
    this.#refused.set(node, Math.max(this.#refused.get(node) ?? 0, performance.now() + avoid_ms));
  }

  /**
   * The view's records as decisions should see them: nodes that refused a
   * move lately left out, and each target with this
   * node's moves to it added until it has reported a load measured after
   * they ended (conservative while a move is under way: it may be counted
   * twice, never not at all).
   */
  decisionView(now_ms: number): ViewRecord[] {
    let records = this.view.records();
    if (this.#refused.size > 0) {
      for (const [n, until] of this.#refused) if (until <= now_ms) this.#refused.delete(n);
      if (this.#refused.size > 0) records = records.filter((r) => !this.#refused.has(r.load.node));
    }
    if (this.#pending.size === 0) return [...records];
    const add = new Map<string, { processes: number; runnable: number; memory_bytes: number }>();
    for (const [pid, p] of this.#pending) {
      const r = this.view.get(p.to);
      // Measured after the move ended: the target's own figures count it.
      if (p.ended_ms !== null && (r === undefined || r.received_ms - r.age_ms > p.ended_ms || now_ms - p.ended_ms > this.#params.view_age_max_ms)) {
        this.#pending.delete(pid);
        continue;
      }
      const a = add.get(p.to) ?? { processes: 0, runnable: 0, memory_bytes: 0 };
      a.processes += 1;
      a.runnable += p.runnable;
      a.memory_bytes += p.memory_bytes;
      add.set(p.to, a);
    }
    return records.map((r) => {
      const a = add.get(r.load.node);
      if (a === undefined) return r;
      // A view's record reads through to the view (nothing to spread): the adjusted copy is built field by field.
      const l = r.load;
      const load: NodeLoad = { ...loadCopy(l), processes: l.processes + a.processes, runnable: l.runnable + a.runnable, memory_used_bytes: l.memory_used_bytes + a.memory_bytes, memory_free_bytes: l.memory_free_bytes - a.memory_bytes };
      return { load, version: r.version, age_ms: r.age_ms, received_ms: r.received_ms };
    });
  }

  /**
   * Judges an automatic move about to come here on this node's load now
   * (`acceptMove`), counting the moves it already accepted; an accepted one
   * counts from now on, so a burst from several sources with stale views
   * stops at what this node can take. Refusals are events.
   */
  acceptMove(offer: MoveOffer, from: string | null): Acceptance {
    const answer = acceptMove({ local: this.measure(), offer }, this.#params);
    if (answer.kind === "accept") this.#accepted.set(offer.pid, { runnable: offer.cpu_share, memory_bytes: offer.memory_bytes, until_ms: performance.now() + ACCEPTED_MOVE_MS });
    else this.#node.events.publish({ type: "load.refused", pid: offer.pid, from, reason: offer.reason, detail: answer.detail });
    return answer;
  }

  /**
   * An accepted move's standby is here: it counts the process from now on,
   * so the acceptance no longer does. Counted by both, two moves under way
   * read as four to the next offer, which was refused; and a process that
   * arrived and ended between two measurements was counted for the rest of
   * {@link ACCEPTED_MOVE_MS}, a job that was not there.
   */
  arriving(pid: string): void {
    this.#accepted.delete(pid);
  }

  /** Where a new process should start (`ferry run` without `--node`). */
  place(process: NewProcess): Placement {
    const now_ms = performance.now();
    const placement = place({ process, now_ms, local: this.own, view: this.decisionView(now_ms), random: this.random }, this.#params);
    // Until fresher news, the chosen node counts it: a burst of runs spreads.
    if (placement.kind === "node" && placement.node !== this.#node.name) this.view.account(placement.node, { processes: 1, runnable: 1, memory_bytes: process.memory_bytes });
    return placement;
  }

  /** Throws unless a process with `requires` may start here: ERR_NODE_DRAINING, ERR_REQUIREMENT. */
  checkStart(requires: Labels): void {
    if (this.#draining) throw new FerryError("ERR_NODE_DRAINING", `node ${this.#node.name} is drained: nothing new starts there (ferry undrain ${this.#node.name})`);
    if (!satisfies(this.#labels, requires)) {
      throw new FerryError("ERR_REQUIREMENT", `node ${this.#node.name} (labels ${formatLabels(this.#labels)}) does not meet the requirements ${formatLabels(requires)}`);
    }
  }

  /** Pack mode: the nodes known idle; an event when the set changes. */
  noteIdle(): void {
    if (this.#params.mode !== "pack") {
      this.idle = [];
      return;
    }
    const idle = idleNodes({ local: this.own, view: this.view.records(), now_ms: performance.now() }, this.#params.view_age_max_ms);
    if (idle.join(",") === this.idle.join(",")) return;
    this.idle = idle;
    this.#node.events.publish({ type: "load.idle", nodes: idle });
  }

  /** This node's load row and every fresh entry of its view, by node name. */
  rows(): Map<string, LoadRow> {
    const now = performance.now();
    const out = new Map<string, LoadRow>();
    const row = (l: NodeLoad, age: number): LoadRow => ({
      cpus: l.cpus,
      runnable: round2(l.runnable),
      cpu_used: round2(l.cpu_used),
      processes: l.processes,
      memory_used_bytes: l.memory_used_bytes,
      labels: l.labels,
      draining: l.draining,
      load_age_ms: Math.round(age),
    });
    out.set(this.#node.name, row(this.measure(), 0));
    for (const r of this.view.records()) out.set(r.load.node, row(r.load, r.age_ms + Math.max(0, now - r.received_ms)));
    return out;
  }
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

/** `k=v,k=v`, or `none`. */
export function formatLabels(labels: Labels): string {
  const items = Object.entries(labels).map(([k, v]) => `${k}=${v}`);
  return items.length === 0 ? "none" : items.join(",");
}
