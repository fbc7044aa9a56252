/** `ferry metrics` and `ferry events`: what a node measures, and what happens in the cluster. */
import { checkNodeName } from "../node/mod.js";
import { optionValue, parseArgs, UsageError } from "./_args.js";
import { CLUSTER_OPTION, clusterClient } from "./_client.js";

/** Help of `ferry metrics`. */
export const METRICS_HELP = `Usage: ferry metrics [OPTIONS]

Prints a node's metrics in Prometheus' text format (GET /metrics): processes
by state, migrations (started, succeeded, failed, stalled; downtime and total
time; bytes), link and relayed TCP traffic, load and capacity, and the node's
OS process. See docs/operations.md for every metric.

Options:
  --node NAME            The node whose metrics to print (default: the node
                         asked, --cluster).
  --cluster HOST:PORT    The node to ask (default: $FERRY_CLUSTER, else
                         127.0.0.1:7070). A list A,B,... asks the first that
                         answers: commands go on when a node is down.
  -h, --help             Show this help.
`;

/** Help of `ferry events`. */
export const EVENTS_HELP = `Usage: ferry events [OPTIONS]

Prints the cluster's recent events, one a line: processes started and ended,
migration phases, successes, failures and stalls, nodes seen up or down,
automatic moves with their reason (load.move) and the targets that refused
them, placements, drains, policy changes, checkpoints, nodes the cluster
directory says are alive or dead (node.alive, node.dead), and failovers:
processes restored from a checkpoint (process.restored) or lost.
With -f it keeps printing them as they happen, until Ctrl-C, and also the
bytes each migration moves within a phase (migration.progress, a few a
second while it moves: these are sent to open streams only, never kept).

A line "gap" says events were lost there: this reader fell behind (the node
drops what it cannot send rather than hold it), or a node's stream broke.

Options:
  -f, --follow           Keep printing new events.
  --local                Only the events of the node asked.
  --json                 Print each event as the API's JSON, one a line.
  --cluster HOST:PORT    The node to ask (default: $FERRY_CLUSTER, else
                         127.0.0.1:7070). A list A,B,... asks the first that
                         answers: commands go on when a node is down.
  -h, --help             Show this help.
`;

/** `ferry metrics`. */
export async function metricsCommand(argv: readonly string[]): Promise<number> {
  const parsed = parseArgs(argv, [{ name: "node", value: true }, CLUSTER_OPTION, { name: "help", value: false, short: "h" }], false);
  if (parsed.flags.has("help")) {
    process.stdout.write(METRICS_HELP);
    return 0;
  }
  if (parsed.positionals.length > 0) throw new UsageError(`ferry metrics takes no arguments (got ${JSON.stringify(parsed.positionals[0])})`);
  const node = optionValue(parsed, "node");
  if (node !== undefined) checkNodeName(node);
  process.stdout.write(await clusterClient(parsed).text("GET", node === undefined ? "/metrics" : `/metrics?node=${encodeURIComponent(node)}`));
  return 0;
}

/** `ferry events`. */
export async function eventsCommand(argv: readonly string[]): Promise<number> {
  const parsed = parseArgs(
    argv,
    [{ name: "follow", value: false, short: "f" }, { name: "local", value: false }, { name: "json", value: false }, CLUSTER_OPTION, { name: "help", value: false, short: "h" }],
    false,
  );
  if (parsed.flags.has("help")) {
    process.stdout.write(EVENTS_HELP);
    return 0;
  }
  if (parsed.positionals.length > 0) throw new UsageError(`ferry events takes no arguments (got ${JSON.stringify(parsed.positionals[0])})`);
  const query = `follow=${parsed.flags.has("follow") ? 1 : 0}&local=${parsed.flags.has("local") ? 1 : 0}`;
  const json = parsed.flags.has("json");
  for await (const e of clusterClient(parsed).events(`/v1/events?${query}`)) {
    process.stdout.write(`${json ? (e.event === "gap" ? JSON.stringify({ type: "gap", ...parseData(e.data) }) : e.data) : formatEvent(e.event, e.data)}\n`);
  }
  return 0;
}

function parseData(data: string): Record<string, unknown> {
  try {
    const v: unknown = JSON.parse(data);
    return v !== null && typeof v === "object" ? (v as Record<string, unknown>) : { data: v };
  } catch {
    // Shown as it came: a node of another version may send what this CLI does not read.
    return { data };
  }
}

/** Fields every event has, shown in its head. */
const HEAD = new Set(["type", "node", "seq", "time_unix_ms"]);

/** One event as a line for people: `2025-01-02T12:03:04.567Z n1 migration.stalled pid=n1-4 to=n2 ...`. */
export function formatEvent(name: string, data: string): string {
  const e = parseData(data);
  const time = typeof e["time_unix_ms"] === "number" ? new Date(e["time_unix_ms"]).toISOString() : "-";
  const node = typeof e["node"] === "string" ? e["node"] : "-";
  const fields = Object.entries(e)
    .filter(([k]) => !HEAD.has(k))
    .map(([k, v]) => `${k}=${typeof v === "string" && /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v)}`);
  return `${time} ${node} ${name}${fields.length > 0 ? ` ${fields.join(" ")}` : ""}`;
}
