/** `ferry checkpoint`: take a checkpoint of a process now (docs/checkpoints.md). */
import { parseArgs, UsageError } from "./_args.js";
import { CLUSTER_OPTION, ClusterError, clusterClient } from "./_client.js";

/** Help of `ferry checkpoint`. */
export const CHECKPOINT_HELP = `Usage: ferry checkpoint [OPTIONS] PID

Takes a checkpoint of the running process now, wherever it runs, and stores it
on another node (the process's keeper): the pages written since its last
checkpoint, or all of them for the first. Prints what it cost: how long the
process was paused, bytes sent, pages, and the runtime slowdown: the share of
the interval since its previous checkpoint (or since it began running on its
node) that the process was stopped for checkpointing (docs/checkpoints.md).

Options:
  --json                 Print the whole report as JSON (pid, keeper, chain,
                         seq, pause_ms, total_ms, bytes, pages, final_pages,
                         memory_bytes, stdout_bytes, stderr_bytes, stored_bytes,
                         interval_ms, slowdown_ratio).
  --cluster HOST:PORT    The node to ask (default: $FERRY_CLUSTER, else
                         127.0.0.1:7070). A list A,B,... asks the first that
                         answers: commands go on when a node is down.
  -h, --help             Show this help.
`;

/** `ferry checkpoint`. */
export async function checkpointCommand(argv: readonly string[]): Promise<number> {
  const parsed = parseArgs(argv, [{ name: "json", value: false }, CLUSTER_OPTION, { name: "help", value: false, short: "h" }], false);
  if (parsed.flags.has("help")) {
    process.stdout.write(CHECKPOINT_HELP);
    return 0;
  }
  const [pid, extra] = parsed.positionals;
  if (pid === undefined || pid === "") throw new UsageError("missing PID (see ferry checkpoint --help)");
  if (extra !== undefined) throw new UsageError(`want exactly one PID, got ${JSON.stringify(extra)} too`);
  const client = clusterClient(parsed);
  const r = (await client.json("POST", `/v1/processes/${encodeURIComponent(pid)}/checkpoint`, {})) as Record<string, unknown> | null;
  if (r === null || typeof r.seq !== "number" || typeof r.keeper !== "string") {
    throw new ClusterError("ERR_CLUSTER_PROTOCOL", `node ${client.name} answered the checkpoint with something else: ${JSON.stringify(r)}`);
  }
  if (parsed.flags.has("json")) {
    process.stdout.write(`${JSON.stringify(r)}\n`);
    return 0;
  }
  const ms = (x: unknown): string => (typeof x === "number" ? x.toFixed(1) : "?");
  // A node of an older version does not measure it.
  const slowed = typeof r.slowdown_ratio === "number" ? `; slowdown ${(r.slowdown_ratio * 100).toFixed(2)}% of the ${ms(r.interval_ms)} ms since the last` : "";
  process.stdout.write(`checkpoint ${r.seq} of ${pid} on ${r.keeper}: paused ${ms(r.pause_ms)} ms, ${String(r.bytes)} bytes, ${String(r.pages)} pages (${ms(r.total_ms)} ms in all)${slowed}\n`);
  return 0;
}
