/** Measuring helpers the benchmark's parts share. */
import net from "node:net";
import { Worker } from "node:worker_threads";
import { NATIVE_ADDON_FILE } from "../src/native.js";

/** The value at `p` percent of `xs` sorted: the one at index ⌊n·p/100⌋ (NaN for none). */
export function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((s.length * p) / 100))] ?? NaN;
}

/** The middle value of `xs` (the upper one of the two middles for an even count). */
export function median(xs: readonly number[]): number {
  return percentile(xs, 50);
}

/**
 * Receives `bytes` on a loopback TCP server in a thread of its own, as a
 * destination node receives in its own process: the sender and the receiver
 * each have a core, and neither waits on the other's JavaScript.
 */
const RECEIVER = `
const net = require("node:net");
const { parentPort, workerData } = require("node:worker_threads");
const { bytes, fresh, addon_file } = workerData;
let received = 0;
let memory = null;
const server = net.createServer((s) => s.on("data", (c) => {
  if (fresh) {
    if (memory === null) {
      // Made at the first byte, and backed at once as a standby is (huge pages where the kernel has them), when the addon is built.
      memory = new Uint8Array(new SharedArrayBuffer(bytes));
      try {
        require(addon_file).populate(memory, bytes, true);
      } catch {
        // No addon: each page is backed at its first write.
      }
    }
    memory.set(c.subarray(0, Math.max(0, Math.min(c.length, bytes - received))), Math.min(received, bytes));
  }
  received += c.length;
  if (received >= bytes) parentPort.postMessage("done");
}));
server.listen(0, "127.0.0.1", () => parentPort.postMessage(server.address().port));
`;

/**
 * Sends `bytes` over a loopback TCP connection in 1 MiB writes to a receiver
 * in another thread; resolves with the milliseconds from connecting to the
 * last byte received. The receiver drops what it reads, or with
 * `into_fresh_memory` copies it into a new memory of `bytes` as it arrives,
 * backed first as a standby's is (MADV_POPULATE_WRITE with huge pages,
 * through the native addon when it is built): what any destination pays
 * besides the link, the first write of each page of memory (on this
 * machine's virtual CPUs a trap to the hypervisor, docs/cluster.md).
 */
export async function rawTcpTransfer(bytes: number, options: { into_fresh_memory?: boolean } = {}): Promise<number> {
  const receiver = new Worker(RECEIVER, { eval: true, workerData: { bytes, fresh: options.into_fresh_memory === true, addon_file: NATIVE_ADDON_FILE } });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      receiver.once("message", resolve);
      receiver.once("error", reject);
    });
    const finished = new Promise<void>((resolve) => receiver.once("message", () => resolve()));
    const chunk = Buffer.alloc(1024 * 1024, 7);
    const t0 = performance.now();
    const client = net.connect(port, "127.0.0.1");
    await new Promise<void>((r) => client.on("connect", () => r()));
    for (let sent = 0; sent < bytes; sent += chunk.length) {
      if (!client.write(chunk.subarray(0, Math.min(chunk.length, bytes - sent)))) await new Promise((r) => client.once("drain", r));
    }
    await finished;
    const ms = performance.now() - t0;
    client.destroy();
    return ms;
  } finally {
    await receiver.terminate();
  }
}
