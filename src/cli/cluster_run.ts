/**
 * `ferry run`: start a program on the cluster. Uploads the module where it is
 * missing (modules are content-addressed, so a node never receives one twice),
 * creates the process, and prints its pid or, with --attach, relays its output
 * and exits with its status.
 */
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { FerryError } from "../errors.js";
import { optionInt, optionSize, optionValue, parseArgs, UsageError, type Parsed } from "./_args.js";
import { CLUSTER_OPTION, ClusterClient, ClusterError, clusterClient, parseAddress } from "./_client.js";
import { exitCodeOf, relayOutput, reportStatus } from "./_output.js";
import { WASM_PAGE_BYTES } from "../process_spec.js";
import { parseLabels } from "../policy/mod.js";

/** Help of `ferry run`. */
export const RUN_HELP = `Usage: ferry run [OPTIONS] PROGRAM.wasm [ARGS...]

Starts a WASI preview1 program on the cluster and prints its pid. The module is
uploaded to the nodes that lack it. Options come before the program; what
follows the program is the program's own arguments.

Options:
  --node NAME            Run it on node NAME (default: where the cluster's
                         policy places it; with the balancer off, the node
                         --cluster names).
  --require K=V          Run it only on nodes labelled K=V (ferry node start
                         --label); it is placed and moved only where every
                         requirement holds. Repeatable.
  --pin                  Never move it automatically (ferry migrate still can).
  --attach               Stay attached: relay the program's stdout and stderr
                         here and exit with its status (134 if it trapped, 137
                         if it was killed). Ctrl-C detaches; the process keeps
                         running (stop it with ferry kill PID).
  --dir HOST[:GUEST]     Give the program the directory HOST of the node that
                         runs it, seen as GUEST (default: the same path).
                         HOST is made absolute here; it must lie under a
                         directory the node allows (--allow-dir). Repeatable.
  --env K=V              Set an environment variable for the program. Repeatable.
  --memory SIZE          Cap the program's memory at SIZE (e.g. 64M, 1G; whole
                         64K pages): past it, its allocations fail as on a
                         machine out of memory. The cap moves with it, and a
                         node whose --memory-max is lower refuses it. Default:
                         the node's --memory-max.
  --listen HOST:PORT     Serve TCP: the program's home node (the node it starts
                         on) listens on HOST:PORT (port 0: any free port) and
                         the program gets the listening socket as a preopened
                         fd (sock_accept, sock_recv, sock_send, sock_shutdown,
                         poll_oneoff); its numbers are in $FERRY_LISTEN_FDS.
                         Connections stay open when the program migrates: the
                         home relays them to wherever it runs. Ports below
                         1024 need a node started with --allow-low-ports.
                         Repeatable.
  --checkpoint-every MS  Checkpoint the program every MS ms (at least 50; 0:
                         none; default: the node's --checkpoint-every) on
                         another node, so that it can be resumed if its node
                         fails. Its output is then shown only once a
                         checkpoint covers it (output commit: about MS ms
                         later). See docs/checkpoints.md.
  --json                 Print {"pid": PID, "node": NAME, "listen": [ADDRESS...]}
                         instead of the pid.
  --cluster HOST:PORT    The node to talk to (default: $FERRY_CLUSTER, else
                         127.0.0.1:7070). A list A,B,... talks to the first
                         that answers: commands go on when a node is down.
  -h, --help             Show this help.
`;

/** One preopened directory as the API takes it. */
interface DirSpec {
  host: string;
  guest: string;
}

function dirSpec(spec: string): DirSpec {
  const colon = spec.indexOf(":");
  const host = colon >= 0 ? spec.slice(0, colon) : spec;
  const guest = colon >= 0 ? spec.slice(colon + 1) : spec;
  if (host === "" || guest === "") throw new UsageError(`--dir ${JSON.stringify(spec)}: want HOST[:GUEST]`);
  // The node checks that it exists: the directory is on the node's machine, which need not be this one.
  return { host: path.resolve(host), guest };
}

function readModule(file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err: unknown) {
    throw new UsageError(`cannot read module ${file}: ${(err as Error).message}`);
  }
}

/** Uploads the module to `client`'s node unless it has it already. */
async function ensureModule(client: ClusterClient, sha256: string, wasm: Uint8Array): Promise<void> {
  const where = `/v1/modules/${sha256}`;
  if (await client.exists(where)) return;
  await client.put(where, wasm);
}

/** A node as GET /v1/nodes lists it. */
interface NodeEntry {
  name: string;
  address: string;
  up: boolean;
}

/**
 * The client of node `name`, found in the cluster's node list. A node that
 * listens on a wildcard address is reached at the host we already reach.
 */
async function nodeClient(cluster: ClusterClient, name: string): Promise<ClusterClient> {
  const nodes = (await cluster.json("GET", "/v1/nodes")) as NodeEntry[] | null;
  if (!Array.isArray(nodes)) throw new ClusterError("ERR_CLUSTER_PROTOCOL", `node ${cluster.name} answered GET /v1/nodes with something that is not a list`);
  const node = nodes.find((n) => n.name === name);
  if (node === undefined) {
    const known = nodes.map((n) => n.name).join(", ");
    throw new FerryError("ERR_NO_SUCH_NODE", `no node named ${JSON.stringify(name)} in the cluster (nodes: ${known === "" ? "none" : known})`);
  }
  if (node.up === false) throw new FerryError("ERR_NODE_DOWN", `node ${name} (${node.address}) is down`);
  const address = parseAddress(String(node.address));
  if (address === null) throw new ClusterError("ERR_CLUSTER_PROTOCOL", `node ${name} has an address the CLI cannot use: ${JSON.stringify(node.address)}`);
  if (address.host === "0.0.0.0" || address.host === "::") address.host = cluster.address.host;
  return new ClusterClient(address);
}

function parseRun(argv: readonly string[]): Parsed {
  return parseArgs(
    argv,
    [
      { name: "node", value: true },
      { name: "attach", value: false },
      { name: "dir", value: true, multiple: true },
      { name: "env", value: true, multiple: true },
      { name: "listen", value: true, multiple: true },
      { name: "memory", value: true },
      { name: "require", value: true, multiple: true },
      { name: "pin", value: false },
      { name: "checkpoint-every", value: true },
      { name: "json", value: false },
      CLUSTER_OPTION,
      { name: "help", value: false, short: "h" },
    ],
    true,
  );
}

/** `ferry run`. Returns the exit status for the CLI. */
export async function clusterRunCommand(argv: readonly string[]): Promise<number> {
  const parsed = parseRun(argv);
  if (parsed.flags.has("help")) {
    process.stdout.write(RUN_HELP);
    return 0;
  }
  const [program, ...args] = parsed.positionals;
  if (program === undefined) throw new UsageError("missing PROGRAM.wasm (see ferry run --help)");
  const attach = parsed.flags.has("attach");
  const json = parsed.flags.has("json");
  // Attached, stdout is the program's alone: a pid there would corrupt it.
  if (attach && json) throw new UsageError("--attach and --json do not go together");
  const node = optionValue(parsed, "node");
  const env = parsed.options.get("env") ?? [];
  for (const e of env) if (!e.includes("=")) throw new UsageError(`--env ${JSON.stringify(e)}: want K=V`);
  const dirs = (parsed.options.get("dir") ?? []).map(dirSpec);
  const listen = parsed.options.get("listen") ?? [];
  for (const l of listen) if (!/^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/.test(l)) throw new UsageError(`--listen ${JSON.stringify(l)}: want HOST:PORT`);
  const memory_max_bytes = optionSize(parsed, "memory");
  if (memory_max_bytes !== undefined && (memory_max_bytes < WASM_PAGE_BYTES || memory_max_bytes % WASM_PAGE_BYTES !== 0)) {
    throw new UsageError(`--memory wants whole 64K pages (64K, 64M, 1G...), not ${memory_max_bytes} bytes`);
  }
  const requires = parseLabels(parsed.options.get("require") ?? []);
  if (typeof requires === "string") throw new UsageError(`--require ${requires}`);
  const checkpoint_every_ms = optionInt(parsed, "checkpoint-every");
  const cluster = clusterClient(parsed);
  const wasm = readModule(program);
  const sha256 = createHash("sha256").update(wasm).digest("hex");

  await ensureModule(cluster, sha256, wasm);
  if (node !== undefined) {
    // The daemon may fetch a module its peer lacks, but uploading to the target
    // directly keeps `run` working whatever the daemon does.
    const target = await nodeClient(cluster, node);
    if (target.name !== cluster.name) await ensureModule(target, sha256, wasm);
  }
  const created = (await cluster.json("POST", "/v1/processes", {
    module_sha256: sha256,
    module_name: path.basename(program),
    args,
    env,
    dirs,
    ...(listen.length === 0 ? {} : { listen }),
    ...(node === undefined ? {} : { node }),
    ...(memory_max_bytes === undefined ? {} : { memory_max_bytes }),
    ...(Object.keys(requires).length === 0 ? {} : { requires }),
    ...(parsed.flags.has("pin") ? { pinned: true } : {}),
    ...(checkpoint_every_ms === undefined ? {} : { checkpoint_every_ms }),
  })) as { pid?: unknown; node?: unknown; listen?: unknown } | null;
  const pid = created?.pid;
  if (typeof pid !== "string" || pid === "") {
    throw new ClusterError("ERR_CLUSTER_PROTOCOL", `node ${cluster.name} created a process but sent no pid: ${JSON.stringify(created)}`);
  }
  const listening = Array.isArray(created?.listen) ? created.listen.map(String) : [];
  if (!attach) {
    process.stdout.write(json ? `${JSON.stringify({ pid, node: created?.node ?? null, listen: listening })}\n` : `${pid}\n`);
    if (!json) for (const address of listening) process.stderr.write(`ferry: ${pid} listens on ${address}\n`);
    return 0;
  }
  for (const address of listening) process.stderr.write(`ferry: ${pid} listens on ${address}\n`);
  const status = await relayOutput(cluster, pid, { follow: true });
  if (status === null) throw new ClusterError("ERR_CLUSTER_PROTOCOL", `the output of ${pid} ended without its exit status`);
  reportStatus(status);
  return exitCodeOf(status);
}
