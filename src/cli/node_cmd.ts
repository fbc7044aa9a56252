/** `ferry node start` and `ferry up`: run node daemons in the foreground. */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import v8 from "node:v8";
import { FerryNode, checkNodeName, openDirectory, parseAddress, serveDirectory, type NodeLimits, type NodePolicy } from "../node/mod.js";
import { LEASE_TTL_MS_DEFAULT, LEASE_TTL_MS_MAX, LEASE_TTL_MS_MIN, openEmbeddedDirectory, type Directory } from "../directory/mod.js";
import type { TrackerChoice } from "../memory/mod.js";
import { optionInt, optionSize, optionValue, parseArgs, UsageError, type OptionSpec, type Parsed } from "./_args.js";
import { ferryHome } from "../home.js";
import { clientCredentialDir, localAuthorityDir } from "../trust/mod.js";
import { ensureClient, localCluster, localNode, localUserName, nodeIdentity, type NodeIdentity } from "./_identity.js";
import { Supervisor } from "./_supervisor.js";
import { parseLabels } from "../policy/mod.js";
import type { LoadOptions } from "../node/load.js";
import { configureLogging, isLogLevel, LOG_LEVEL_DEFAULT, LOG_LEVELS, type LogLevel } from "../log/mod.js";

/** The level --log-level names (ERR_USAGE for another word). */
function logLevelOption(parsed: Parsed): LogLevel {
  const value = optionValue(parsed, "log-level") ?? LOG_LEVEL_DEFAULT;
  if (!isLogLevel(value)) throw new UsageError(`--log-level is one of ${LOG_LEVELS.join(", ")}`);
  return value;
}

/** The options named in `map` that were given, by their field names. */
function pick<K extends string>(parsed: Parsed, map: Record<K, string>): Partial<Record<K, string>> {
  const out: Partial<Record<K, string>> = {};
  for (const [field, option] of Object.entries(map) as [K, string][]) {
    const v = optionValue(parsed, option);
    if (v !== undefined) out[field] = v;
  }
  return out;
}

/** Help of the directory options `node start` and `up` share. */
const DIRECTORY_HELP = `  --dead-after MS        This node's membership lease: if it stops renewing it
                         (every third of MS), the cluster declares it dead
                         within MS ms, and never sooner (default ${LEASE_TTL_MS_DEFAULT}; at
                         least ${LEASE_TTL_MS_MIN}). etcd rounds it up to whole seconds (at
                         least its own minimum) and checks for expired
                         leases every 0.5 s: up to that much later there.
`;

/** Help of the options `node start` and `up` share: what a node allows and how much it takes on. */
const LIMIT_HELP = `  --allow-dir DIR        Processes may be given host directories under DIR
                         (symlinks resolved); repeatable. Without any, no
                         directory may be given (ferry up allows the folder
                         it was started in).
  --allow-low-ports      Processes may listen on ports below 1024.
  --memory-max SIZE      Largest memory a process may have, e.g. 512M, 2G; also
                         the cap of a process run without --memory (default:
                         half this machine's memory, at most 4G).
  --max-processes N      Processes running at once, counting incoming
                         migrations (default 256).
  --max-standby-bytes SIZE
                         Memory incoming migrations may hold before they
                         commit (default: half this machine's memory).
  --max-module-size SIZE Largest module accepted (default 256M).
  --standby-timeout MS   Free an incoming migration's memory when its source
                         sends nothing for MS ms (default 30000).
  --stall-timeout MS     Abort a migration from this node that makes no
                         progress for MS ms, leaving the process here
                         (default 30000).
  --warm-workers N       Process workers kept started and idle, so that a
                         migration's standby or a new process need not wait
                         for one (default 4, at most 8; 0: none).
  --hibernate-after MS   A process blocked MS ms in one wait (a sleep, a read
                         with nothing to read) hibernates: its worker thread
                         ends and its memory is kept compactly until the wait
                         ends; it looks running to everyone (default 5000;
                         0: never).
  --cpus N               Guests computing at once (default: this machine's
                         cores); the others wait, taking turns fairly.
  --label K=V            A label of the node; ferry run --require K=V runs
                         only where it holds. Repeatable.
  --policy P             balance (default: even load), pack (fill the fewest
                         nodes, report the rest idle) or none.
  --checkpoint-every MS  Checkpoint every process started here every MS ms
                         unless its ferry run says otherwise (default 0:
                         none). See docs/checkpoints.md.
  --checkpoint-disk-max SIZE
                         Checkpoints this node keeps for the nodes that run
                         their processes, all together (default 32G). A
                         checkpoint that could pass it, or leave less than
                         1G free on the data directory's disk, is refused
                         (ERR_CHECKPOINT_LIMIT). See docs/checkpoints.md.
  --log-level LEVEL      trace, debug, info (default), warn, error, fatal or
                         silent. One JSON line per entry on stderr; lines
                         for people when stderr is a terminal.
`;

/** Help of `ferry node`. */
export const NODE_HELP = `Usage: ferry node start --name NAME [OPTIONS]

Runs one Ferry node daemon in the foreground until Ctrl-C.

Options:
  --name NAME            The node's name (letters, digits, _), unique in its cluster.
  --listen HOST:PORT     Control and data address (default 127.0.0.1:7070).
  --peers HOST:PORT,...  The other nodes' addresses (its own may be listed too:
                         it is ignored).
  --data DIR             Where modules, output logs and the node's state are
                         kept (default: ~/.ferry/NAME). Restarted on the same
                         DIR, the node keeps its processes' records, pids and
                         output.
  --tracker T            Page tracker for pre-copy: auto (default: userfaultfd
                         where the kernel and permissions allow, else portable),
                         userfaultfd, or portable.
  --balance on|off       Run the balancer (move processes on their own, place
                         ferry run without --node) (default off).
  --link-lanes on|off    Let a process's worker write its messages to a peer
                         on another node itself, on a lane of its own
                         (docs/links.md, "Lanes"; default on; needs TLS and
                         the native addon, else off).
  --net-lanes on|off     Let the worker of a process running away from its
                         home write what it sends on its TCP connections to
                         the home itself, on a lane of its own
                         (docs/networking.md, "Net lanes"; default on; needs
                         TLS and the native addon, else off).
  --directory URL        Join the cluster directory (docs/directory.md):
                         etcd://HOST:PORT,... (a path names the key prefix,
                         default /ferry/; etcds://...?ca=FILE[&cert=FILE&key=FILE]
                         for TLS to etcd), or the https://HOST:PORT ferry up
                         serves. Members' addresses become peers; when a node
                         is declared dead, what ran there without a checkpoint
                         is marked lost. Without it, as before: no membership.
${DIRECTORY_HELP}
Cluster identity (every connection is mutual TLS with the cluster's CA; give one):
  --init                 Start a new cluster: make its CA (DATA/ca) and this
                         node's certificate (DATA/tls). Then let others in with
                         \`ferry token create\`.
  --join TOKEN           Join a cluster with a one-time token from
                         \`ferry token create\` on a member; the credential is
                         kept in DATA/tls and the member's peers are learned.
  --ca FILE --cert FILE --key FILE
                         Use this CA certificate, node certificate and key (PEM).
  --ca-key FILE          The CA's key: this node may then issue join tokens.
  (none of these)        The credential an earlier --init or --join left in DATA.
  --insecure             No TLS and no authentication at all: anyone who can
                         reach the port runs code as this user. For measurements
                         on a machine of one's own only.

Limits and policy:
${LIMIT_HELP}  -h, --help             Show this help.
`;

/** Help of `ferry up`. */
export const UP_HELP = `Usage: ferry up [--nodes N] [--port P] [OPTIONS]

Starts a local cluster of N nodes on 127.0.0.1 (control on P, P+1, ...) in the
foreground, prints where they listen, and stops them all on Ctrl-C. Each node
is its own OS process (\`ferry nodes --json\` gives its os_pid), so one can
fail alone: ferry up says so and keeps the others serving. Processes may be
given directories under the folder it was started in (and under every
--allow-dir).

The cluster's CA is made on first use in ~/.ferry/cluster (or $FERRY_HOME), each
node gets a certificate, and this user gets a client certificate in
~/.ferry/client that every ferry command uses (keys 0600).

Options:
  --nodes N              How many nodes (default 3).
  --port P               First port (default 7070).
  --data DIR             Where the nodes keep their data (default: a new
                         temporary folder, removed on exit).
  --restart              Start a node that ends unexpectedly again, on its data
                         directory (it keeps its pids and output), once the
                         cluster has declared it dead: --dead-after + 1 s
                         after it ended, then with the wait doubled (up to
                         30 s) while it fails to start. Default: a node that
                         ends stays down.
  --tracker T            Page tracker: auto (default), userfaultfd or portable.
  --balance on|off       The nodes' balancer (default on): processes move on
                         their own to share load, talk locally, leave drained
                         nodes; ferry run without --node is placed.
  --link-lanes on|off    Processes write their messages to peers on other
                         nodes themselves, on lanes (default on).
  --net-lanes on|off     Processes away from their homes write their TCP
                         bytes to the home themselves, on lanes (default on).
  --directory URL        The cluster directory the nodes join: by default an
                         embedded one this process keeps in DATA/directory.json
                         and serves to its nodes (mutual TLS); etcd://HOST:PORT,...
                         (or etcds://...?ca=FILE[&cert=FILE&key=FILE]) to use etcd instead.
${DIRECTORY_HELP}${LIMIT_HELP}  -h, --help             Show this help.
`;

/** The options of LIMIT_HELP. */
const LIMIT_OPTIONS: OptionSpec[] = [
  { name: "allow-dir", value: true, multiple: true },
  { name: "allow-low-ports", value: false },
  { name: "memory-max", value: true },
  { name: "max-processes", value: true },
  { name: "max-standby-bytes", value: true },
  { name: "max-module-size", value: true },
  { name: "standby-timeout", value: true },
  { name: "stall-timeout", value: true },
  { name: "warm-workers", value: true },
  { name: "hibernate-after", value: true },
  { name: "checkpoint-every", value: true },
  { name: "checkpoint-disk-max", value: true },
  { name: "log-level", value: true },
  { name: "cpus", value: true },
  { name: "label", value: true, multiple: true },
  { name: "policy", value: true },
];

/** The load module's options from the command line; `balance` is the default of --balance. */
function loadOption(parsed: Parsed, balance: boolean): LoadOptions {
  const out: LoadOptions = {};
  const cpus = optionInt(parsed, "cpus");
  if (cpus !== undefined) {
    if (cpus < 1) throw new UsageError("--cpus wants a whole number >= 1");
    out.cpus = cpus;
  }
  const labels = parseLabels(parsed.options.get("label") ?? []);
  if (typeof labels === "string") throw new UsageError(`--label ${labels}`);
  out.labels = labels;
  const mode = optionValue(parsed, "policy");
  if (mode !== undefined) {
    if (mode !== "balance" && mode !== "pack" && mode !== "none") throw new UsageError("--policy is balance, pack or none");
    out.mode = mode;
  }
  out.balance = balanceOption(parsed, balance);
  return out;
}

/** --balance on|off, or `otherwise`. */
function balanceOption(parsed: Parsed, otherwise: boolean): boolean {
  return onOff(parsed, "balance", otherwise);
}

/** --NAME on|off, or `otherwise`. */
function onOff(parsed: Parsed, name: string, otherwise: boolean): boolean {
  const value = optionValue(parsed, name);
  if (value === undefined) return otherwise;
  if (value !== "on" && value !== "off") throw new UsageError(`--${name} is on or off`);
  return value === "on";
}

/** The --dead-after lease, checked (undefined: the default). */
function deadAfterOption(parsed: Parsed): number | undefined {
  const ms = optionInt(parsed, "dead-after");
  if (ms !== undefined && (ms < LEASE_TTL_MS_MIN || ms > LEASE_TTL_MS_MAX)) throw new UsageError(`--dead-after wants ${LEASE_TTL_MS_MIN} to ${LEASE_TTL_MS_MAX} ms`);
  return ms;
}

/** A node's limits from the command line (each not given: the node's default). */
function limitsOption(parsed: Parsed): Partial<NodeLimits> {
  const limits: Partial<NodeLimits> = {};
  const memory = optionSize(parsed, "memory-max");
  if (memory !== undefined) limits.memory_max_bytes = memory;
  const processes = optionInt(parsed, "max-processes");
  if (processes !== undefined) limits.processes_max = processes;
  const standby = optionSize(parsed, "max-standby-bytes");
  if (standby !== undefined) limits.standby_bytes_max = standby;
  const module = optionSize(parsed, "max-module-size");
  if (module !== undefined) limits.module_bytes_max = module;
  const idle = optionInt(parsed, "standby-timeout");
  if (idle !== undefined) limits.standby_idle_ms = idle;
  const stall = optionInt(parsed, "stall-timeout");
  if (stall !== undefined) limits.migration_stall_ms = stall;
  const warm = optionInt(parsed, "warm-workers");
  if (warm !== undefined) limits.warm_workers = warm;
  const hibernate = optionInt(parsed, "hibernate-after");
  if (hibernate !== undefined) limits.hibernate_after_ms = hibernate;
  const every = optionInt(parsed, "checkpoint-every");
  if (every !== undefined) limits.checkpoint_every_ms = every;
  const disk = optionSize(parsed, "checkpoint-disk-max");
  if (disk !== undefined) limits.checkpoint_disk_max_bytes = disk;
  return limits;
}

/** A node's policy from the command line, with `also` allowed too. */
function policyOption(parsed: Parsed, also: readonly string[] = []): NodePolicy {
  return { allow_dirs: [...also, ...(parsed.options.get("allow-dir") ?? [])], allow_low_ports: parsed.flags.has("allow-low-ports") };
}

/** Largest local cluster `ferry up` starts: each node is a thread pool of its own. */
const UP_NODES_MAX = 16;

/**
 * Resolves on SIGINT or SIGTERM, or, for a node `ferry up` supervises, when
 * its channel to the supervisor closes (the supervisor is gone: no node may
 * outlive it).
 */
function untilSignal(): Promise<string> {
  return new Promise((resolve) => {
    const on = (signal: string): void => {
      process.off("SIGINT", on);
      process.off("SIGTERM", on);
      process.off("disconnect", onDisconnect);
      resolve(signal);
    };
    const onDisconnect = (): void => on("disconnect");
    process.on("SIGINT", on);
    process.on("SIGTERM", on);
    if (process.send !== undefined) process.on("disconnect", onDisconnect);
  });
}

function trackerOption(parsed: Parsed): TrackerChoice {
  const value = optionValue(parsed, "tracker") ?? "auto";
  if (value !== "auto" && value !== "userfaultfd" && value !== "portable") throw new UsageError("--tracker is auto, userfaultfd or portable");
  return value;
}

/**
 * How much a daemon's heap may grow past what its last full collection left,
 * in percent (V8's `--heap-growing-percent`). V8's own choice, as low as 10%
 * when the program allocates fast, kept a node's heap at about 19 MB over
 * 17 MB live during pre-copy's rounds: a full collection every 25–60 ms on
 * both nodes, 3–24 ms each, some inside the downtime. At 200% (a heap of up
 * to three times what is live) four such moves ran 19–24 instead of 87–91
 * per node (`--trace-gc`).
 */
const HEAP_GROWING_PERCENT = 200;

/**
 * A daemon's code that runs once per migration runs inside its downtime: the
 * worker's unwind and capture on the source, its restore and rewind on the
 * destination, the image's encoder and decoder. Left to V8's defaults, such
 * a function is parsed at its first call and stays in the interpreter until
 * it has run a while, so every move ran it cold. From here on (after this
 * thread's own modules are loaded, so the daemon starts as fast) a function
 * is compiled when its script loads (`--no-lazy`: a worker's code is ready
 * before it is handed a guest) and to baseline code at its first call
 * (`--always-sparkplug`). It costs about 2 MiB of code per worker thread.
 * And the heap grows by {@link HEAP_GROWING_PERCENT}. Measured in
 * docs/cluster.md ("Where the time goes"). Flags hold for the whole
 * process, its workers included.
 */
function tuneV8(): void {
  for (const flag of ["--always-sparkplug", "--no-lazy", `--heap-growing-percent=${HEAP_GROWING_PERCENT}`]) v8.setFlagsFromString(flag);
}

/** `ferry node start`. */
export async function nodeCommand(argv: readonly string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === "-h" || sub === "--help") {
    process.stdout.write(NODE_HELP);
    return sub === undefined ? 2 : 0;
  }
  if (sub !== "start") throw new UsageError(`unknown node command ${JSON.stringify(sub)} (see ferry node --help)`);
  tuneV8();
  const parsed = parseArgs(
    rest,
    [
      { name: "name", value: true },
      { name: "listen", value: true },
      { name: "peers", value: true },
      { name: "data", value: true },
      { name: "tracker", value: true },
      { name: "init", value: false },
      { name: "join", value: true },
      { name: "ca", value: true },
      { name: "cert", value: true },
      { name: "key", value: true },
      { name: "ca-key", value: true },
      { name: "insecure", value: false },
      { name: "balance", value: true },
      { name: "link-lanes", value: true },
      { name: "net-lanes", value: true },
      { name: "directory", value: true },
      { name: "dead-after", value: true },
      ...LIMIT_OPTIONS,
      { name: "help", value: false, short: "h" },
    ],
    false,
  );
  if (parsed.flags.has("help")) {
    process.stdout.write(NODE_HELP);
    return 0;
  }
  if (parsed.positionals.length > 0) throw new UsageError(`unexpected argument ${parsed.positionals[0]}`);
  const name = optionValue(parsed, "name");
  if (name === undefined) throw new UsageError("--name is required");
  checkNodeName(name);
  const log = configureLogging({ level: logLevelOption(parsed), base: { node: name } });
  const load = loadOption(parsed, false);
  const listen = parseAddress(optionValue(parsed, "listen") ?? "127.0.0.1:7070");
  const peers = (optionValue(parsed, "peers") ?? "").split(",").filter((p) => p !== "");
  for (const p of peers) parseAddress(p);
  const data_dir = optionValue(parsed, "data") ?? path.join(ferryHome(), name);
  let tls: NodeIdentity | null = null;
  if (parsed.flags.has("insecure")) {
    const given = ["init", "join", "ca", "cert", "key", "ca-key"].filter((o) => parsed.flags.has(o) || optionValue(parsed, o) !== undefined);
    if (given.length > 0) throw new UsageError(`--insecure takes no credential (--${given[0]} given)`);
  } else {
    tls = await nodeIdentity({
      name,
      data_dir,
      host: listen.host,
      init: parsed.flags.has("init"),
      ...pick(parsed, { ca: "ca", cert: "cert", key: "key", ca_key: "ca-key", join: "join" }),
    });
  }
  const dead_after_ms = deadAfterOption(parsed);
  const directory_url = optionValue(parsed, "directory");
  const directory: Directory | null = directory_url === undefined ? null : await openDirectory(directory_url, tls?.tls ?? null);
  const node = await FerryNode.start({
    name,
    host: listen.host,
    port: listen.port,
    peers: [...new Set([...peers, ...(tls?.peers ?? [])])],
    data_dir,
    tracker: trackerOption(parsed),
    tls: tls?.tls ?? null,
    authority: tls?.authority ?? null,
    policy: policyOption(parsed),
    limits: limitsOption(parsed),
    load,
    directory,
    link_lanes: onOff(parsed, "link-lanes", true),
    net_lanes: onOff(parsed, "net-lanes", true),
    ...(dead_after_ms !== undefined ? { dead_after_ms } : {}),
  });
  if (node.cluster !== null) process.stdout.write(`node ${node.name}: joined the directory at ${directory_url}, lease ${node.cluster.membership.lease?.ttl_ms} ms\n`);
  // A node that just joined is known to no one: it tells the members it learned of.
  if (tls?.joined === true) await node.announce();
  const pc = node.info().post_copy;
  if (tls === null) process.stderr.write(`ferry node: WARNING: --insecure: no TLS and no authentication; anyone who can reach ${node.address} runs code as this user\n`);
  else process.stdout.write(`node ${node.name}: ${tls.note}\n`);
  process.stdout.write(
    `node ${node.name} listening on ${node.address} (page tracker: ${node.page_tracker.name}, ${node.page_tracker.note}; post-copy: ${pc.available ? "available" : `unavailable, ${pc.reason}`})\n`,
  );
  // Started by `ferry up` (_supervisor.ts): tell it, on the channel it gave.
  process.send?.({ kind: "ready", name: node.name, address: node.address, os_pid: process.pid });
  log.info({ address: node.address, page_tracker: node.page_tracker.name, post_copy: pc.available }, "listening");
  const signal = await untilSignal();
  log.info({ signal }, "stopping on a signal");
  await node.stop();
  if (process.connected) process.disconnect();
  return 0;
}

/** `ferry up`. */
export async function upCommand(argv: readonly string[]): Promise<number> {
  const parsed = parseArgs(
    argv,
    [
      { name: "nodes", value: true },
      { name: "port", value: true },
      { name: "data", value: true },
      { name: "tracker", value: true },
      { name: "balance", value: true },
      { name: "link-lanes", value: true },
      { name: "net-lanes", value: true },
      { name: "directory", value: true },
      { name: "dead-after", value: true },
      { name: "restart", value: false },
      ...LIMIT_OPTIONS,
      { name: "help", value: false, short: "h" },
    ],
    false,
  );
  if (parsed.flags.has("help")) {
    process.stdout.write(UP_HELP);
    return 0;
  }
  if (parsed.positionals.length > 0) throw new UsageError(`unexpected argument ${parsed.positionals[0]}`);
  logLevelOption(parsed); // checked here, so a wrong level fails before any node starts
  const balance = balanceOption(parsed, true);
  loadOption(parsed, balance); // likewise
  onOff(parsed, "link-lanes", true); // likewise
  onOff(parsed, "net-lanes", true); // likewise
  const count = optionInt(parsed, "nodes") ?? 3;
  const port = optionInt(parsed, "port") ?? 7070;
  if (count < 1 || count > UP_NODES_MAX) throw new UsageError(`--nodes wants 1 to ${UP_NODES_MAX}`);
  const given = optionValue(parsed, "data");
  const data = given ?? fs.mkdtempSync(path.join(os.tmpdir(), "ferry-up-"));
  const { authority, created } = await localCluster(localAuthorityDir());
  const client = await ensureClient(authority, clientCredentialDir(), localUserName());
  if (created) process.stdout.write(`new local cluster CA in ${localAuthorityDir()}\n`);
  if (client !== "kept") process.stdout.write(`${client === "replaced" ? "replaced the" : "wrote a"} client credential in ${clientCredentialDir()}\n`);
  // Each node gets the same flags: a local cluster serves the folder it was started in, as a local program would.
  const dead_after_ms = deadAfterOption(parsed) ?? LEASE_TTL_MS_DEFAULT;
  const shared = [...passOn(parsed, [...LIMIT_OPTIONS, { name: "tracker", value: true }, { name: "dead-after", value: true }, { name: "link-lanes", value: true }, { name: "net-lanes", value: true }]), "--balance", balance ? "on" : "off", "--allow-dir", process.cwd(), "--ca-key", path.join(localAuthorityDir(), "ca-key.pem")];
  const addresses = Array.from({ length: count }, (_, i) => `127.0.0.1:${port + i}`);
  const supervisor = new Supervisor(
    (line) => process.stdout.write(`${line}\n`),
    (line) => process.stderr.write(`${line}\n`),
    // Restarted once its lease has run out: the cluster has then declared it dead and failed over what it ran, so the node comes back empty-handed rather than racing the failover.
    parsed.flags.has("restart") ? { restart_after_ms: dead_after_ms + 1000 } : {},
  );
  // A signal during start-up stops what has started.
  const stopped = untilSignal();
  let embedded: { close(): Promise<void> } | null = null;
  try {
    const given_directory = optionValue(parsed, "directory");
    if (given_directory !== undefined) {
      if (!/^etcds?:\/\//.test(given_directory)) throw new UsageError("ferry up --directory takes etcd://HOST:PORT,... or etcds://...; without it, ferry up serves an embedded directory");
      shared.push("--directory", given_directory);
    } else {
      // The embedded directory lives here, in the supervisor, so no node's death takes it along.
      const directory = openEmbeddedDirectory(path.join(data, "directory.json"));
      const server = await serveDirectory(directory, { host: "127.0.0.1", port: 0, tls: await localNode(authority, "directory", "127.0.0.1") });
      embedded = {
        async close() {
          await server.close();
          await directory.close();
        },
      };
      await directory.watch((change) => {
        if (change.kind !== "member") return;
        const m = change.member;
        process.stderr.write(`ferry up: directory: node ${m.name} is ${m.state}${change.reason !== null ? ` (${change.reason})` : ""}\n`);
      });
      process.stdout.write(`directory: embedded, ${path.join(data, "directory.json")}, served on ${server.url}\n`);
      shared.push("--directory", server.url);
    }
    await Promise.race([
      (async () => {
        for (const [i, address] of addresses.entries()) {
          const name = `n${i + 1}`;
          const data_dir = path.join(data, name);
          // The node's certificate sits in its data directory, where `ferry node start` finds it.
          await localNode(authority, name, "127.0.0.1", data_dir);
          const peers = addresses.filter((a) => a !== address).join(",");
          await supervisor.start({ name, args: ["--listen", address, "--peers", peers, "--data", data_dir, ...shared] });
        }
        process.stdout.write(`cluster of ${count} up; try: ferry run --attach examples/c/compute.wasm 10   (Ctrl-C stops it)\n`);
        if (count > 1) process.stdout.write(`commands that should go on when a node is down: export FERRY_CLUSTER=${addresses.join(",")}\n`);
      })(),
      stopped,
    ]);
    await stopped;
  } finally {
    await supervisor.stop();
    await embedded?.close();
    if (given === undefined) fs.rmSync(data, { recursive: true, force: true });
  }
  return 0;
}

/** The options of `specs` that were given, as flags again (repeatable ones once per value). */
function passOn(parsed: Parsed, specs: readonly OptionSpec[]): string[] {
  const out: string[] = [];
  for (const spec of specs) {
    if (!spec.value) {
      if (parsed.flags.has(spec.name)) out.push(`--${spec.name}`);
      continue;
    }
    for (const value of parsed.options.get(spec.name) ?? []) out.push(`--${spec.name}`, value);
  }
  return out;
}
