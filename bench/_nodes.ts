/** Node daemons for the benchmarks: separate OS processes on 127.0.0.1. */
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { httpRequest as request } from "../src/node/mod.js";
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

/** Starts one node daemon and resolves once it listens. */
export function startNode(name: string, port: number, peer: string, data: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [FERRY, "node", "start", "--name", name, "--listen", `127.0.0.1:${port}`, "--peers", peer, "--data", data], { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    child.stdout?.on("data", (c: Buffer) => {
      if (c.toString().includes("listening on")) resolve(child);
    });
    child.on("exit", (code) => reject(new Error(`node ${name} exited with ${code}`)));
  });
}

/** Two node daemons, n1 and n2, peers of each other, both holding one example module. */
export interface NodePair {
  a1: string;
  a2: string;
  /** SHA-256 of the example module. */
  sha: string;
  /** Stops both and removes their data. */
  stop(): Promise<void>;
}

/** Starts n1 and n2 and uploads `examples/EXAMPLE` to both. */
export async function startPair(example: string): Promise<NodePair> {
  const data = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-bench-"));
  const [p1, p2] = [await freePort(), await freePort()];
  const a1 = `127.0.0.1:${p1}`;
  const a2 = `127.0.0.1:${p2}`;
  const nodes = [await startNode("n1", p1, a2, path.join(data, "n1")), await startNode("n2", p2, a1, path.join(data, "n2"))];
  const stop = async (): Promise<void> => {
    for (const n of nodes) n.kill("SIGTERM");
    await Promise.all(nodes.map((n) => new Promise((r) => n.once("exit", r))));
    fs.rmSync(data, { recursive: true, force: true });
  };
  try {
    const wasm = fs.readFileSync(path.join(ROOT, "examples", example));
    const sha = createHash("sha256").update(wasm).digest("hex");
    for (const a of [a1, a2]) await request(a, "PUT", `/v1/modules/${sha}`, wasm);
    return { a1, a2, sha, stop };
  } catch (err: unknown) {
    await stop();
    throw err;
  }
}
