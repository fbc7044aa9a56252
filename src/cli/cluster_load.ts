/** `ferry drain`, `ferry undrain` and `ferry policy`: the load module's controls (docs/load.md). */
import { checkNodeName } from "../node/mod.js";
import { parseArgs, UsageError } from "./_args.js";
import { CLUSTER_OPTION, clusterClient } from "./_client.js";
import { formatTable } from "./_table.js";

/** Help of `ferry drain`. */
export const DRAIN_HELP = `Usage: ferry drain NODE [OPTIONS]
       ferry undrain NODE [OPTIONS]

drain: every process on NODE that is not pinned moves to other nodes (each
move an event with reason drain), and nothing new starts or lands there:
ferry run places elsewhere, migrations to it are refused (ERR_NODE_DRAINING).
It works with the balancer off too. undrain reverses it.

Options:
  --json                 Print the node's answer as JSON.
  --cluster HOST:PORT    The node to ask (default: $FERRY_CLUSTER, else
                         127.0.0.1:7070). A list A,B,... asks the first that
                         answers: commands go on when a node is down.
  -h, --help             Show this help.
`;

/** Help of `ferry policy`. */
export const POLICY_HELP = `Usage: ferry policy [OPTIONS]
       ferry policy set KEY=VALUE... [OPTIONS]

Shows the load policy of the node asked: whether its balancer runs, its
cores (--cpus), labels, whether it is drained, the policy's parameters, and
in pack mode the nodes it knows idle (ready to power down). 'set' changes
parameters on every node at once, while they run: mode=balance|pack|none,
balance=on|off, cpus=N, colocate=true|false, or any number shown
(hysteresis=0.5, moves_per_round_max=2, ...). See docs/load.md.

Options:
  --json                 Print the answer as JSON.
  --cluster HOST:PORT    The node to ask (default: $FERRY_CLUSTER, else
                         127.0.0.1:7070). A list A,B,... asks the first that
                         answers: commands go on when a node is down.
  -h, --help             Show this help.
`;

const OPTIONS = [{ name: "json", value: false }, CLUSTER_OPTION, { name: "help", value: false, short: "h" }];

/** `ferry drain NODE`. */
export function drainCommand(argv: readonly string[]): Promise<number> {
  return drainOrUndrain(argv, "drain");
}

/** `ferry undrain NODE`. */
export function undrainCommand(argv: readonly string[]): Promise<number> {
  return drainOrUndrain(argv, "undrain");
}

async function drainOrUndrain(argv: readonly string[], what: "drain" | "undrain"): Promise<number> {
  const parsed = parseArgs(argv, OPTIONS, false);
  if (parsed.flags.has("help")) {
    process.stdout.write(DRAIN_HELP);
    return 0;
  }
  const [name, extra] = parsed.positionals;
  if (name === undefined || extra !== undefined) throw new UsageError(`want one NODE (see ferry ${what} --help)`);
  checkNodeName(name);
  const answer = (await clusterClient(parsed).json("POST", `/v1/nodes/${name}/${what}`)) as { node?: unknown; draining?: unknown; processes?: unknown };
  if (parsed.flags.has("json")) process.stdout.write(`${JSON.stringify(answer)}\n`);
  else process.stdout.write(`node ${String(answer.node)} ${answer.draining === true ? `drained; ${String(answer.processes)} processes there now leave it` : "undrained"}\n`);
  return 0;
}

/** `ferry policy [set KEY=VALUE...]`. */
export async function policyCommand(argv: readonly string[]): Promise<number> {
  const parsed = parseArgs(argv, OPTIONS, false);
  if (parsed.flags.has("help")) {
    process.stdout.write(POLICY_HELP);
    return 0;
  }
  const [sub, ...rest] = parsed.positionals;
  const client = clusterClient(parsed);
  let answer: unknown;
  if (sub === undefined) {
    answer = await client.json("GET", "/v1/policy");
  } else if (sub === "set") {
    if (rest.length === 0) throw new UsageError("policy set wants KEY=VALUE...");
    const set: Record<string, string> = {};
    for (const item of rest) {
      const eq = item.indexOf("=");
      if (eq <= 0) throw new UsageError(`${JSON.stringify(item)}: want KEY=VALUE`);
      set[item.slice(0, eq)] = item.slice(eq + 1);
    }
    const changed = (await client.json("PUT", "/v1/policy", { set })) as { nodes?: { node: string; ok: boolean; error?: string }[]; policy?: unknown };
    if (!parsed.flags.has("json")) {
      for (const n of changed.nodes ?? []) process.stdout.write(`${n.node}: ${n.ok ? "changed" : `not changed (${n.error ?? "?"})`}\n`);
      return (changed.nodes ?? []).every((n) => n.ok) ? 0 : 1;
    }
    answer = changed;
  } else {
    throw new UsageError(`unknown policy command ${JSON.stringify(sub)} (see ferry policy --help)`);
  }
  if (parsed.flags.has("json")) {
    process.stdout.write(`${JSON.stringify(answer)}\n`);
    return 0;
  }
  const p = answer as Record<string, unknown>;
  const params = (p["params"] ?? {}) as Record<string, unknown>;
  const labels = Object.entries((p["labels"] ?? {}) as Record<string, string>).map(([k, v]) => `${k}=${v}`);
  const idle = Array.isArray(p["idle_nodes"]) ? p["idle_nodes"].map(String) : [];
  const rows: string[][] = [
    ["node", String(p["node"])],
    ["balance", p["balance"] === true ? "on" : "off"],
    ["cpus", String(p["cpus"])],
    ["labels", labels.length === 0 ? "-" : labels.join(",")],
    ["draining", p["draining"] === true ? "yes" : "no"],
    ["interval_ms", String(p["interval_ms"])],
    ...Object.entries(params).filter(([k]) => k !== "model").map(([k, v]) => [k, String(v)]),
    ...(params["mode"] === "pack" ? [["idle_nodes", idle.length === 0 ? "-" : idle.join(",")]] : []),
  ];
  process.stdout.write(formatTable(["PARAMETER", "VALUE"], rows));
  return 0;
}
