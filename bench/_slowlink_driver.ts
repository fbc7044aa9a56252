/**
 * The measuring side of the slow-link benchmark (bench/slowlink.ts), run
 * inside the first network namespace: starts node n1 here and node n2 in the
 * second namespace, both with certificates of a CA made for the run, measures
 * raw TCP across the limited link, then moves memhog with each case and
 * prints one row per move.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { Dialer, httpRequest } from "../src/node/mod.js";
import { remotePagesAvailability } from "../src/memory/mod.js";
import { ClusterTls, createAuthority, issue } from "../src/trust/mod.js";
import { nodeCredentialFlags, ROOT } from "./_nodes.js";
import type { SlowLinkSetup } from "./slowlink.js";

const FERRY = path.join(ROOT, "bin", "ferry.js");
const PORT = 7171;
const SINK_PORT = 7172;
/** Bytes sent across the link to measure its raw TCP rate: about a second and a half at 100 Mbit/s. */
const RAW_PROBE_BYTES = 16 * 1024 * 1024;
/** The downtime each pre-copy asks for. */
const MAX_DOWNTIME_MS = 100;

interface Metrics {
  total_ms: number;
  downtime_ms: number;
  bytes: number;
  rounds: number;
  convergence?: { link_bytes_per_s: number; dirty_bytes_per_s: number | null; throttle_pct: number };
  compression?: { raw_bytes: number; wire_bytes: number };
  phases_ms: Record<string, number>;
  destination_phases_ms: Record<string, number>;
}

/** The source's phases that make up the downtime, in order (src/migration/phases.ts). */
const DOWNTIME_PHASES = ["suspend", "flush", "capture", "encode", "transfer", "restore"] as const;
/** The destination's phases after READY, which the source's `encode` to `restore` cover (src/migration/phases.ts). */
const DESTINATION_PHASES = ["decode", "restore", "resume", "adopt"] as const;

const setup = JSON.parse(process.argv[2] as string) as SlowLinkSetup;
const data = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-slowlink-"));
const children: ChildProcess[] = [];

/** Starts a child and resolves once it prints `ready` on stdout. */
function started(command: string, args: string[], ready: string): Promise<ChildProcess> {
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout?.on("data", (c: Buffer) => {
      out += c.toString();
      if (out.includes(ready)) resolve(child);
    });
    child.stderr?.on("data", (c: Buffer) => process.stderr.write(c));
    child.on("exit", (code) => reject(new Error(`${args.join(" ")} exited with ${code} before it was ready: ${out}`)));
  });
}

/** Milliseconds to send `bytes` across the link to a sink in the second namespace, until the sink confirms it has them all. */
async function rawTcp(bytes: number): Promise<number> {
  // The sink answers one byte once it has read them all, so the time covers delivery, not queueing.
  const sink = `const n=require("node:net");let got=0;const s=n.createServer((c)=>c.on("data",(d)=>{got+=d.length;if(got>=${bytes}){c.end("x");s.close();}}));s.listen(${SINK_PORT},"${setup.ip2}",()=>console.log("listening"));`;
  await started("ip", ["netns", "exec", setup.ns2, process.execPath, "-e", sink], "listening");
  const chunk = Buffer.alloc(1024 * 1024, 7);
  const t0 = performance.now();
  const socket = net.connect(SINK_PORT, setup.ip2);
  const answered = new Promise<void>((resolve, reject) => {
    socket.once("data", () => resolve());
    socket.once("error", reject);
  });
  for (let sent = 0; sent < bytes; sent += chunk.length) {
    if (!socket.write(chunk.subarray(0, Math.min(chunk.length, bytes - sent)))) await new Promise((r) => socket.once("drain", r));
  }
  await answered;
  const ms = performance.now() - t0;
  socket.destroy();
  return ms;
}

async function main(): Promise<void> {
  const ca = await createAuthority("slowlink");
  const client = await issue(ca, { role: "client", name: "bench" });
  const dialer = new Dialer(new ClusterTls({ ca_pem: ca.cert_pem, cert_pem: client.cert_pem, key_pem: client.key_pem as string }));
  const a1 = `${setup.ip1}:${PORT}`;
  const a2 = `${setup.ip2}:${PORT}`;
  const node = (name: string, self: string, peer: string, flags: string[]): string[] => [FERRY, "node", "start", "--name", name, "--listen", self, "--peers", peer, "--data", path.join(data, name), "--log-level", "warn", "--balance", "off", ...flags];
  await started(process.execPath, node("n1", a1, a2, await nodeCredentialFlags(ca, "n1", setup.ip1, path.join(data, "n1"))), "listening on");
  await started("ip", ["netns", "exec", setup.ns2, process.execPath, ...node("n2", a2, a1, await nodeCredentialFlags(ca, "n2", setup.ip2, path.join(data, "n2")))], "listening on");
  const request = (address: string, method: string, p: string, body?: Uint8Array | object): Promise<{ status: number; body: Buffer }> => httpRequest(address, method, p, body, dialer);
  const wasm = fs.readFileSync(path.join(ROOT, "examples", "c", "memhog.wasm"));
  const sha = createHash("sha256").update(wasm).digest("hex");
  for (const a of [a1, a2]) {
    const r = await request(a, "PUT", `/v1/modules/${sha}`, wasm);
    if (r.status !== 200 && r.status !== 201) throw new Error(`module upload to ${a} failed: ${r.status} ${r.body.toString()}`);
  }

  const raw_ms = await rawTcp(RAW_PROBE_BYTES);
  const raw_bytes_per_s = RAW_PROBE_BYTES / (raw_ms / 1000);
  const mib = setup.quick ? 32 : 128;
  console.log(`raw TCP across the link: ${(raw_bytes_per_s / 1e6).toFixed(1)} MB/s (${RAW_PROBE_BYTES / 1048576} MiB in ${raw_ms.toFixed(0)} ms); ${mib} MiB at that rate: ${((mib * 1048576) / raw_bytes_per_s * 1000).toFixed(0)} ms`);
  console.log(`each pre-copy asks for --max-downtime ${MAX_DOWNTIME_MS} ms; link = the rate the destination confirmed pages at; throttle = auto-converge's at the end`);
  console.log("fill: memhog's blocks, mixed (do not compress) or text (about 2:1); compress: --compress (auto: LZ4 below 100 MB/s confirmed, by this node's last move there for the first round); LZ4 = what compressed rounds stood for / sent");
  console.log("| memory | fill | writes MB/s | strategy | compress | downtime ms | asked ms | total ms | rounds | MiB sent | LZ4 | link MB/s | throttle |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|");
  const post_copy = remotePagesAvailability().available;
  const cases: { strategy: string; rate: number; fill: "mixed" | "text"; compress: "auto" | "off" }[] = [
    { strategy: "stop-copy", rate: 0, fill: "mixed", compress: "auto" },
    { strategy: "pre-copy", rate: 0, fill: "mixed", compress: "auto" },
    { strategy: "pre-copy", rate: 4, fill: "mixed", compress: "auto" },
    { strategy: "pre-copy", rate: 32, fill: "mixed", compress: "auto" },
    { strategy: "pre-copy", rate: 4, fill: "text", compress: "off" },
    { strategy: "pre-copy", rate: 4, fill: "text", compress: "auto" },
    ...(post_copy ? [{ strategy: "post-copy", rate: 4, fill: "mixed", compress: "auto" } as const] : []),
  ];
  const phases: string[] = [];
  for (const c of cases) {
    const created = await request(a1, "POST", "/v1/processes", { module_sha256: sha, module_name: "memhog.wasm", args: [String(mib), String(c.rate), "3600", c.fill] });
    if (created.status !== 200 && created.status !== 201) throw new Error(`start failed: ${created.body.toString()}`);
    const { pid } = JSON.parse(created.body.toString()) as { pid: string };
    // memhog prints its first line once every page is written.
    for (;;) {
      const out = await request(a1, "GET", `/v1/processes/${pid}/output`);
      if (out.body.toString().includes("event: output")) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const r = await request(a1, "POST", `/v1/processes/${pid}/migrate`, { to: "n2", strategy: c.strategy, max_downtime_ms: MAX_DOWNTIME_MS, compress: c.compress });
    if (r.status !== 200) throw new Error(`${c.strategy} migration failed: ${r.body.toString()}`);
    const m = (JSON.parse(r.body.toString()) as { metrics: Metrics }).metrics;
    const link = m.convergence === undefined ? "-" : (m.convergence.link_bytes_per_s / 1e6).toFixed(1);
    const throttle = m.convergence === undefined ? "-" : `${m.convergence.throttle_pct}%`;
    const asked = c.strategy === "pre-copy" ? String(MAX_DOWNTIME_MS) : "-";
    const lz4 = m.compression === undefined ? "-" : `${(m.compression.raw_bytes / Math.max(m.compression.wire_bytes, 1)).toFixed(2)}:1`;
    const compress = c.strategy === "pre-copy" ? c.compress : "-";
    console.log(`| ${mib} MiB | ${c.fill} | ${c.rate} | ${c.strategy} | ${compress} | ${m.downtime_ms.toFixed(1)} | ${asked} | ${m.total_ms.toFixed(0)} | ${m.rounds} | ${(m.bytes / 1048576).toFixed(1)} | ${lz4} | ${link} | ${throttle} |`);
    phases.push(`| ${c.fill} | ${c.rate} | ${c.strategy} | ${c.strategy === "pre-copy" ? c.compress : "-"} | ${DOWNTIME_PHASES.map((p) => (m.phases_ms[p] ?? 0).toFixed(1)).join(" | ")} | ${DESTINATION_PHASES.map((p) => (m.destination_phases_ms[p] ?? 0).toFixed(1)).join(" | ")} |`);
    await request(a1, "DELETE", `/v1/processes/${pid}`);
  }
  console.log(`\nwhere each downtime went (ms: the source's phases_ms, then the destination's own after READY)\n| fill | writes MB/s | strategy | compress | ${DOWNTIME_PHASES.join(" | ")} | dest. ${DESTINATION_PHASES.join(" | dest. ")} |\n|---|---|---|---|${[...DOWNTIME_PHASES, ...DESTINATION_PHASES].map(() => "---|").join("")}`);
  for (const row of phases) console.log(row);
}

try {
  await main();
} finally {
  for (const child of children) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    child.kill("SIGTERM");
    await new Promise((r) => child.once("exit", r));
  }
  fs.rmSync(data, { recursive: true, force: true });
}
