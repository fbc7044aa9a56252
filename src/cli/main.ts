/** The `ferry` command: dispatches to subcommands. */
import { readFileSync } from "node:fs";
import { inspect } from "node:util";
import { FerryError } from "../errors.js";
import { UsageError } from "./_args.js";

/** Exit status when ferry itself fails (not the program): as `env`/`docker` do. */
export const EXIT_FERRY_FAILED = 125;
/** Exit status of a usage error. */
export const EXIT_USAGE = 2;

const HELP = `Usage: ferry COMMAND [OPTIONS]

Ferry runs WebAssembly (WASI preview1) programs and moves them while they run.

Commands:
  exec      Run a program locally, optionally suspending it into an image
  resume    Continue a suspended program from its image
  up        Start a local cluster of nodes in the foreground
  node      Run one node daemon (ferry node start --name NAME ...)
  sim       Simulate a cluster running the load policies; print JSON figures

Cluster commands (talk to the node --cluster HOST:PORT, else $FERRY_CLUSTER,
else 127.0.0.1:7070; a list A,B,... talks to the first node that answers):
  run       Start a program on the cluster (--attach to relay its output)
  ps        List the cluster's processes
  logs      Print a process's output (-f to follow it)
  wait      Wait for a process to end and exit with its status
  kill      Kill a process
  nodes     List the cluster's nodes
  migrate   Move a running process to another node (stop-copy, pre-copy,
            post-copy or hybrid)
  checkpoint Checkpoint a process now, kept on another node
  send      Send a message to a process
  links     List the traffic between pairs of processes
  token     Create a one-time token for a node, a client or a scraper to join
  metrics   Print a node's metrics (Prometheus text format)
  events    Print the cluster's events (-f to follow them)
  drain     Move every process off a node; nothing new lands there
  undrain   Let processes land on a drained node again
  policy    Show or change the load policy (ferry policy set KEY=VALUE)
  dashboard Print a login URL for a node's web dashboard
  top       Show nodes and processes in the terminal, refreshed in place

Trust:
  login     Redeem a client token for this user's credential (~/.ferry/client)

Run 'ferry COMMAND --help' for a command's options.
Options: -h, --help (this help), --version
`;

type Command = (argv: readonly string[]) => Promise<number>;

/**
 * Each command's module is loaded only when it runs: the node daemon, the
 * cluster client and TLS cost ~250 ms to load, which `ferry exec` of a small
 * program would otherwise pay on every start.
 */
const commands: Record<string, () => Promise<Command>> = {
  exec: async () => (await import("./run.js")).execCommand,
  resume: async () => (await import("./run.js")).resumeCommand,
  up: async () => (await import("./node_cmd.js")).upCommand,
  node: async () => (await import("./node_cmd.js")).nodeCommand,
  migrate: async () => (await import("./cluster_migrate.js")).migrateCommand,
  run: async () => (await import("./cluster_run.js")).clusterRunCommand,
  ps: async () => (await import("./cluster_list.js")).psCommand,
  logs: async () => (await import("./cluster_process.js")).logsCommand,
  wait: async () => (await import("./cluster_process.js")).waitCommand,
  kill: async () => (await import("./cluster_process.js")).killCommand,
  nodes: async () => (await import("./cluster_list.js")).nodesCommand,
  send: async () => (await import("./cluster_links.js")).sendCommand,
  checkpoint: async () => (await import("./cluster_checkpoint.js")).checkpointCommand,
  links: async () => (await import("./cluster_links.js")).linksCommand,
  token: async () => (await import("./trust_cmd.js")).tokenCommand,
  login: async () => (await import("./trust_cmd.js")).loginCommand,
  sim: async () => (await import("./sim_cmd.js")).simCommand,
  metrics: async () => (await import("./cluster_ops.js")).metricsCommand,
  events: async () => (await import("./cluster_ops.js")).eventsCommand,
  drain: async () => (await import("./cluster_load.js")).drainCommand,
  undrain: async () => (await import("./cluster_load.js")).undrainCommand,
  policy: async () => (await import("./cluster_load.js")).policyCommand,
  dashboard: async () => (await import("./dashboard_cmd.js")).dashboardCommand,
  top: async () => (await import("./dashboard_cmd.js")).topCommand,
};

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { version: string };
  return pkg.version;
}

/** Runs the CLI with `argv` (without node and script) and returns the exit status. */
export async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === "-h" || command === "--help" || command === "help") {
    process.stdout.write(HELP);
    return command === undefined ? EXIT_USAGE : 0;
  }
  if (command === "--version") {
    process.stdout.write(`ferry ${version()}\n`);
    return 0;
  }
  const load = commands[command];
  if (load === undefined) {
    process.stderr.write(`ferry: unknown command ${JSON.stringify(command)}\n\n${HELP}`);
    return EXIT_USAGE;
  }
  try {
    const run = await load();
    return await run(rest);
  } catch (err: unknown) {
    if (err instanceof UsageError || (err instanceof FerryError && err.code === "ERR_USAGE")) {
      process.stderr.write(`ferry ${command}: ${err.message}\n`);
      return EXIT_USAGE;
    }
    if (err instanceof FerryError) {
      process.stderr.write(`ferry ${command}: ${err.message} (${err.code})\n`);
      return EXIT_FERRY_FAILED;
    }
    // A value that is not an Error (a library may throw one) is shown, never as "[object Object]".
    process.stderr.write(`ferry ${command}: ${err instanceof Error ? (err.stack ?? err.message) : inspect(err, { depth: 2, breakLength: Infinity })}\n`);
    return EXIT_FERRY_FAILED;
  }
}
