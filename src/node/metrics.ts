/**
 * A node's Prometheus metrics (docs/operations.md, "Metrics"), served at
 * `GET /metrics` in the text format. One registry per node, so nodes in one
 * OS process (tests) do not mix. Names follow Prometheus' conventions: a
 * `ferry_` prefix, base units (seconds, bytes) and `_total` for counters.
 *
 * Counters are counted where things happen; what describes the node as it
 * is now (processes by state, load, capacity, migrations in progress) is
 * read from the node when scraped, so nothing is computed while nobody looks.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { CheckpointMetrics, MigrationMetrics, MigrationProgress } from "../migration/mod.js";
import { collectedGauge } from "./_load_metrics.js";

/** What a scrape reads from the node as it is now. */
export interface NodeGauges {
  /** Processes this node is home to, by state. */
  homeStates(): Record<string, number>;
  /** Processes running here (standbys of incoming migrations not included). */
  running(): number;
  /** Memory of the processes running here, bytes. */
  guestMemoryBytes(): number;
  /** Processes running here that are hibernated now, and the bytes kept for them (`--hibernate-after`). */
  hibernated?(): { count: number; bytes: number };
  /** Incoming migrations' standbys and the memory they hold. */
  standbys(): { count: number; bytes: number };
  limits(): { processes_max: number; memory_max_bytes: number; standby_bytes_max: number };
  /** Streams of events served now. */
  eventSubscribers(): number;
  /** Seconds since the last stored checkpoint of each running process this node is home to (that has one). */
  checkpointAges?(): { pid: string; age_s: number }[];
  /** Checkpoint chains this node keeps for others, and their bytes. */
  keptCheckpoints?(): { chains: number; bytes: number };
}

/** Checkpoint pause buckets, seconds: a few pages of a small process to the dirty set of a busy large one. */
const PAUSE_BUCKETS_S = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];

/** Checkpoint slowdown buckets, a share of the interval: 0.01% (a small pause a minute) to all of it (back-to-back checkpoints of a busy large process). */
const SLOWDOWN_BUCKETS = [0.0001, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];

/** Every state a process can be in (docs/cluster.md): each is reported, 0 included, so a series never vanishes. */
const PROCESS_STATES = ["running", "migrating", "exited", "killed", "failed"] as const;

/** Downtime buckets, seconds: from post-copy's milliseconds to a stop-and-copy of gigabytes. */
const DOWNTIME_BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Total-time buckets, seconds: pre-copy of a large, busy process takes minutes. */
const DURATION_BUCKETS_S = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];

/** Default metrics of prom-client that break Prometheus' naming (gauges named as counters). */
const MISNAMED_DEFAULTS = ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"];

/**
 * How often prom-client's event-loop delay monitor (perf_hooks'
 * monitorEventLoopDelay, behind `nodejs_eventloop_lag_*`) wakes the loop,
 * ms. It runs at all times, scraped or not; prom-client's default of 10 ms
 * wakes an idle node 100 times a second. At 100 ms a stall of the loop that
 * long or longer is still seen, for a tenth of the wake-ups
 * (docs/operations.md, "Metrics").
 */
const EVENT_LOOP_MONITOR_MS = 100;

/** Bytes of one page as the migration protocol counts them. */
const PAGE_BYTES = 4096;

/** Every strategy (migration/_schemas.ts): each counter series exists from the start, at 0. */
const STRATEGY_NAMES = ["stop-copy", "pre-copy", "post-copy", "hybrid"] as const;

type MigrationLabels = { pid: string; to: string; strategy: string };

/** A migration in progress as the gauges show it. */
interface InProgress {
  labels: MigrationLabels;
  /** When it last moved: a step, or bytes within a phase. */
  last_ms: number;
  /** Bytes reported so far (counted into ferry_migration_processed_bytes_total). */
  bytes: number;
  /** At its last step: the estimate of what remained, and the bytes sent then. */
  step_remaining: number;
  step_bytes: number;
}

/** A node's metrics. */
export class NodeMetrics {
  readonly registry = new Registry();
  readonly #started: Counter<"strategy">;
  readonly #succeeded: Counter<"strategy">;
  readonly #failed: Counter<"strategy" | "code">;
  readonly #stalled: Counter<"strategy">;
  readonly #downtime: Histogram<"strategy">;
  readonly #duration: Histogram<"strategy">;
  readonly #sent: Counter<"strategy">;
  readonly #processed: Counter<"strategy">;
  readonly #dirty_rate: Gauge<"pid" | "to" | "strategy">;
  readonly #remaining: Gauge<"pid" | "to" | "strategy">;
  readonly #demand: Counter;
  readonly #pushed: Counter;
  readonly #link_sent_messages: Counter<"peer">;
  readonly #link_sent_bytes: Counter<"peer">;
  readonly #link_received_messages: Counter<"peer">;
  readonly #link_received_bytes: Counter<"peer">;
  readonly #relay: Counter<"direction">;
  readonly #relay_lane: Counter;
  readonly #in_progress = new Map<string, InProgress>();
  readonly #checkpoints: Counter<"result" | "code">;
  readonly #checkpoint_pause: Histogram;
  readonly #checkpoint_bytes: Counter;
  readonly #checkpoint_coalesced: Counter;
  readonly #checkpoint_slowdown: Histogram;

  constructor(node: string, gauges: NodeGauges) {
    const registers = [this.registry];
    this.registry.setDefaultLabels({ node });
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: EVENT_LOOP_MONITOR_MS });
    // prom-client names these three gauges with `_total`, which Prometheus
    // keeps for counters (promtool refuses them); they are left out.
    for (const name of MISNAMED_DEFAULTS) this.registry.removeSingleMetric(name);
    new Gauge({
      name: "ferry_processes",
      help: "Processes this node is home to, by state.",
      labelNames: ["state"],
      registers,
      collect() {
        const states = gauges.homeStates();
        for (const s of PROCESS_STATES) this.set({ state: s }, states[s] ?? 0);
      },
    });
    const gauge = (name: string, help: string, read: () => number): void => collectedGauge(this.registry, name, help, read);
    gauge("ferry_node_processes", "Processes running on this node now (its load).", () => gauges.running());
    gauge("ferry_node_processes_max", "Processes this node runs at once at most (--max-processes).", () => gauges.limits().processes_max);
    gauge("ferry_node_guest_memory_bytes", "Memory of the processes running on this node.", () => gauges.guestMemoryBytes());
    if (gauges.hibernated !== undefined) {
      const hibernated = gauges.hibernated.bind(gauges);
      gauge("ferry_node_processes_hibernated", "Processes running on this node that are hibernated now: blocked in a long wait, with no worker thread (--hibernate-after).", () => hibernated().count);
      gauge("ferry_node_hibernated_bytes", "Memory kept for the hibernated processes on this node (their non-zero pages).", () => hibernated().bytes);
    }
    gauge("ferry_node_process_memory_max_bytes", "Largest memory a process may have on this node (--memory-max).", () => gauges.limits().memory_max_bytes);
    gauge("ferry_node_standbys", "Incoming migrations not yet committed.", () => gauges.standbys().count);
    gauge("ferry_node_standby_bytes", "Memory held by incoming migrations not yet committed.", () => gauges.standbys().bytes);
    gauge("ferry_node_standby_bytes_max", "Memory incoming migrations may hold at most (--max-standby-bytes).", () => gauges.limits().standby_bytes_max);
    gauge("ferry_event_streams", "Event streams (GET /v1/events) this node serves now.", () => gauges.eventSubscribers());

    this.#started = new Counter({ name: "ferry_migrations_started_total", help: "Migrations this node started as their source.", labelNames: ["strategy"], registers });
    this.#succeeded = new Counter({ name: "ferry_migrations_succeeded_total", help: "Migrations from this node that committed (the destination runs the process).", labelNames: ["strategy"], registers });
    this.#failed = new Counter({ name: "ferry_migrations_failed_total", help: "Migrations from this node that failed, by error code (stalls included).", labelNames: ["strategy", "code"], registers });
    this.#stalled = new Counter({ name: "ferry_migrations_stalled_total", help: "Migrations from this node aborted for making no progress (--stall-timeout).", labelNames: ["strategy"], registers });
    this.#downtime = new Histogram({ name: "ferry_migration_downtime_seconds", help: "Time a migrated process was stopped: stopped at the source to running at the destination.", labelNames: ["strategy"], buckets: DOWNTIME_BUCKETS_S, registers });
    this.#duration = new Histogram({ name: "ferry_migration_duration_seconds", help: "Total time of a committed migration, from the request to the destination having all of it.", labelNames: ["strategy"], buckets: DURATION_BUCKETS_S, registers });
    this.#sent = new Counter({ name: "ferry_migration_sent_bytes_total", help: "Bytes of committed migrations sent by this node (pages, image, post-copy pages).", labelNames: ["strategy"], registers });
    this.#processed = new Counter({
      name: "ferry_migration_processed_bytes_total",
      help: "Bytes migrations from this node have sent so far, counted as they go out (failed migrations included).",
      labelNames: ["strategy"],
      registers,
    });
    for (const strategy of STRATEGY_NAMES) this.#processed.inc({ strategy }, 0);
    this.#dirty_rate = new Gauge({
      name: "ferry_migration_dirty_bytes_per_second",
      help: "Bytes per second a migrating process wrote between its last two pre-copy rounds (set from the second round on).",
      labelNames: ["pid", "to", "strategy"],
      registers,
    });
    this.#remaining = new Gauge({ name: "ferry_migration_remaining_bytes", help: "Estimated bytes a migration in progress still has to send.", labelNames: ["pid", "to", "strategy"], registers });
    const in_progress = this.#in_progress;
    new Gauge({
      name: "ferry_migration_idle_seconds",
      help: "Seconds since a migration in progress last moved (a step, or bytes sent): a stalled one grows towards the stall timeout.",
      labelNames: ["pid", "to", "strategy"],
      registers,
      collect() {
        this.reset();
        const now = performance.now();
        for (const m of in_progress.values()) this.set(m.labels, Math.max(0, now - m.last_ms) / 1000);
      },
    });
    this.#demand = new Counter({ name: "ferry_postcopy_demand_faults_total", help: "Post-copy chunks (64 KiB) a destination faulted on and fetched from this node on demand.", registers });
    this.#pushed = new Counter({ name: "ferry_postcopy_pushed_bytes_total", help: "Post-copy bytes this node pushed to destinations ahead of any fault.", registers });
    this.#link_sent_messages = new Counter({ name: "ferry_link_sent_messages_total", help: "Link messages sent to another node (retries included), by that node.", labelNames: ["peer"], registers });
    this.#link_sent_bytes = new Counter({ name: "ferry_link_sent_bytes_total", help: "Bytes of link messages sent to another node (retries included), by that node.", labelNames: ["peer"], registers });
    this.#link_received_messages = new Counter({ name: "ferry_link_received_messages_total", help: "Link messages received from another node, by that node.", labelNames: ["peer"], registers });
    this.#link_received_bytes = new Counter({ name: "ferry_link_received_bytes_total", help: "Bytes of link messages received from another node, by that node.", labelNames: ["peer"], registers });
    this.#relay = new Counter({ name: "ferry_relay_tcp_bytes_total", help: "TCP bytes this node relayed for processes it is home to: in from their clients, out to them.", labelNames: ["direction"], registers });
    for (const direction of ["in", "out"]) this.#relay.inc({ direction }, 0);
    this.#relay_lane = new Counter({
      name: "ferry_relay_lane_bytes_total",
      help: "TCP bytes that processes running elsewhere sent to their clients and wrote to this node, their home, on net lanes of their own (counted again in ferry_relay_tcp_bytes_total out, once written).",
      registers,
    });
    this.#checkpoints = new Counter({ name: "ferry_checkpoints_total", help: "Checkpoints this node took of the processes it runs, stored or failed (by error code).", labelNames: ["result", "code"], registers });
    this.#checkpoints.inc({ result: "stored", code: "" }, 0);
    this.#checkpoint_pause = new Histogram({ name: "ferry_checkpoint_pause_seconds", help: "How long a checkpoint stopped its process (the final capture).", buckets: PAUSE_BUCKETS_S, registers });
    this.#checkpoint_bytes = new Counter({ name: "ferry_checkpoint_sent_bytes_total", help: "Bytes of stored checkpoints this node sent to their keepers.", registers });
    this.#checkpoint_coalesced = new Counter({
      name: "ferry_checkpoints_coalesced_total",
      help: "Periodic checkpoints that fell due while the one before was under way, folded into the next (the interval is shorter than a checkpoint takes).",
      registers,
    });
    this.#checkpoint_slowdown = new Histogram({
      name: "ferry_checkpoint_slowdown_ratio",
      help: "Per checkpoint, the share of the interval since the previous one that its process was stopped for checkpointing (its pause); not the CPU the checkpoint's rounds take on shared cores.",
      buckets: SLOWDOWN_BUCKETS,
      registers,
    });
    new Gauge({
      name: "ferry_checkpoint_age_seconds",
      help: "Seconds since the last stored checkpoint of each running process this node is home to: what a failover now would lose.",
      labelNames: ["pid"],
      registers,
      collect() {
        this.reset();
        for (const a of gauges.checkpointAges?.() ?? []) this.set({ pid: a.pid }, a.age_s);
      },
    });
    gauge("ferry_checkpoint_chains_kept", "Processes whose checkpoints this node keeps for the nodes that run them.", () => gauges.keptCheckpoints?.().chains ?? 0);
    gauge("ferry_checkpoint_kept_bytes", "Bytes of checkpoints this node keeps for other nodes (bounded by the retention policy and --checkpoint-disk-max).", () => gauges.keptCheckpoints?.().bytes ?? 0);
  }

  /** A checkpoint of a process here was stored; `coalesced` periodic ones were folded into it. */
  checkpointTaken(m: CheckpointMetrics, coalesced: number, slowdown_ratio: number): void {
    this.#checkpoints.inc({ result: "stored", code: "" });
    this.#checkpoint_slowdown.observe(slowdown_ratio);
    this.#checkpoint_coalesced.inc(coalesced);
    this.#checkpoint_pause.observe(m.pause_ms / 1000);
    this.#checkpoint_bytes.inc(m.bytes);
  }

  /** A checkpoint of a process here failed with `code`. */
  checkpointFailed(code: string): void {
    this.#checkpoints.inc({ result: "failed", code });
  }

  /** The metrics in Prometheus' text format. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  /** The content type of {@link text}. */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** A migration from here began. */
  migrationStarted(labels: MigrationLabels, memory_bytes: number): void {
    this.#started.inc({ strategy: labels.strategy });
    this.#in_progress.set(labels.pid, { labels, last_ms: performance.now(), bytes: 0, step_remaining: memory_bytes, step_bytes: 0 });
    this.#remaining.set(labels, memory_bytes);
  }

  /** A step of a migration in progress, or bytes it moved within a phase: updates what it sent, its dirty rate and what remains. */
  migrationProgress(pid: string, p: MigrationProgress): void {
    const m = this.#in_progress.get(pid);
    if (m === undefined) return;
    m.last_ms = performance.now();
    this.#count(m, p.bytes);
    if (p.in_phase === true) {
      // What the last step left, less what went since.
      this.#remaining.set(m.labels, Math.max(0, m.step_remaining - (p.bytes - m.step_bytes)));
      return;
    }
    if (p.dirty_bytes_per_s !== undefined) this.#dirty_rate.set(m.labels, p.dirty_bytes_per_s);
    let remaining: number | null = null;
    if (p.phase === "round" && p.pages !== undefined) {
      // The next round sends about what this one found written.
      remaining = p.pages * PAGE_BYTES;
    } else if (p.phase === "post-copy") {
      remaining = (p.pages ?? 0) * PAGE_BYTES;
    } else if (p.phase === "offered" || (p.phase === "copying" && m.labels.strategy === "stop-copy")) {
      remaining = Math.max(0, p.memory_bytes - p.bytes);
    }
    if (remaining !== null) this.#remaining.set(m.labels, remaining);
    m.step_remaining = remaining ?? m.step_remaining;
    m.step_bytes = p.bytes;
  }

  /** Counts what a migration in progress sent since its last report (reports never go back). */
  #count(m: InProgress, bytes: number): void {
    if (bytes <= m.bytes) return;
    this.#processed.inc({ strategy: m.labels.strategy }, bytes - m.bytes);
    m.bytes = bytes;
  }

  /** A migration from here committed. */
  migrationSucceeded(pid: string, metrics: MigrationMetrics): void {
    const strategy = metrics.strategy;
    const m = this.#in_progress.get(pid);
    if (m !== undefined) this.#count(m, metrics.bytes);
    this.#succeeded.inc({ strategy });
    this.#downtime.observe({ strategy }, metrics.downtime_ms / 1000);
    this.#duration.observe({ strategy }, metrics.total_ms / 1000);
    this.#sent.inc({ strategy }, metrics.bytes);
    if (metrics.post_copy !== undefined) {
      this.#demand.inc(metrics.post_copy.demand_chunks);
      this.#pushed.inc(metrics.post_copy.pushed_chunks * 65536);
    }
    this.#forget(pid);
  }

  /** A migration from here failed with `code` (ERR_MIGRATION_STALLED: it stalled). */
  migrationFailed(pid: string, strategy: string, code: string): void {
    this.#failed.inc({ strategy, code });
    if (code === "ERR_MIGRATION_STALLED") this.#stalled.inc({ strategy });
    this.#forget(pid);
  }

  /** Link messages sent to node `peer`. */
  linkSent(peer: string, messages: number, bytes: number): void {
    this.#link_sent_messages.inc({ peer }, messages);
    this.#link_sent_bytes.inc({ peer }, bytes);
  }

  /** Link messages received from node `peer`. */
  linkReceived(peer: string, messages: number, bytes: number): void {
    this.#link_received_messages.inc({ peer }, messages);
    this.#link_received_bytes.inc({ peer }, bytes);
  }

  /** TCP bytes a process this node is home to wrote to it on a net lane. */
  relayedOnLane(bytes: number): void {
    this.#relay_lane.inc(bytes);
  }

  /** TCP bytes relayed for a process this node is home to. */
  relayed(direction: "in" | "out", bytes: number): void {
    this.#relay.inc({ direction }, bytes);
  }

  #forget(pid: string): void {
    const m = this.#in_progress.get(pid);
    if (m === undefined) return;
    this.#in_progress.delete(pid);
    this.#dirty_rate.remove(m.labels);
    this.#remaining.remove(m.labels);
  }
}
