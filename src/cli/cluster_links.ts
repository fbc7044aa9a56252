/** `ferry send` and `ferry links`: messages to processes, and who talks to whom. */
import fs from "node:fs";
import { optionValue, parseArgs, UsageError } from "./_args.js";
import { CLUSTER_OPTION, clusterClient } from "./_client.js";
import { formatTable } from "./_table.js";

/** Help of `ferry send`. */
export const SEND_HELP = `Usage: ferry send [OPTIONS] PID MESSAGE
       ferry send [OPTIONS] PID --file FILE

Sends one message to process PID, wherever it runs, and returns once it is in
the process's inbox (it reads it with ferry_recv; see docs/links.md). The
message is delivered exactly once. A message is at most 65536 bytes.

Options:
  --file FILE            Send FILE's bytes instead of MESSAGE ("-": stdin).
  --json                 Print the API's answer, {"pid": PID, "bytes": N}.
  --cluster HOST:PORT    The node to ask (default: $FERRY_CLUSTER, else
                         127.0.0.1:7070). A list A,B,... asks the first that
                         answers: commands go on when a node is down.
  -h, --help             Show this help.

Exit status: 0 once delivered; 125 if the process has ended, does not exist,
or could not be reached within 10 s.
`;

/** Help of `ferry links`. */
export const LINKS_HELP = `Usage: ferry links [OPTIONS]

Lists the traffic between pairs of processes across the cluster, as each
sender counted it: FROM, TO, MESSAGES, BYTES, and the average RATE (messages
per second between the first and the last message). Heavy talkers are
candidates for running on one node.

Options:
  --json                 Print the API's array of pairs as JSON.
  --cluster HOST:PORT    The node to ask (default: $FERRY_CLUSTER, else
                         127.0.0.1:7070). A list A,B,... asks the first that
                         answers: commands go on when a node is down.
  -h, --help             Show this help.
`;

/** `ferry send`. */
export async function sendCommand(argv: readonly string[]): Promise<number> {
  const parsed = parseArgs(argv, [{ name: "file", value: true }, { name: "json", value: false }, { name: "help", value: false, short: "h" }, CLUSTER_OPTION], false);
  if (parsed.flags.has("help")) {
    process.stdout.write(SEND_HELP);
    return 0;
  }
  const [pid, message, extra] = parsed.positionals;
  const file = optionValue(parsed, "file");
  if (pid === undefined || pid === "") throw new UsageError("missing PID (see ferry send --help)");
  if ((message === undefined) === (file === undefined)) throw new UsageError("give either MESSAGE or --file FILE");
  if (extra !== undefined) throw new UsageError(`one MESSAGE only; quote it if it has spaces (got ${JSON.stringify(extra)} too)`);
  const body = file !== undefined ? { data_base64: fs.readFileSync(file === "-" ? 0 : file).toString("base64") } : { data: message };
  const answer = await clusterClient(parsed).json("POST", `/v1/processes/${encodeURIComponent(pid)}/send`, body);
  if (parsed.flags.has("json")) process.stdout.write(`${JSON.stringify(answer)}\n`);
  return 0;
}

/** `ferry links`. */
export async function linksCommand(argv: readonly string[]): Promise<number> {
  const parsed = parseArgs(argv, [{ name: "json", value: false }, { name: "help", value: false, short: "h" }, CLUSTER_OPTION], false);
  if (parsed.flags.has("help")) {
    process.stdout.write(LINKS_HELP);
    return 0;
  }
  if (parsed.positionals.length > 0) throw new UsageError(`ferry links takes no arguments (got ${JSON.stringify(parsed.positionals[0])})`);
  const pairs = (await clusterClient(parsed).json("GET", "/v1/links")) as { from: string; to: string; messages: number; bytes: number; messages_per_s: number }[];
  if (parsed.flags.has("json")) {
    process.stdout.write(`${JSON.stringify(pairs)}\n`);
    return 0;
  }
  pairs.sort((a, b) => b.messages - a.messages);
  const rows = pairs.map((p) => [p.from, p.to, String(p.messages), String(p.bytes), `${p.messages_per_s.toFixed(1)}/s`]);
  process.stdout.write(formatTable(["FROM", "TO", "MESSAGES", "BYTES", "RATE"], rows));
  return 0;
}
