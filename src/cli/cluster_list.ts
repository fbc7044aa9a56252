/** `ferry ps` and `ferry nodes`: the cluster's process table and its nodes. */
import { parseArgs, UsageError, type Parsed } from "./_args.js";
import { CLUSTER_OPTION, ClusterError, clusterClient, type ClusterClient } from "./_client.js";
import { formatTable, shellQuote } from "./_table.js";

/** Help of `ferry ps`. */
export const PS_HELP = `Usage: ferry ps [OPTIONS]

Lists the cluster's processes: PID, the NODE it runs on, its HOME node (which
keeps its output and exit status), STATE (with the exit code once it exited),
LISTEN (the addresses its home listens on for it, with its open connections),
PROGRAM and ARGS.

Options:
  --json                 Print the API's array of processes as JSON.
  --cluster HOST:PORT    The node to ask (default: $FERRY_CLUSTER, else
                         127.0.0.1:7070). A list A,B,... asks the first that
                         answers: commands go on when a node is down.
  -h, --help             Show this help.
`;

/** Help of `ferry nodes`. */
export const NODES_HELP = `Usage: ferry nodes [OPTIONS]

Lists the cluster's nodes: NAME, ADDRESS, whether it is UP (answers this
node), its STATE in the cluster directory (alive while it holds its lease,
dead once the lease ran out; - without a directory), how many PROCESSES it runs, the page TRACKER its pre-copy migrations use
(userfaultfd or portable), and whether it can take POST-COPY and hybrid
migrations (userfaultfd; ferry node start prints why not). Then its load
as the node asked knows it: CPUS (--cpus), LOAD (cores its processes want),
CPU (cores busy), AGE (how old that figure is: measured by the node asked,
gossiped for the others), and LABELS, with "(drained)" for a drained node.

Options:
  --json                 Print the API's array of nodes as JSON (it also gives
                         each node's OS process id, os_pid).
  --cluster HOST:PORT    The node to ask (default: $FERRY_CLUSTER, else
                         127.0.0.1:7070). A list A,B,... asks the first that
                         answers: commands go on when a node is down.
  -h, --help             Show this help.
`;

const LIST_OPTIONS = [{ name: "json", value: false }, CLUSTER_OPTION, { name: "help", value: false, short: "h" }];

function parseList(argv: readonly string[], command: string): Parsed {
  const parsed = parseArgs(argv, LIST_OPTIONS, false);
  if (!parsed.flags.has("help") && parsed.positionals.length > 0) {
    throw new UsageError(`unexpected argument ${JSON.stringify(parsed.positionals[0])} (see ferry ${command} --help)`);
  }
  return parsed;
}

async function getList(client: ClusterClient, path: string): Promise<Record<string, unknown>[]> {
  const value = await client.json("GET", path);
  if (!Array.isArray(value) || !value.every((v) => v !== null && typeof v === "object")) {
    throw new ClusterError("ERR_CLUSTER_PROTOCOL", `node ${client.name} answered GET ${path} with something that is not a list`);
  }
  return value as Record<string, unknown>[];
}

function text(value: unknown): string {
  return value === undefined || value === null ? "-" : String(value);
}

/** STATE, with how it ended: `exited(3)`, `failed(trap)`, `killed`. */
function stateCell(p: Record<string, unknown>): string {
  const state = text(p["state"]);
  const exit = p["exit"] as { kind?: unknown; code?: unknown } | number | null | undefined;
  if (typeof exit === "number") return `${state}(${exit})`;
  if (exit === null || exit === undefined || typeof exit !== "object") return state;
  if (exit.kind === "exit") return `${state}(${text(exit.code)})`;
  if (exit.kind === "trap") return `${state}(trap)`;
  if (exit.kind === "lost") return `${state}(lost)`;
  if (exit.kind === "killed" && state !== "killed") return `${state}(killed)`;
  return state;
}

/** `ferry ps`. */
export async function psCommand(argv: readonly string[]): Promise<number> {
  const parsed = parseList(argv, "ps");
  if (parsed.flags.has("help")) {
    process.stdout.write(PS_HELP);
    return 0;
  }
  const processes = await getList(clusterClient(parsed), "/v1/processes");
  if (parsed.flags.has("json")) {
    process.stdout.write(`${JSON.stringify(processes)}\n`);
    return 0;
  }
  const rows = processes.map((p) => [
    text(p["pid"]),
    text(p["node"]),
    text(p["home"]),
    stateCell(p),
    listenCell(p),
    text(p["module_name"]),
    Array.isArray(p["args"]) ? p["args"].map((a) => shellQuote(String(a))).join(" ") : "",
  ]);
  process.stdout.write(formatTable(["PID", "NODE", "HOME", "STATE", "LISTEN", "PROGRAM", "ARGS"], rows));
  return 0;
}

/** `ferry nodes`. */
export async function nodesCommand(argv: readonly string[]): Promise<number> {
  const parsed = parseList(argv, "nodes");
  if (parsed.flags.has("help")) {
    process.stdout.write(NODES_HELP);
    return 0;
  }
  const nodes = await getList(clusterClient(parsed), "/v1/nodes");
  if (parsed.flags.has("json")) {
    process.stdout.write(`${JSON.stringify(nodes)}\n`);
    return 0;
  }
  const rows = nodes.map((n) => [
    text(n["name"]),
    text(n["address"]),
    n["up"] === true ? "yes" : "no",
    text(n["state"]),
    text(n["processes"]),
    text(n["page_tracker"]),
    n["post_copy"] === true ? "yes" : n["post_copy"] === false ? "no" : "-",
    ...loadCells(n["load"]),
  ]);
  process.stdout.write(formatTable(["NAME", "ADDRESS", "UP", "STATE", "PROCESSES", "TRACKER", "POST-COPY", "CPUS", "LOAD", "CPU", "AGE", "LABELS"], rows));
  return 0;
}

/** CPUS, LOAD, CPU, AGE and LABELS of a node's `load` (all "-" when the node asked has no figure for it). */
function loadCells(value: unknown): string[] {
  if (value === null || typeof value !== "object") return ["-", "-", "-", "-", "-"];
  const l = value as Record<string, unknown>;
  const num = (x: unknown): string => (typeof x === "number" ? String(Math.round(x * 100) / 100) : "-");
  const labels = Object.entries((l["labels"] ?? {}) as Record<string, unknown>).map(([k, v]) => `${k}=${String(v)}`);
  const age = typeof l["load_age_ms"] === "number" ? `${(l["load_age_ms"] / 1000).toFixed(1)}s` : "-";
  return [num(l["cpus"]), num(l["runnable"]), num(l["cpu_used"]), age, `${labels.length === 0 ? "-" : labels.join(",")}${l["draining"] === true ? " (drained)" : ""}`];
}

/** "ADDRESS,... (N conn)" for a process that listens, "-" otherwise. */
function listenCell(p: Record<string, unknown>): string {
  const listen = Array.isArray(p["listen"]) ? p["listen"].map(String) : [];
  if (listen.length === 0) return "-";
  const conns = typeof p["connections"] === "number" ? p["connections"] : 0;
  return `${listen.join(",")} (${conns} conn)`;
}
