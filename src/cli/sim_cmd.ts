/** `ferry sim`: run the load policies in a seeded simulation of a cluster and print the figures as JSON. */
import { optionInt, optionValue, parseArgs, UsageError, type Parsed } from "./_args.js";
import { PARTITION_NODES_MIN, PARTITIONS_MAX, simConfig, simulateThreaded, SIM_CONFIG_DEFAULT as D, type EntryMode, type SimChanges, type SimConfig } from "../sim/mod.js";
import { POLICY_PARAMS_DEFAULT as P, MIGRATION_MODEL_DEFAULT as M, type PolicyMode, type PolicyParams } from "../policy/mod.js";

/** Help of `ferry sim`. */
export const SIM_HELP = `Usage: ferry sim [OPTIONS]

Simulates a cluster running Ferry's load policies (the same code the nodes
run) and prints the figures as JSON: makespan against the ideal, migrations
(total, per process, by reason and strategy), bytes moved, information age,
imbalance over time, the share of traffic kept within a node, and wall time.
Each node gossips its load to random peers and decides on its own view. A
run is deterministic for its seed. See docs/load.md.

Cluster and workload:
  --nodes N              Nodes (default ${D.nodes}).
  --processes M          Processes (default ${D.processes}).
  --policy MODE          balance, pack or none (default ${P.mode}).
  --seed S               Seed of the run (default ${D.seed}).
  --cpus N               Cores per node (default ${D.cpus}).
  --speed MIN:MAX        Node speeds, drawn uniformly (default ${D.speed_min}:${D.speed_max}).
  --work-s S             Mean CPU time of a process, seconds (default ${D.work_mean_s}).
  --arrival-s S          Spread arrivals over S seconds (default: half the
                         ideal makespan; 0: all at once).
  --entry MODE           Where processes are submitted: hot (a few nodes),
                         uniform or round-robin (default ${D.entry}).
  --hot-share X          Share of nodes taking submissions when hot (default ${D.hot_share}).
  --place on|off         Start processes where the policy places them
                         (default on; off: where submitted).
  --group-max N          Processes talk in groups of 1..N (default ${D.group_max}).
  --label-share X        Share of nodes labelled gpu=yes (default ${D.label_share}).
  --require-share X      Share of processes requiring gpu=yes (default ${D.require_share}).
  --dirty-share X        A process writes up to X of its memory per second
                         at full speed (default ${D.dirty_share_max}).
  --failures-per-node-hour X
                         Node failures (default 0); a failed node is down
                         --repair-s S seconds (default ${D.repair_s}).
  --drain N,N,...        Drain these nodes (by index) at --drain-at-s S.

Exchange and policy:
  --interval-ms MS       Load exchange interval (default ${D.interval_ms}).
  --fanout N             Peers per interval (default ${D.fanout}).
  --window N             Entries per message (default ${D.window}).
  --view N               Entries a node's view holds (default ${D.view_entries}).
  --colocate on|off      Pull talking processes together (default on).
  --recheck on|off       The target of a move judges it on its load then
                         (default on).
  --moves-per-round N    Moves per node per round (default ${P.moves_per_round_max}).
  --hysteresis X         Slowdown margin a balance move needs (default ${P.hysteresis}).
  --cooldown-ms MS       A moved process stays put this long (default ${P.process_cooldown_ms}).
  --transfer-rate MBPS   Migration page rate, MB/s (default ${M.transfer_bytes_per_s / 1e6}).
  --setup-ms MS          Fixed time before pages flow (default ${M.setup_ms}).

Parts (two cores for a large run):
  --partitions N         Split the nodes into N parts, each run by a thread
                         of its own; what crosses from one part to another
                         takes effect one or two syncs later (a second model,
                         as deterministic; see docs/load.md). Default: 2 from
                         ${PARTITION_NODES_MIN} nodes on (but with --policy none), else 1
                         (the sequential model); at most ${PARTITIONS_MAX}.
  --sync-ms MS           Simulated time between the parts' syncs (default ${D.sync_ms}).

Output:
  --samples N            Points in the imbalance series (default ${D.samples}).
  --time-max-s S         Stop after S simulated seconds (default ${D.time_max_s}).
  -h, --help             Show this help.
`;

function number(parsed: Parsed, name: string, min: number, max: number): number | undefined {
  const raw = optionValue(parsed, name);
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(n) || n < min || n > max) throw new UsageError(`option --${name} wants a number in [${min}, ${max}], not ${JSON.stringify(raw)}`);
  return n;
}

function onOff(parsed: Parsed, name: string): boolean | undefined {
  const raw = optionValue(parsed, name);
  if (raw === undefined) return undefined;
  if (raw !== "on" && raw !== "off") throw new UsageError(`option --${name} is on or off, not ${JSON.stringify(raw)}`);
  return raw === "on";
}

function defined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

const VALUE_OPTIONS = [
  "nodes", "processes", "policy", "seed", "cpus", "speed", "work-s", "arrival-s", "entry", "hot-share", "place", "group-max", "label-share", "require-share", "dirty-share", "recheck",
  "failures-per-node-hour", "repair-s", "drain", "drain-at-s", "interval-ms", "fanout", "window", "view", "colocate", "moves-per-round", "hysteresis",
  "cooldown-ms", "transfer-rate", "setup-ms", "samples", "time-max-s", "partitions", "sync-ms",
];

/** Reads the command line into a simulation's configuration. */
export function simConfigFromArgs(parsed: Parsed): SimConfig {
  const mode = optionValue(parsed, "policy");
  if (mode !== undefined && mode !== "balance" && mode !== "pack" && mode !== "none") throw new UsageError(`--policy is balance, pack or none, not ${JSON.stringify(mode)}`);
  const entry = optionValue(parsed, "entry");
  if (entry !== undefined && entry !== "hot" && entry !== "uniform" && entry !== "round-robin") throw new UsageError(`--entry is hot, uniform or round-robin, not ${JSON.stringify(entry)}`);
  const speed = optionValue(parsed, "speed");
  let speeds: { speed_min?: number; speed_max?: number } = {};
  if (speed !== undefined) {
    const m = /^(\d+(?:\.\d+)?):(\d+(?:\.\d+)?)$/.exec(speed);
    if (m === null || Number(m[1]) <= 0 || Number(m[2]) < Number(m[1])) throw new UsageError(`--speed wants MIN:MAX with 0 < MIN <= MAX, not ${JSON.stringify(speed)}`);
    speeds = { speed_min: Number(m[1]), speed_max: Number(m[2]) };
  }
  const drain = optionValue(parsed, "drain");
  const drain_nodes = drain === undefined ? undefined : drain.split(",").map((x) => {
    if (!/^\d+$/.test(x)) throw new UsageError(`--drain wants node indexes N,N,..., not ${JSON.stringify(drain)}`);
    return Number(x);
  });
  const nodes = optionInt(parsed, "nodes");
  for (const n of drain_nodes ?? []) if (n >= (nodes ?? D.nodes)) throw new UsageError(`--drain ${n}: there are only ${nodes ?? D.nodes} nodes (0-based)`);
  const rate = number(parsed, "transfer-rate", 0.001, 1e6);
  const setup = number(parsed, "setup-ms", 0, 3_600_000);
  const policy: Partial<PolicyParams> = defined({
    mode: mode as PolicyMode | undefined,
    colocate: onOff(parsed, "colocate"),
    moves_per_round_max: optionInt(parsed, "moves-per-round"),
    hysteresis: number(parsed, "hysteresis", 0, 100),
    process_cooldown_ms: number(parsed, "cooldown-ms", 0, 86_400_000),
    model: rate === undefined && setup === undefined ? undefined : { ...M, ...defined({ transfer_bytes_per_s: rate === undefined ? undefined : rate * 1e6, setup_ms: setup }) },
  });
  const changes: SimChanges = defined({
    nodes,
    processes: optionInt(parsed, "processes"),
    seed: optionInt(parsed, "seed"),
    cpus: optionInt(parsed, "cpus"),
    ...speeds,
    work_mean_s: number(parsed, "work-s", 0.001, 1e7),
    arrival_s: number(parsed, "arrival-s", 0, 1e9),
    entry: entry as EntryMode | undefined,
    hot_share: number(parsed, "hot-share", 0.0001, 1),
    place: onOff(parsed, "place"),
    group_max: optionInt(parsed, "group-max"),
    label_share: number(parsed, "label-share", 0, 1),
    require_share: number(parsed, "require-share", 0, 1),
    dirty_share_max: number(parsed, "dirty-share", 0, 100),
    recheck: onOff(parsed, "recheck"),
    failures_per_node_hour: number(parsed, "failures-per-node-hour", 0, 1e6),
    repair_s: number(parsed, "repair-s", 0, 1e7),
    drain_nodes,
    drain_at_s: number(parsed, "drain-at-s", 0, 1e9),
    interval_ms: number(parsed, "interval-ms", 1, 3_600_000),
    fanout: optionInt(parsed, "fanout"),
    window: optionInt(parsed, "window"),
    view_entries: optionInt(parsed, "view"),
    samples: optionInt(parsed, "samples"),
    time_max_s: number(parsed, "time-max-s", 0.001, 1e9),
    partitions: optionInt(parsed, "partitions"),
    sync_ms: number(parsed, "sync-ms", 0.001, 3_600_000),
    policy,
  });
  try {
    return simConfig(changes);
  } catch (err: unknown) {
    if (err instanceof RangeError) throw new UsageError(err.message);
    throw err;
  }
}

/** `ferry sim`. */
export async function simCommand(argv: readonly string[]): Promise<number> {
  const parsed = parseArgs(argv, [...VALUE_OPTIONS.map((name) => ({ name, value: true })), { name: "help", value: false, short: "h" }], false);
  if (parsed.flags.has("help")) {
    process.stdout.write(SIM_HELP);
    return 0;
  }
  if (parsed.positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(parsed.positionals[0])} (see ferry sim --help)`);
  const config = simConfigFromArgs(parsed);
  process.stdout.write(`${JSON.stringify(await simulateThreaded(config), null, 2)}\n`);
  return 0;
}
