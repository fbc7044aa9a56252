/**
 * Failure detection benchmark (`--only=directory`): three node daemons with
 * 1 s leases, on the embedded directory (served from this process, as
 * `ferry up` serves it) and on a real etcd (when /usr/bin/etcd is there).
 * Each round moves a process from n1 to n3, kills n3 with SIGKILL, and
 * times, from the kill: the directory declaring n3 dead, n1's `GET
 * /v1/nodes` saying so, and the process recorded `lost`. Then n3 is started
 * again on its data directory for the next round.
 */
import type { ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { openEmbeddedDirectory, openEtcdDirectory, type Directory, type MemoryDirectory } from "../src/directory/mod.js";
import { Dialer, httpRequest, serveDirectory } from "../src/node/mod.js";
import { ClusterTls, createAuthority, issue, writeCredential, type KeyPairPem } from "../src/trust/mod.js";
import { etcdMissing, startEtcd } from "../test/_etcd.js";
import { median } from "./_measure.js";
import { freePort, ROOT, startNode } from "./_nodes.js";

const LEASE_MS = 1000;

interface Round {
  dead_ms: number;
  nodes_ms: number;
  lost_ms: number;
}

/** A TLS credential of CA `ca` for `name` (the failover benchmark uses it too). */
export async function credential(ca: KeyPairPem, role: "node" | "client", name: string): Promise<ClusterTls> {
  const issued = await issue(ca, { role, name, hosts: ["127.0.0.1"] });
  return new ClusterTls({ ca_pem: ca.cert_pem, cert_pem: issued.cert_pem, key_pem: issued.key_pem as string });
}

/** Polls `check` every 5 ms until it holds (the failover benchmark uses it too). */
export async function poll(what: string, check: () => Promise<boolean> | boolean, timeout_ms = 30_000): Promise<void> {
  const deadline = Date.now() + timeout_ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Three node daemons of CA `ca` with 1 s leases, joined to the directory at `url`, each its own OS process (the failover benchmark uses it too). */
export interface BenchTrio {
  /** Where their data lives (removed by stop). */
  data: string;
  addresses: string[];
  nodes: ChildProcess[];
  /** A JSON request as a client of the cluster; throws on an error status. */
  request(address: string, method: string, p: string, body?: Uint8Array | object): Promise<unknown>;
  /** A request as a client of the cluster, its body as it came (an event stream's, say); throws on an error status. */
  raw(address: string, method: string, p: string): Promise<Buffer>;
  /** Starts node `i` (0..2) again on its data directory. */
  start(i: number): Promise<ChildProcess>;
  stop(): Promise<void>;
}

/** Starts a {@link BenchTrio}. */
export async function startTrio(ca: KeyPairPem, url: string, label: string): Promise<BenchTrio> {
  const data = fs.mkdtempSync(path.join(os.tmpdir(), `ferry-bench-${label}-`));
  const client = new Dialer(await credential(ca, "client", "bench"));
  const request = async (address: string, method: string, p: string, body?: Uint8Array | object): Promise<unknown> => {
    const r = await httpRequest(address, method, p, body, client);
    if (r.status >= 400) throw new Error(`${method} ${p}: ${r.status} ${r.body.toString()}`);
    return JSON.parse(r.body.toString()) as unknown;
  };
  const raw = async (address: string, method: string, p: string): Promise<Buffer> => {
    const r = await httpRequest(address, method, p, undefined, client);
    if (r.status >= 400) throw new Error(`${method} ${p}: ${r.status} ${r.body.toString()}`);
    return r.body;
  };
  const ports = [await freePort(), await freePort(), await freePort()];
  const addresses = ports.map((p) => `127.0.0.1:${p}`);
  const flags = async (name: string): Promise<string[]> => {
    const issued = await issue(ca, { role: "node", name, hosts: ["127.0.0.1"] });
    const dir = path.join(data, name, "pki");
    writeCredential(dir, { ca_pem: ca.cert_pem, cert_pem: issued.cert_pem, key_pem: issued.key_pem as string });
    return ["--ca", path.join(dir, "ca.pem"), "--cert", path.join(dir, "cert.pem"), "--key", path.join(dir, "key.pem"), "--directory", url, "--dead-after", String(LEASE_MS)];
  };
  const start = async (i: number): Promise<ChildProcess> => startNode(`n${i + 1}`, ports[i] as number, addresses.filter((_, j) => j !== i).join(","), path.join(data, `n${i + 1}`), await flags(`n${i + 1}`));
  const nodes = [await start(0), await start(1), await start(2)];
  const stop = async (): Promise<void> => {
    for (const n of nodes) n.kill("SIGTERM");
    await Promise.all(nodes.map((n) => (n.exitCode !== null || n.signalCode !== null ? undefined : new Promise((r) => n.once("exit", r)))));
    fs.rmSync(data, { recursive: true, force: true });
  };
  return { data, addresses, nodes, request, raw, start, stop };
}

/** Runs `rounds` kill rounds on a cluster of CA `ca` whose nodes join `url`; `watcher` is a directory client of this process. */
async function measure(ca: KeyPairPem, url: string, watcher: Directory, rounds: number): Promise<Round[]> {
  const trio = await startTrio(ca, url, "directory");
  const { addresses, nodes, request, start } = trio;
  const out: Round[] = [];
  try {
    const wasm = fs.readFileSync(path.join(ROOT, "examples", "c", "sleeper.wasm"));
    const sha = createHash("sha256").update(wasm).digest("hex");
    const [a1] = addresses as [string];
    await request(a1, "PUT", `/v1/modules/${sha}`, wasm);
    const stateOfN3 = async (): Promise<unknown> => ((await request(a1, "GET", "/v1/nodes")) as { name: string; state: string }[]).find((n) => n.name === "n3")?.state;
    for (let round = 0; round < rounds; round += 1) {
      await poll("n1 to see n3 alive", async () => (await stateOfN3()) === "alive");
      const { pid } = (await request(a1, "POST", "/v1/processes", { module_sha256: sha, module_name: "sleeper.wasm", args: ["200", "100000"] })) as { pid: string };
      await request(a1, "POST", `/v1/processes/${pid}/migrate`, { to: "n3" });
      let dead_at = 0;
      let lost_at = 0;
      const stop = await watcher.watch((c) => {
        if (c.kind === "member" && c.member.name === "n3" && c.member.state === "dead" && dead_at === 0) dead_at = Date.now();
        if (c.kind === "process" && c.record.pid === pid && c.record.state === "lost" && lost_at === 0) lost_at = Date.now();
      });
      const n3 = nodes[2] as ChildProcess;
      const gone = new Promise((r) => n3.once("exit", r));
      const killed_at = Date.now();
      n3.kill("SIGKILL");
      await gone;
      await poll("n1 to say n3 is dead", async () => (await stateOfN3()) === "dead");
      const nodes_at = Date.now();
      await poll("the directory to record the death and the loss", () => dead_at !== 0 && lost_at !== 0);
      stop();
      out.push({ dead_ms: dead_at - killed_at, nodes_ms: nodes_at - killed_at, lost_ms: lost_at - killed_at });
      nodes[2] = await start(2);
    }
  } finally {
    await trio.stop();
  }
  return out;
}

function row(backend: string, rounds: Round[]): string {
  const f = (xs: number[]): string => `${median(xs).toFixed(0)} (${Math.min(...xs)}–${Math.max(...xs)})`;
  return `| ${backend} | ${LEASE_MS} | ${rounds.length} | ${f(rounds.map((r) => r.dead_ms))} | ${f(rounds.map((r) => r.nodes_ms))} | ${f(rounds.map((r) => r.lost_ms))} |`;
}

/** Runs the failure-detection benchmark and prints its table. */
export async function directoryBench(quick: boolean): Promise<void> {
  const rounds = quick ? 2 : 5;
  console.log(`\n(n) failure detection: kill -9 of a node running a process (1 s leases, three nodes; load average ${os.loadavg()[0]?.toFixed(1)} on ${os.cpus().length} cores at the start). Milliseconds from the kill, median (min–max)`);
  console.log("| directory | lease ms | rounds | declared dead | n1's /v1/nodes says dead | process recorded lost |\n|---|---|---|---|---|---|");
  const ca = await createAuthority("bench-directory");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-bench-embedded-"));
  const embedded: MemoryDirectory = openEmbeddedDirectory(path.join(dir, "directory.json"));
  // Served as ferry up serves it: mutual TLS, a node certificate of the cluster's CA.
  const server = await serveDirectory(embedded, { host: "127.0.0.1", port: 0, tls: await credential(ca, "node", "directory") });
  try {
    console.log(row("embedded (served)", await measure(ca, server.url, embedded, rounds)));
  } finally {
    await server.close();
    await embedded.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const missing = etcdMissing();
  if (missing !== false) {
    console.log(`| etcd | skipped: ${missing} |`);
    return;
  }
  const etcd = await startEtcd();
  const watcher = await openEtcdDirectory({ endpoints: [etcd.endpoint], prefix: "/bench/" });
  try {
    console.log(row("etcd", await measure(ca, `${etcd.url}/bench/`, watcher, rounds)));
  } finally {
    await watcher.close();
    await etcd.stop();
  }
}
