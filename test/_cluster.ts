/**
 * A cluster of real node daemons, each its own OS process on 127.0.0.1, for
 * the integration tests; plus small HTTP helpers and a TCP proxy that can cut
 * the links going through it.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { Dialer, httpRequest } from "../src/node/mod.js";
import { ClusterTls, clientCredentialDir, issue, localAuthorityDir, writeCredential, type KeyPairPem } from "../src/trust/mod.js";
import { ensureClient, localCluster } from "../src/cli/_identity.js";
import { FERRY, tempDir } from "./_helpers.js";

/** One node process. */
export interface NodeProc {
  name: string;
  address: string;
  child: ChildProcess;
}

/** Kills a node process outright (SIGKILL), as a crash would; resolves once it is gone, with when it was killed (Date.now()). */
export async function crash(node: NodeProc): Promise<number> {
  const at = Date.now();
  // A node already gone has no exit to come: waiting for one would wait forever.
  if (node.child.exitCode !== null || node.child.signalCode !== null) return at;
  const gone = new Promise((r) => node.child.once("exit", r));
  node.child.kill("SIGKILL");
  await gone;
  return at;
}

/** The lowest port the kernel hands out to outgoing connections (Linux's ip_local_port_range; 32768 when unreadable). */
function ephemeralLow(): number {
  try {
    const low = Number(fs.readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > 1024 ? low : 32768;
  } catch {
    return 32768;
  }
}

/** Binds `port` on 127.0.0.1 (0: any), resolving with the server, or null if it is taken. */
function bindOnce(port: number): Promise<net.Server | null> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once("error", () => resolve(null));
    s.listen({ port, host: "127.0.0.1", exclusive: true }, () => resolve(s));
  });
}

/**
 * Ports nobody listens on right now (bound and released: good enough on
 * loopback), below the range the kernel takes outgoing connections' ports
 * from: a node restarted on its port after a crash would otherwise, now and
 * then, find it taken by another node's connection (seen in CI: a port from
 * `listen(0)` lies in that range).
 */
export async function freePorts(n: number): Promise<number[]> {
  const high = ephemeralLow();
  const low = Math.max(10_000, high - 12_000);
  const servers: net.Server[] = [];
  for (let tries = 0; servers.length < n && tries < 200; tries += 1) {
    // One held already is taken too: the bind fails.
    const s = await bindOnce(low + Math.floor(Math.random() * (high - low)));
    if (s !== null) servers.push(s);
  }
  // That range all taken (never seen): any port, as before.
  while (servers.length < n) servers.push((await bindOnce(0)) as net.Server);
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

let authority: Promise<KeyPairPem> | undefined;

/**
 * The CA of the test process's clusters (in its own Ferry home, as `ferry
 * up` makes it), and a client credential there that the CLI, `request` and
 * `json` use.
 */
export function testAuthority(): Promise<KeyPairPem> {
  authority ??= localCluster(localAuthorityDir()).then(async ({ authority: a }) => {
    await ensureClient(a, clientCredentialDir(), "tester");
    return a;
  });
  return authority;
}

/** Writes a certificate for node `name` into DATA/pki, as an operator would hand it over. */
export async function nodeCredentialFiles(name: string, data: string, given?: KeyPairPem): Promise<string[]> {
  const ca = given ?? (await testAuthority());
  const issued = await issue(ca, { role: "node", name, hosts: ["127.0.0.1"] });
  const dir = path.join(data, "pki");
  writeCredential(dir, { ca_pem: ca.cert_pem, cert_pem: issued.cert_pem, key_pem: issued.key_pem as string });
  return ["--ca", path.join(dir, "ca.pem"), "--cert", path.join(dir, "cert.pem"), "--key", path.join(dir, "key.pem")];
}

/**
 * Options of a test node, as `ferry node start` flags. By default the node
 * allows directories under the system's temporary folder, where the tests
 * make theirs.
 */
export const NODE_ARGS_DEFAULT: readonly string[] = ["--allow-dir", os.tmpdir()];

/** How long a test node may take to say it listens, however loaded the machine, before it is given up (and killed). */
const NODE_START_MS_MAX = 120_000;

/**
 * Starts one node process with a certificate of the test CA and resolves
 * once it listens; `args` are more `ferry node start` flags. Rejects if it
 * exits first, or says nothing within NODE_START_MS_MAX (then it is killed).
 */
export async function startNode(name: string, port: number, peers: string[], data: string, args: readonly string[] = NODE_ARGS_DEFAULT): Promise<NodeProc> {
  const credential = await nodeCredentialFiles(name, data);
  const child = spawn(process.execPath, [FERRY, "node", "start", "--name", name, "--listen", `127.0.0.1:${port}`, "--peers", peers.join(","), "--data", data, ...credential, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`node ${name} did not say it listens within ${NODE_START_MS_MAX} ms: ${out}`));
    }, NODE_START_MS_MAX);
    child.stdout?.on("data", (c: Buffer) => {
      out += c.toString();
      if (out.includes("listening on")) {
        clearTimeout(timer);
        resolve({ name, address: `127.0.0.1:${port}`, child });
      }
    });
    child.stderr?.on("data", (c: Buffer) => process.stderr.write(`[${name}] ${c.toString()}`));
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`node ${name} exited with ${code} before listening: ${out}`));
    });
  });
}

/**
 * A cluster of `names.length` node processes, all peers of each other
 * (through `via` where given); `args` gives a node more flags (default
 * NODE_ARGS_DEFAULT).
 */
export async function startCluster(
  names: string[],
  via: (name: string, address: string) => string = (_n, a) => a,
  args: (name: string) => readonly string[] = () => NODE_ARGS_DEFAULT,
): Promise<{ nodes: NodeProc[]; stop(): Promise<void>; dir: string }> {
  const ports = await freePorts(names.length);
  const dir = tempDir("cluster");
  const addresses = ports.map((p) => `127.0.0.1:${p}`);
  const nodes = await Promise.all(
    names.map((name, i) =>
      startNode(name, ports[i] as number, names.flatMap((other, j) => (j === i ? [] : [via(other, addresses[j] as string)])), path.join(dir, name), args(name)),
    ),
  );
  return {
    nodes,
    dir,
    async stop() {
      await Promise.all(nodes.map((n) => stopNode(n)));
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** How long {@link stopNode} gives a node to stop by itself after SIGTERM before it kills it. */
export const NODE_STOP_GRACE_MS_DEFAULT = 5000;

/**
 * Stops a node process (SIGTERM, then SIGKILL if it lingers past `grace_ms`);
 * resolves with how it ended (a node that stopped by itself exits 0), or
 * null if it had ended already.
 */
export function stopNode(node: NodeProc, options: { grace_ms?: number } = {}): Promise<{ code: number | null; signal: NodeJS.Signals | null } | null> {
  if (node.child.exitCode !== null || node.child.signalCode !== null) return Promise.resolve(null);
  return new Promise((resolve) => {
    const timer = setTimeout(() => node.child.kill("SIGKILL"), options.grace_ms ?? NODE_STOP_GRACE_MS_DEFAULT);
    node.child.once("exit", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    });
    node.child.kill("SIGTERM");
  });
}

/** An HTTP request, as this machine's client; resolves with status and body. */
export const request = httpRequest;

let probe: Promise<Dialer> | undefined;

/** A dialer holding a node certificate ("probe") of the test CA, for the node-only `/v1/internal/` endpoints. */
export function nodeDialer(): Promise<Dialer> {
  probe ??= testAuthority().then(async (ca) => {
    const issued = await issue(ca, { role: "node", name: "probe" });
    return new Dialer(new ClusterTls({ ca_pem: ca.cert_pem, cert_pem: issued.cert_pem, key_pem: issued.key_pem as string }));
  });
  return probe;
}

/** Whether `pid` runs on the node at `address`, asked as a node asks. */
export async function runsOn(address: string, pid: string): Promise<boolean> {
  const r = await request(address, "GET", `/v1/internal/running/${pid}`, undefined, await nodeDialer());
  if (r.status !== 200) throw new Error(`GET /v1/internal/running/${pid}: ${r.status} ${r.body.toString()}`);
  return (JSON.parse(r.body.toString()) as { running: boolean }).running;
}

/** A JSON request that must succeed. */
export async function json<T>(address: string, method: string, p: string, body?: Buffer | object): Promise<T> {
  const r = await request(address, method, p, body);
  if (r.status >= 400) throw new Error(`${method} ${p}: ${r.status} ${r.body.toString()}`);
  return JSON.parse(r.body.toString()) as T;
}

/** Uploads a module to a node; returns its hash. */
export async function upload(address: string, file: string): Promise<string> {
  const bytes = fs.readFileSync(file);
  const sha = createHash("sha256").update(bytes).digest("hex");
  await request(address, "PUT", `/v1/modules/${sha}`, bytes);
  return sha;
}

/** A process's whole output, read from its home through `address`. */
export async function outputOf(address: string, pid: string): Promise<{ stdout: Buffer; stderr: Buffer }> {
  const r = await request(address, "GET", `/v1/processes/${pid}/output`);
  const out = { stdout: [] as Buffer[], stderr: [] as Buffer[] };
  for (const block of r.body.toString().split("\n\n")) {
    const data = /^data: (.*)$/m.exec(block)?.[1];
    if (!block.startsWith("event: output") || data === undefined) continue;
    const e = JSON.parse(data) as { stream: "stdout" | "stderr"; data: string };
    out[e.stream].push(Buffer.from(e.data, "base64"));
  }
  return { stdout: Buffer.concat(out.stdout), stderr: Buffer.concat(out.stderr) };
}

/** A TCP proxy on 127.0.0.1 whose links can be cut at once. */
export async function cuttableProxy(target: string): Promise<{ address: string; cut(): void; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const i = target.lastIndexOf(":");
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.slice(i + 1)), target.slice(0, i));
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => undefined);
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return {
    address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    cut() {
      for (const s of sockets) s.destroy();
    },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

/** Two nodes where n1 reaches n2 only through a cuttable proxy (n2 reaches n1 directly). */
export async function proxiedPair(prefix: string): Promise<{ n1: NodeProc; n2: NodeProc; proxy: { cut(): void }; stop(): Promise<void> }> {
  const [p1, p2] = await freePorts(2);
  const proxy = await cuttableProxy(`127.0.0.1:${p2}`);
  const dir = tempDir(prefix);
  const n1 = await startNode("n1", p1 as number, [proxy.address], path.join(dir, "n1"));
  const n2 = await startNode("n2", p2 as number, [`127.0.0.1:${p1}`], path.join(dir, "n2"));
  return {
    n1,
    n2,
    proxy,
    async stop() {
      await stopNode(n1);
      await stopNode(n2);
      await proxy.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A migration OFFER of a process that exists nowhere, from `source`: for tests of what a destination checks. */
export function testOffer(source: string, over: object = {}): object {
  return {
    pid: "n9-1",
    home: "n9",
    module_sha256: "e".repeat(64),
    module_name: "x.wasm",
    moves: 1,
    args: [],
    env: [],
    dirs: [],
    open_files: [],
    strategy: "stop-copy",
    source,
    memory_bytes: 65536,
    memory_max_bytes: 65536,
    ...over,
  };
}
