/**
 * Post-copy page pipeline benchmark: a PageServer pushes a whole memory over
 * a loopback TCP connection to RemotePages (native threads placing each chunk
 * with UFFDIO_COPY), in this one process and with no guest running, against
 * a raw loopback TCP transfer of the same bytes in the same run. Separates
 * the pipeline's own speed from what a whole migration adds; the process's
 * CPU time shows how much of it the kernel spends.
 */
import net from "node:net";
import { CHUNK_BYTES, RemotePages, remotePagesAvailability } from "../src/memory/mod.js";
import { PageServer } from "../src/migration/mod.js";
import { median, rawTcpTransfer } from "./_measure.js";

/** Pushes `bytes` of non-zero memory through the pipeline; ms and CPU ms (user, system). */
async function push(bytes: number): Promise<{ ms: number; user_ms: number; system_ms: number }> {
  const chunks = bytes / CHUNK_BYTES;
  const source = new WebAssembly.Memory({ initial: chunks, maximum: 65536, shared: true });
  const src = new Uint8Array(source.buffer);
  for (let i = 0; i < src.length; i += 4096) src[i] = 1 + ((i >> 12) % 200);
  const server = new PageServer(src, {});
  const tcp = net.createServer((socket) => {
    socket.setNoDelay(true);
    void server.serve(socket);
  });
  await new Promise<void>((r) => tcp.listen(0, "127.0.0.1", () => r()));
  const dest = new WebAssembly.Memory({ initial: chunks, maximum: 65536, shared: true });
  let complete!: () => void;
  const completed = new Promise<void>((r) => (complete = r));
  const pages = new RemotePages(new Uint8Array(dest.buffer), bytes, { down: () => undefined, complete: () => complete() });
  pages.drop(0, bytes);
  const socket = net.connect((tcp.address() as net.AddressInfo).port, "127.0.0.1");
  await new Promise<void>((r) => socket.once("connect", () => r()));
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  pages.attach(socket);
  await completed;
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const check = new Uint8Array(dest.buffer);
  for (let i = 0; i < bytes; i += 4096) if (check[i] !== src[i]) throw new Error(`page at ${i} arrived wrong`);
  pages.close();
  socket.destroy();
  await new Promise((r) => tcp.close(r));
  return { ms, user_ms: cpu.user / 1000, system_ms: cpu.system / 1000 };
}

/** Runs the page pipeline benchmark and prints its table. */
export async function pagesBench(quick: boolean): Promise<void> {
  const can = remotePagesAvailability();
  if (!can.available) {
    console.log(`\n(j) post-copy page pipeline: left out (${can.reason})`);
    return;
  }
  const repeats = quick ? 2 : 5;
  console.log("\n(j) post-copy page pipeline alone (PageServer -> loopback TCP -> RemotePages, UFFDIO_COPY), no guest, vs raw loopback TCP of the same bytes, same run");
  console.log("| memory | raw TCP MB/s (median) | pipeline MB/s (median) | ratio | pipeline MB/s, each run | CPU ms user/system, each run |\n|---|---|---|---|---|---|");
  for (const mib of quick ? [256] : [256, 1024]) {
    const bytes = mib * 1024 * 1024;
    const raw: number[] = [];
    const runs: { ms: number; user_ms: number; system_ms: number }[] = [];
    for (let i = 0; i < repeats; i += 1) {
      raw.push(await rawTcpTransfer(bytes));
      runs.push(await push(bytes));
    }
    const rate = (ms: number): number => bytes / 1e6 / (ms / 1000);
    const raw_rate = rate(median(raw));
    const pipe_rate = rate(median(runs.map((r) => r.ms)));
    console.log(
      `| ${mib} MiB | ${raw_rate.toFixed(0)} | ${pipe_rate.toFixed(0)} | ${(pipe_rate / raw_rate).toFixed(2)}x | ${runs.map((r) => rate(r.ms).toFixed(0)).join(", ")} | ${runs.map((r) => `${r.user_ms.toFixed(0)}/${r.system_ms.toFixed(0)}`).join(", ")} |`,
    );
  }
}
