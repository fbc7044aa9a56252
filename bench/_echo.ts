/**
 * A raw TCP echo server in another OS process, as the reference a node's
 * path is measured against: each hop to it wakes a sleeping process, as
 * every hop between a client and a node, or between two nodes, does (an
 * echo in the benchmark's own process answers from a thread that is awake).
 */
import { spawn } from "node:child_process";

/** The echo server, as the source of a separate Node process: it prints its port. */
const ECHO_PROCESS = `const s = require("node:net").createServer((c) => { c.setNoDelay(true); c.on("data", (d) => c.write(d)); });
s.listen(0, "127.0.0.1", () => console.log(s.address().port));`;

/** Starts the echo process; resolves with its port, and how to stop it. */
export async function echoProcess(): Promise<{ port: number; stop(): Promise<void> }> {
  const child = spawn(process.execPath, ["-e", ECHO_PROCESS], { stdio: ["ignore", "pipe", "inherit"] });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout.once("data", (d: Buffer) => resolve(Number(d.toString().trim())));
    child.once("exit", (code) => reject(new Error(`the echo process exited with ${code}`)));
  });
  return { port, stop: () => new Promise((r) => (child.kill(), child.once("exit", () => r()))) };
}
