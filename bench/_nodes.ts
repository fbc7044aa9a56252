/** Node daemons for the benchmarks: separate OS processes on 127.0.0.1. */
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { Dialer, httpRequest } from "../src/node/mod.js";
import { SseParser } from "../src/sse.js";
import { ClusterTls, createAuthority, issue, writeCredential, type KeyPairPem } from "../src/trust/mod.js";
import { fileURLToPath } from "node:url";

/** The repository's root (bench/ is compiled to dist/bench/). */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const FERRY = path.join(ROOT, "bin", "ferry.js");

/** A port nobody listens on right now. */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/**
 * The daemons started here and not yet ended. They end with this process,
 * whichever way it ends (an error, process.exit, a broken pipe on its output,
 * Ctrl-C), never left running on their own.
 */
const live = new Set<ChildProcess>();
let ending_with_us = false;
function endWithUs(child: ChildProcess): void {
  live.add(child);
  child.once("exit", () => live.delete(child));
  if (ending_with_us) return;
  ending_with_us = true;
  process.once("exit", () => {
    for (const c of live) c.kill("SIGKILL");
  });
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.once(signal, () => process.exit(128 + os.constants.signals[signal]));
}

/** Starts one node daemon and resolves once it listens. */
export function startNode(name: string, port: number, peer: string, data: string, security: readonly string[]): Promise<ChildProcess> {
  // FERRY_BENCH_NODE_FLAGS: Node flags for the daemons only (say, --cpu-prof), which NODE_OPTIONS refuses.
  const flags = (process.env["FERRY_BENCH_NODE_FLAGS"] ?? "").split(" ").filter((f) => f !== "");
  const child = spawn(process.execPath, [...flags, FERRY, "node", "start", "--name", name, "--listen", `127.0.0.1:${port}`, "--peers", peer, "--data", data, "--log-level", "warn", ...security], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  endWithUs(child);
  return new Promise((resolve, reject) => {
    child.stdout?.on("data", (c: Buffer) => {
      if (c.toString().includes("listening on")) resolve(child);
    });
    // The --insecure warning is expected in a measurement; anything else is shown.
    child.stderr?.on("data", (c: Buffer) => {
      if (!c.toString().includes("WARNING: --insecure")) process.stderr.write(c);
    });
    child.on("exit", (code) => reject(new Error(`node ${name} exited with ${code}`)));
  });
}

/** Issues node `name` (reached at `host`) a certificate of `ca`, writes it under `dir`/pki, and returns the `--ca --cert --key` flags that name the files. */
export async function nodeCredentialFlags(ca: KeyPairPem, name: string, host: string, dir: string): Promise<string[]> {
  const issued = await issue(ca, { role: "node", name, hosts: [host] });
  const pki = path.join(dir, "pki");
  writeCredential(pki, { ca_pem: ca.cert_pem, cert_pem: issued.cert_pem, key_pem: issued.key_pem as string });
  return ["--ca", path.join(pki, "ca.pem"), "--cert", path.join(pki, "cert.pem"), "--key", path.join(pki, "key.pem")];
}

/** Two node daemons, n1 and n2, peers of each other, both holding one example module. */
export interface NodePair {
  a1: string;
  a2: string;
  /** SHA-256 of the example module. */
  sha: string;
  /** The two daemons' process ids (n1's, n2's): a benchmark may read their CPU time. */
  pids: number[];
  /** A request to a node of the pair, as a client of its cluster. */
  request(address: string, method: string, path: string, body?: Uint8Array | object): Promise<{ status: number; body: Buffer }>;
  /** Stops both and removes their data. */
  stop(): Promise<void>;
}

/** How the pair's connections are made: mutual TLS with a CA of the pair's own (as deployed), or plain HTTP (`--insecure`). */
export type Security = "tls" | "plain";

/** Starts n1 and n2 (each with `node_args` too) and uploads `examples/EXAMPLE` to both. */
export async function startPair(example: string, security: Security = "tls", node_args: readonly string[] = []): Promise<NodePair> {
  const data = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-bench-"));
  const [p1, p2] = [await freePort(), await freePort()];
  const a1 = `127.0.0.1:${p1}`;
  const a2 = `127.0.0.1:${p2}`;
  let dialer = new Dialer(null);
  const flags = async (name: string): Promise<string[]> => [...(security === "plain" ? ["--insecure"] : await credentialFiles(name, path.join(data, name))), ...node_args];
  let ca: KeyPairPem | null = null;
  if (security === "tls") {
    ca = await createAuthority("bench");
    const c = await issue(ca, { role: "client", name: "bench" });
    dialer = new Dialer(new ClusterTls({ ca_pem: ca.cert_pem, cert_pem: c.cert_pem, key_pem: c.key_pem as string }));
  }
  const credentialFiles = (name: string, dir: string): Promise<string[]> => nodeCredentialFlags(ca as KeyPairPem, name, "127.0.0.1", dir);
  const nodes = [await startNode("n1", p1, a2, path.join(data, "n1"), await flags("n1")), await startNode("n2", p2, a1, path.join(data, "n2"), await flags("n2"))];
  const request = (address: string, method: string, p: string, body?: Uint8Array | object): Promise<{ status: number; body: Buffer }> => httpRequest(address, method, p, body, dialer);
  const stop = async (): Promise<void> => {
    for (const n of nodes) n.kill("SIGTERM");
    await Promise.all(nodes.map((n) => new Promise((r) => n.once("exit", r))));
    fs.rmSync(data, { recursive: true, force: true });
  };
  try {
    const sha = await uploadExample({ a1, a2, request }, example);
    return { a1, a2, sha, pids: nodes.map((n) => n.pid ?? 0), request, stop };
  } catch (err: unknown) {
    await stop();
    throw err;
  }
}

/** Stops a `ferry up` a section started (SIGINT, as Ctrl-C); killed if it has not ended within 120 s, with its last words printed. */
export async function stopUp(up: ChildProcess, exited: Promise<void>, last_words: () => string): Promise<void> {
  up.kill("SIGINT");
  let timer: NodeJS.Timeout | undefined;
  const stopped = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 120_000)))]);
  clearTimeout(timer);
  if (!stopped) {
    up.kill("SIGKILL");
    console.log(`ferry up did not stop within 120 s; killed. Its last words: ${last_words().slice(-500)}`);
  }
}

/** Uploads `examples/EXAMPLE` to both nodes of `pair`; its SHA-256. */
export async function uploadExample(pair: Pick<NodePair, "a1" | "a2" | "request">, example: string): Promise<string> {
  const wasm = fs.readFileSync(path.join(ROOT, "examples", example));
  const sha = createHash("sha256").update(wasm).digest("hex");
  for (const a of [pair.a1, pair.a2]) {
    const put = await pair.request(a, "PUT", `/v1/modules/${sha}`, wasm);
    if (put.status >= 300) throw new Error(`uploading ${example}: ${put.status} ${put.body.toString()}`);
  }
  return sha;
}

/** The output `pid` wrote so far, as text (`GET /v1/processes/PID/output` on n1). */
export async function outputText(pair: NodePair, pid: string): Promise<string> {
  const body = (await pair.request(pair.a1, "GET", `/v1/processes/${pid}/output`)).body;
  return new SseParser()
    .push(body)
    .filter((e) => e.event === "output")
    .map((e) => Buffer.from((JSON.parse(e.data) as { data: string }).data, "base64").toString())
    .join("");
}

/** Starts `module_name` (`sha`) with `args` on n1 of `pair`; resolves with its pid once its output so far satisfies `ready`. */
export async function startGuest(pair: NodePair, sha: string, module_name: string, args: string[], ready: (output: string) => boolean): Promise<string> {
  const r = await pair.request(pair.a1, "POST", "/v1/processes", { module_sha256: sha, module_name, args, node: "n1" });
  if (r.status >= 300) throw new Error(`starting ${module_name}: ${r.status} ${r.body.toString()}`);
  const { pid } = JSON.parse(r.body.toString()) as { pid: string };
  while (!ready(await outputText(pair, pid))) await new Promise((resolve) => setTimeout(resolve, 50));
  return pid;
}
