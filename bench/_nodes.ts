/** Node daemons for the benchmarks: separate OS processes on 127.0.0.1. */
import { spawn, type ChildProcess } from "node:child_process";
import net from "node:net";
import path from "node:path";
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
