/** `ferry logs`, `ferry wait` and `ferry kill`: one process, named by its pid. */
import { parseArgs, UsageError, type OptionSpec, type Parsed } from "./_args.js";
import { CLUSTER_OPTION, clusterClient } from "./_client.js";
import { exitCodeOf, parseStatus, relayOutput, reportStatus } from "./_output.js";

const CLUSTER_HELP = `  --cluster HOST:PORT    The node to ask (default: $FERRY_CLUSTER, else
                         127.0.0.1:7070). A list A,B,... asks the first that
                         answers: commands go on when a node is down.
  -h, --help             Show this help.
`;

/** Help of `ferry logs`. */
export const LOGS_HELP = `Usage: ferry logs [OPTIONS] PID

Prints what the process has written so far, its stdout to stdout and its
stderr to stderr, byte for byte, and exits 0.

Options:
  -f, --follow           Keep relaying its output until it ends.
${CLUSTER_HELP}`;

/** Help of `ferry wait`. */
export const WAIT_HELP = `Usage: ferry wait [OPTIONS] PID

Waits for the process to end and exits with its status: its exit code, 134 if
it trapped, 137 if it was killed.

Options:
  --json                 Also print the status as JSON, e.g. {"kind":"exit","code":0}.
${CLUSTER_HELP}`;

/** Help of `ferry kill`. */
export const KILL_HELP = `Usage: ferry kill [OPTIONS] PID

Kills the process, wherever it runs, and prints its pid.

Options:
  --json                 Print the API's answer, {"pid": PID, "status": {...}}.
${CLUSTER_HELP}`;

const HELP_OPTION: OptionSpec = { name: "help", value: false, short: "h" };
const JSON_OPTION: OptionSpec = { name: "json", value: false };

/** Parses a one-pid command line; null means --help was asked for and printed. */
function parsePid(argv: readonly string[], specs: readonly OptionSpec[], command: string, help: string): { parsed: Parsed; pid: string } | null {
  const parsed = parseArgs(argv, [...specs, CLUSTER_OPTION, HELP_OPTION], false);
  if (parsed.flags.has("help")) {
    process.stdout.write(help);
    return null;
  }
  const [pid, extra] = parsed.positionals;
  if (pid === undefined || pid === "") throw new UsageError(`missing PID (see ferry ${command} --help)`);
  if (extra !== undefined) throw new UsageError(`want exactly one PID, got ${JSON.stringify(extra)} too`);
  return { parsed, pid };
}

function processPath(pid: string): string {
  return `/v1/processes/${encodeURIComponent(pid)}`;
}

/** `ferry logs`. */
export async function logsCommand(argv: readonly string[]): Promise<number> {
  const p = parsePid(argv, [{ name: "follow", value: false, short: "f" }], "logs", LOGS_HELP);
  if (p === null) return 0;
  await relayOutput(clusterClient(p.parsed), p.pid, { follow: p.parsed.flags.has("follow") });
  return 0;
}

/** `ferry wait`. */
export async function waitCommand(argv: readonly string[]): Promise<number> {
  const p = parsePid(argv, [JSON_OPTION], "wait", WAIT_HELP);
  if (p === null) return 0;
  const answer = (await clusterClient(p.parsed).json("GET", `${processPath(p.pid)}/wait`)) as { status?: unknown } | null;
  const status = parseStatus(answer?.status);
  if (p.parsed.flags.has("json")) process.stdout.write(`${JSON.stringify(status)}\n`);
  else reportStatus(status);
  return exitCodeOf(status);
}

/** `ferry kill`. */
export async function killCommand(argv: readonly string[]): Promise<number> {
  const p = parsePid(argv, [JSON_OPTION], "kill", KILL_HELP);
  if (p === null) return 0;
  const answer = await clusterClient(p.parsed).json("DELETE", processPath(p.pid));
  process.stdout.write(p.parsed.flags.has("json") ? `${JSON.stringify(answer)}\n` : `${p.pid}\n`);
  return 0;
}
