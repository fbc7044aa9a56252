/**
 * What a simulation runs: the cluster, the workload, the exchange, the
 * policy and the migration model. Every figure has a default taken from
 * Ferry's measurements or stated as an assumption in docs/load.md.
 */
import { policyParams, POLICY_PARAMS_DEFAULT, VIEW_ENTRIES_MAX_DEFAULT, WINDOW_ENTRIES_DEFAULT, type PolicyParams } from "../policy/mod.js";

/** Where new processes are submitted: all over, or at a few hot nodes (as `ferry run --node n1` would). */
export type EntryMode = "uniform" | "hot" | "round-robin";

/** A simulation's parameters. */
export interface SimConfig {
  readonly nodes: number;
  readonly processes: number;
  readonly seed: number;
  /** The policy run by every node (its `mode` is `--policy`). */
  readonly policy: PolicyParams;
  /** Start processes where the policy places them (else where submitted). Off when the mode is none. */
  readonly place: boolean;
  readonly cpus: number;
  /** Node speeds are drawn uniformly from [speed_min, speed_max]. */
  readonly speed_min: number;
  readonly speed_max: number;
  readonly node_memory_bytes: number;
  /** Mean CPU time of a process (reference-core seconds; exponential, capped at 20x). */
  readonly work_mean_s: number;
  /** Process memory is log-uniform in [memory_min_bytes, memory_max_bytes]. */
  readonly memory_min_bytes: number;
  readonly memory_max_bytes: number;
  /** Arrivals are spread evenly (Poisson) over this long; 0: all at once. Negative: half the ideal makespan. */
  readonly arrival_s: number;
  readonly entry: EntryMode;
  /** Share of nodes that receive submissions when `entry` is hot. */
  readonly hot_share: number;
  /** Processes come in groups of 1..group_max that talk to each other (a message graph). */
  readonly group_max: number;
  /** Pair traffic is log-uniform in [talk_min_bytes_per_s, talk_max_bytes_per_s]. */
  readonly talk_min_bytes_per_s: number;
  readonly talk_max_bytes_per_s: number;
  /** A process writes up to this share of its memory per second at full speed (drawn skewed toward 0): what pre-copy must send again. */
  readonly dirty_share_max: number;
  /** The target of an automatic move judges it on its load as it is when the move is asked (`acceptMove`), as a daemon's does; off: every decided move goes. */
  readonly recheck: boolean;
  /** Share of nodes labelled gpu=yes, and of processes that require it. */
  readonly label_share: number;
  readonly require_share: number;
  /** Load exchange: interval, peers per interval, entries per message, entries per view. */
  readonly interval_ms: number;
  readonly fanout: number;
  readonly window: number;
  readonly view_entries: number;
  /** Node failures per node-hour (0: none) and the time a failed node stays down. */
  readonly failures_per_node_hour: number;
  readonly repair_s: number;
  /** Nodes (by index) drained at `drain_at_s`. */
  readonly drain_nodes: readonly number[];
  readonly drain_at_s: number;
  /** Points in the imbalance series. */
  readonly samples: number;
  /** Simulated time after which the run stops even if processes remain (a bound, not a target). */
  readonly time_max_s: number;
  /**
   * Parts the nodes are split into, each run on a core of its own (see
   * _parts.ts). 1 is the sequential model; with more, what crosses from one
   * part to another takes effect at the next sync, every `sync_ms` of
   * simulated time: a second model, deterministic for a seed whatever the
   * threads' timing. Default: 2 from {@link PARTITION_NODES_MIN} nodes when
   * nodes decide (not with policy none, which exchanges nothing: its run is
   * cheap in one part, and its syncs would cost more than they share), else 1.
   */
  readonly partitions: number;
  readonly sync_ms: number;
}

/** Nodes from which a run is split in two parts by default. */
export const PARTITION_NODES_MIN = 2_000;
/** Most parts a run is split into. */
export const PARTITIONS_MAX = 16;

/** Largest cluster and workload a run accepts: the typed arrays are sized from them. */
export const SIM_NODES_MAX = 100_000;
export const SIM_PROCESSES_MAX = 10_000_000;

/** Defaults: 8-core nodes at 0.75-1.25x speed with 16 GiB, 5 s jobs of 1-256 MiB, a tenth of the nodes taking every submission. */
export const SIM_CONFIG_DEFAULT: SimConfig = {
  nodes: 100,
  processes: 10_000,
  seed: 1,
  policy: POLICY_PARAMS_DEFAULT,
  place: true,
  cpus: 8,
  speed_min: 0.75,
  speed_max: 1.25,
  node_memory_bytes: 16 * 1024 ** 3,
  work_mean_s: 5,
  memory_min_bytes: 1024 ** 2,
  memory_max_bytes: 256 * 1024 ** 2,
  arrival_s: -1,
  entry: "hot",
  hot_share: 0.1,
  group_max: 4,
  talk_min_bytes_per_s: 16 * 1024,
  talk_max_bytes_per_s: 4 * 1024 ** 2,
  dirty_share_max: 0.5,
  recheck: true,
  label_share: 0.1,
  require_share: 0.02,
  interval_ms: 500,
  fanout: 2,
  window: WINDOW_ENTRIES_DEFAULT,
  view_entries: VIEW_ENTRIES_MAX_DEFAULT,
  failures_per_node_hour: 0,
  repair_s: 60,
  drain_nodes: [],
  drain_at_s: 0,
  samples: 20,
  time_max_s: 86_400,
  partitions: 1,
  sync_ms: 20,
};

/** Changes to the defaults: any field, and any of the policy's. */
export type SimChanges = Omit<Partial<SimConfig>, "policy"> & { readonly policy?: Partial<PolicyParams> };

/** `SIM_CONFIG_DEFAULT` with `changes`, checked. */
export function simConfig(changes: SimChanges = {}): SimConfig {
  const nodes = changes.nodes ?? SIM_CONFIG_DEFAULT.nodes;
  const partitions = changes.partitions ?? (nodes >= PARTITION_NODES_MIN && changes.policy?.mode !== "none" ? 2 : 1);
  const c: SimConfig = { ...SIM_CONFIG_DEFAULT, ...changes, partitions, policy: policyParams(changes.policy ?? {}, POLICY_PARAMS_DEFAULT) };
  const check = (ok: boolean, what: string): void => {
    if (!ok) throw new RangeError(what);
  };
  check(Number.isInteger(c.nodes) && c.nodes >= 1 && c.nodes <= SIM_NODES_MAX, `nodes must be 1..${SIM_NODES_MAX}`);
  check(Number.isInteger(c.processes) && c.processes >= 0 && c.processes <= SIM_PROCESSES_MAX, `processes must be 0..${SIM_PROCESSES_MAX}`);
  check(Number.isInteger(c.cpus) && c.cpus >= 1 && c.cpus <= 1024, "cpus must be 1..1024");
  check(c.speed_min > 0 && c.speed_max >= c.speed_min, "speeds must be positive, min <= max");
  check(Number.isFinite(c.dirty_share_max) && c.dirty_share_max >= 0, "dirty_share_max must be >= 0");
  check(c.work_mean_s > 0 && c.memory_min_bytes > 0 && c.memory_max_bytes >= c.memory_min_bytes, "work and memory must be positive, min <= max");
  check(Number.isInteger(c.group_max) && c.group_max >= 1 && c.group_max <= 64, "group_max must be 1..64");
  check(c.interval_ms > 0 && Number.isInteger(c.fanout) && c.fanout >= 0 && c.window >= 1 && c.view_entries >= 1, "exchange parameters out of range");
  check(c.hot_share > 0 && c.hot_share <= 1 && c.label_share >= 0 && c.label_share <= 1 && c.require_share >= 0 && c.require_share <= 1, "shares must be in [0, 1] (hot_share > 0)");
  check(c.failures_per_node_hour >= 0 && c.repair_s >= 0 && c.time_max_s > 0 && c.samples >= 1, "failures, repair, time_max and samples out of range");
  check(Number.isInteger(c.partitions) && c.partitions >= 1 && c.partitions <= Math.min(PARTITIONS_MAX, c.nodes), `partitions must be 1..${PARTITIONS_MAX}, and at most the nodes`);
  check(c.sync_ms > 0 && c.sync_ms <= c.interval_ms, "sync_ms must be positive and at most interval_ms");
  for (const n of c.drain_nodes) check(Number.isInteger(n) && n >= 0 && n < c.nodes, `drain node ${n} out of range`);
  return c;
}
