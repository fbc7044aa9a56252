/** `ferry dashboard` (a login URL for the web dashboard) and `ferry top` (the cluster in a terminal). */
import os from "node:os";
import * as v from "valibot";
import { checkNodeName } from "../node/mod.js";
import { clientCredentialDir, fingerprint, readCredential } from "../trust/mod.js";
import { parse, text, Uint } from "../validate.js";
import { optionValue, parseArgs, UsageError } from "./_args.js";
import { CLUSTER_OPTION, ClusterClient, clusterClient, formatAddress, parseAddress, type Address } from "./_client.js";
import { OverviewSchema, PageSchema, renderTop, TOP_CHROME_LINES } from "./_top.js";

/** Help of `ferry dashboard`. */
export const DASHBOARD_HELP = `Usage: ferry dashboard [OPTIONS]

Prints the URL of a node's web dashboard with a one-time login token: open
it in a browser within 2 minutes. The page trades the token for a session
cookie (HttpOnly, SameSite=Strict, Secure) that acts as your client
credential, on that node, for up to 12 hours (30 minutes idle). The page
shows the nodes (load, memory), the processes, migrations and the links
between processes; it can move and kill processes, and drain and undrain
nodes. See docs/operations.md.

The node's certificate is signed by the cluster's CA, which a browser does
not know: it warns until you trust that CA (docs/operations.md, "Dashboard").

Options:
  --node NAME            The node whose dashboard to open (default: the node
                         asked, --cluster).
  --json                 Print {url, node, expires_unix_ms, ca_fingerprint}.
  --cluster HOST:PORT    The node to ask (default: $FERRY_CLUSTER, else
                         127.0.0.1:7070). A list A,B,... asks the first that
                         answers: commands go on when a node is down.
  -h, --help             Show this help.
`;

/** Help of `ferry top`. */
export const TOP_HELP = `Usage: ferry top [OPTIONS]

Shows the cluster's nodes (processes; LOAD/CPU and USED/CPU, the cores each
node's guests want and use over its --cpus, from its load module; guest and
node memory; uptime) and its processes using the most memory, refreshed in
place until q or Ctrl-C.

Options:
  --once                 Print one frame and exit (also when the output is
                         not a terminal).
  --interval SECONDS     Time between refreshes (default 2, 0.5 to 3600).
  --cluster HOST:PORT    The node to ask (default: $FERRY_CLUSTER, else
                         127.0.0.1:7070). A list A,B,... asks the first that
                         answers: commands go on when a node is down.
  -h, --help             Show this help.
`;

/** What a node answers to `POST /dashboard/logins`. */
const LoginAnswerSchema = v.object({ token: text(200, 1), expires_unix_ms: Uint, node: text(64), path: v.pipe(text(300, 1), v.startsWith("/")), tls: v.boolean() });

const NodesSchema = v.array(v.object({ name: v.nullable(text(64)), address: text(300), up: v.boolean() }));

/** Lines a frame has when the output is not a terminal (`--once` into a file or a pipe). */
const ROWS_NOT_TTY = 60;
/** Columns of a frame when the output is not a terminal. */
const COLUMNS_NOT_TTY = 160;

/** `ferry dashboard`. */
export async function dashboardCommand(argv: readonly string[]): Promise<number> {
  const parsed = parseArgs(argv, [{ name: "node", value: true }, { name: "json", value: false }, CLUSTER_OPTION, { name: "help", value: false, short: "h" }], false);
  if (parsed.flags.has("help")) {
    process.stdout.write(DASHBOARD_HELP);
    return 0;
  }
  if (parsed.positionals.length > 0) throw new UsageError(`ferry dashboard takes no arguments (got ${JSON.stringify(parsed.positionals[0])})`);
  const name = optionValue(parsed, "node");
  let client = clusterClient(parsed);
  if (name !== undefined) {
    checkNodeName(name);
    // Sessions live in the node that made them: the token is asked of that node itself, directly.
    const nodes = parse(NodesSchema, await client.json("GET", "/v1/nodes"), `node ${client.name}'s node list`);
    const found = nodes.find((n) => n.name === name && n.up);
    if (found === undefined) throw new UsageError(`no node called ${name} is up in the cluster of ${client.name} (see ferry nodes)`);
    const address = parseAddress(found.address);
    if (address === null) throw new UsageError(`node ${name} gives an address that is not HOST:PORT: ${JSON.stringify(found.address)}`);
    client = new ClusterClient(address);
  }
  const login = parse(LoginAnswerSchema, await client.json("POST", "/dashboard/logins"), `node ${client.name}'s login answer`);
  const url = `${login.tls ? "https" : "http"}://${formatAddress(browserAddress(client.address))}${login.path}`;
  const ca_fingerprint = fingerprint(readCredential(clientCredentialDir()).ca_pem);
  if (parsed.flags.has("json")) {
    process.stdout.write(`${JSON.stringify({ url, node: login.node, expires_unix_ms: login.expires_unix_ms, ca_fingerprint })}\n`);
    return 0;
  }
  const until = new Date(login.expires_unix_ms).toLocaleTimeString();
  process.stdout.write(
    `Open this URL in a browser; it logs in once, until ${until}:\n\n  ${url}\n\n` +
      `The page of node ${login.node} comes with a certificate of your cluster's CA\n(SHA-256 ${ca_fingerprint}):\n` +
      `a browser that does not trust that CA warns first (docs/operations.md, "Dashboard").\n`,
  );
  return 0;
}

/** An address a browser on this machine can reach: a node listening on every interface is reached by this host's name. */
function browserAddress(address: Address): Address {
  return address.host === "0.0.0.0" || address.host === "::" ? { host: os.hostname(), port: address.port } : address;
}

/** `ferry top`. */
export async function topCommand(argv: readonly string[]): Promise<number> {
  const parsed = parseArgs(argv, [{ name: "once", value: false }, { name: "interval", value: true }, CLUSTER_OPTION, { name: "help", value: false, short: "h" }], false);
  if (parsed.flags.has("help")) {
    process.stdout.write(TOP_HELP);
    return 0;
  }
  if (parsed.positionals.length > 0) throw new UsageError(`ferry top takes no arguments (got ${JSON.stringify(parsed.positionals[0])})`);
  const interval_text = optionValue(parsed, "interval") ?? "2";
  const interval_s = Number(interval_text);
  if (!/^\d+(\.\d+)?$/.test(interval_text) || interval_s < 0.5 || interval_s > 3600) throw new UsageError(`--interval ${JSON.stringify(interval_text)}: want seconds, 0.5 to 3600`);
  const client = clusterClient(parsed);
  const out = process.stdout;
  const live = out.isTTY === true && process.stdin.isTTY === true && !parsed.flags.has("once");
  const frame = async (): Promise<string[]> => {
    // A terminal that does not say its size (a pty nobody sized) gets the classic 80x24.
    const rows = out.isTTY === true ? (out.rows > 0 ? out.rows : 24) : ROWS_NOT_TTY;
    const columns = out.isTTY === true ? (out.columns > 0 ? out.columns : 80) : COLUMNS_NOT_TTY;
    const overview = parse(OverviewSchema, await client.json("GET", "/dashboard/api/overview"), `node ${client.name}'s overview`);
    const limit = Math.max(1, Math.min(500, rows - TOP_CHROME_LINES - overview.nodes.length));
    const page = parse(PageSchema, await client.json("GET", `/dashboard/api/processes?sort=memory&state=running&limit=${limit}`), `node ${client.name}'s processes`);
    // The summary counts every state; the table lists the running ones.
    return renderTop({ overview, page, now_unix_ms: Date.now(), columns, rows });
  };
  if (!live) {
    out.write(`${(await frame()).join("\n")}\n`);
    return 0;
  }
  return await runLive(frame, interval_s * 1000);
}

/** ANSI: the alternate screen, cursor hidden; home, clear to end of line and of screen. */
const ENTER = "\x1b[?1049h\x1b[?25l";
const LEAVE = "\x1b[?25h\x1b[?1049l";
const HOME = "\x1b[H";
const CLEAR_LINE = "\x1b[K";
const CLEAR_BELOW = "\x1b[J";

/** Redraws every `interval_ms` (and on resize) until q, Ctrl-C or SIGTERM; the terminal is given back as it was. */
function runLive(frame: () => Promise<string[]>, interval_ms: number): Promise<number> {
  const out = process.stdout;
  const stdin = process.stdin;
  return new Promise((resolve) => {
    let timer: NodeJS.Timeout | undefined;
    let drawing = false;
    let done = false;
    const draw = async (): Promise<void> => {
      if (drawing || done) return;
      drawing = true;
      let lines: string[];
      try {
        lines = await frame();
      } catch (err: unknown) {
        // The node may be restarting: say so in place and try again at the next tick.
        lines = [`ferry top: ${err instanceof Error ? err.message : String(err)}`, "(retrying; q quits)"];
      }
      drawing = false;
      if (done) return;
      out.write(HOME + lines.map((l) => l + CLEAR_LINE).join("\n") + CLEAR_BELOW);
    };
    const finish = (): void => {
      if (done) return;
      done = true;
      clearInterval(timer);
      stdin.off("data", onKey);
      out.off("resize", onResize);
      process.off("SIGTERM", finish);
      stdin.setRawMode(false);
      stdin.pause();
      out.write(LEAVE);
      resolve(0);
    };
    const onKey = (key: Buffer): void => {
      // q, Q, Ctrl-C (raw mode delivers it as a byte, not a signal), Ctrl-D.
      if (key.includes(0x71) || key.includes(0x51) || key.includes(0x03) || key.includes(0x04)) finish();
    };
    const onResize = (): void => void draw();
    out.write(ENTER);
    stdin.setRawMode(true);
    stdin.resume();
    stdin.on("data", onKey);
    out.on("resize", onResize);
    process.on("SIGTERM", finish);
    void draw();
    timer = setInterval(() => void draw(), interval_ms);
  });
}
